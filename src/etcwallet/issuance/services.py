"""Account services at the outlet (seed 001): 用户账号查询 (account query), 变更银行卡 (change the bank card an
ETC card is charged to) and 用户信息变更 (change the customer's phone or name).

Customers belong to no outlet: any issuance operator may query one, and every query is audited, a miss
included. The customer's data is identity's (reached through its public service functions only), the bank
cards are payments', the cards, tags and applications issuance's own.

A bank card change is two calls. The first reads the card in the operator's slot, checks the new bank
card typed twice, and sends a code (purpose ``bank_card_change``) to the customer's phone; it answers a
``change_token``: a keyed MAC over the application, the card, the bank card bound now, the new number's
keyed hash and an expiry. Nothing is stored: the confirm call sends the new number again with the token
and the code, and the token must match that number (so the clear number is never kept on the server, and
a code cannot confirm another number than the one it was sent for). An information change sends a code
(purpose ``profile_change``) to the customer's own phone and changes through identity.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from etcwallet.core.crypto import Keys, keyed_hash
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError, InvalidValue
from etcwallet.core.masking import mask_bank_card, mask_phone
from etcwallet.identity.customers import accounts as customer_accounts
from etcwallet.identity.customers import outlet as outlet_customers
from etcwallet.identity.customers import service as customers
from etcwallet.identity.customers.types import CustomerDetail, OutletOperator
from etcwallet.identity.sms import LIFETIME, Purpose, SentCode, SmsGateway
from etcwallet.identity.staff import service as staff
from etcwallet.issuance import store
from etcwallet.issuance.chip import card_host
from etcwallet.issuance.chip.apdu import StatusWordError
from etcwallet.issuance.chip.card_host import UnreadableCard
from etcwallet.issuance.chip.reader import CardRemoved, ReaderError
from etcwallet.issuance.context import IssuanceContext
from etcwallet.issuance.errors import IssuanceError
from etcwallet.issuance.types import CHIP_STATUS_NAMES, Application, Chip, ChipKind, IssuanceAction
from etcwallet.ledger.service import Ledger
from etcwallet.ledger.types import Account
from etcwallet.payments import service as payments
from etcwallet.payments.bins import check_card_number, normalize_card_number
from etcwallet.payments.errors import PaymentsError
from etcwallet.payments.types import BankCard
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

CHANGE_LIFETIME: timedelta = LIFETIME
"""A bank card change's token lives as long as the code sent with it."""


async def _audit(uow: UnitOfWork, event: Any) -> None:
    async def step(unit: Unit) -> None:
        unit.audit(event)

    await uow.run(step)


# --- 用户账号查询: the account query ------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountView:
    """What an operator sees of a customer: the masked customer, their applications (vehicles), cards and
    tags with their statuses, and their ledger accounts with balances."""

    customer: CustomerDetail
    applications: list[Application]
    chips: list[Chip]
    accounts: list[Account]


async def query_account(
    uow: UnitOfWork,
    *,
    keys: Keys,
    ledger: Ledger,
    operator: OutletOperator,
    phone: str | None = None,
    id_type: str | None = None,
    id_number: str | None = None,
    actor: Actor,
    client: Client,
) -> AccountView:
    """用户账号查询: the customer with this phone, or with this ID document, and everything they hold.

    Any issuance operator may ask (customers belong to no outlet). Audited found or not: identity records
    the find (``customer.outlet.find``), issuance the query (``issuance.account.query``, a miss as a
    refusal). 404 ``customer_not_found`` when nobody matches."""
    by: dict[str, Any] = {"by": "phone"} if phone is not None else {"by": "id_number", "id_type": id_type}
    try:
        if phone is not None:
            found = await outlet_customers.find_at_outlet_by_phone(
                uow=uow, keys=keys, operator=operator, phone=phone, client=client
            )
        else:
            assert id_type is not None and id_number is not None
            found = await outlet_customers.find_at_outlet_by_id_number(
                uow=uow, keys=keys, operator=operator, id_type=id_type, id_number=id_number, client=client
            )
    except DomainError as error:
        await _audit(
            uow, actor.refused(IssuanceAction.ACCOUNT_QUERY, error.code, target=("customer", None), detail=by)
        )
        raise
    customer_id = found.customer.id
    async with uow.pool.connection() as conn:
        applications = await store.applications_of_customer(conn, customer_id)
        chips = await store.chips_of_customer(conn, customer_id)
    accounts = await customer_accounts.accounts_of(ledger, customer_id=customer_id)
    detail = by | {"applications": len(applications), "chips": len(chips), "accounts": len(accounts)}
    await _audit(
        uow, actor.event(IssuanceAction.ACCOUNT_QUERY, target=("customer", str(customer_id)), detail=detail)
    )
    return AccountView(found, applications, chips, accounts)


