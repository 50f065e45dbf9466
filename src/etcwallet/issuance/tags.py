"""Tag issuance (标签办理) and tag activation (标签激活): an OBU tag written for a vehicle with an issued card,
then switched on once it sits on the windscreen.

Issuance, as seed 001 gives it: "标签办理前请确认已办理成功陇通卡" (an application whose card is not issued is
refused); 读卡 (the application's issued card in the slot: it shows plate, colour, card type and class);
the OBU entry (the SN from the back of the tag typed twice, the issuance mode; the tag in the field must be
that SN, this issuer's, in this outlet's stock); 注册, which "对第一次读取标签信息和现在将要激活的标签信息进行了
校验" (the tag in the field must be the one first read, or nothing is written) and writes the system file
and the vehicle file. "读卡成功之前不显示注册按钮": registration is refused before a successful card read.

Activation ("标签激活操作可多次进行"): read the card and the tag, compare plate and colour (naming the field
that differs), check the tag is the vehicle's live tag and the card its live card on the platform, then write
the tamper byte; a tag whose anti-tamper switch is released refuses (``6982``): "请将标签安装在车上并按下
防拆按钮".

No transaction is held across the tag (DESIGN, "How a domain moves money"): registration persists the bytes
it will write (``writing``) and commits, writes the tag, then records the outcome in a second unit. A tag
that leaves the field mid-write, or a process that dies before recording, leaves the issuance ``writing``:
registering again writes the very same bytes (tag writes are idempotent) and records once. Activation has
no intent to persist: writing 01 again is harmless, so a torn activation is simply done again.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, NoReturn, TypeVar
from uuid import UUID

from etcwallet.core.errors import DomainError
from etcwallet.identity.customers.types import OutletOperator
from etcwallet.issuance import store
from etcwallet.issuance.chip import card_host, obu_host
from etcwallet.issuance.chip.apdu import StatusWord, StatusWordError
from etcwallet.issuance.chip.card_host import CardReading, UnreadableCard
from etcwallet.issuance.chip.files import ObuNumber, ObuSystemFile, ObuVehicleFile, TamperStatus
from etcwallet.issuance.chip.host import ChipSecurityError, MalformedAnswer
from etcwallet.issuance.chip.obu_host import SystemFileReading, TagChanged
from etcwallet.issuance.chip.reader import CardRemoved, Reader, ReaderError
from etcwallet.issuance.codes import CardType, PlateColour, VehicleClass
from etcwallet.issuance.context import IssuanceContext
from etcwallet.issuance.errors import IssuanceError
from etcwallet.issuance.types import (
    CHIP_STATUS_NAMES,
    Application,
    ApplicationStatus,
    Chip,
    ChipChange,
    ChipKind,
    ChipStatus,
    IssuanceAction,
    IssuanceEvent,
    IssuanceMode,
    TagIssuance,
    TagIssuanceStatus,
)
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

T = TypeVar("T")

CONTRACT_TYPE = 0x01
"""The system file's contract type byte **[?: the spec names the field, not its values]**."""
CONTRACT_VERSION = 0x01
"""The contract version (the spec: "the key version"): the issuer's first maintenance key version **[?]**."""

FIELD_NAMES = {"plate": ("车牌号", "plate"), "plate_colour": ("车牌颜色", "plate colour")}


# --- answers ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagCardRead:
    """What 读卡 shows before the OBU entry: the application, its card and the issuance as it stands."""

    application: Application
    card_number: str
    card_type: CardType
    vehicle_class: VehicleClass
    issuance: TagIssuance


@dataclass(frozen=True)
class TagRead:
    """The tag read for the issuance (its SN confirmed): the issuance as it stands."""

    application: Application
    obu_number: str
    issuance: TagIssuance


@dataclass(frozen=True)
class TagRegistered:
    """A registered tag: the application, the tag's platform record and the issuance."""

    application: Application
    chip: Chip
    issuance: TagIssuance


@dataclass(frozen=True)
class CardSide:
    """The card in the slot as activation reads it (0015)."""

    card_number: str
    plate: str
    plate_colour: PlateColour


@dataclass(frozen=True)
class TagSide:
    """The tag in the field as activation reads it (system file and decrypted vehicle file)."""

    obu_number: str
    plate: str
    plate_colour: PlateColour
    vehicle_class: VehicleClass
    tamper: TamperStatus


@dataclass(frozen=True)
class TagCheck:
    """读卡 + 读标签 at activation: both sides and the fields in which they differ (none: they agree)."""

    card: CardSide
    tag: TagSide
    differs: tuple[str, ...]

    @property
    def agree(self) -> bool:
        """Whether the card and the tag describe the same vehicle (plate and colour)."""
        return not self.differs


