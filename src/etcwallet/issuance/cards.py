"""User card issuance (用户卡办理): read the card in the operator's slot, then register it for an application.

The steps, as seed 001 gives them: find the application (by plate and colour, or from the outlet's list);
read the card (it shows the vehicle, card number, class and card type; the operator picks the issuance
mode); at a bank outlet type the bank card number twice ("自营网点跳过本步骤"); register. Registration
writes 0015 bytes 20..42 and 0016 with line-protection MACs and opens the card's ledger account through
identity (a card purse mirroring the chip for a stored-value card, a receivable for an account card).

The seed's retry rules: "同一张卡最多只能在卡片办理界面重试1次" (a card that failed once for an
application may be tried once more; after its second failure the operator takes another card) and
"一张用户卡办理失败【3】次有可能造成卡片损坏" (a card's third failure, over any applications, marks it
suspect-damaged and it is refused from then on).

No transaction is held across the chip (DESIGN, "How a domain moves money"): registration persists the
contents it will write (``writing``) and commits; writes the card; then records the outcome in a second
unit. A card that leaves the reader mid-write, or a process that dies before recording, leaves the
issuance ``writing``: pressing register again re-reads the card and writes the same bytes again (card
writes are idempotent), so it ends registered once, with one card, one purse.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, NoReturn
from uuid import UUID

from etcwallet.core.crypto import Keys
from etcwallet.identity.customers import accounts as customer_accounts
from etcwallet.identity.customers import profile as customer_profile
from etcwallet.identity.customers import service as customers
from etcwallet.identity.customers.types import CustomerStatus, OutletOperator
from etcwallet.identity.staff import service as staff
from etcwallet.issuance import store
from etcwallet.issuance.chip import card_host
from etcwallet.issuance.chip.apdu import StatusWordError
from etcwallet.issuance.chip.card_host import CardReading, UnreadableCard
from etcwallet.issuance.chip.files import CardholderFile, CardIssueFile
from etcwallet.issuance.chip.reader import CardRemoved, Reader, ReaderError
from etcwallet.issuance.codes import CardType
from etcwallet.issuance.context import IssuanceContext
from etcwallet.issuance.errors import IssuanceError
from etcwallet.issuance.types import (
    Application,
    ApplicationStatus,
    CardIssuance,
    CardIssuanceStatus,
    Chip,
    ChipChange,
    ChipKind,
    ChipStatus,
    IssuanceAction,
    IssuanceEvent,
    IssuanceMode,
)
from etcwallet.ledger.chart import AccountPurpose, owned_account_id
from etcwallet.ledger.service import Ledger
from etcwallet.payments import service as payments
from etcwallet.payments.bins import check_card_number, normalize_card_number
from etcwallet.payments.errors import PaymentsError
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

RETRIES_PER_CARD = 1
"""同一张卡最多只能在卡片办理界面重试1次: a card fails at most twice for one application."""
SUSPECT_AFTER_FAILURES = 3
"""一张用户卡办理失败【3】次有可能造成卡片损坏: the third failure of a card marks it suspect-damaged."""

ID_TYPE_ON_CARD = {
    "resident_id": 0,
    "military_id": 1,
    "passport": 2,
    "hk_macao_permit": 3,
    "taiwan_permit": 4,
}
"""0016's ID type byte: 0 is the resident ID (spec §2); the other codes follow the usual GB order **[?]**."""


@dataclass(frozen=True)
class CardRead:
    """What the operator sees after 读卡: the application's vehicle and the card as it stands."""

    application: Application
    card_number: str
    card_type: CardType
    balance: int
    issuance: CardIssuance


@dataclass(frozen=True)
class CardRegistered:
    """A registered card: its platform record, the issuance and the ledger account opened for it."""

    application: Application
    chip: Chip
    issuance: CardIssuance
    account_id: UUID


def _target(chip: Chip | None, number: str) -> tuple[str, str]:
    return ("issuance_card", number if chip is None else str(chip.id))


def _detail(application: Application, number: str, **more: Any) -> dict[str, Any]:
    return {
        "application_id": str(application.id),
        "card_number": number,
        "vehicle": application.vehicle.key,
        **more,
    }


# --- reading ---------------------------------------------------------------------------------------------


