"""Card and tag detection (卡签检测): what a card or tag holds beside the platform's view of it, with a
verdict; card activation and renewal (卡片激活); tag deregistration (标签注销); card loss and cancellation.

Seed 001: "通过【卡片检测】可查看卡片办理信息，用户通过这些信息辅助判断该ETC卡片是否办理成功",
"针对卡片过期问题，也可通过【卡片检测】重新进行激活", and "进行读卡操作如果用户卡没有激活，读完卡信息后显示
激活卡片按钮": the detection answer says whether activation is offered. Customers belong to no outlet, so any
issuance operator may detect any card or tag, report a card lost or deregister a tag; every one is audited
with the operator's outlet.

Activation writes the card's start and expiry dates (0015 bytes 20..27) with a line-protection MAC under a
fresh challenge. As in :mod:`etcwallet.issuance.cards`, no transaction is held across the card: the dates
are persisted (``writing``) and committed, the card is written, and the outcome recorded in a second unit;
a card that leaves the reader leaves the activation to be finished by activating again (the same bytes).

Loss (挂失) and cancellation (注销) work by card number (the customer may not have the card) and only on
the platform: they feed the status list through their events. Cancellation does not refund a stored-value
purse: its balance is answered, and refunds are the loads issue's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any
from uuid import UUID

from etcwallet.core.masking import mask_free_text, mask_id_number, mask_name
from etcwallet.identity.customers import accounts as customer_accounts
from etcwallet.identity.customers.types import OutletOperator
from etcwallet.issuance import store
from etcwallet.issuance.chip import card_host, obu_host
from etcwallet.issuance.chip.apdu import (
    Challenge,
    Command,
    StatusWordError,
    get_challenge,
    read_record_0018,
    select_aid,
)
from etcwallet.issuance.chip.card_host import CardReading, UnreadableCard
from etcwallet.issuance.chip.encoding import InvalidField, date_bcd
from etcwallet.issuance.chip.files import ObuSystemFile, ObuVehicleFile, TamperStatus, TransactionRecord
from etcwallet.issuance.chip.host import ChipSecurityError, MalformedAnswer, secure_update_binary
from etcwallet.issuance.chip.reader import CardRemoved, Reader, ReaderError, exchange
from etcwallet.issuance.codes import CardListReason, CardType
from etcwallet.issuance.context import IssuanceContext
from etcwallet.issuance.errors import IssuanceError
from etcwallet.issuance.types import (
    CHIP_STATUS_NAMES,
    Application,
    ApplicationStatus,
    CardActivation,
    CardActivationStatus,
    Chip,
    ChipChange,
    ChipKind,
    ChipStatus,
    IssuanceAction,
    IssuanceEvent,
)
from etcwallet.ledger.chart import AccountPurpose, owned_account_id
from etcwallet.ledger.service import Ledger
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

ISSUE_FILE_P1 = 0x95  # 0015 by its short file identifier (0x80 | 0x15)
DATES_OFFSET = 20  # 0015 bytes 20..27: start date (BCD YYYYMMDD) ‖ expiry date (BCD YYYYMMDD)
LOG_RECORDS = 10  # 0018 holds the ten newest transactions, record 1 the newest
NOTE_MAX = 100
LISTED = frozenset({ChipStatus.LOST, ChipStatus.CANCELLED})


class CardVerdict(StrEnum):
    """What card detection concludes, in the order it is decided."""

    NOT_OURS = "not_ours"
    BLANK = "blank"
    LISTED = "listed"
    MISMATCHED = "mismatched"
    EXPIRED = "expired"
    ISSUED = "issued"
    ACTIVE = "active"

    @property
    def zh(self) -> str:
        return CARD_VERDICT_NAMES[self][0]

    @property
    def en(self) -> str:
        return CARD_VERDICT_NAMES[self][1]


CARD_VERDICT_NAMES: dict[CardVerdict, tuple[str, str]] = {
    CardVerdict.NOT_OURS: (
        "非本发行方卡片或平台无记录",
        "not this issuer's card, or unknown to the platform",
    ),
    CardVerdict.BLANK: ("空白卡（未发行）", "blank: never issued"),
    CardVerdict.LISTED: ("已挂失或已注销（状态名单）", "on the status list: reported lost or cancelled"),
    CardVerdict.MISMATCHED: ("卡片信息与平台记录不一致", "the card differs from the platform's record"),
    CardVerdict.EXPIRED: ("卡片已过期，可重新激活", "expired: it may be activated again"),
    CardVerdict.ISSUED: ("办理成功，尚未激活", "issued correctly, not yet activated"),
    CardVerdict.ACTIVE: ("已激活，正常使用", "active"),
}


class TagVerdict(StrEnum):
    """What tag detection concludes, in the order it is decided."""

    NOT_OURS = "not_ours"
    BLANK = "blank"
    DEREGISTERED = "deregistered"
    MISMATCHED = "mismatched"
    ACTIVE = "active"
    REMOVED = "removed"
    ISSUED = "issued"

    @property
    def zh(self) -> str:
        return TAG_VERDICT_NAMES[self][0]

    @property
    def en(self) -> str:
        return TAG_VERDICT_NAMES[self][1]


TAG_VERDICT_NAMES: dict[TagVerdict, tuple[str, str]] = {
    TagVerdict.NOT_OURS: ("非本发行方标签或平台无记录", "not this issuer's tag, or unknown to the platform"),
    TagVerdict.BLANK: ("空白标签（未发行）", "blank: never issued"),
    TagVerdict.DEREGISTERED: ("标签已注销", "deregistered"),
    TagVerdict.MISMATCHED: ("标签信息与平台记录不一致", "the tag differs from the platform's record"),
    TagVerdict.ACTIVE: ("已激活，正常使用", "active"),
    TagVerdict.REMOVED: (
        "标签已被拆卸（防拆状态为00），需重新激活",
        "removed from the windscreen: activate it again",
    ),
    TagVerdict.ISSUED: ("办理成功，尚未激活", "issued correctly, not yet activated"),
}


class DeregistrationReason(StrEnum):
    """Why a tag is deregistered (标签注销原因)."""

    INFO_ERROR = "info_error"
    TAG_DAMAGED = "tag_damaged"
    VEHICLE_CHANGED = "vehicle_changed"
    OTHER = "other"

    @property
    def zh(self) -> str:
        return DEREGISTRATION_REASON_NAMES[self][0]

    @property
    def en(self) -> str:
        return DEREGISTRATION_REASON_NAMES[self][1]


DEREGISTRATION_REASON_NAMES: dict[DeregistrationReason, tuple[str, str]] = {
    DeregistrationReason.INFO_ERROR: ("信息错误", "wrong information"),
    DeregistrationReason.TAG_DAMAGED: ("标签损坏", "tag damaged"),
    DeregistrationReason.VEHICLE_CHANGED: ("更换车辆", "vehicle changed"),
    DeregistrationReason.OTHER: ("其他", "other"),
}


@dataclass(frozen=True)
class MaskedHolder:
    """0016 as detection shows it: the name and ID number masked."""

    holder_flag: int
    staff_flag: int
    name: str
    id_number: str
    id_type: int


@dataclass(frozen=True)
class CardDetection:
    """A card read in the slot, the platform's view of it and the verdict."""

    verdict: CardVerdict
    reading: CardReading | None
    holder: MaskedHolder | None
    records: list[TransactionRecord]
    records_supported: bool
    chip: Chip | None
    application: Application | None
    differences: list[str]
    expired: bool
    activation_offered: bool