@dataclass(frozen=True)
class TagActivated:
    """An activated tag: what was checked and the tag's platform record now."""

    check: TagCheck
    chip: Chip


# --- helpers ---------------------------------------------------------------------------------------------


def _who(actor: Actor) -> str:
    return f"{actor.type}:{actor.id}"


def _target(number: str | None) -> tuple[str, str | None]:
    return ("issuance_tag", number)


async def _audited(
    uow: UnitOfWork,
    actor: Actor,
    action: IssuanceAction,
    detail: dict[str, Any],
    call: Callable[[], Awaitable[T]],
) -> T:
    """Run a step; a refusal is recorded in the audit log (in a transaction of its own) and goes on."""
    try:
        return await call()
    except DomainError as error:
        await audit.record(
            uow.pool,
            actor.refused(action, error.code, target=_target(detail.get("obu_number")), detail=detail),
        )
        raise


def _status_text(status: ChipStatus) -> dict[str, str]:
    zh, en = CHIP_STATUS_NAMES[status]
    return {"status_zh": zh, "status_en": en}


async def _read_card(reader: Reader, context: IssuanceContext) -> CardReading:
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


async def _read_system(reader: Reader, context: IssuanceContext) -> SystemFileReading:
    try:
        reading = await obu_host.read_system(reader)
    except CardRemoved:
        raise IssuanceError("no_tag_in_field") from None
    except ReaderError as broken:
        raise IssuanceError(
            "reader_unavailable", text={"reason_zh": broken.zh, "reason_en": broken.en}
        ) from None
    except (StatusWordError, ChipSecurityError):
        raise IssuanceError("tag_not_ours") from None
    if reading.obu_number.network != context.issuer.network:
        raise IssuanceError("tag_not_ours")
    if reading.file is not None and reading.file.issuer != context.issuer.id:
        raise IssuanceError("tag_not_ours")
    return reading


def _typed_sn(sn: str, sn_confirm: str) -> ObuNumber:
    """The SN typed twice: 16 digits (422 ``tag_sn_format``), the same twice (422 naming ``sn_confirm``)."""
    typed, again = "".join(sn.split()), "".join(sn_confirm.split())
    if len(typed) != 16 or not typed.isdigit():
        raise IssuanceError("tag_sn_format")
    if again != typed:
        raise IssuanceError("tag_sn_mismatch")
    try:
        return ObuNumber.parse(typed)
    except ValueError:
        raise IssuanceError("tag_not_ours") from None


async def _issued_card(unit: Unit, application: Application) -> Chip:
    """The application's issued card (its registered card issuance's chip), still live; else 409
    ``tag_card_not_issued`` ("标签办理前请确认已办理成功陇通卡")."""
    if application.status not in (ApplicationStatus.CARD_ISSUED, ApplicationStatus.TAG_ISSUED):
        raise IssuanceError("tag_card_not_issued")
    issuances = await store.card_issuances_of(unit.conn, application.id)
    done = next((i for i in issuances if i.status.value == "registered"), None)
    if done is None:
        raise IssuanceError("tag_card_not_issued")
    card = await store.lock_chip(unit.conn, done.chip_id)
    if not card.status.live:
        raise IssuanceError("tag_card_not_issued")
    return card


def _check_card_in_slot(reading: CardReading, card: Chip, application: Application) -> None:
    """The card in the slot is the application's issued card, holding its vehicle in 0015."""
    what: tuple[str, str] | None = None
    if str(reading.card_number) != card.number:
        what = ("卡号", "card number")
    elif reading.issue is None:
        what = ("发行信息", "issuance data")
    elif reading.issue.plate != application.vehicle.plate:
        what = FIELD_NAMES["plate"]
    elif reading.issue.plate_colour != application.vehicle.plate_colour:
        what = FIELD_NAMES["plate_colour"]
    if what is not None:
        raise IssuanceError("tag_card_mismatch", text={"what_zh": what[0], "what_en": what[1]})


async def _live_tag(unit: Unit, application: Application, *, other_than: UUID | None = None) -> Chip | None:
    vehicle = application.vehicle
    chips = await store.live_chips_of_vehicle(unit.conn, vehicle.plate, vehicle.plate_colour)
    return next((c for c in chips if c.kind is ChipKind.TAG and c.id != other_than), None)