async def _read(reader: Reader, context: IssuanceContext) -> CardReading:
    try:
        reading = await card_host.read_card(reader)
    except CardRemoved:
        raise IssuanceError("no_card_in_reader") from None
    except ReaderError as broken:
        raise IssuanceError(
            "reader_unavailable", text={"reason_zh": broken.zh, "reason_en": broken.en}
        ) from None
    except (StatusWordError, UnreadableCard):
        raise IssuanceError("card_not_ours") from None
    if reading.issuer != context.issuer.id or reading.card_number.network != context.issuer.network:
        raise IssuanceError("card_not_ours")
    return reading


def _check_chip(chip: Chip | None, application: Application, operator: OutletOperator) -> Chip:
    """The card may be issued for this application here: ours, in this outlet's stock, of the type wanted."""
    if chip is None:
        raise IssuanceError("card_not_ours")
    if chip.status is ChipStatus.SUSPECT_DAMAGED:
        raise IssuanceError("card_suspect_damaged")
    if chip.status is not ChipStatus.IN_STOCK:
        raise IssuanceError("card_already_issued")
    if chip.outlet_id != operator.outlet_id:
        raise IssuanceError("card_not_in_outlet_stock")
    if chip.card_type is not application.card_type:
        wanted, card = application.card_type, chip.card_type
        assert card is not None
        raise IssuanceError(
            "card_type_mismatch",
            text={"wanted_zh": wanted.zh, "wanted_en": wanted.en, "card_zh": card.zh, "card_en": card.en},
        )
    return chip


def _check_retries(issuance: CardIssuance | None) -> None:
    if issuance is not None and issuance.failures > RETRIES_PER_CARD:
        raise IssuanceError("card_retry_exhausted")


async def read_card(
    uow: UnitOfWork,
    *,
    context: IssuanceContext,
    operator: OutletOperator,
    application_id: UUID,
    mode: IssuanceMode = IssuanceMode.NEW,
    actor: Actor,
) -> CardRead:
    """读卡: read the card in the operator's slot for an open application of their outlet.

    Refused, with nothing written: no card in the slot (409), a card not of this issuer (422), not in this
    outlet's stock, already issued, suspect-damaged, of another type than the application wants, or past
    its one retry for this application. A card of this application registered already is answered as it is.
    """
    async with uow.pool.connection() as conn:
        application = await store.get_application_or_raise(conn, application_id, outlet_id=operator.outlet_id)
    reading = await _read(context.desks.desk(operator.staff_id).card, context)
    number = str(reading.card_number)

    async def step(unit: Unit) -> CardRead:
        current = await store.lock_application(unit.conn, application_id, outlet_id=operator.outlet_id)
        found = await store.get_chip(unit.conn, ChipKind.CARD, number)
        chip = await store.lock_chip(unit.conn, found.id) if found is not None else None
        issuance = await store.lock_card_issuance(unit.conn, application_id, chip.id) if chip else None
        if issuance is not None and issuance.status is CardIssuanceStatus.REGISTERED:
            return CardRead(current, number, reading.card_type, reading.balance, issuance)
        if current.status is not ApplicationStatus.OPEN:
            raise IssuanceError("application_not_open")
        chip = _check_chip(chip, current, operator)
        _check_retries(issuance)
        if issuance is None:
            issuance = CardIssuance(
                id=uuid.uuid4(),
                application_id=application_id,
                chip_id=chip.id,
                outlet_id=operator.outlet_id,
                operator_id=operator.staff_id,
                mode=mode,
                status=CardIssuanceStatus.READ,
                attempts=0,
                failures=0,
                issue_content=None,
                holder_content=None,
                last_error=None,
                created_at=unit.now,
                updated_at=unit.now,
            )
            await store.insert_card_issuance(unit.conn, issuance)
        unit.audit(
            actor.event(
                IssuanceAction.CARD_READ, target=_target(chip, number), detail=_detail(current, number)
            )
        )
        return CardRead(current, number, reading.card_type, reading.balance, issuance)

    return await uow.run(
        step,
        refusal=lambda error: actor.refused(
            IssuanceAction.CARD_READ,
            error.code,
            target=_target(None, number),
            detail=_detail(application, number),
        ),
    )


# --- registering -----------------------------------------------------------------------------------------