@dataclass(frozen=True)
class TagDetection:
    """A tag read in the field, the platform's view of it and the verdict."""

    verdict: TagVerdict
    obu_number: str | None
    system: ObuSystemFile | None
    vehicle: ObuVehicleFile | None
    chip: Chip | None
    application: Application | None
    differences: list[str]


@dataclass(frozen=True)
class CardActivated:
    """An activated (or renewed) card: its platform record and the activation."""

    chip: Chip
    activation: CardActivation


@dataclass(frozen=True)
class CardCancelled:
    """A cancelled card and its ledger account's balance, which cancellation does not refund."""

    chip: Chip
    account_id: UUID
    balance: int


def _who(actor: Actor) -> str:
    return f"{actor.type}:{actor.id}"


def _status_text(status: ChipStatus) -> dict[str, str]:
    zh, en = CHIP_STATUS_NAMES[status]
    return {"status_zh": zh, "status_en": en}


def _differences(
    plate: str, colour: int, vehicle_class: int, chip: Chip, application: Application | None
) -> list[str]:
    """The fields where the chip's content differs from the platform's record of the chip."""
    if chip.status in (ChipStatus.IN_STOCK, ChipStatus.DAMAGED, ChipStatus.SUSPECT_DAMAGED):
        return ["status"]  # written, but the platform never recorded it issued
    differences = []
    if chip.plate != plate:
        differences.append("plate")
    if chip.plate_colour is None or int(chip.plate_colour) != colour:
        differences.append("plate_colour")
    if application is None or int(application.vehicle.vehicle_class) != vehicle_class:
        differences.append("vehicle_class")
    return differences