def _check_stock_tag(chip: Chip | None, operator: OutletOperator, *, issuance: TagIssuance) -> Chip:
    """The tag may be issued here: ours, in this outlet's stock (or already this issuance's)."""
    if chip is None:
        raise IssuanceError("tag_not_ours")
    if chip.status is ChipStatus.ISSUED and chip.application_id == issuance.application_id:
        return chip
    if chip.status is not ChipStatus.IN_STOCK:
        raise IssuanceError("tag_not_in_stock", text=_status_text(chip.status))
    if chip.outlet_id != operator.outlet_id:
        raise IssuanceError("tag_not_in_outlet_stock")
    return chip


def _detail(application: Application, **more: Any) -> dict[str, Any]:
    return {"application_id": str(application.id), "vehicle": application.vehicle.key, **more}


# --- 读卡 ------------------------------------------------------------------------------------------------


async def read_card(
    uow: UnitOfWork,
    *,
    context: IssuanceContext,
    operator: OutletOperator,
    application_id: UUID,
    actor: Actor,
) -> TagCardRead:
    """读卡 for a tag issuance: the application's issued card must be in the operator's slot.

    Starts the application's tag issuance (``card_read``) or continues it (one left ``writing`` stays so,
    to be registered again). Refused with nothing written: another outlet's application (404), an
    application whose card is not issued (409 ``tag_card_not_issued``), no card or another card in the
    slot (409), a card not of this issuer (422).
    """
    async with uow.pool.connection() as conn:
        application = await store.get_application_or_raise(conn, application_id, outlet_id=operator.outlet_id)

    async def run() -> TagCardRead:
        async def check_card(unit: Unit) -> Chip:
            current = await store.get_application_or_raise(
                unit.conn, application_id, outlet_id=operator.outlet_id
            )
            return await _issued_card(unit, current)

        await uow.run(check_card)  # 标签办理前请确认已办理成功陇通卡: before the slot is even read
        reading = await _read_card(context.desks.desk(operator.staff_id).card, context)

        async def step(unit: Unit) -> TagCardRead:
            current = await store.lock_application(unit.conn, application_id, outlet_id=operator.outlet_id)
            card = await _issued_card(unit, current)
            _check_card_in_slot(reading, card, current)
            row = await store.lock_tag_issuance(unit.conn, application_id)
            if (
                row is None
                or row.status is TagIssuanceStatus.DEREGISTERED
                or (row.status is TagIssuanceStatus.REGISTERED and not await _still_live(unit, row))
            ):
                row = TagIssuance(
                    id=uuid.uuid4(),
                    application_id=application_id,
                    card_chip_id=card.id,
                    chip_id=None,
                    outlet_id=operator.outlet_id,
                    operator_id=operator.staff_id,
                    mode=None,
                    first_read_number=None,
                    status=TagIssuanceStatus.CARD_READ,
                    attempts=0,
                    last_error=None,
                    system_content=None,
                    vehicle_content=None,
                    created_at=unit.now,
                    updated_at=unit.now,
                )
                await store.insert_tag_issuance(unit.conn, row)
            elif row.status in (
                TagIssuanceStatus.CARD_READ,
                TagIssuanceStatus.TAG_READ,
                TagIssuanceStatus.FAILED,
            ):
                row = replace(
                    row,
                    card_chip_id=card.id,
                    operator_id=operator.staff_id,
                    status=TagIssuanceStatus.CARD_READ,
                    updated_at=unit.now,
                )
                await store.update_tag_issuance(unit.conn, row)
            unit.audit(
                actor.event(
                    IssuanceAction.TAG_CARD_READ,
                    target=_target(row.first_read_number),
                    detail=_detail(current, card_number=card.number, status=row.status.value),
                )
            )
            return TagCardRead(current, card.number, reading.card_type, current.vehicle.vehicle_class, row)

        return await uow.run(step)

    return await _audited(uow, actor, IssuanceAction.TAG_CARD_READ, _detail(application), run)


async def _still_live(unit: Unit, row: TagIssuance) -> bool:
    """Whether a registered issuance's tag is still the vehicle's (not deregistered, lost or damaged)."""
    if row.chip_id is None:
        return False
    chip = await store.lock_chip(unit.conn, row.chip_id)
    return chip.status.live


# --- OBU entry: the SN typed twice and the tag read ------------------------------------------------------