async def _check_bank_card(
    uow: UnitOfWork,
    *,
    keys: Keys,
    application: Application,
    operator: OutletOperator,
    typed: tuple[str, str] | None,
) -> None:
    """A bank outlet types the application's bank card twice; a self-operated outlet skips the step."""
    async with uow.pool.connection() as conn:
        outlet = await staff.find_outlet(conn, outlet_id=operator.outlet_id)
    if outlet is None or outlet.kind != "bank":
        if typed is not None:
            raise IssuanceError("bank_card_not_at_self_operated")
        return
    if typed is None:
        raise IssuanceError("bank_card_required")
    number, _entry = check_card_number(typed[0])
    if normalize_card_number(typed[1]) != number:
        raise PaymentsError("card_number_mismatch")
    async with uow.pool.connection() as conn:
        card = await payments.find_card_by_number(conn, keys=keys, card_number=number)
    if card is None or card.id != application.bank_card_id:
        raise IssuanceError("bank_card_not_application")


def _contents(
    context: IssuanceContext, application: Application, reading: CardReading, holder: Any, today: date
) -> tuple[bytes, bytes]:
    """0015 bytes 20..42 and 0016 as this issuance writes them."""
    vehicle = application.vehicle
    issue = CardIssueFile(
        issuer=reading.issuer,
        card_type=reading.card_type,
        card_version=reading.card_version,
        card_number=reading.card_number,
        start_date=today,
        expiry_date=context.issuer.expiry_from(today),
        plate=vehicle.plate,
        user_type=vehicle.user_type,
        plate_colour=vehicle.plate_colour,
        vehicle_class=vehicle.vehicle_class,
    )
    cardholder = CardholderFile(
        holder_flag=0,
        staff_flag=0,
        name=holder.name,
        id_number=holder.id_number,
        id_type=ID_TYPE_ON_CARD.get(holder.id_type, 0),
    )
    return issue.to_bytes()[20:43], cardholder.to_bytes()


async def register_card(
    uow: UnitOfWork,
    *,
    context: IssuanceContext,
    keys: Keys,
    ledger: Ledger,
    operator: OutletOperator,
    application_id: UUID,
    card_number: str,
    mode: IssuanceMode,
    bank_card: tuple[str, str] | None,
    actor: Actor,
) -> CardRegistered:
    """注册: write the card read for this application and record it issued, with its ledger account.

    ``card_number`` is the card the operator read (the one in the slot must still be it). Refused before
    anything is written: no prior read (409 ``card_not_read``), another card in the slot, the card's or the
    application's state, a bank card typed wrong. A write the card refuses counts a failure (the card's
    second for this application asks for another card, its third marks it suspect-damaged); a card that
    leaves the reader leaves the issuance to be finished by registering again.
    """
    async with uow.pool.connection() as conn:
        application = await store.get_application_or_raise(conn, application_id, outlet_id=operator.outlet_id)
        chip = await store.get_chip(conn, ChipKind.CARD, card_number)
        holder = await customer_profile.cardholder_of(
            conn, cipher=keys.cipher, customer_id=application.customer_id
        )
    if chip is None:
        raise IssuanceError("card_not_read")
    registered = await _registered_already(uow, application_id, chip)
    if registered is not None:
        return registered
    await _check_bank_card(uow, keys=keys, application=application, operator=operator, typed=bank_card)
    reader = context.desks.desk(operator.staff_id).card
    reading = await _read(reader, context)
    if str(reading.card_number) != card_number:
        raise IssuanceError("card_changed")
    if holder is None:
        raise IssuanceError("customer_profile_missing")
    issuance = await _persist_intent(
        uow, context, operator, application_id, chip, reading, holder, mode, actor
    )
    assert issuance.issue_content is not None and issuance.holder_content is not None
    try:
        await card_host.write_issuance(
            reader,
            context.keys,
            reading.identity,
            issue_content=issuance.issue_content,
            holder_content=issuance.holder_content,
        )
        written = await card_host.read_card(reader)
    except CardRemoved:
        raise IssuanceError("card_removed") from None
    except StatusWordError as refusal:
        await _record_failure(uow, issuance, chip, reason=refusal, actor=actor, application=application)
    if written.raw_issue[20:43] != issuance.issue_content or (
        written.holder is None or written.holder.to_bytes() != issuance.holder_content
    ):
        await _record_failure(uow, issuance, chip, reason=None, actor=actor, application=application)
    return await _record_registered(uow, ledger, issuance, chip, application, actor)