async def _record_refusal(
    uow: UnitOfWork, actor: Actor, action: str, code: str, detail: dict[str, Any]
) -> None:
    await audit.record(uow.pool, actor.refused(action, code, detail=detail))


# --- card detection ---------------------------------------------------------------------------------------


async def _read_card(reader: Reader) -> CardReading | None:
    """The card in the slot (None when it is not an ETC card of our layout)."""
    try:
        return await card_host.read_card(reader)
    except CardRemoved:
        raise IssuanceError("no_card_in_reader") from None
    except ReaderError as broken:
        raise IssuanceError(
            "reader_unavailable", text={"reason_zh": broken.zh, "reason_en": broken.en}
        ) from None
    except (StatusWordError, UnreadableCard):
        return None


async def _read_records(reader: Reader) -> tuple[list[TransactionRecord], bool]:
    """0018's records, newest first, as far as the card answers READ RECORD (and whether it does at all)."""
    records: list[TransactionRecord] = []
    for number in range(1, LOG_RECORDS + 1):
        response = await exchange(reader, read_record_0018(number))
        if not response.ok:
            return records, bool(records) or response.sw == 0x6A83  # 6A83: no such record, the log ends
        try:
            records.append(TransactionRecord.from_bytes(response.data))
        except (InvalidField, ValueError):
            return records, True
    return records, True


def _ours(context: IssuanceContext, reading: CardReading) -> bool:
    return reading.issuer == context.issuer.id and reading.card_number.network == context.issuer.network


async def detect_card(
    uow: UnitOfWork, *, context: IssuanceContext, operator: OutletOperator, actor: Actor
) -> CardDetection:
    """卡片检测: read everything on the card in the operator's slot (0015, 0016 masked, balance, 0018) and
    the platform's view of it, and conclude. Audited; no card in the slot is 409 (audited as refused)."""
    reader = context.desks.desk(operator.staff_id).card
    try:
        reading = await _read_card(reader)
    except IssuanceError as error:
        await _record_refusal(uow, actor, IssuanceAction.CARD_DETECT, error.code, {})
        raise
    records: list[TransactionRecord] = []
    supported = False
    if reading is not None:
        try:
            records, supported = await _read_records(reader)
        except CardRemoved:
            await _record_refusal(uow, actor, IssuanceAction.CARD_DETECT, "no_card_in_reader", {})
            raise IssuanceError("no_card_in_reader") from None
    number = None if reading is None else str(reading.card_number)

    async def step(unit: Unit) -> CardDetection:
        chip = None if number is None else await store.get_chip(unit.conn, ChipKind.CARD, number)
        application = None
        if chip is not None and chip.application_id is not None:
            application = await store.get_application(unit.conn, chip.application_id, outlet_id=None)
        detection = _card_verdict(context, reading, chip, application, unit.now.date(), records, supported)
        unit.audit(
            actor.event(
                IssuanceAction.CARD_DETECT,
                target=("issuance_card", str(chip.id) if chip is not None else number),
                detail={"card_number": number, "verdict": detection.verdict.value},
            )
        )
        return detection

    return await uow.run(step)