async def read_tag(
    uow: UnitOfWork,
    *,
    context: IssuanceContext,
    operator: OutletOperator,
    application_id: UUID,
    sn: str,
    sn_confirm: str,
    mode: IssuanceMode,
    actor: Actor,
) -> TagRead:
    """OBU信息录入: the SN typed twice, the mode, and the tag in the field read.

    The tag answering must carry the SN typed, be this issuer's, in this outlet's stock and in stock; it
    becomes the issuance's first-read tag (``tag_read``), which registration checks again. Refused with
    nothing written: the SN malformed or typed differently twice (422), no card read first (409
    ``tag_card_not_read``), another tag in the field, a tag issued, damaged or of another outlet (409), a
    vehicle that holds a live tag already (409 ``vehicle_has_live_tag``).
    """
    async with uow.pool.connection() as conn:
        application = await store.get_application_or_raise(conn, application_id, outlet_id=operator.outlet_id)

    async def run() -> TagRead:
        typed = _typed_sn(sn, sn_confirm)
        reading = await _read_system(context.desks.desk(operator.staff_id).tag, context)
        if reading.obu_number != typed:
            raise IssuanceError(
                "tag_sn_not_in_field", text={"typed": typed.value, "found": reading.obu_number}
            )
        number = typed.value

        async def step(unit: Unit) -> TagRead:
            current = await store.lock_application(unit.conn, application_id, outlet_id=operator.outlet_id)
            row = await store.lock_tag_issuance(unit.conn, application_id)
            if row is None or row.status is TagIssuanceStatus.DEREGISTERED:
                raise IssuanceError("tag_card_not_read")
            if row.status is TagIssuanceStatus.REGISTERED:
                if await _still_live(unit, row):
                    if row.first_read_number == number:
                        return TagRead(current, number, row)
                    raise IssuanceError("vehicle_has_live_tag")
                raise IssuanceError("tag_card_not_read")
            if row.status is TagIssuanceStatus.WRITING:
                if row.first_read_number != number:
                    raise IssuanceError("tag_issuance_writing", text={"number": row.first_read_number})
                return TagRead(current, number, row)
            await _issued_card(unit, current)
            found = await store.get_chip(unit.conn, ChipKind.TAG, number)
            locked = await store.lock_chip(unit.conn, found.id) if found is not None else None
            chip = _check_stock_tag(locked, operator, issuance=row)
            if await _live_tag(unit, current, other_than=chip.id) is not None:
                raise IssuanceError("vehicle_has_live_tag")
            row = replace(
                row,
                chip_id=chip.id,
                first_read_number=number,
                mode=mode,
                operator_id=operator.staff_id,
                status=TagIssuanceStatus.TAG_READ,
                last_error=None,
                updated_at=unit.now,
            )
            await store.update_tag_issuance(unit.conn, row)
            unit.audit(
                actor.event(
                    IssuanceAction.TAG_READ,
                    target=_target(number),
                    detail=_detail(current, obu_number=number, mode=mode.value),
                )
            )
            return TagRead(current, number, row)

        return await uow.run(step)

    return await _audited(
        uow, actor, IssuanceAction.TAG_READ, _detail(application, obu_number="".join(sn.split())), run
    )


# --- 注册 ------------------------------------------------------------------------------------------------


def _contents(
    context: IssuanceContext, application: Application, obu_number: ObuNumber, card: Chip, today: date
) -> tuple[bytes, bytes]:
    """The system file and the vehicle file this issuance writes: signed today, valid as long as the card,
    the tamper byte 00 (activation writes 01 once the tag is on the car)."""
    system = ObuSystemFile(
        issuer=context.issuer.id,
        contract_type=CONTRACT_TYPE,
        contract_version=CONTRACT_VERSION,
        obu_number=obu_number,
        signing_date=today,
        expiry_date=card.expires_on or context.issuer.expiry_from(today),
        tamper=TamperStatus.REMOVED,
    )
    v = application.vehicle
    vehicle = ObuVehicleFile(
        plate=v.plate,
        plate_colour=v.plate_colour,
        vehicle_class=v.vehicle_class,
        user_type=v.user_type,
        length_mm=v.length_mm,
        width_mm=v.width_mm,
        height_mm=v.height_mm,
        rated_load_kg=0,
        curb_weight_kg=0,
        gross_mass_kg=v.gross_mass_kg or 0,
        rated_passengers=v.seats or 0,
        vin=v.vin,
    )
    return system.to_bytes(), vehicle.to_bytes()