async def _registered_already(uow: UnitOfWork, application_id: UUID, chip: Chip) -> CardRegistered | None:
    async with uow.pool.connection() as conn:
        issuances = await store.card_issuances_of(conn, application_id)
        done = next((i for i in issuances if i.status is CardIssuanceStatus.REGISTERED), None)
        if done is None:
            return None
        if done.chip_id != chip.id:
            raise IssuanceError("card_already_issued")
        application = await store.get_application_or_raise(conn, application_id, outlet_id=None)
        current = await store.get_chip_or_raise(conn, ChipKind.CARD, chip.number)
    return CardRegistered(application, current, done, _account_id(application, current))


async def _persist_intent(
    uow: UnitOfWork,
    context: IssuanceContext,
    operator: OutletOperator,
    application_id: UUID,
    chip: Chip,
    reading: CardReading,
    holder: Any,
    mode: IssuanceMode,
    actor: Actor,
) -> CardIssuance:
    """Lock, check again and persist what will be written (``writing``) before the card is spoken to.
    An issuance left ``writing`` keeps its contents, so a re-drive writes the very same bytes."""

    async def step(unit: Unit) -> CardIssuance:
        application = await store.lock_application(unit.conn, application_id, outlet_id=operator.outlet_id)
        if application.status is not ApplicationStatus.OPEN:
            raise IssuanceError("application_not_open")
        await customers.hold_open_customer(unit.conn, customer_id=application.customer_id)
        current = _check_chip(await store.lock_chip(unit.conn, chip.id), application, operator)
        issuance = await store.lock_card_issuance(unit.conn, application_id, current.id)
        if issuance is None:
            raise IssuanceError("card_not_read")
        _check_retries(issuance)
        if issuance.status is CardIssuanceStatus.WRITING and issuance.issue_content is not None:
            return issuance
        issue, holder_bytes = _contents(context, application, reading, holder, unit.now.date())
        issuance = replace(
            issuance,
            operator_id=operator.staff_id,
            mode=mode,
            status=CardIssuanceStatus.WRITING,
            attempts=issuance.attempts + 1,
            issue_content=issue,
            holder_content=holder_bytes,
            updated_at=unit.now,
        )
        await store.update_card_issuance(unit.conn, issuance)
        return issuance

    return await uow.run(
        step,
        refusal=lambda error: actor.refused(
            IssuanceAction.CARD_REGISTER,
            error.code,
            target=_target(chip, chip.number),
            detail={"card_number": chip.number},
        ),
    )


def _account_id(application: Application, chip: Chip) -> UUID:
    return owned_account_id(
        owner=customer_accounts.owner_of(application.customer_id),
        purpose=_purpose(application.card_type),
        currency="CNY",
        instance=chip.number,
    )


def _purpose(card_type: CardType) -> AccountPurpose:
    return (
        AccountPurpose.CARD_PURSE
        if card_type is CardType.STORED_VALUE
        else AccountPurpose.ACCOUNT_CARD_RECEIVABLE
    )