def _card_verdict(
    context: IssuanceContext,
    reading: CardReading | None,
    chip: Chip | None,
    application: Application | None,
    today: date,
    records: list[TransactionRecord],
    supported: bool,
) -> CardDetection:
    holder = None
    if reading is not None and reading.holder is not None:
        h = reading.holder
        holder = MaskedHolder(
            h.holder_flag, h.staff_flag, mask_name(h.name), mask_id_number(h.id_number), h.id_type
        )
    issue = None if reading is None else reading.issue
    expired = issue is not None and issue.expiry_date < today
    differences: list[str] = []
    if reading is None or not _ours(context, reading) or chip is None:
        verdict = CardVerdict.NOT_OURS
    elif issue is None:
        verdict = CardVerdict.BLANK
    elif chip.status in LISTED:
        verdict = CardVerdict.LISTED
    elif differences := _differences(
        issue.plate, int(issue.plate_colour), int(issue.vehicle_class), chip, application
    ):
        verdict = CardVerdict.MISMATCHED
    elif expired:
        verdict = CardVerdict.EXPIRED
    elif chip.status is ChipStatus.ACTIVE:
        verdict = CardVerdict.ACTIVE
    else:
        verdict = CardVerdict.ISSUED
    return CardDetection(
        verdict=verdict,
        reading=reading,
        holder=holder,
        records=records,
        records_supported=supported,
        chip=chip,
        application=application,
        differences=differences,
        expired=expired,
        activation_offered=verdict in (CardVerdict.ISSUED, CardVerdict.EXPIRED),
    )


# --- card activation ----------------------------------------------------------------------------------------


def _dates(activation: CardActivation) -> bytes:
    return date_bcd("start_date", activation.start_date) + date_bcd("expiry_date", activation.expiry_date)