async def register_tag(
    uow: UnitOfWork,
    *,
    context: IssuanceContext,
    operator: OutletOperator,
    application_id: UUID,
    actor: Actor,
) -> TagRegistered:
    """注册: write the tag first read for this application and record it issued to the vehicle.

    Refused before anything is written: no card read in this issuance (409 ``tag_card_not_read``: "读卡成功
    之前不显示注册按钮"), no tag read (409 ``tag_not_read``), another tag in the field than the one first read
    (409 ``tag_changed``), a vehicle holding a live tag. A tag that leaves the field leaves the issuance
    ``writing`` (409 ``tag_removed``): registering again finishes it with the same bytes. A tag refusing the
    write is a failure recorded (``6581``: the tag is marked damaged). Registering a registered issuance
    again answers it.
    """
    async with uow.pool.connection() as conn:
        application = await store.get_application_or_raise(conn, application_id, outlet_id=operator.outlet_id)
        issuances = await store.tag_issuances_of(conn, application_id)
    row = issuances[-1] if issuances else None
    detail = _detail(application, obu_number=None if row is None else row.first_read_number)

    async def run() -> TagRegistered:
        if row is None or row.status is TagIssuanceStatus.DEREGISTERED:
            raise IssuanceError("tag_card_not_read")
        if row.status is TagIssuanceStatus.REGISTERED:
            done = await _registered_already(uow, application, row)
            if done is not None:
                return done
            raise IssuanceError("tag_card_not_read")
        if row.status is TagIssuanceStatus.CARD_READ or row.first_read_number is None:
            raise IssuanceError("tag_not_read")
        number = ObuNumber(row.first_read_number)
        reader = context.desks.desk(operator.staff_id).tag
        try:
            # 对第一次读取标签信息和现在将要激活的标签信息进行了校验
            await obu_host.confirm_tag(reader, number)
        except TagChanged as changed:
            raise IssuanceError(
                "tag_changed", text={"reason_zh": changed.zh, "reason_en": changed.en}
            ) from None
        except CardRemoved:
            raise IssuanceError("no_tag_in_field") from None
        except (ReaderError, StatusWordError, ChipSecurityError):
            raise IssuanceError("tag_not_ours") from None
        intent = await _persist_intent(uow, context, operator, application_id)
        return await _write_and_record(uow, context, reader, intent, application, actor)

    return await _audited(uow, actor, IssuanceAction.TAG_REGISTER, detail, run)


async def _registered_already(
    uow: UnitOfWork, application: Application, row: TagIssuance
) -> TagRegistered | None:
    async with uow.pool.connection() as conn:
        assert row.chip_id is not None
        chip = await store.lock_chip(conn, row.chip_id)
        if not chip.status.live:
            return None
        current = await store.get_application_or_raise(conn, application.id, outlet_id=None)
    return TagRegistered(current, chip, row)


async def _persist_intent(
    uow: UnitOfWork, context: IssuanceContext, operator: OutletOperator, application_id: UUID
) -> TagIssuance:
    """Lock, check again and persist the files to write (``writing``) before the tag is spoken to. An
    issuance left ``writing`` keeps its bytes, so a re-drive writes the very same ones."""

    async def step(unit: Unit) -> TagIssuance:
        application = await store.lock_application(unit.conn, application_id, outlet_id=operator.outlet_id)
        card = await _issued_card(unit, application)
        row = await store.lock_tag_issuance(unit.conn, application_id)
        if row is None or row.status is TagIssuanceStatus.DEREGISTERED:
            raise IssuanceError("tag_card_not_read")
        if row.status is TagIssuanceStatus.CARD_READ or row.chip_id is None or row.first_read_number is None:
            raise IssuanceError("tag_not_read")
        chip = _check_stock_tag(await store.lock_chip(unit.conn, row.chip_id), operator, issuance=row)
        if await _live_tag(unit, application, other_than=chip.id) is not None:
            raise IssuanceError("vehicle_has_live_tag")
        if row.status is TagIssuanceStatus.WRITING and row.system_content is not None:
            return row
        system, vehicle = _contents(
            context, application, ObuNumber(row.first_read_number), card, unit.now.date()
        )
        row = replace(
            row,
            status=TagIssuanceStatus.WRITING,
            attempts=row.attempts + 1,
            system_content=system,
            vehicle_content=vehicle,
            last_error=None,
            updated_at=unit.now,
        )
        await store.update_tag_issuance(unit.conn, row)
        return row

    return await uow.run(step)


