"""Detection's routes (卡签检测): card and tag detection, card activation and renewal, tag deregistration,
card loss and cancellation. A thin router over :mod:`etcwallet.issuance.detection` with its own answers.

Any holder of ``issuance.operate`` may detect, activate, report lost or deregister whatever card or tag is
brought to the counter (customers belong to no outlet); cancellation needs ``issuance.supervise``. Every
call is audited with the caller's outlet. The answers mask the cardholder's name and ID number.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Self
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from etcwallet.core.deps import ClientDep, LedgerDep, UnitOfWorkDep
from etcwallet.core.openapi import problems
from etcwallet.core.schemas import RequestModel
from etcwallet.identity.authz import Permission, Principal, actor_of, forbidden, require
from etcwallet.identity.customers.types import OutletOperator
from etcwallet.issuance import detection
from etcwallet.issuance import schemas as s
from etcwallet.issuance.chip.files import ObuSystemFile, ObuVehicleFile, TransactionRecord
from etcwallet.issuance.codes import CardType, PlateColour, TransactionType, UserType, VehicleClass
from etcwallet.issuance.context import IssuanceDep
from etcwallet.issuance.detection import CardVerdict, DeregistrationReason, TagVerdict
from etcwallet.issuance.types import Application, Chip
from etcwallet.platform.audit import Actor
from etcwallet.platform.idempotency import idempotent

router = APIRouter(prefix="/api/v1/issuance", tags=["issuance"])

Operator = Annotated[Principal, Depends(require(Permission.ISSUANCE_OPERATE))]
KeyedOperator = Annotated[Principal, Depends(idempotent(require(Permission.ISSUANCE_OPERATE)))]
KeyedSupervisor = Annotated[Principal, Depends(idempotent(require(Permission.ISSUANCE_SUPERVISE)))]


def _placed(principal: Principal, permission: Permission) -> OutletOperator:
    """The staff member and their outlet (every holder of an issuance permission is placed at one)."""
    if principal.outlet_id is None:
        raise forbidden(permission.value)
    return OutletOperator(principal.id, principal.outlet_id)


def _actor(principal: Principal, client: ClientDep) -> Actor:
    return actor_of(principal, client)


def _names(code: CardType | PlateColour | VehicleClass | UserType | TransactionType) -> dict[str, str]:
    return {"zh": code.zh, "en": code.en}


# --- answers ----------------------------------------------------------------------------------------------


class PlatformViewOut(BaseModel):
    """The platform's record of the chip: status, outlet, vehicle, expiry, customer and application."""

    chip: s.ChipOut
    customer_id: UUID | None
    application_id: UUID | None
    vehicle_class: VehicleClass | None

    @classmethod
    def of(cls, chip: Chip | None, application: Application | None) -> Self | None:
        if chip is None:
            return None
        return cls(
            chip=s.ChipOut.of(chip),
            customer_id=chip.customer_id,
            application_id=chip.application_id,
            vehicle_class=None if application is None else application.vehicle.vehicle_class,
        )


class CardIssueOut(BaseModel):
    """0015 as the card holds it (the factory part always, the issuance part once written)."""

    issuer: str
    card_type: CardType
    card_type_name: dict[str, str]
    card_version: int
    card_number: str
    start_date: date | None
    expiry_date: date | None
    plate: str | None
    plate_colour: PlateColour | None
    user_type: UserType | None
    vehicle_class: VehicleClass | None


class CardholderOut(BaseModel):
    """0016 with the name and ID number masked."""

    holder_flag: int
    staff_flag: int
    name: str
    id_number: str
    id_type: int


class TransactionRecordOut(BaseModel):
    """One record of 0018 (record 1 the newest)."""

    serial: int
    overdraw_limit: int
    amount: int
    transaction_type: TransactionType
    transaction_type_name: dict[str, str]
    terminal_id: str
    at: datetime

    @classmethod
    def of(cls, record: TransactionRecord) -> Self:
        return cls(
            serial=record.serial,
            overdraw_limit=record.overdraw_limit,
            amount=record.amount,
            transaction_type=record.transaction_type,
            transaction_type_name=_names(record.transaction_type),
            terminal_id=record.terminal_id.hex().upper(),
            at=record.at,
        )