async def activate_card(
    uow: UnitOfWork, *, context: IssuanceContext, operator: OutletOperator, card_number: str, actor: Actor
) -> CardActivated:
    """卡片激活: activate an issued card, or renew an expired one, in the operator's slot.

    ``card_number`` is the card detection showed (the one in the slot must still be it). Writes new start
    and expiry dates (today and the issuer's validity on) to 0015 and records the card active. Refused with
    nothing written: no card, another card, a card not ours or blank, not live (lost, cancelled...),
    differing from the platform's record, or active and not expired. A card that leaves the reader leaves
    the activation persisted: activating again writes the same dates and records it once.
    """
    detail: dict[str, Any] = {"card_number": card_number}
    reader = context.desks.desk(operator.staff_id).card
    try:
        reading = await _read_card(reader)
        if reading is None or not _ours(context, reading):
            raise IssuanceError("card_not_ours")
        if str(reading.card_number) != card_number:
            raise IssuanceError("card_changed")
        if reading.issue is None:
            raise IssuanceError("card_blank")
    except IssuanceError as error:
        await _record_refusal(uow, actor, IssuanceAction.CARD_ACTIVATE, error.code, detail)
        raise
    issue = reading.issue

    async def intent(unit: Unit) -> CardActivation:
        found = await store.get_chip(unit.conn, ChipKind.CARD, card_number)
        if found is None:
            raise IssuanceError("card_not_ours")
        chip = await store.lock_chip(unit.conn, found.id)
        pending = await store.lock_pending_activation(unit.conn, chip.id)
        if pending is not None:
            return pending
        if not chip.status.live:
            raise IssuanceError("card_not_activatable", text=_status_text(chip.status))
        application = None
        if chip.application_id is not None:
            application = await store.get_application(unit.conn, chip.application_id, outlet_id=None)
        differences = _differences(
            issue.plate, int(issue.plate_colour), int(issue.vehicle_class), chip, application
        )
        if differences:
            raise IssuanceError("card_mismatch", text={"fields": ", ".join(differences)})
        today = unit.now.date()
        expired = issue.expiry_date < today
        if chip.status is ChipStatus.ACTIVE and not expired:
            raise IssuanceError("card_already_active")
        activation = CardActivation(
            id=uuid.uuid4(),
            chip_id=chip.id,
            outlet_id=operator.outlet_id,
            operator_id=operator.staff_id,
            renewal=expired or chip.status is ChipStatus.ACTIVE,
            start_date=today,
            expiry_date=context.issuer.expiry_from(today),
            status=CardActivationStatus.WRITING,
            created_at=unit.now,
            updated_at=unit.now,
        )
        await store.insert_activation(unit.conn, activation)
        return activation

    activation = await uow.run(
        intent,
        refusal=lambda error: actor.refused(
            IssuanceAction.CARD_ACTIVATE, error.code, target=("issuance_card", card_number), detail=detail
        ),
    )
    dates = _dates(activation)
    try:
        await _write_dates(reader, context, reading, dates)
        written = await card_host.read_card(reader)
    except CardRemoved:
        raise IssuanceError("card_removed") from None
    except (StatusWordError, ChipSecurityError) as refusal:
        zh, en = getattr(refusal, "zh", "卡片拒绝写入"), getattr(refusal, "en", "the card refused the write")
        raise IssuanceError("card_activation_failed", text={"reason_zh": zh, "reason_en": en}) from None
    if written.raw_issue[DATES_OFFSET : DATES_OFFSET + 8] != dates:
        raise IssuanceError(
            "card_activation_failed",
            text={"reason_zh": "写入后读回的日期不一致", "reason_en": "the card read back other dates"},
        )
    return await _record_activated(uow, activation, actor)


async def _write_dates(reader: Reader, context: IssuanceContext, reading: CardReading, dates: bytes) -> None:
    """SELECT the application, take a challenge and write 0015 bytes 20..27 under its MAC; the rest of
    the file stays as it is."""
    (await exchange(reader, select_aid())).expect_ok("SELECT ETC")
    challenge = Challenge.from_response(await exchange(reader, get_challenge())).random
    command = secure_update_binary(
        context.keys, reading.identity, p1=ISSUE_FILE_P1, offset=DATES_OFFSET, data=dates, challenge=challenge
    )
    (await exchange(reader, Command.parse(command))).expect_ok("UPDATE BINARY 0015 dates")


async def _record_activated(uow: UnitOfWork, activation: CardActivation, actor: Actor) -> CardActivated:
    """The card holds its new dates: record it active with its new expiry, once."""

    async def step(unit: Unit) -> CardActivated:
        chip = await store.lock_chip(unit.conn, activation.chip_id)
        current = await store.lock_activation(unit.conn, activation.id)
        if current.status is CardActivationStatus.DONE:
            return CardActivated(chip, current)
        await store.update_chip(
            unit.conn, chip.id, now=unit.now, status=ChipStatus.ACTIVE, expires_on=activation.expiry_date
        )
        reason = "card_renewed" if activation.renewal else "card_activated"
        await store.add_history(
            unit.conn,
            [
                ChipChange(
                    chip.id,
                    chip.status,
                    ChipStatus.ACTIVE,
                    chip.outlet_id,
                    chip.outlet_id,
                    reason,
                    _who(actor),
                    unit.now,
                )
            ],
        )
        await store.finish_activation(unit.conn, activation.id, now=unit.now)
        vehicle = None if chip.plate is None else f"{chip.plate}_{int(chip.plate_colour or 0)}"
        unit.audit(
            actor.event(
                IssuanceAction.CARD_ACTIVATE,
                target=("issuance_card", str(chip.id)),
                detail={
                    "card_number": chip.number,
                    "vehicle": vehicle,
                    "renewal": activation.renewal,
                    "start_date": activation.start_date.isoformat(),
                    "expiry_date": activation.expiry_date.isoformat(),
                },
            )
        )
        unit.emit(
            IssuanceEvent.CARD_ACTIVATED,
            chip.number,
            {
                "card_number": chip.number,
                "vehicle": vehicle,
                "customer_id": None if chip.customer_id is None else str(chip.customer_id),
                "renewal": activation.renewal,
                "start_date": activation.start_date.isoformat(),
                "expires_on": activation.expiry_date.isoformat(),
            },
        )
        done = await store.lock_activation(unit.conn, activation.id)
        return CardActivated(await store.lock_chip(unit.conn, chip.id), done)

    return await uow.run(step)