async def _write_and_record(
    uow: UnitOfWork,
    context: IssuanceContext,
    reader: Reader,
    intent: TagIssuance,
    application: Application,
    actor: Actor,
) -> TagRegistered:
    """Write both files (no transaction open), read them back, then record the outcome."""
    assert intent.system_content is not None and intent.vehicle_content is not None
    system = ObuSystemFile.from_bytes(intent.system_content)
    vehicle = ObuVehicleFile.from_bytes(intent.vehicle_content)
    identity = obu_host.obu_identity(context.issuer.id, system.obu_number)
    try:
        await obu_host.issue(reader, context.keys, system, vehicle, issuer=context.issuer.id)
        back = await obu_host.confirm_tag(reader, system.obu_number)
        vehicle_back = await obu_host.read_vehicle(reader, context.keys, identity)
    except CardRemoved:
        raise IssuanceError("tag_removed") from None
    except TagChanged as changed:
        raise IssuanceError("tag_changed", text={"reason_zh": changed.zh, "reason_en": changed.en}) from None
    except StatusWordError as refusal:
        await _record_failure(uow, intent, application, refusal=refusal, actor=actor)
    except (MalformedAnswer, ReaderError):
        await _record_failure(uow, intent, application, refusal=None, actor=actor)
    written = back.file.to_bytes() if back.file is not None else b""
    if (
        written != intent.system_content
        or vehicle_back is None
        or vehicle_back.to_bytes() != intent.vehicle_content
    ):
        await _record_failure(uow, intent, application, refusal=None, actor=actor)
    return await _record_registered(uow, intent, application, actor)


async def _record_registered(
    uow: UnitOfWork, intent: TagIssuance, application: Application, actor: Actor
) -> TagRegistered:
    """The tag holds its files: record it issued to the vehicle, the issuance registered, in one unit."""
    chip_id, system_content = intent.chip_id, intent.system_content
    assert chip_id is not None and system_content is not None

    async def step(unit: Unit) -> TagRegistered:
        current = await store.lock_application(unit.conn, application.id, outlet_id=application.outlet_id)
        chip = await store.lock_chip(unit.conn, chip_id)
        row = await store.lock_tag_issuance(unit.conn, application.id)
        assert row is not None
        if row.status is TagIssuanceStatus.REGISTERED:
            return TagRegistered(current, chip, row)
        if await _live_tag(unit, current, other_than=chip.id) is not None:
            raise IssuanceError("vehicle_has_live_tag")
        vehicle = current.vehicle
        expiry = ObuSystemFile.from_bytes(system_content).expiry_date
        await store.update_chip(
            unit.conn,
            chip.id,
            now=unit.now,
            status=ChipStatus.ISSUED,
            owner=(current.id, current.customer_id, vehicle.plate, vehicle.plate_colour),
            expires_on=expiry,
        )
        await store.add_history(
            unit.conn,
            [
                ChipChange(
                    chip.id,
                    chip.status,
                    ChipStatus.ISSUED,
                    chip.outlet_id,
                    chip.outlet_id,
                    "tag_issued",
                    _who(actor),
                    unit.now,
                )
            ],
        )
        registered = replace(row, status=TagIssuanceStatus.REGISTERED, last_error=None, updated_at=unit.now)
        await store.update_tag_issuance(unit.conn, registered)
        await store.set_application_status(unit.conn, current.id, ApplicationStatus.TAG_ISSUED, now=unit.now)
        card = await store.lock_chip(unit.conn, row.card_chip_id)
        mode = None if row.mode is None else row.mode.value
        unit.audit(
            actor.event(
                IssuanceAction.TAG_REGISTER,
                target=_target(chip.number),
                detail=_detail(current, obu_number=chip.number, card_number=card.number, mode=mode),
            )
        )
        unit.emit(
            IssuanceEvent.TAG_ISSUED,
            chip.number,
            {
                "obu_number": chip.number,
                "card_number": card.number,
                "customer_id": str(current.customer_id),
                "application_id": str(current.id),
                "vehicle": vehicle.key,
                "outlet_id": str(current.outlet_id),
                "expires_on": expiry.isoformat(),
            },
        )
        final = await store.get_chip_or_raise(unit.conn, ChipKind.TAG, chip.number)
        updated = await store.get_application_or_raise(unit.conn, current.id, outlet_id=None)
        return TagRegistered(updated, final, registered)

    return await uow.run(step)