class CardDetectionOut(BaseModel):
    """卡片检测: the card, the platform's view, the verdict and whether 【卡片激活】 is offered."""

    verdict: CardVerdict
    verdict_zh: str
    verdict_en: str
    activation_offered: bool
    expired: bool
    differences: list[str] = Field(description="fields where the card differs from the platform's record")
    card: CardIssueOut | None
    holder: CardholderOut | None
    balance: int | None = Field(description="the e-purse balance on the chip, in fen")
    records: list[TransactionRecordOut]
    records_supported: bool
    platform: PlatformViewOut | None

    @classmethod
    def of(cls, found: detection.CardDetection) -> Self:
        reading, card = found.reading, None
        if reading is not None:
            issue = reading.issue
            card = CardIssueOut(
                issuer=f"{reading.issuer.name} {reading.issuer.code}",
                card_type=reading.card_type,
                card_type_name=_names(reading.card_type),
                card_version=reading.card_version,
                card_number=str(reading.card_number),
                start_date=None if issue is None else issue.start_date,
                expiry_date=None if issue is None else issue.expiry_date,
                plate=None if issue is None else issue.plate,
                plate_colour=None if issue is None else issue.plate_colour,
                user_type=None if issue is None else issue.user_type,
                vehicle_class=None if issue is None else issue.vehicle_class,
            )
        h = found.holder
        return cls(
            verdict=found.verdict,
            verdict_zh=found.verdict.zh,
            verdict_en=found.verdict.en,
            activation_offered=found.activation_offered,
            expired=found.expired,
            differences=found.differences,
            card=card,
            holder=None
            if h is None
            else CardholderOut(
                holder_flag=h.holder_flag,
                staff_flag=h.staff_flag,
                name=h.name,
                id_number=h.id_number,
                id_type=h.id_type,
            ),
            balance=None if reading is None else reading.balance,
            records=[TransactionRecordOut.of(r) for r in found.records],
            records_supported=found.records_supported,
            platform=PlatformViewOut.of(found.chip, found.application),
        )


class CardActivateIn(RequestModel):
    """The card detection showed (it must still be in the slot)."""

    card_number: Annotated[str, Field(pattern=r"^[0-9]{20}$")]


class CardActivationOut(BaseModel):
    """A card activated or renewed: its new dates and its platform record."""

    card: s.ChipOut
    renewal: bool
    start_date: date
    expiry_date: date


class ObuSystemOut(BaseModel):
    """The OBU system file."""

    issuer: str
    contract_type: int
    contract_version: int
    signing_date: date
    expiry_date: date
    tamper: int = Field(description="01 on the windscreen and activated, 00 removed or not activated")

    @classmethod
    def of(cls, system: ObuSystemFile) -> Self:
        return cls(
            issuer=f"{system.issuer.name} {system.issuer.code}",
            contract_type=system.contract_type,
            contract_version=system.contract_version,
            signing_date=system.signing_date,
            expiry_date=system.expiry_date,
            tamper=int(system.tamper),
        )


class ObuVehicleOut(BaseModel):
    """The OBU vehicle file, decrypted."""

    plate: str
    plate_colour: PlateColour
    vehicle_class: VehicleClass
    vehicle_class_name: dict[str, str]
    user_type: UserType
    length_mm: int
    width_mm: int
    height_mm: int
    gross_mass_kg: int
    rated_passengers: int
    vin: str

    @classmethod
    def of(cls, vehicle: ObuVehicleFile) -> Self:
        return cls(
            plate=vehicle.plate,
            plate_colour=vehicle.plate_colour,
            vehicle_class=vehicle.vehicle_class,
            vehicle_class_name=_names(vehicle.vehicle_class),
            user_type=vehicle.user_type,
            length_mm=vehicle.length_mm,
            width_mm=vehicle.width_mm,
            height_mm=vehicle.height_mm,
            gross_mass_kg=vehicle.gross_mass_kg,
            rated_passengers=vehicle.rated_passengers,
            vin=vehicle.vin,
        )


class TagDetectionOut(BaseModel):
    """标签检测: the tag, the platform's view and the verdict."""

    verdict: TagVerdict
    verdict_zh: str
    verdict_en: str
    differences: list[str]
    obu_number: str | None
    system: ObuSystemOut | None
    vehicle: ObuVehicleOut | None
    platform: PlatformViewOut | None


class DeregisterIn(RequestModel):
    """标签注销: why (信息错误, 标签损坏, 更换车辆, 其他) and, optionally, in the operator's words."""

    reason: DeregistrationReason
    note: Annotated[str | None, Field(max_length=detection.NOTE_MAX)] = None


class CardReasonIn(RequestModel):
    """Why a card is reported lost or cancelled (recorded in the audit, masked)."""

    reason: Annotated[str, Field(min_length=1, max_length=detection.NOTE_MAX)]


class CardCancelledOut(BaseModel):
    """A cancelled card and its ledger account's balance, which cancellation does not refund."""

    card: s.ChipOut
    account_id: UUID
    balance: int = Field(description="the card's ledger account balance in fen, left for a refund")