# --- tag detection -----------------------------------------------------------------------------------------


async def detect_tag(
    uow: UnitOfWork, *, context: IssuanceContext, operator: OutletOperator, actor: Actor
) -> TagDetection:
    """标签检测: read the tag in the operator's field (system file, vehicle file decrypted) and the
    platform's view of it, and conclude. Audited; no tag in the field is 409 (audited as refused)."""
    reader = context.desks.desk(operator.staff_id).tag
    system: ObuSystemFile | None = None
    vehicle: ObuVehicleFile | None = None
    obu_number: str | None = None
    readable = True
    try:
        reading = await obu_host.read_system(reader)
        obu_number, system = str(reading.obu_number), reading.file
        if system is not None and system.issuer == context.issuer.id:
            identity = obu_host.obu_identity(context.issuer.id, reading.obu_number)
            vehicle = await obu_host.read_vehicle(reader, context.keys, identity)
    except CardRemoved:
        await _record_refusal(uow, actor, IssuanceAction.TAG_DETECT, "no_tag_in_field", {})
        raise IssuanceError("no_tag_in_field") from None
    except ReaderError as broken:
        raise IssuanceError(
            "reader_unavailable", text={"reason_zh": broken.zh, "reason_en": broken.en}
        ) from None
    except (StatusWordError, MalformedAnswer, InvalidField):
        readable = False

    async def step(unit: Unit) -> TagDetection:
        chip = None if obu_number is None else await store.get_chip(unit.conn, ChipKind.TAG, obu_number)
        application = None
        if chip is not None and chip.application_id is not None:
            application = await store.get_application(unit.conn, chip.application_id, outlet_id=None)
        differences: list[str] = []
        ours = (
            readable
            and chip is not None
            and obu_number is not None
            and obu_number.startswith(context.issuer.network)
            and (system is None or system.issuer == context.issuer.id)
        )
        if not ours or chip is None:
            verdict = TagVerdict.NOT_OURS
        elif system is None:
            verdict = TagVerdict.BLANK
        elif chip.status is ChipStatus.DEREGISTERED:
            verdict = TagVerdict.DEREGISTERED
        elif vehicle is None:
            differences, verdict = ["vehicle_file"], TagVerdict.MISMATCHED
        elif differences := _differences(
            vehicle.plate, int(vehicle.plate_colour), int(vehicle.vehicle_class), chip, application
        ):
            verdict = TagVerdict.MISMATCHED
        elif system.tamper is TamperStatus.ACTIVATED:
            verdict = TagVerdict.ACTIVE
        elif chip.status is ChipStatus.ACTIVE:
            verdict = TagVerdict.REMOVED
        else:
            verdict = TagVerdict.ISSUED
        unit.audit(
            actor.event(
                IssuanceAction.TAG_DETECT,
                target=("issuance_tag", str(chip.id) if chip is not None else obu_number),
                detail={"obu_number": obu_number, "verdict": verdict.value},
            )
        )
        return TagDetection(verdict, obu_number, system, vehicle, chip, application, differences)

    return await uow.run(step)