async def _record_failure(
    uow: UnitOfWork,
    intent: TagIssuance,
    application: Application,
    *,
    refusal: StatusWordError | None,
    actor: Actor,
) -> NoReturn:
    """The tag refused a write (or read back other bytes): the issuance failed, the tag counts a failure
    and, on ``6581`` (memory failure), is marked damaged. Always raises the answer."""
    chip_id = intent.chip_id
    assert chip_id is not None
    damaged = refusal is not None and refusal.sw == StatusWord.MEMORY_FAILURE
    code = "readback" if refusal is None else f"{refusal.sw:04X}"
    why_zh = "写入后读回的内容不一致" if refusal is None else refusal.zh
    why_en = "the tag read back other bytes than were written" if refusal is None else refusal.en

    async def step(unit: Unit) -> None:
        row = await store.lock_tag_issuance(unit.conn, application.id)
        chip = await store.lock_chip(unit.conn, chip_id)
        assert row is not None
        await store.update_tag_issuance(
            unit.conn, replace(row, status=TagIssuanceStatus.FAILED, last_error=code, updated_at=unit.now)
        )
        status = ChipStatus.DAMAGED if damaged else chip.status
        await store.update_chip(unit.conn, chip.id, now=unit.now, failures=chip.failures + 1, status=status)
        if status is not chip.status:
            await store.add_history(
                unit.conn,
                [
                    ChipChange(
                        chip.id,
                        chip.status,
                        status,
                        chip.outlet_id,
                        chip.outlet_id,
                        f"write_failed_{code}",
                        _who(actor),
                        unit.now,
                    )
                ],
            )
        unit.audit(
            actor.event(
                IssuanceAction.TAG_FAILED,
                target=_target(chip.number),
                detail=_detail(application, obu_number=chip.number, reason=code),
                outcome="failure",
            )
        )

    await uow.run(step)
    raise IssuanceError(
        "tag_damaged" if damaged else "tag_write_failed", text={"reason_zh": why_zh, "reason_en": why_en}
    )


# --- 标签激活 --------------------------------------------------------------------------------------------


async def _read_sides(context: IssuanceContext, operator: OutletOperator) -> TagCheck:
    """读卡 and 读标签: the card's vehicle (0015) and the tag's (system file, decrypted vehicle file)."""
    desk = context.desks.desk(operator.staff_id)
    reading = await _read_card(desk.card, context)
    if reading.issue is None:
        raise IssuanceError("card_not_issued")
    card = CardSide(str(reading.card_number), reading.issue.plate, reading.issue.plate_colour)
    system = await _read_system(desk.tag, context)
    if system.file is None:
        raise IssuanceError("tag_not_issued")
    identity = obu_host.obu_identity(context.issuer.id, system.obu_number)
    try:
        vehicle = await obu_host.read_vehicle(desk.tag, context.keys, identity)
    except CardRemoved:
        raise IssuanceError("no_tag_in_field") from None
    except (StatusWordError, ChipSecurityError, ReaderError):
        raise IssuanceError("tag_not_ours") from None
    if vehicle is None:
        raise IssuanceError("tag_not_issued")
    tag = TagSide(
        system.obu_number.value,
        vehicle.plate,
        vehicle.plate_colour,
        vehicle.vehicle_class,
        system.file.tamper,
    )
    differs = tuple(
        name
        for name, same in (
            ("plate", card.plate == tag.plate),
            ("plate_colour", card.plate_colour == tag.plate_colour),
        )
        if not same
    )
    return TagCheck(card, tag, differs)


def _differ(check: TagCheck) -> IssuanceError:
    zh = "、".join(FIELD_NAMES[name][0] for name in check.differs)
    en = ", ".join(FIELD_NAMES[name][1] for name in check.differs)
    return IssuanceError(
        "tag_card_differ",
        field=check.differs[0],
        text={"fields_zh": zh, "fields_en": en},
        differs=list(check.differs),
    )


async def check_tag(
    uow: UnitOfWork, *, context: IssuanceContext, operator: OutletOperator, actor: Actor
) -> TagCheck:
    """激活前的读卡、读标签: both sides and whether they agree (the answer names the fields that differ;
    reading is no refusal). Audited."""

    async def run() -> TagCheck:
        check = await _read_sides(context, operator)

        async def step(unit: Unit) -> TagCheck:
            unit.audit(
                actor.event(
                    IssuanceAction.TAG_CHECK,
                    target=_target(check.tag.obu_number),
                    detail={
                        "obu_number": check.tag.obu_number,
                        "card_number": check.card.card_number,
                        "differs": list(check.differs),
                    },
                )
            )
            return check

        return await uow.run(step)

    return await _audited(uow, actor, IssuanceAction.TAG_CHECK, {}, run)


def _vehicle_key(side: CardSide) -> str:
    return f"{side.plate}_{int(side.plate_colour)}"