# --- 变更银行卡: change the bank card ------------------------------------------------------------------------


@dataclass(frozen=True)
class CardOwner:
    """The card in the slot as the platform knows it: its record, application and current bank card."""

    chip: Chip
    application: Application
    bank_card_masked: str | None


@dataclass(frozen=True)
class BankCardChangeStarted:
    """The first step done: the code is sent to the customer's phone; the token goes back with it."""

    owner: CardOwner
    new_bank_card_masked: str
    change_token: str
    sent: SentCode


@dataclass(frozen=True)
class BankCardChanged:
    """The change done: the application now charges the new card; the old one is unbound."""

    owner: CardOwner
    old_bank_card_masked: str | None
    new_bank_card: BankCard


async def _bank_operator(uow: UnitOfWork, operator: OutletOperator) -> None:
    async with uow.pool.connection() as conn:
        outlet = await staff.find_outlet(conn, outlet_id=operator.outlet_id)
    if outlet is None or outlet.kind != "bank":
        raise IssuanceError("bank_outlet_only")


async def _slot_card_number(context: IssuanceContext, operator: OutletOperator) -> str:
    """读卡: the number of the ETC card in the operator's slot (this issuer's cards only)."""
    try:
        reading = await card_host.read_card(context.desks.desk(operator.staff_id).card)
    except CardRemoved:
        raise IssuanceError("no_card_in_reader") from None
    except ReaderError as broken:
        raise IssuanceError(
            "reader_unavailable", text={"reason_zh": broken.zh, "reason_en": broken.en}
        ) from None
    except (StatusWordError, UnreadableCard):
        raise IssuanceError("card_not_ours") from None
    if reading.issuer != context.issuer.id:
        raise IssuanceError("card_not_ours")
    return str(reading.card_number)


async def _card_owner(uow: UnitOfWork, card_number: str) -> CardOwner:
    """The issued card's record, its application and the bank card it is charged to."""
    async with uow.pool.connection() as conn:
        chip = await store.get_chip(conn, ChipKind.CARD, card_number)
        if chip is None:
            raise IssuanceError("card_not_ours")
        if not chip.status.live or chip.application_id is None:
            zh, en = CHIP_STATUS_NAMES[chip.status]
            raise IssuanceError("card_not_in_use", text={"status_zh": zh, "status_en": en})
        application = await store.get_application_or_raise(conn, chip.application_id, outlet_id=None)
        if application.bank_card_id is None:
            raise IssuanceError("card_has_no_bank_card")
        bank_card = await payments.get_card(
            conn, customer_id=application.customer_id, card_id=application.bank_card_id
        )
    return CardOwner(chip, application, None if bank_card is None else bank_card.masked)


def _change_mac(keys: Keys, owner: CardOwner, number: str, expires: int) -> str:
    digest = payments.card_number_hash(number, keys.lookup_key).hex()
    message = (
        f"bank_card_change:{owner.application.id}:{owner.chip.number}:{owner.application.bank_card_id}:"
        f"{digest}:{expires}"
    )
    return keyed_hash(message, keys.lookup_key).hex()


def _typed_twice(number: str, confirm: str) -> str:
    clean, _entry = check_card_number(number)
    if normalize_card_number(confirm) != clean:
        raise PaymentsError("card_number_mismatch")
    return clean


async def start_bank_card_change(
    uow: UnitOfWork,
    *,
    context: IssuanceContext,
    keys: Keys,
    gateway: SmsGateway,
    operator: OutletOperator,
    bank_card_number: str,
    confirm_number: str,
    actor: Actor,
    client: Client,
) -> BankCardChangeStarted:
    """变更银行卡, first step: read the card in the slot, check the new bank card typed twice, send the code.

    Refused with nothing written or sent: not a bank outlet (403), no card in the slot (409), a card not
    ours or not issued (422/409), a card with no bank card, a number failing its checks or typed
    differently the second time (422 naming ``confirm_number``), the card bound now, a card another
    customer holds. Refusals after the card is known are audited."""
    await _bank_operator(uow, operator)
    card_number = await _slot_card_number(context, operator)
    owner = await _card_owner(uow, card_number)
    target = ("issuance_card", str(owner.chip.id))
    try:
        number = _typed_twice(bank_card_number, confirm_number)
        async with uow.pool.connection() as conn:
            holder = await payments.find_card_by_number(conn, keys=keys, card_number=number)
        if holder is not None and holder.id == owner.application.bank_card_id:
            raise IssuanceError("bank_card_unchanged")
        if holder is not None and holder.customer_id != owner.application.customer_id:
            raise PaymentsError("card_bound_elsewhere")
    except DomainError as error:
        detail = {"card_number": card_number}
        await _audit(
            uow,
            actor.refused(IssuanceAction.BANK_CARD_CHANGE_START, error.code, target=target, detail=detail),
        )
        raise
    sent = await outlet_customers.request_code_at_outlet(
        uow=uow,
        gateway=gateway,
        lookup_key=keys.lookup_key,
        operator=operator,
        customer_id=owner.application.customer_id,
        purpose=Purpose.BANK_CARD_CHANGE,
        client=client,
    )
    expires = int(sent.expires_at.timestamp())
    token = f"{expires}.{_change_mac(keys, owner, number, expires)}"
    masked = mask_bank_card(number)
    done: dict[str, Any] = {"card_number": card_number, "old": owner.bank_card_masked, "new": masked}
    await _audit(uow, actor.event(IssuanceAction.BANK_CARD_CHANGE_START, target=target, detail=done))
    return BankCardChangeStarted(owner, masked, token, sent)