# --- tag deregistration ------------------------------------------------------------------------------------


async def deregister_tag(
    uow: UnitOfWork,
    *,
    operator: OutletOperator,
    obu_number: str,
    reason: DeregistrationReason,
    note: str | None,
    actor: Actor,
) -> Chip:
    """标签注销: a live tag is deregistered on the platform, freeing its vehicle's tag: the application goes
    back to ``card_issued`` and its tag issuance ends, so a new tag may be issued for the vehicle.

    Refused with nothing written: no such tag (404), a tag that is not live (409 ``tag_not_live``)."""
    if note is not None and len(note) > NOTE_MAX:
        raise ValueError("the note is at most 100 characters")  # the route's schema bounds it first
    detail: dict[str, Any] = {
        "obu_number": obu_number,
        "reason": reason.value,
        "note": None if note is None else mask_free_text(note),
    }

    async def step(unit: Unit) -> Chip:
        found = await store.get_chip_or_raise(unit.conn, ChipKind.TAG, obu_number)
        chip = await store.lock_chip(unit.conn, found.id)
        if not chip.status.live:
            raise IssuanceError("tag_not_live", text=_status_text(chip.status))
        await store.update_chip(unit.conn, chip.id, now=unit.now, status=ChipStatus.DEREGISTERED)
        await store.add_history(
            unit.conn,
            [
                ChipChange(
                    chip.id,
                    chip.status,
                    ChipStatus.DEREGISTERED,
                    chip.outlet_id,
                    chip.outlet_id,
                    f"deregistered:{reason.value}",
                    _who(actor),
                    unit.now,
                )
            ],
        )
        await store.end_tag_issuance(unit.conn, chip.id, now=unit.now)
        if chip.application_id is not None:
            application = await store.get_application(unit.conn, chip.application_id, outlet_id=None)
            if application is not None and application.status is ApplicationStatus.TAG_ISSUED:
                await store.set_application_status(
                    unit.conn, application.id, ApplicationStatus.CARD_ISSUED, now=unit.now
                )
        vehicle = None if chip.plate is None else f"{chip.plate}_{int(chip.plate_colour or 0)}"
        unit.audit(
            actor.event(
                IssuanceAction.TAG_DEREGISTER,
                target=("issuance_tag", str(chip.id)),
                detail={**detail, "vehicle": vehicle, "from_status": chip.status.value},
            )
        )
        unit.emit(
            IssuanceEvent.TAG_DEREGISTERED,
            chip.number,
            {
                "obu_number": chip.number,
                "vehicle": vehicle,
                "customer_id": None if chip.customer_id is None else str(chip.customer_id),
                "reason": reason.value,
            },
        )
        return await store.lock_chip(unit.conn, chip.id)

    return await uow.run(
        step,
        refusal=lambda error: actor.refused(
            IssuanceAction.TAG_DEREGISTER, error.code, target=("issuance_tag", obu_number), detail=detail
        ),
    )


# --- card loss and cancellation ------------------------------------------------------------------------------