async def activate_tag(
    uow: UnitOfWork,
    *,
    context: IssuanceContext,
    operator: OutletOperator,
    obu_number: str | None,
    actor: Actor,
) -> TagActivated:
    """激活: check card and tag again, then write the tamper byte 01 and record the tag active.

    ``obu_number`` is the tag read (if given, the tag in the field must still be it). Refused with nothing
    written: the card and the tag describing different vehicles (409 ``tag_card_differ`` naming the fields),
    a tag that is not the vehicle's live tag or a card that is not its live card on the platform (409), the
    anti-tamper switch released (409 ``tag_switch_released``: "请将标签安装在车上并按下防拆按钮"). May be done
    again. A tag that leaves the field mid-write: activate again.
    """

    async def run() -> TagActivated:
        check = await _read_sides(context, operator)
        if obu_number is not None and check.tag.obu_number != obu_number:
            changed = TagChanged(ObuNumber(obu_number), ObuNumber(check.tag.obu_number))
            raise IssuanceError("tag_changed", text={"reason_zh": changed.zh, "reason_en": changed.en})
        if not check.agree:
            raise _differ(check)
        vehicle = _vehicle_key(check.card)
        async with uow.pool.connection() as conn:
            tag = await store.get_chip(conn, ChipKind.TAG, check.tag.obu_number)
            card = await store.get_chip(conn, ChipKind.CARD, check.card.card_number)
        _check_live(tag, check.card, "tag_not_vehicle_live_tag", vehicle)
        _check_live(card, check.card, "card_not_vehicle_live_card", vehicle)
        assert tag is not None
        reader = context.desks.desk(operator.staff_id).tag
        number = ObuNumber(check.tag.obu_number)
        try:
            await obu_host.activate(reader, context.keys, obu_host.obu_identity(context.issuer.id, number))
        except CardRemoved:
            raise IssuanceError("tag_removed") from None
        except TagChanged as changed:
            raise IssuanceError(
                "tag_changed", text={"reason_zh": changed.zh, "reason_en": changed.en}
            ) from None
        except StatusWordError as refusal:
            if refusal.sw == StatusWord.SECURITY_STATUS_NOT_SATISFIED:
                raise IssuanceError("tag_switch_released") from None
            reason = {"reason_zh": refusal.zh, "reason_en": refusal.en}
            if refusal.sw == StatusWord.MEMORY_FAILURE:
                raise IssuanceError("tag_damaged", text=reason) from None
            raise IssuanceError("tag_write_failed", text=reason) from None
        return await _record_activated(uow, check, tag.id, actor)

    detail = {"obu_number": obu_number}
    return await _audited(uow, actor, IssuanceAction.TAG_ACTIVATE, detail, run)


def _check_live(chip: Chip | None, card: CardSide, code: str, vehicle: str) -> None:
    if chip is None:
        raise IssuanceError(code, text={"vehicle": vehicle, "status_zh": "无记录", "status_en": "unknown"})
    if not chip.status.live or chip.plate != card.plate or chip.plate_colour != card.plate_colour:
        text = {"vehicle": vehicle, **_status_text(chip.status)}
        if chip.status.live:
            owner = f"{chip.plate}_{int(chip.plate_colour or 0)}"
            text = {"vehicle": vehicle, "status_zh": f"属于 {owner}", "status_en": f"belonging to {owner}"}
        raise IssuanceError(code, text=text)


async def _record_activated(uow: UnitOfWork, check: TagCheck, tag_id: UUID, actor: Actor) -> TagActivated:
    """The tag holds 01: record it active (each activation is a history entry, an audit and an event)."""

    async def step(unit: Unit) -> TagActivated:
        chip = await store.lock_chip(unit.conn, tag_id)
        vehicle = _vehicle_key(check.card)
        _check_live(chip, check.card, "tag_not_vehicle_live_tag", vehicle)
        await store.update_chip(unit.conn, chip.id, now=unit.now, status=ChipStatus.ACTIVE)
        await store.add_history(
            unit.conn,
            [
                ChipChange(
                    chip.id,
                    chip.status,
                    ChipStatus.ACTIVE,
                    chip.outlet_id,
                    chip.outlet_id,
                    "tag_activated",
                    _who(actor),
                    unit.now,
                )
            ],
        )
        unit.audit(
            actor.event(
                IssuanceAction.TAG_ACTIVATE,
                target=_target(chip.number),
                detail={"obu_number": chip.number, "card_number": check.card.card_number, "vehicle": vehicle},
            )
        )
        unit.emit(
            IssuanceEvent.TAG_ACTIVATED,
            chip.number,
            {
                "obu_number": chip.number,
                "card_number": check.card.card_number,
                "vehicle": vehicle,
                "customer_id": str(chip.customer_id),
                "again": chip.status is ChipStatus.ACTIVE,
            },
        )
        final = await store.get_chip_or_raise(unit.conn, ChipKind.TAG, chip.number)
        activated = replace(check, tag=replace(check.tag, tamper=TamperStatus.ACTIVATED))
        return TagActivated(activated, final)

    return await uow.run(step)
