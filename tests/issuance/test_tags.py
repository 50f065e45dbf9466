"""Tag issuance (标签办理) and activation (标签激活) through the service, against emulated cards and tags: the
whole issuance and activation, each seed rule, refusals that write nothing, tears during each write (system
file, vehicle file, tamper byte; applied or not) and a process that dies between the tag and the record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.issuance import tags
from etcwallet.issuance.chip import obu_host
from etcwallet.issuance.chip.files import CardIssueFile, ObuNumber, ObuSystemFile, TamperStatus
from etcwallet.issuance.chip.obu_emulator import ObuEmulator, TamperSwitch, blank_system_file
from etcwallet.issuance.types import (
    Application,
    ApplicationStatus,
    ChipKind,
    ChipStatus,
    IssuanceMode,
    TagIssuanceStatus,
    Vehicle,
)
from etcwallet.ledger.service import Ledger
from tests.issuance.builders import Counter, car, counter
from tests.issuance.test_cards import refused, rows

UPDATE_BINARY = 0xD6


@pytest.fixture
async def desk(
    pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path
) -> Counter:
    return await counter(pool, keys, ledger, settings, tmp_path)


@dataclass
class Ready:
    """An application with its card issued and in the slot, and a tag of the outlet's stock in the field."""

    application: Application
    card: str
    tag: str
    vehicle: Vehicle


async def ready(desk: Counter, vehicle: Vehicle | None = None) -> Ready:
    vehicle = vehicle or car()
    application, card = await desk.issue_card(vehicle)
    (tag,) = await desk.stock(ChipKind.TAG)
    desk.insert_card(card)
    desk.desk[1].insert(tag)
    return Ready(application, card, tag, vehicle)


async def card_read(desk: Counter, application: Application) -> tags.TagCardRead:
    return await tags.read_card(
        desk.uow,
        context=desk.context,
        operator=desk.operator,
        application_id=application.id,
        actor=desk.actor,
    )


async def tag_read(
    desk: Counter, application: Application, sn: str, confirm: str | None = None
) -> tags.TagRead:
    return await tags.read_tag(
        desk.uow,
        context=desk.context,
        operator=desk.operator,
        application_id=application.id,
        sn=sn,
        sn_confirm=sn if confirm is None else confirm,
        mode=IssuanceMode.NEW,
        actor=desk.actor,
    )


async def register(desk: Counter, application: Application) -> tags.TagRegistered:
    return await tags.register_tag(
        desk.uow,
        context=desk.context,
        operator=desk.operator,
        application_id=application.id,
        actor=desk.actor,
    )


async def check(desk: Counter) -> tags.TagCheck:
    return await tags.check_tag(desk.uow, context=desk.context, operator=desk.operator, actor=desk.actor)


async def activate(desk: Counter, obu_number: str | None = None) -> tags.TagActivated:
    return await tags.activate_tag(
        desk.uow, context=desk.context, operator=desk.operator, obu_number=obu_number, actor=desk.actor
    )


async def issue_tag(desk: Counter, vehicle: Vehicle | None = None) -> Ready:
    r = await ready(desk, vehicle)
    await card_read(desk, r.application)
    await tag_read(desk, r.application, r.tag)
    await register(desk, r.application)
    return r


async def tag_row(pool: AsyncConnectionPool, number: str) -> tuple[str, str | None]:
    ((status, plate),) = await rows(
        pool, "SELECT status, plate FROM issuance_chips WHERE kind = 'tag' AND number = %s", number
    )
    return status, plate


async def issuance_status(pool: AsyncConnectionPool, application: Application) -> list[str]:
    found = await rows(
        pool,
        "SELECT status FROM issuance_tag_issuances WHERE application_id = %s ORDER BY created_at",
        application.id,
    )
    return [s for (s,) in found]


def blank(desk: Counter, number: str) -> bool:
    return desk.tag(number).state.system_file == blank_system_file(ObuNumber(number))


# --- the whole issuance and activation -------------------------------------------------------------------