def _token_valid(keys: Keys, owner: CardOwner, number: str, token: str, now: datetime) -> bool:
    expires_text, _, mac = token.partition(".")
    if not expires_text.isdigit() or int(expires_text) <= int(now.timestamp()):
        return False
    return hmac.compare_digest(mac, _change_mac(keys, owner, number, int(expires_text)))


async def confirm_bank_card_change(
    uow: UnitOfWork,
    *,
    keys: Keys,
    operator: OutletOperator,
    card_number: str,
    bank_card_number: str,
    change_token: str,
    sms_code: str,
    actor: Actor,
    client: Client,
) -> BankCardChanged:
    """变更银行卡, second step: the customer's code confirms the change started for this card and number.

    The token must be the one answered for this card, this new number and the bank card bound now, and
    not expired (422 ``bank_card_change_invalid``); then the code is spent (a wrong or expired one: 4xx,
    its try counted, nothing changed). Then the new card is bound through payments and made the default,
    the old one bound to the application is unbound, and the application charges the new card. Each of
    those steps is idempotent, so a change cut short is finished by starting again."""
    await _bank_operator(uow, operator)
    owner = await _card_owner(uow, card_number)
    target = ("issuance_card", str(owner.chip.id))
    customer_id = owner.application.customer_id
    try:
        number = normalize_card_number(bank_card_number)
        if not _token_valid(keys, owner, number, change_token, uow.clock()):
            raise IssuanceError("bank_card_change_invalid")
        await outlet_customers.check_code_at_outlet(
            uow=uow,
            lookup_key=keys.lookup_key,
            operator=operator,
            customer_id=customer_id,
            purpose=Purpose.BANK_CARD_CHANGE,
            sms_code=sms_code,
            client=client,
        )
    except DomainError as error:
        detail = {"card_number": card_number}
        await _audit(
            uow, actor.refused(IssuanceAction.BANK_CARD_CHANGE, error.code, target=target, detail=detail)
        )
        raise
    bound = await payments.bind_card(
        uow,
        keys=keys,
        customer_id=customer_id,
        card_number=number,
        confirm_number=number,
        actor=actor,
        bound_at_outlet=operator.outlet_id,
    )
    bound = await payments.set_default(uow, customer_id=customer_id, card_id=bound.id, actor=actor)
    old_id = owner.application.bank_card_id
    if old_id is not None and old_id != bound.id:
        await payments.unbind_card(uow, customer_id=customer_id, card_id=old_id, actor=actor)

    async def step(unit: Unit) -> Application:
        application = await store.lock_application_anywhere(unit.conn, owner.application.id)
        await store.set_application_bank_card(unit.conn, application.id, bound.id, now=unit.now)
        detail = {
            "card_number": card_number,
            "application_id": str(application.id),
            "old": owner.bank_card_masked,
            "new": bound.masked,
        }
        unit.audit(actor.event(IssuanceAction.BANK_CARD_CHANGE, target=target, detail=detail))
        return await store.get_application_or_raise(unit.conn, application.id, outlet_id=None)

    application = await uow.run(step)
    return BankCardChanged(CardOwner(owner.chip, application, bound.masked), owner.bank_card_masked, bound)


# --- 用户信息变更: change the customer's information --------------------------------------------------------


@dataclass(frozen=True)
class ChangeableField:
    """A field the operator may change for the customer; ``required`` is the seed's ``*`` mark."""

    field: str
    zh: str
    en: str
    required: bool
    current_masked: str | None


@dataclass(frozen=True)
class InfoChangeForm:
    """The customer found by phone and ID number, and the fields that may be changed."""

    customer: CustomerDetail
    fields: list[ChangeableField]