# --- routes -----------------------------------------------------------------------------------------------


@router.post("/detection/card", response_model=CardDetectionOut, responses=problems(409, 503))
async def detect_card(
    staff: Operator, uow: UnitOfWorkDep, context: IssuanceDep, client: ClientDep
) -> CardDetectionOut:
    """卡片检测: read the card in the operator's slot and show it beside the platform's view, with a verdict."""
    found = await detection.detect_card(
        uow,
        context=context,
        operator=_placed(staff, Permission.ISSUANCE_OPERATE),
        actor=_actor(staff, client),
    )
    return CardDetectionOut.of(found)


@router.post(
    "/detection/card/activate", response_model=CardActivationOut, responses=problems(404, 409, 422, 503)
)
async def activate_card(
    staff: KeyedOperator, body: CardActivateIn, uow: UnitOfWorkDep, context: IssuanceDep, client: ClientDep
) -> CardActivationOut:
    """卡片激活: activate the issued card in the slot, or renew it when expired."""
    done = await detection.activate_card(
        uow,
        context=context,
        operator=_placed(staff, Permission.ISSUANCE_OPERATE),
        card_number=body.card_number,
        actor=_actor(staff, client),
    )
    return CardActivationOut(
        card=s.ChipOut.of(done.chip),
        renewal=done.activation.renewal,
        start_date=done.activation.start_date,
        expiry_date=done.activation.expiry_date,
    )


@router.post("/detection/tag", response_model=TagDetectionOut, responses=problems(409, 503))
async def detect_tag(
    staff: Operator, uow: UnitOfWorkDep, context: IssuanceDep, client: ClientDep
) -> TagDetectionOut:
    """标签检测: read the tag in the operator's field and show it beside the platform's view, with a verdict."""
    found = await detection.detect_tag(
        uow,
        context=context,
        operator=_placed(staff, Permission.ISSUANCE_OPERATE),
        actor=_actor(staff, client),
    )
    return TagDetectionOut(
        verdict=found.verdict,
        verdict_zh=found.verdict.zh,
        verdict_en=found.verdict.en,
        differences=found.differences,
        obu_number=found.obu_number,
        system=None if found.system is None else ObuSystemOut.of(found.system),
        vehicle=None if found.vehicle is None else ObuVehicleOut.of(found.vehicle),
        platform=PlatformViewOut.of(found.chip, found.application),
    )


@router.post("/tags/{number}/deregistration", response_model=s.ChipOut, responses=problems(404, 409, 422))
async def deregister_tag(
    staff: KeyedOperator,
    number: Annotated[str, s.ChipNumberPath],
    body: DeregisterIn,
    uow: UnitOfWorkDep,
    client: ClientDep,
) -> s.ChipOut:
    """标签注销: deregister a live tag (with a reason); a new tag may then be issued for its vehicle."""
    chip = await detection.deregister_tag(
        uow,
        operator=_placed(staff, Permission.ISSUANCE_OPERATE),
        obu_number=number,
        reason=body.reason,
        note=body.note,
        actor=_actor(staff, client),
    )
    return s.ChipOut.of(chip)


@router.post("/cards/{number}/loss", response_model=s.ChipOut, responses=problems(404, 409, 422))
async def report_card_lost(
    staff: KeyedOperator,
    number: Annotated[str, s.ChipNumberPath],
    body: CardReasonIn,
    uow: UnitOfWorkDep,
    client: ClientDep,
) -> s.ChipOut:
    """挂失: report a live card lost by its number; it goes on the status list."""
    chip = await detection.report_card_lost(
        uow,
        operator=_placed(staff, Permission.ISSUANCE_OPERATE),
        card_number=number,
        reason=body.reason,
        actor=_actor(staff, client),
    )
    return s.ChipOut.of(chip)


@router.post(
    "/cards/{number}/cancellation", response_model=CardCancelledOut, responses=problems(404, 409, 422)
)
async def cancel_card(
    staff: KeyedSupervisor,
    number: Annotated[str, s.ChipNumberPath],
    body: CardReasonIn,
    uow: UnitOfWorkDep,
    ledger: LedgerDep,
    client: ClientDep,
) -> CardCancelledOut:
    """注销: cancel a live or lost card by its number (a supervisor); answers the balance left on its
    ledger account (not refunded here)."""
    cancelled = await detection.cancel_card(
        uow,
        ledger=ledger,
        operator=_placed(staff, Permission.ISSUANCE_SUPERVISE),
        card_number=number,
        reason=body.reason,
        actor=_actor(staff, client),
    )
    return CardCancelledOut(
        card=s.ChipOut.of(cancelled.chip), account_id=cancelled.account_id, balance=cancelled.balance
    )