async def test_a_tag_is_issued_for_the_vehicle_of_an_issued_card_then_activated_on_the_car(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    r = await ready(desk)
    read = await card_read(desk, r.application)
    assert (read.card_number, read.application.vehicle.plate) == (r.card, r.vehicle.plate)
    assert read.issuance.status is TagIssuanceStatus.CARD_READ
    tag = await tag_read(desk, r.application, r.tag)
    assert tag.issuance.status is TagIssuanceStatus.TAG_READ and tag.issuance.first_read_number == r.tag

    registered = await register(desk, r.application)

    assert registered.chip.status is ChipStatus.ISSUED and registered.chip.plate == r.vehicle.plate
    assert registered.application.status is ApplicationStatus.TAG_ISSUED
    emulated = desk.tag(r.tag)
    system = ObuSystemFile.from_bytes(emulated.state.system_file)
    assert system.obu_number.value == r.tag and system.issuer == desk.context.issuer.id
    assert system.tamper is TamperStatus.REMOVED
    card_expiry = CardIssueFile.from_bytes(desk.card(r.card).state.issue_file).expiry_date
    assert system.expiry_date == card_expiry == registered.chip.expires_on
    vehicle_file = await obu_host.read_vehicle(
        desk.desk[1], desk.context.keys, obu_host.obu_identity(desk.context.issuer.id, system.obu_number)
    )
    assert vehicle_file is not None
    assert (vehicle_file.plate, vehicle_file.plate_colour, vehicle_file.vin) == (
        r.vehicle.plate,
        r.vehicle.plate_colour,
        r.vehicle.vin,
    )

    seen = await check(desk)
    assert seen.agree and seen.tag.obu_number == r.tag and seen.card.card_number == r.card
    await refused(activate(desk, r.tag), "tag_switch_released")  # 请将标签安装在车上并按下防拆按钮
    assert emulated.state.tamper == 0
    emulated.press_switch()
    activated = await activate(desk, r.tag)
    assert activated.chip.status is ChipStatus.ACTIVE and emulated.state.tamper == 1
    again = await activate(desk, r.tag)  # 标签激活操作可多次进行
    assert again.chip.status is ChipStatus.ACTIVE

    history = await rows(
        pool,
        "SELECT to_status, reason FROM issuance_chip_history h JOIN issuance_chips c ON c.id = h.chip_id "
        "WHERE c.number = %s ORDER BY h.id",
        r.tag,
    )
    assert history == [
        ("in_stock", "stock_add"),
        ("issued", "tag_issued"),
        ("active", "tag_activated"),
        ("active", "tag_activated"),
    ]
    events = await rows(pool, "SELECT type FROM event_outbox WHERE key = %s ORDER BY id", r.tag)
    assert events == [("issuance.tag_issued",), ("issuance.tag_activated",), ("issuance.tag_activated",)]
    actions = await rows(
        pool,
        "SELECT action, outcome FROM audit_log WHERE action LIKE 'issuance.tag.%%' "
        "AND detail->>'application_id' = %s ORDER BY seq",
        str(r.application.id),
    )
    assert [a for a, _ in actions] == ["issuance.tag.card_read", "issuance.tag.read", "issuance.tag.register"]
    refusals = await rows(
        pool,
        "SELECT detail->>'reason' FROM audit_log WHERE action = 'issuance.tag.activate' AND outcome = 'refused' "
        "AND target_id = %s",
        r.tag,
    )
    assert refusals == [("tag_switch_released",)]


async def test_registering_again_answers_the_tag_registered_and_writes_nothing(desk: Counter) -> None:
    r = await issue_tag(desk)
    desk.tag(r.tag).damage()  # a second write would fail: none is made
    again = await register(desk, r.application)
    assert again.chip.status is ChipStatus.ISSUED and again.issuance.status is TagIssuanceStatus.REGISTERED


# --- the seed's rules ------------------------------------------------------------------------------------


async def test_no_tag_before_the_card_is_issued(desk: Counter, pool: AsyncConnectionPool) -> None:
    application = await desk.apply()  # 标签办理前请确认已办理成功陇通卡
    error = await refused(card_read(desk, application), "tag_card_not_issued")
    assert "陇通卡" in error.zh and error.status == 409
    assert await issuance_status(pool, application) == []


async def test_the_card_in_the_slot_must_be_the_applications_card(desk: Counter) -> None:
    r = await ready(desk)
    _other_application, other_card = await desk.issue_card()
    desk.insert_card(other_card)
    error = await refused(card_read(desk, r.application), "tag_card_mismatch")
    assert "卡号" in error.zh
    desk.desk[0].remove()
    await refused(card_read(desk, r.application), "no_card_in_reader")


async def test_registration_is_refused_before_a_successful_card_read(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    r = await ready(desk)
    error = await refused(register(desk, r.application), "tag_card_not_read")  # 读卡成功之前不显示注册按钮
    assert "读卡成功之前不显示注册按钮" in error.zh
    await refused(tag_read(desk, r.application, r.tag), "tag_card_not_read")
    await card_read(desk, r.application)
    await refused(register(desk, r.application), "tag_not_read")
    assert blank(desk, r.tag)
    assert await tag_row(pool, r.tag) == ("in_stock", None)


async def test_the_sn_is_typed_twice_and_must_be_the_tag_in_the_field(desk: Counter) -> None:
    r = await ready(desk)
    await card_read(desk, r.application)
    wrong = r.tag[:-1] + ("1" if r.tag[-1] != "1" else "2")
    error = await refused(tag_read(desk, r.application, r.tag, wrong), "tag_sn_mismatch")
    assert error.field == "sn_confirm" and error.status == 422
    await refused(tag_read(desk, r.application, "12345"), "tag_sn_format")
    error = await refused(tag_read(desk, r.application, wrong), "tag_sn_not_in_field")
    assert wrong in error.zh and r.tag in error.zh
    await refused(register(desk, r.application), "tag_not_read")
    assert blank(desk, r.tag)


async def test_a_tag_of_another_outlet_is_refused(
    desk: Counter, pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    r = await ready(desk)
    other = await counter(pool, keys, ledger, settings, tmp_path)  # another outlet, the same drawer
    (theirs,) = await other.stock(ChipKind.TAG)
    await card_read(desk, r.application)
    desk.desk[1].insert(theirs)
    await refused(tag_read(desk, r.application, theirs), "tag_not_in_outlet_stock")
    assert await tag_row(pool, theirs) == ("in_stock", None)


async def test_a_second_tag_in_the_field_is_refused_at_register_and_nothing_is_written(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    r = await ready(desk)
    (stranger,) = await desk.stock(ChipKind.TAG)
    await card_read(desk, r.application)
    await tag_read(desk, r.application, r.tag)
    desk.desk[1].enter(stranger)  # 将办理标签远离其他标签: another tag came nearer the antenna
    error = await refused(register(desk, r.application), "tag_changed")
    assert stranger in error.zh and stranger in error.en
    assert blank(desk, r.tag) and blank(desk, stranger)
    assert await issuance_status(pool, r.application) == ["tag_read"]
    desk.desk[1].take_out(desk.tag(stranger))
    registered = await register(desk, r.application)
    assert registered.chip.number == r.tag


async def test_one_vehicle_holds_one_live_tag(desk: Counter, pool: AsyncConnectionPool) -> None:
    r = await issue_tag(desk)
    (second,) = await desk.stock(ChipKind.TAG)
    desk.desk[1].insert(second)
    await card_read(desk, r.application)
    await refused(tag_read(desk, r.application, second), "vehicle_has_live_tag")
    assert blank(desk, second) and await tag_row(pool, second) == ("in_stock", None)


async def test_a_damaged_tag_is_a_failure_recorded_and_another_tag_is_issued(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    r = await ready(desk)
    desk.tag(r.tag).damage()
    await card_read(desk, r.application)
    await tag_read(desk, r.application, r.tag)
    error = await refused(register(desk, r.application), "tag_damaged")
    assert "损坏" in error.zh
    assert await tag_row(pool, r.tag) == ("damaged", None)
    assert await issuance_status(pool, r.application) == ["failed"]
    failed = await rows(
        pool, "SELECT outcome FROM audit_log WHERE action = 'issuance.tag.failed' AND target_id = %s", r.tag
    )
    assert failed == [("failure",)]
    await refused(tag_read(desk, r.application, r.tag), "tag_not_in_stock")
    (another,) = await desk.stock(ChipKind.TAG)
    desk.desk[1].insert(another)
    await card_read(desk, r.application)
    await tag_read(desk, r.application, another)
    assert (await register(desk, r.application)).chip.number == another


# --- tears and a process that dies ------------------------------------------------------------------------


@pytest.mark.parametrize("write", [1, 2], ids=["system file", "vehicle file"])
@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not applied"])
async def test_a_tear_during_a_write_leaves_it_to_be_finished_by_registering_again(
    desk: Counter, pool: AsyncConnectionPool, write: int, applied: bool
) -> None:
    r = await ready(desk)
    await card_read(desk, r.application)
    await tag_read(desk, r.application, r.tag)
    emulated = desk.tag(r.tag)
    # register: SELECT MF + READ (the check), then issue: SELECT MF + READ (confirm), GET CHALLENGE,
    # UPDATE system file (6th), SELECT DF01, GET CHALLENGE, UPDATE vehicle file (9th): tear on that UPDATE.
    emulated.tear_after(6 if write == 1 else 9, applied=applied)
    await refused(register(desk, r.application), "tag_removed")
    system_written = emulated.state.system_file != blank_system_file(ObuNumber(r.tag))
    vehicle_written = any(emulated.state.vehicle_file)
    assert (system_written, vehicle_written) == ((applied, False) if write == 1 else (True, applied))
    assert await tag_row(pool, r.tag) == ("in_stock", None)
    assert await issuance_status(pool, r.application) == ["writing"]
    ((content,),) = await rows(
        pool, "SELECT system_content FROM issuance_tag_issuances WHERE application_id = %s", r.application.id
    )
    desk.desk[1].insert(r.tag)
    registered = await register(desk, r.application)
    assert registered.chip.status is ChipStatus.ISSUED and emulated.state.system_file == bytes(content)
    assert await issuance_status(pool, r.application) == ["registered"]
    events = await rows(pool, "SELECT count(*) FROM event_outbox WHERE key = %s", r.tag)
    assert events == [(1,)]


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not applied"])
async def test_a_tear_during_activation_is_finished_by_activating_again(
    desk: Counter, pool: AsyncConnectionPool, applied: bool
) -> None:
    r = await issue_tag(desk)
    emulated = desk.tag(r.tag)
    emulated.press_switch()
    emulated.tear_on(UPDATE_BINARY, applied=applied)
    await refused(activate(desk, r.tag), "tag_removed")
    assert emulated.state.tamper == (1 if applied else 0)
    assert await tag_row(pool, r.tag) == ("issued", r.vehicle.plate)
    desk.desk[1].insert(r.tag)
    activated = await activate(desk, r.tag)
    assert activated.chip.status is ChipStatus.ACTIVE and emulated.state.tamper == 1
    events = await rows(
        pool, "SELECT count(*) FROM event_outbox WHERE key = %s AND type = 'issuance.tag_activated'", r.tag
    )
    assert events == [(1,)]


async def test_a_process_dying_after_the_write_is_finished_by_registering_again(
    desk: Counter, pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = await ready(desk)
    await card_read(desk, r.application)
    await tag_read(desk, r.application, r.tag)
    real = tags._record_registered
    calls = {"n": 0}

    async def dies_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit("killed between the tag and the record")
        return await real(*args, **kwargs)

    monkeypatch.setattr(tags, "_record_registered", dies_once)
    with pytest.raises(SystemExit):
        await register(desk, r.application)
    assert not blank(desk, r.tag)  # the tag holds the issuance, the platform does not know yet
    assert await tag_row(pool, r.tag) == ("in_stock", None)
    registered = await register(desk, r.application)
    assert registered.chip.status is ChipStatus.ISSUED
    issued = await rows(
        pool,
        "SELECT count(*) FROM issuance_chips WHERE kind = 'tag' AND application_id = %s",
        r.application.id,
    )
    assert issued == [(1,)]
    assert await rows(pool, "SELECT count(*) FROM event_outbox WHERE key = %s", r.tag) == [(1,)]


# --- activation refusals -----------------------------------------------------------------------------------


async def test_a_tag_of_another_vehicle_is_refused_naming_what_differs(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    first = await issue_tag(desk)
    second = await issue_tag(desk)
    desk.insert_card(first.card)  # the first vehicle's card, the second vehicle's tag
    desk.desk[1].insert(second.tag)
    desk.tag(second.tag).press_switch()
    seen = await check(desk)
    assert not seen.agree and seen.differs == ("plate",)
    error = await refused(activate(desk, second.tag), "tag_card_differ")
    assert error.field == "plate" and "车牌号" in error.zh
    assert desk.tag(second.tag).state.tamper == 0
    assert await tag_row(pool, second.tag) == ("issued", second.vehicle.plate)


async def test_a_tag_no_longer_the_vehicles_live_tag_is_refused(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    r = await issue_tag(desk)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE issuance_chips SET status = 'deregistered' WHERE kind = 'tag' AND number = %s", (r.tag,)
        )
    desk.tag(r.tag).press_switch()
    error = await refused(activate(desk, r.tag), "tag_not_vehicle_live_tag")
    assert r.vehicle.plate in error.zh
    assert desk.tag(r.tag).state.tamper == 0


async def test_a_blank_tag_or_card_cannot_be_activated(desk: Counter) -> None:
    r = await ready(desk)
    desk.tag(r.tag).press_switch()
    await refused(activate(desk), "tag_not_issued")
    (blank_card,) = await desk.stock(ChipKind.CARD)
    desk.insert_card(blank_card)
    await refused(check(desk), "card_not_issued")


async def test_the_switch_released_after_activation_marks_the_tag_removed(desk: Counter) -> None:
    r = await issue_tag(desk)
    emulated: ObuEmulator = desk.tag(r.tag)
    emulated.press_switch()
    await activate(desk, r.tag)
    emulated.release_switch()
    assert emulated.state.switch is TamperSwitch.RELEASED and emulated.state.tamper == 0
    assert not (await check(desk)).tag.tamper
    await refused(activate(desk, r.tag), "tag_switch_released")