async def _identify(
    uow: UnitOfWork,
    *,
    keys: Keys,
    operator: OutletOperator,
    phone: str,
    id_type: str,
    id_number: str,
    actor: Actor,
    client: Client,
    action: IssuanceAction,
) -> CustomerDetail:
    """The customer with this phone AND this ID document; 404 (audited) unless both name the same one."""
    try:
        found = await outlet_customers.find_at_outlet_by_phone(
            uow=uow, keys=keys, operator=operator, phone=phone, client=client
        )
        try:
            number, _birth = customers.check_id_number(id_type, id_number)
        except InvalidValue as exc:
            raise exc.at("id_type" if exc.code == "id_type" else "id_number") from None
        async with uow.pool.connection() as conn:
            holder = await customers.find_customer_by_id_number(
                conn, lookup_key=keys.lookup_key, id_type=id_type, number=number
            )
        if holder != found.customer.id:
            raise IssuanceError("customer_not_matched")
    except DomainError as error:
        await _audit(
            uow, actor.refused(action, error.code, target=("customer", None), detail={"by": "phone_and_id"})
        )
        raise
    return found


def _fields(customer: CustomerDetail) -> list[ChangeableField]:
    profile = customer.profile
    return [
        ChangeableField("phone", "手机号码", "phone number", True, mask_phone(customer.customer.phone)),
        ChangeableField("name", "姓名", "name", True, None if profile is None else profile.name_masked),
    ]


async def find_for_info_change(
    uow: UnitOfWork,
    *,
    keys: Keys,
    operator: OutletOperator,
    phone: str,
    id_type: str,
    id_number: str,
    actor: Actor,
    client: Client,
) -> InfoChangeForm:
    """用户信息变更, the query: the customer with this phone and ID number, and the changeable fields (the
    required ones marked). Audited found or not."""
    found = await _identify(
        uow,
        keys=keys,
        operator=operator,
        phone=phone,
        id_type=id_type,
        id_number=id_number,
        actor=actor,
        client=client,
        action=IssuanceAction.INFO_CHANGE_FIND,
    )
    await _audit(
        uow,
        actor.event(IssuanceAction.INFO_CHANGE_FIND, target=("customer", str(found.customer.id)), detail={}),
    )
    return InfoChangeForm(found, _fields(found))


async def send_info_change_code(
    uow: UnitOfWork,
    *,
    keys: Keys,
    gateway: SmsGateway,
    operator: OutletOperator,
    phone: str,
    id_type: str,
    id_number: str,
    actor: Actor,
    client: Client,
) -> SentCode:
    """用户信息变更: send the code (purpose ``profile_change``) to the customer's own phone."""
    found = await _identify(
        uow,
        keys=keys,
        operator=operator,
        phone=phone,
        id_type=id_type,
        id_number=id_number,
        actor=actor,
        client=client,
        action=IssuanceAction.INFO_CHANGE,
    )
    return await outlet_customers.request_code_at_outlet(
        uow=uow,
        gateway=gateway,
        lookup_key=keys.lookup_key,
        operator=operator,
        customer_id=found.customer.id,
        purpose=Purpose.PROFILE_CHANGE,
        client=client,
    )


async def change_info(
    uow: UnitOfWork,
    *,
    keys: Keys,
    operator: OutletOperator,
    phone: str,
    id_type: str,
    id_number: str,
    sms_code: str,
    new_phone: str | None,
    new_name: str | None,
    actor: Actor,
    client: Client,
) -> InfoChangeForm:
    """用户信息变更, the change: the new phone and/or name, proved by the code sent to the customer's phone.

    Identity changes and audits it (``customer.outlet.change``, old and new values masked); issuance
    records the change too (``issuance.info_change.change``). A wrong or expired code, a phone another
    customer holds, or a malformed value: 4xx, nothing changed. The card's 0016 is not rewritten."""
    found = await _identify(
        uow,
        keys=keys,
        operator=operator,
        phone=phone,
        id_type=id_type,
        id_number=id_number,
        actor=actor,
        client=client,
        action=IssuanceAction.INFO_CHANGE,
    )
    target = ("customer", str(found.customer.id))
    try:
        changed = await outlet_customers.change_at_outlet(
            uow=uow,
            keys=keys,
            operator=operator,
            customer_id=found.customer.id,
            sms_code=sms_code,
            phone=new_phone,
            name=new_name,
            client=client,
        )
    except DomainError as error:
        await _audit(uow, actor.refused(IssuanceAction.INFO_CHANGE, error.code, target=target, detail={}))
        raise
    old, new = _fields(found), _fields(changed)
    detail = {
        f.field: {"old": o.current_masked, "new": f.current_masked}
        for o, f in zip(old, new, strict=True)
        if o.current_masked != f.current_masked
    }
    await _audit(uow, actor.event(IssuanceAction.INFO_CHANGE, target=target, detail=detail))
    return InfoChangeForm(changed, new)