async def _change_card(
    uow: UnitOfWork,
    *,
    card_number: str,
    allowed: frozenset[ChipStatus],
    refusal_code: str,
    to: ChipStatus,
    action: IssuanceAction,
    event: IssuanceEvent,
    list_reason: CardListReason,
    reason: str,
    actor: Actor,
    more: dict[str, Any] | None = None,
) -> Chip:
    detail: dict[str, Any] = {"card_number": card_number, "reason": mask_free_text(reason)}

    async def step(unit: Unit) -> Chip:
        found = await store.get_chip_or_raise(unit.conn, ChipKind.CARD, card_number)
        chip = await store.lock_chip(unit.conn, found.id)
        if chip.status not in allowed:
            raise IssuanceError(refusal_code, text=_status_text(chip.status))
        await store.update_chip(unit.conn, chip.id, now=unit.now, status=to)
        await store.add_history(
            unit.conn,
            [
                ChipChange(
                    chip.id, chip.status, to, chip.outlet_id, chip.outlet_id, to.value, _who(actor), unit.now
                )
            ],
        )
        vehicle = None if chip.plate is None else f"{chip.plate}_{int(chip.plate_colour or 0)}"
        unit.audit(
            actor.event(
                action,
                target=("issuance_card", str(chip.id)),
                detail={**detail, **(more or {}), "vehicle": vehicle, "from_status": chip.status.value},
            )
        )
        unit.emit(
            event,
            chip.number,
            {
                "card_number": chip.number,
                "vehicle": vehicle,
                "customer_id": None if chip.customer_id is None else str(chip.customer_id),
                "list_reason": int(list_reason),
                **(more or {}),
            },
        )
        return await store.lock_chip(unit.conn, chip.id)

    return await uow.run(
        step,
        refusal=lambda error: actor.refused(
            action, error.code, target=("issuance_card", card_number), detail=detail
        ),
    )


async def report_card_lost(
    uow: UnitOfWork, *, operator: OutletOperator, card_number: str, reason: str, actor: Actor
) -> Chip:
    """挂失: a live card is reported lost by its number (the customer no longer has it); it goes on the
    status list (reason 1, 卡挂失) through the event. Refused with nothing written: no such card (404), a
    card not live (409 ``card_not_live``)."""
    return await _change_card(
        uow,
        card_number=card_number,
        allowed=frozenset({ChipStatus.ISSUED, ChipStatus.ACTIVE}),
        refusal_code="card_not_live",
        to=ChipStatus.LOST,
        action=IssuanceAction.CARD_REPORT_LOST,
        event=IssuanceEvent.CARD_REPORTED_LOST,
        list_reason=CardListReason.LOST,
        reason=reason,
        actor=actor,
    )


def card_account_id(chip: Chip) -> UUID:
    """The ledger account issuance opened for a card (its purse, or an account card's receivable)."""
    assert chip.customer_id is not None and chip.card_type is not None
    purpose = (
        AccountPurpose.CARD_PURSE
        if chip.card_type is CardType.STORED_VALUE
        else AccountPurpose.ACCOUNT_CARD_RECEIVABLE
    )
    return owned_account_id(
        owner=customer_accounts.owner_of(chip.customer_id),
        purpose=purpose,
        currency="CNY",
        instance=chip.number,
    )


async def cancel_card(
    uow: UnitOfWork, *, ledger: Ledger, operator: OutletOperator, card_number: str, reason: str, actor: Actor
) -> CardCancelled:
    """注销: a live or lost card is cancelled by its number (a supervisor's act; the route gates it); it
    stays on the status list (reason 3, 无卡注销) through the event. The card's ledger account keeps its
    balance (answered here, not refunded: refunds are the loads issue's). Refused with nothing written:
    no such card (404), a card neither live nor lost (409 ``card_not_cancellable``)."""
    async with uow.pool.connection() as conn:
        found = await store.get_chip_or_raise(conn, ChipKind.CARD, card_number)
    account_id = card_account_id(found) if found.customer_id is not None else None
    account = None if account_id is None else await ledger.get_account(account_id)
    balance = 0 if account is None else account.balance
    more = {"account_id": None if account_id is None else str(account_id), "balance": balance}
    chip = await _change_card(
        uow,
        card_number=card_number,
        allowed=frozenset({ChipStatus.ISSUED, ChipStatus.ACTIVE, ChipStatus.LOST}),
        refusal_code="card_not_cancellable",
        to=ChipStatus.CANCELLED,
        action=IssuanceAction.CARD_CANCEL,
        event=IssuanceEvent.CARD_CANCELLED,
        list_reason=CardListReason.CANCELLED_WITHOUT_CARD,
        reason=reason,
        actor=actor,
        more=more,
    )
    assert account_id is not None
    return CardCancelled(chip, account_id, balance)
