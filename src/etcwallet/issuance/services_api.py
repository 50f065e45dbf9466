"""Account services' routes (seed 001): 用户账号查询, 变更银行卡, 用户信息变更. A thin router over
:mod:`etcwallet.issuance.services`. Phones, ID and bank card numbers travel in POST bodies, never in URLs;
answers are masked as the staff customer view is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field, model_validator

from etcwallet.core.deps import ClientDep, KeysDep, LedgerDep, UnitOfWorkDep
from etcwallet.core.masking import mask_phone
from etcwallet.core.openapi import problems
from etcwallet.core.schemas import RequestModel
from etcwallet.identity.authz import Permission, Principal, actor_of, forbidden, require
from etcwallet.identity.customers import schemas as cs
from etcwallet.identity.customers.api import staff_view
from etcwallet.identity.customers.types import OutletOperator
from etcwallet.identity.sms import SentCode, SmsDep
from etcwallet.issuance import schemas as s
from etcwallet.issuance import services
from etcwallet.issuance.codes import CardType, PlateColour
from etcwallet.issuance.context import IssuanceDep
from etcwallet.issuance.types import ApplicationStatus
from etcwallet.ledger.types import Account

router = APIRouter(prefix="/api/v1/issuance", tags=["issuance: account services"])

Operator = Annotated[Principal, Depends(require(Permission.ISSUANCE_OPERATE))]
BankOperator = Annotated[Principal, Depends(require(Permission.BANK_CARD_BIND))]

BankCardNumber = Annotated[str, Field(min_length=1, max_length=32, description="the bank card number typed")]
SmsCode = Annotated[str, Field(min_length=1, max_length=12)]


def _operator(principal: Principal, permission: Permission) -> OutletOperator:
    if principal.outlet_id is None:
        raise forbidden(permission.value)
    return OutletOperator(principal.id, principal.outlet_id)


# --- schemas ---------------------------------------------------------------------------------------------


class AccountQueryIn(RequestModel):
    """Find the customer by phone, or by ID type and number (exactly one of the two)."""

    phone: Annotated[str | None, Field(max_length=20)] = None
    id_type: cs.IdType | None = None
    id_number: cs.IdNumber | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Self:
        by_phone = self.phone is not None
        by_id = self.id_type is not None or self.id_number is not None
        if by_phone == by_id or (by_id and (self.id_type is None or self.id_number is None)):
            raise ValueError("give phone, or id_type and id_number")
        return self


class AccountApplicationOut(BaseModel):
    """A vehicle application of the customer (any outlet's)."""

    id: UUID
    outlet_id: UUID
    plate: str
    plate_colour: PlateColour
    card_type: CardType
    status: ApplicationStatus
    has_bank_card: bool
    created_at: datetime


class AccountOut(BaseModel):
    """A ledger account of the customer: the wallet, a card purse or receivable (``instance``: card number)."""

    id: UUID
    purpose: str | None
    instance: str | None
    currency: str
    balance: int = Field(description="posted balance in fen")
    available: int
    frozen: bool

    @classmethod
    def of(cls, account: Account) -> Self:
        meta: dict[str, Any] = account.metadata or {}
        return cls(
            id=account.id,
            purpose=meta.get("purpose"),
            instance=meta.get("instance"),
            currency=account.currency,
            balance=account.balance,
            available=account.available,
            frozen=account.frozen,
        )


class AccountViewOut(BaseModel):
    """用户账号查询: the customer (masked), their vehicles, cards and tags with statuses, and balances."""

    customer: cs.StaffCustomerOut
    applications: list[AccountApplicationOut]
    chips: list[s.ChipOut]
    accounts: list[AccountOut]


class BankCardChangeIn(RequestModel):
    """The new bank card, typed twice (the card to change is the one in the operator's slot)."""

    bank_card_number: BankCardNumber
    confirm_number: BankCardNumber


class BankCardChangeStartedOut(BaseModel):
    """The code is sent to the customer's phone; send ``change_token`` back with the code and the number."""

    card_number: str
    plate: str
    plate_colour: PlateColour
    old_bank_card_masked: str | None
    new_bank_card_masked: str
    change_token: str
    phone_masked: str
    expires_at: datetime


class BankCardChangeConfirmIn(RequestModel):
    """The customer's code confirms the change for this card and this (same) new bank card number."""

    card_number: s.ChipNumber
    bank_card_number: BankCardNumber
    change_token: Annotated[str, Field(min_length=1, max_length=200)]
    sms_code: SmsCode


class BankCardChangedOut(BaseModel):
    """The application of the card now charges the new bank card; the old one is unbound."""

    card_number: str
    application_id: UUID
    old_bank_card_masked: str | None
    new_bank_card_masked: str
    new_bank_card_id: UUID


class InfoIdentifyIn(RequestModel):
    """The customer's phone AND ID document (用户信息变更 finds by both)."""

    phone: Annotated[str, Field(min_length=1, max_length=20)]
    id_type: cs.IdType
    id_number: cs.IdNumber


class ChangeableFieldOut(BaseModel):
    """A field that may be changed; ``required`` is the seed's ``*``."""

    field: str
    label_zh: str
    label_en: str
    required: bool
    current_masked: str | None


class InfoChangeFormOut(BaseModel):
    """The customer found (masked) and the fields that may be changed."""

    customer: cs.StaffCustomerOut
    fields: list[ChangeableFieldOut]


class InfoChangeIn(InfoIdentifyIn):
    """The change: a new phone and/or name, with the code sent to the customer's current phone."""

    sms_code: SmsCode
    new_phone: Annotated[str | None, Field(max_length=20)] = None
    new_name: Annotated[str | None, Field(max_length=64)] = None


def _form(form: services.InfoChangeForm) -> InfoChangeFormOut:
    return InfoChangeFormOut(
        customer=staff_view(form.customer),
        fields=[
            ChangeableFieldOut(
                field=f.field,
                label_zh=f.zh,
                label_en=f.en,
                required=f.required,
                current_masked=f.current_masked,
            )
            for f in form.fields
        ],
    )


def _sent(sent: SentCode) -> cs.SmsCodeSentOut:
    return cs.SmsCodeSentOut(
        phone_masked=mask_phone(sent.phone),
        purpose=sent.purpose.value,
        expires_at=sent.expires_at,
        resend_after=sent.resend_after,
    )


# --- 用户账号查询 --------------------------------------------------------------------------------------------


@router.post("/account-query", response_model=AccountViewOut, responses=problems(404, 422))
async def query_account(
    staff: Operator,
    body: AccountQueryIn,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    ledger: LedgerDep,
    client: ClientDep,
) -> AccountViewOut:
    """用户账号查询 by phone, or by ID type and number: any outlet's operator; every query audited."""
    view = await services.query_account(
        uow,
        keys=keys,
        ledger=ledger,
        operator=_operator(staff, Permission.ISSUANCE_OPERATE),
        phone=body.phone,
        id_type=body.id_type,
        id_number=body.id_number,
        actor=actor_of(staff, client),
        client=client,
    )
    return AccountViewOut(
        customer=staff_view(view.customer),
        applications=[
            AccountApplicationOut(
                id=a.id,
                outlet_id=a.outlet_id,
                plate=a.vehicle.plate,
                plate_colour=a.vehicle.plate_colour,
                card_type=a.card_type,
                status=a.status,
                has_bank_card=a.bank_card_id is not None,
                created_at=a.created_at,
            )
            for a in view.applications
        ],
        chips=[s.ChipOut.of(c) for c in view.chips],
        accounts=[AccountOut.of(a) for a in view.accounts],
    )


# --- 变更银行卡 ----------------------------------------------------------------------------------------------


@router.post(
    "/bank-card-changes",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BankCardChangeStartedOut,
    responses=problems(403, 409, 422, 429, 503),
)
async def start_bank_card_change(
    staff: BankOperator,
    body: BankCardChangeIn,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    context: IssuanceDep,
    sms: SmsDep,
    client: ClientDep,
) -> BankCardChangeStartedOut:
    """变更银行卡: read the card in the slot, check the new bank card typed twice, text the customer a code."""
    started = await services.start_bank_card_change(
        uow,
        context=context,
        keys=keys,
        gateway=sms,
        operator=_operator(staff, Permission.BANK_CARD_BIND),
        bank_card_number=body.bank_card_number,
        confirm_number=body.confirm_number,
        actor=actor_of(staff, client),
        client=client,
    )
    vehicle = started.owner.application.vehicle
    return BankCardChangeStartedOut(
        card_number=started.owner.chip.number,
        plate=vehicle.plate,
        plate_colour=vehicle.plate_colour,
        old_bank_card_masked=started.owner.bank_card_masked,
        new_bank_card_masked=started.new_bank_card_masked,
        change_token=started.change_token,
        phone_masked=mask_phone(started.sent.phone),
        expires_at=started.sent.expires_at,
    )


@router.post(
    "/bank-card-changes/confirm", response_model=BankCardChangedOut, responses=problems(403, 404, 409, 422)
)
async def confirm_bank_card_change(
    staff: BankOperator,
    body: BankCardChangeConfirmIn,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    client: ClientDep,
) -> BankCardChangedOut:
    """变更银行卡: the customer's code confirms; the new card is bound, made default, and the old unbound."""
    changed = await services.confirm_bank_card_change(
        uow,
        keys=keys,
        operator=_operator(staff, Permission.BANK_CARD_BIND),
        card_number=body.card_number,
        bank_card_number=body.bank_card_number,
        change_token=body.change_token,
        sms_code=body.sms_code,
        actor=actor_of(staff, client),
        client=client,
    )
    return BankCardChangedOut(
        card_number=changed.owner.chip.number,
        application_id=changed.owner.application.id,
        old_bank_card_masked=changed.old_bank_card_masked,
        new_bank_card_masked=changed.new_bank_card.masked,
        new_bank_card_id=changed.new_bank_card.id,
    )


# --- 用户信息变更 --------------------------------------------------------------------------------------------


@router.post("/info-changes/search", response_model=InfoChangeFormOut, responses=problems(404, 422))
async def find_for_info_change(
    staff: Operator, body: InfoIdentifyIn, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep
) -> InfoChangeFormOut:
    """用户信息变更: the customer with this phone and ID number, and the fields that may change (* marked)."""
    form = await services.find_for_info_change(
        uow,
        keys=keys,
        operator=_operator(staff, Permission.ISSUANCE_OPERATE),
        phone=body.phone,
        id_type=body.id_type,
        id_number=body.id_number,
        actor=actor_of(staff, client),
        client=client,
    )
    return _form(form)


@router.post(
    "/info-changes/sms-codes",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=cs.SmsCodeSentOut,
    responses=problems(404, 422, 429),
)
async def send_info_change_code(
    staff: Operator, body: InfoIdentifyIn, uow: UnitOfWorkDep, keys: KeysDep, sms: SmsDep, client: ClientDep
) -> cs.SmsCodeSentOut:
    """用户信息变更: text the code (purpose profile_change) to the customer's own phone."""
    sent = await services.send_info_change_code(
        uow,
        keys=keys,
        gateway=sms,
        operator=_operator(staff, Permission.ISSUANCE_OPERATE),
        phone=body.phone,
        id_type=body.id_type,
        id_number=body.id_number,
        actor=actor_of(staff, client),
        client=client,
    )
    return _sent(sent)


@router.post("/info-changes", response_model=InfoChangeFormOut, responses=problems(404, 409, 422))
async def change_info(
    staff: Operator, body: InfoChangeIn, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep
) -> InfoChangeFormOut:
    """用户信息变更: change the phone and/or name with the customer's code; audited, old and new masked."""
    form = await services.change_info(
        uow,
        keys=keys,
        operator=_operator(staff, Permission.ISSUANCE_OPERATE),
        phone=body.phone,
        id_type=body.id_type,
        id_number=body.id_number,
        sms_code=body.sms_code,
        new_phone=body.new_phone,
        new_name=body.new_name,
        actor=actor_of(staff, client),
        client=client,
    )
    return _form(form)