async def _record_registered(
    uow: UnitOfWork,
    ledger: Ledger,
    issuance: CardIssuance,
    chip: Chip,
    application: Application,
    actor: Actor,
) -> CardRegistered:
    """The card holds its issuance: open its ledger account, then record it issued in one unit."""
    async with uow.pool.connection() as conn:
        customer = await customers.get_customer_or_raise(conn, customer_id=application.customer_id)
    frozen = customer.status is CustomerStatus.FROZEN
    account = await customer_accounts.account_for(
        ledger,
        customer_id=application.customer_id,
        purpose=_purpose(application.card_type),
        frozen=frozen,
        actor=actor,
        instance=chip.number,
    )

    async def step(unit: Unit) -> CardRegistered:
        current = await store.lock_application(unit.conn, application.id, outlet_id=application.outlet_id)
        locked = await store.lock_chip(unit.conn, chip.id)
        row = await store.lock_card_issuance(unit.conn, application.id, chip.id)
        assert row is not None
        if row.status is CardIssuanceStatus.REGISTERED:
            return CardRegistered(current, locked, row, account.id)
        assert issuance.issue_content is not None
        registered = replace(row, status=CardIssuanceStatus.REGISTERED, last_error=None, updated_at=unit.now)
        await store.update_card_issuance(unit.conn, registered)
        vehicle = application.vehicle
        await store.update_chip(
            unit.conn,
            chip.id,
            now=unit.now,
            status=ChipStatus.ISSUED,
            owner=(application.id, application.customer_id, vehicle.plate, vehicle.plate_colour),
            expires_on=_expiry(issuance.issue_content),
        )
        await store.add_history(
            unit.conn,
            [
                ChipChange(
                    chip.id,
                    locked.status,
                    ChipStatus.ISSUED,
                    locked.outlet_id,
                    locked.outlet_id,
                    "card_issued",
                    _who(actor),
                    unit.now,
                )
            ],
        )
        await store.set_application_status(
            unit.conn, application.id, ApplicationStatus.CARD_ISSUED, now=unit.now
        )
        detail = _detail(application, chip.number, account_id=str(account.id), mode=row.mode.value)
        unit.audit(
            actor.event(IssuanceAction.CARD_REGISTER, target=_target(chip, chip.number), detail=detail)
        )
        unit.emit(
            IssuanceEvent.CARD_ISSUED,
            chip.number,
            {
                "card_number": chip.number,
                "card_type": int(application.card_type),
                "customer_id": str(application.customer_id),
                "vehicle": vehicle.key,
                "account_id": str(account.id),
                "outlet_id": str(application.outlet_id),
            },
        )
        final = await store.get_chip_or_raise(unit.conn, ChipKind.CARD, chip.number)
        return CardRegistered(
            await store.get_application_or_raise(unit.conn, application.id, outlet_id=None),
            final,
            registered,
            account.id,
        )

    return await uow.run(step)


def _expiry(issue_content: bytes) -> date:
    """The expiry date inside 0015 bytes 20..42 (bytes 24..27 of the file: BCD YYYYMMDD)."""
    digits = issue_content[4:8].hex()
    return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))


def _who(actor: Actor) -> str:
    return f"{actor.type}:{actor.id}"


async def _record_failure(
    uow: UnitOfWork,
    issuance: CardIssuance,
    chip: Chip,
    *,
    reason: StatusWordError | None,
    actor: Actor,
    application: Application,
) -> NoReturn:
    """A write the card refused (or that did not read back): count it, on the issuance and on the card,
    and answer the retry rule that now applies. Always raises."""
    why_zh = reason.zh if reason is not None else "写入后读回的内容不一致"
    why_en = reason.en if reason is not None else "the card read back other bytes than were written"
    code = f"{reason.sw:04X}" if reason is not None else "readback"

    async def step(unit: Unit) -> tuple[int, ChipStatus]:
        row = await store.lock_card_issuance(unit.conn, issuance.application_id, chip.id)
        locked = await store.lock_chip(unit.conn, chip.id)
        assert row is not None
        failed = replace(
            row,
            status=CardIssuanceStatus.FAILED,
            failures=row.failures + 1,
            last_error=code,
            updated_at=unit.now,
        )
        await store.update_card_issuance(unit.conn, failed)
        failures = locked.failures + 1
        status = ChipStatus.SUSPECT_DAMAGED if failures >= SUSPECT_AFTER_FAILURES else locked.status
        await store.update_chip(unit.conn, chip.id, now=unit.now, failures=failures, status=status)
        if status is not locked.status:
            await store.add_history(
                unit.conn,
                [
                    ChipChange(
                        chip.id,
                        locked.status,
                        status,
                        locked.outlet_id,
                        locked.outlet_id,
                        "failed_three_times",
                        _who(actor),
                        unit.now,
                    )
                ],
            )
        detail = _detail(
            application,
            chip.number,
            reason=code,
            failures_for_application=failed.failures,
            failures_of_card=failures,
        )
        unit.audit(
            actor.event(
                IssuanceAction.CARD_FAILED,
                target=_target(chip, chip.number),
                detail=detail,
                outcome="failure",
            )
        )
        return failed.failures, status

    failures_here, status = await uow.run(step)
    if status is ChipStatus.SUSPECT_DAMAGED:
        raise IssuanceError("card_suspect_damaged")
    if failures_here > RETRIES_PER_CARD:
        raise IssuanceError("card_retry_exhausted")
    raise IssuanceError("card_write_failed", text={"reason_zh": why_zh, "reason_en": why_en})
