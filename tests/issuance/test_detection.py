"""Card and tag detection (卡签检测) through the service, against emulated cards and tags: each verdict,
card activation and renewal (with tears), tag deregistration freeing the vehicle, card loss then
cancellation, and refusals that write nothing."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.core.errors import DomainError
from etcwallet.issuance import detection
from etcwallet.issuance.chip.files import CardIssueFile
from etcwallet.issuance.codes import CardType
from etcwallet.issuance.detection import CardVerdict, DeregistrationReason, TagVerdict
from etcwallet.issuance.types import ApplicationStatus, ChipKind, ChipStatus
from etcwallet.ledger.service import Ledger
from tests.issuance.builders import Counter, counter, new_chip_number
from tests.issuance.detection_builders import age_card, issue_tag

UPDATE_BINARY = 0xD6


@pytest.fixture
async def desk(
    pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path
) -> Counter:
    return await counter(pool, keys, ledger, settings, tmp_path)


async def refused(call: Any, code: str) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call
    assert caught.value.code == code, caught.value
    return caught.value


async def rows(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return [tuple(row) for row in await cur.fetchall()]


async def chip_row(pool: AsyncConnectionPool, kind: str, number: str) -> tuple[Any, ...]:
    ((row),) = await rows(
        pool, "SELECT status, expires_on FROM issuance_chips WHERE kind = %s AND number = %s", kind, number
    )
    return row


async def detect(desk: Counter) -> detection.CardDetection:
    return await detection.detect_card(
        desk.uow, context=desk.context, operator=desk.operator, actor=desk.actor
    )


async def activate(desk: Counter, number: str) -> detection.CardActivated:
    return await detection.activate_card(
        desk.uow, context=desk.context, operator=desk.operator, card_number=number, actor=desk.actor
    )


async def detect_tag(desk: Counter) -> detection.TagDetection:
    return await detection.detect_tag(
        desk.uow, context=desk.context, operator=desk.operator, actor=desk.actor
    )


# --- card detection --------------------------------------------------------------------------------------


async def test_a_blank_card_from_stock_is_blank_and_offers_no_activation(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    (number,) = await desk.stock(ChipKind.CARD)
    desk.insert_card(number)
    found = await detect(desk)
    assert found.verdict is CardVerdict.BLANK and not found.activation_offered
    assert found.reading is not None and found.reading.issue is None and found.holder is None
    assert found.chip is not None and found.chip.status is ChipStatus.IN_STOCK
    audit = await rows(
        pool,
        "SELECT detail->>'verdict' FROM audit_log WHERE action = 'issuance.card.detect' "
        "AND detail->>'card_number' = %s",
        number,
    )
    assert audit == [("blank",)]


async def test_an_issued_card_shows_its_files_masked_and_offers_activation(desk: Counter) -> None:
    application, _number = await desk.issue_card()
    found = await detect(desk)
    assert found.verdict is CardVerdict.ISSUED and found.activation_offered and not found.expired
    assert found.reading is not None and found.reading.issue is not None
    assert found.reading.issue.plate == application.vehicle.plate and found.reading.balance == 0
    assert found.holder is not None
    assert found.holder.name == desk.customer_name[0] + "**" and desk.customer_name not in found.holder.name
    assert found.holder.id_number != desk.customer_id_number and found.holder.id_number.endswith(
        desk.customer_id_number[-4:]
    )
    assert found.records == [] and found.records_supported  # a new card's log is empty (6A83)
    assert found.chip is not None and found.chip.customer_id == desk.customer_id
    assert found.chip.outlet_id == desk.outlet.id and found.differences == []


async def test_no_card_in_the_slot_is_refused_and_audited(desk: Counter, pool: AsyncConnectionPool) -> None:
    await refused(detect(desk), "no_card_in_reader")
    audit = await rows(
        pool,
        "SELECT outcome FROM audit_log WHERE action = 'issuance.card.detect' AND actor_id = %s",
        str(desk.operator.staff_id),
    )
    assert audit == [("refused",)]


async def test_any_operator_may_detect_a_card_issued_elsewhere(
    desk: Counter, pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    _application, number = await desk.issue_card()
    other = await counter(pool, keys, ledger, settings, tmp_path)  # same drawer, another outlet
    other.insert_card(number)
    found = await detect(other)
    assert found.verdict is CardVerdict.ISSUED and found.chip is not None
    assert found.chip.outlet_id == desk.outlet.id


async def test_a_card_differing_from_the_platform_is_mismatched_and_not_activated(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    application, number = await desk.issue_card()
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE issuance_applications SET vehicle_class = 2 WHERE id = %s", (application.id,)
        )
    found = await detect(desk)
    assert found.verdict is CardVerdict.MISMATCHED and found.differences == ["vehicle_class"]
    assert not found.activation_offered
    before = desk.card(number).state.issue_file
    await refused(activate(desk, number), "card_mismatch")
    assert desk.card(number).state.issue_file == before
    assert (await chip_row(pool, "card", number))[0] == "issued"
    assert (
        await rows(
            pool,
            "SELECT 1 FROM issuance_card_activations a JOIN issuance_chips c "
            "ON c.id = a.chip_id WHERE c.number = %s",
            number,
        )
        == []
    )


async def test_a_platform_row_for_another_plate_is_mismatched(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    _application, number = await desk.issue_card()
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE issuance_chips SET plate = '甘Z99999' WHERE kind = 'card' AND number = %s", (number,)
        )
    found = await detect(desk)
    assert found.verdict is CardVerdict.MISMATCHED and found.differences == ["plate"]


# --- activation and renewal --------------------------------------------------------------------------------


async def test_activation_writes_the_dates_and_records_the_card_active(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    _application, number = await desk.issue_card()
    card = desk.card(number)
    before = card.state.issue_file
    done = await activate(desk, number)
    today = date.today()
    issue = CardIssueFile.from_bytes(card.state.issue_file)
    assert issue.start_date == today and issue.expiry_date == desk.context.issuer.expiry_from(today)
    assert card.state.issue_file[:20] == before[:20] and card.state.issue_file[28:] == before[28:]
    assert done.chip.status is ChipStatus.ACTIVE and done.chip.expires_on == issue.expiry_date
    assert not done.activation.renewal
    assert await chip_row(pool, "card", number) == ("active", issue.expiry_date)
    events = await rows(pool, "SELECT type FROM event_outbox WHERE key = %s ORDER BY id", number)
    assert events[-1] == ("issuance.card_activated",)
    history = await rows(
        pool,
        "SELECT reason FROM issuance_chip_history h JOIN issuance_chips c ON c.id = h.chip_id "
        "WHERE c.number = %s ORDER BY h.id",
        number,
    )
    assert history[-1] == ("card_activated",)
    found = await detect(desk)
    assert found.verdict is CardVerdict.ACTIVE and not found.activation_offered
    # active and not expired: nothing to activate, nothing written
    written = card.state.issue_file
    await refused(activate(desk, number), "card_already_active")
    assert card.state.issue_file == written
    assert [e for e in await rows(pool, "SELECT type FROM event_outbox WHERE key = %s", number)].count(
        ("issuance.card_activated",)
    ) == 1


async def test_an_expired_card_is_renewed_through_detection(desk: Counter, pool: AsyncConnectionPool) -> None:
    _application, number = await desk.issue_card()
    await activate(desk, number)
    age_card(desk, number, start=date(2010, 5, 1), expiry=date(2020, 5, 1))
    found = await detect(desk)
    assert found.verdict is CardVerdict.EXPIRED and found.expired and found.activation_offered
    renewed = await activate(desk, number)
    assert renewed.activation.renewal and renewed.chip.status is ChipStatus.ACTIVE
    issue = CardIssueFile.from_bytes(desk.card(number).state.issue_file)
    assert issue.start_date == date.today() and issue.expiry_date > date.today()
    assert (await detect(desk)).verdict is CardVerdict.ACTIVE
    history = await rows(
        pool,
        "SELECT reason FROM issuance_chip_history h JOIN issuance_chips c ON c.id = h.chip_id "
        "WHERE c.number = %s ORDER BY h.id",
        number,
    )
    assert [r for (r,) in history][-2:] == ["card_activated", "card_renewed"]


async def test_an_issued_card_past_its_expiry_is_expired(desk: Counter) -> None:
    _application, number = await desk.issue_card()
    today = date.today()
    age_card(desk, number, start=today - timedelta(days=3660), expiry=today - timedelta(days=1))
    assert (await detect(desk)).verdict is CardVerdict.EXPIRED


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not applied"])
async def test_a_tear_during_activation_is_finished_by_activating_again(
    desk: Counter, pool: AsyncConnectionPool, applied: bool
) -> None:
    _application, number = await desk.issue_card()
    card = desk.card(number)
    age_card(desk, number, start=date(2016, 3, 1), expiry=date(2026, 3, 1))  # dates the write must replace
    card.tear_on(UPDATE_BINARY, applied=applied)
    await refused(activate(desk, number), "card_removed")
    assert (await chip_row(pool, "card", number))[0] == "issued"
    pending = await rows(
        pool,
        "SELECT a.status, a.start_date FROM issuance_card_activations a JOIN issuance_chips c "
        "ON c.id = a.chip_id WHERE c.number = %s",
        number,
    )
    assert [p[0] for p in pending] == ["writing"]
    on_card = CardIssueFile.from_bytes(card.state.issue_file).start_date
    assert on_card == (pending[0][1] if applied else date(2016, 3, 1))
    desk.insert_card(number)
    done = await activate(desk, number)
    assert done.chip.status is ChipStatus.ACTIVE and done.activation.start_date == pending[0][1]
    assert CardIssueFile.from_bytes(card.state.issue_file).start_date == pending[0][1]
    states = await rows(
        pool,
        "SELECT a.status FROM issuance_card_activations a JOIN issuance_chips c ON c.id = a.chip_id "
        "WHERE c.number = %s",
        number,
    )
    assert states == [("done",)]
    events = await rows(
        pool, "SELECT count(*) FROM event_outbox WHERE key = %s AND type = 'issuance.card_activated'", number
    )
    assert events == [(1,)]


async def test_a_blank_card_or_another_card_is_not_activated(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    (blank,) = await desk.stock(ChipKind.CARD)
    desk.insert_card(blank)
    await refused(activate(desk, blank), "card_blank")
    _application, number = await desk.issue_card()
    await refused(activate(desk, blank), "card_changed")
    assert (await chip_row(pool, "card", number))[0] == "issued"
    audit = await rows(
        pool,
        "SELECT detail->>'reason' FROM audit_log WHERE action = 'issuance.card.activate' AND outcome = 'refused' "
        "AND detail->>'card_number' = %s ORDER BY seq",
        blank,
    )
    assert audit == [("card_blank",), ("card_changed",)]


# --- loss and cancellation -----------------------------------------------------------------------------------


async def test_loss_then_cancellation_feed_the_status_list(desk: Counter, pool: AsyncConnectionPool) -> None:
    _application, number = await desk.issue_card()
    lost = await detection.report_card_lost(
        desk.uow, operator=desk.operator, card_number=number, reason="客户遗失", actor=desk.actor
    )
    assert lost.status is ChipStatus.LOST
    found = await detect(desk)
    assert found.verdict is CardVerdict.LISTED and not found.activation_offered
    await refused(activate(desk, number), "card_not_activatable")
    await refused(
        detection.report_card_lost(
            desk.uow, operator=desk.operator, card_number=number, reason="again", actor=desk.actor
        ),
        "card_not_live",
    )
    cancelled = await detection.cancel_card(
        desk.uow,
        ledger=desk.ledger,
        operator=desk.operator,
        card_number=number,
        reason="客户申请",
        actor=desk.actor,
    )
    assert cancelled.chip.status is ChipStatus.CANCELLED and cancelled.balance == 0
    assert cancelled.account_id == detection.card_account_id(cancelled.chip)
    events = await rows(
        pool,
        "SELECT type, (payload->>'list_reason')::int FROM event_outbox WHERE key = %s ORDER BY id",
        number,
    )
    assert events[-2:] == [("issuance.card_reported_lost", 1), ("issuance.card_cancelled", 3)]
    await refused(
        detection.cancel_card(
            desk.uow,
            ledger=desk.ledger,
            operator=desk.operator,
            card_number=number,
            reason="x",
            actor=desk.actor,
        ),
        "card_not_cancellable",
    )
    audit = await rows(
        pool,
        "SELECT action, outcome FROM audit_log WHERE detail->>'card_number' = %s "
        "AND action IN ('issuance.card.report_lost', 'issuance.card.cancel') ORDER BY seq",
        number,
    )
    assert audit == [
        ("issuance.card.report_lost", "success"),
        ("issuance.card.report_lost", "refused"),
        ("issuance.card.cancel", "success"),
        ("issuance.card.cancel", "refused"),
    ]
    assert (await chip_row(pool, "card", number))[0] == "cancelled"


async def test_a_card_in_stock_is_neither_lost_nor_cancelled(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    (number,) = await desk.stock(ChipKind.CARD)
    await refused(
        detection.report_card_lost(
            desk.uow, operator=desk.operator, card_number=number, reason="r", actor=desk.actor
        ),
        "card_not_live",
    )
    await refused(
        detection.cancel_card(
            desk.uow,
            ledger=desk.ledger,
            operator=desk.operator,
            card_number=number,
            reason="r",
            actor=desk.actor,
        ),
        "card_not_cancellable",
    )
    assert (await chip_row(pool, "card", number))[0] == "in_stock"
    assert await rows(pool, "SELECT 1 FROM event_outbox WHERE key = %s", number) == []


async def test_a_live_card_may_be_cancelled_without_a_loss_report(desk: Counter) -> None:
    _application, number = await desk.issue_card()
    cancelled = await detection.cancel_card(
        desk.uow, ledger=desk.ledger, operator=desk.operator, card_number=number, reason="r", actor=desk.actor
    )
    assert cancelled.chip.status is ChipStatus.CANCELLED


# --- tags ---------------------------------------------------------------------------------------------------


async def test_tag_verdicts_blank_issued_active_removed(desk: Counter) -> None:
    (blank,) = await desk.stock(ChipKind.TAG)
    _card, field = desk.desk
    field.insert(blank)
    assert (await detect_tag(desk)).verdict is TagVerdict.BLANK
    application, _number = await desk.issue_card()
    issued = await issue_tag(desk, application)
    found = await detect_tag(desk)
    assert found.verdict is TagVerdict.ISSUED and found.obu_number == issued
    assert found.vehicle is not None and found.vehicle.plate == application.vehicle.plate

    other, _card_number = await desk.issue_card()
    active = await issue_tag(desk, other, activate=True)
    found = await detect_tag(desk)
    assert found.verdict is TagVerdict.ACTIVE and found.obu_number == active
    desk.tag(active).release_switch()  # taken off the windscreen
    assert (await detect_tag(desk)).verdict is TagVerdict.REMOVED


async def test_a_tag_differing_from_the_platform_is_mismatched(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    application, _number = await desk.issue_card()
    await issue_tag(desk, application)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE issuance_applications SET vehicle_class = 3 WHERE id = %s", (application.id,)
        )
    found = await detect_tag(desk)
    assert found.verdict is TagVerdict.MISMATCHED and found.differences == ["vehicle_class"]


async def test_no_tag_in_the_field_is_refused(desk: Counter) -> None:
    await refused(detect_tag(desk), "no_tag_in_field")


async def test_deregistration_frees_the_vehicle_for_a_new_tag(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    application, _number = await desk.issue_card()
    tag = await issue_tag(desk, application, activate=True)
    chip = await detection.deregister_tag(
        desk.uow,
        operator=desk.operator,
        obu_number=tag,
        reason=DeregistrationReason.INFO_ERROR,
        note="车牌写错",
        actor=desk.actor,
    )
    assert chip.status is ChipStatus.DEREGISTERED
    ((status,),) = await rows(pool, "SELECT status FROM issuance_applications WHERE id = %s", application.id)
    assert status == ApplicationStatus.CARD_ISSUED.value
    assert (await detect_tag(desk)).verdict is TagVerdict.DEREGISTERED
    events = await rows(pool, "SELECT type, payload->>'reason' FROM event_outbox WHERE key = %s", tag)
    assert events == [("issuance.tag_deregistered", "info_error")]
    audit = await rows(
        pool,
        "SELECT detail->>'reason' FROM audit_log WHERE action = 'issuance.tag.deregister' AND target_id = %s",
        str(chip.id),
    )
    assert audit == [("info_error",)]
    # a second deregistration writes nothing
    await refused(
        detection.deregister_tag(
            desk.uow,
            operator=desk.operator,
            obu_number=tag,
            reason=DeregistrationReason.OTHER,
            note=None,
            actor=desk.actor,
        ),
        "tag_not_live",
    )
    assert len(await rows(pool, "SELECT 1 FROM event_outbox WHERE key = %s", tag)) == 1
    # the vehicle's tag slot is free: a new tag is recorded live for it (the live-tag index allows it)
    second = await issue_tag(desk, application)
    assert (await chip_row(pool, "tag", second))[0] == "issued"


async def test_a_tag_in_stock_is_not_deregistered(desk: Counter, pool: AsyncConnectionPool) -> None:
    (tag,) = await desk.stock(ChipKind.TAG)
    await refused(
        detection.deregister_tag(
            desk.uow,
            operator=desk.operator,
            obu_number=tag,
            reason=DeregistrationReason.OTHER,
            note=None,
            actor=desk.actor,
        ),
        "tag_not_live",
    )
    assert (await chip_row(pool, "tag", tag))[0] == "in_stock"
    await refused(
        detection.deregister_tag(
            desk.uow,
            operator=desk.operator,
            obu_number="6201999999990000",
            reason=DeregistrationReason.OTHER,
            note=None,
            actor=desk.actor,
        ),
        "chip_not_found",
    )


async def test_a_card_or_tag_the_platform_never_stocked_is_not_ours(desk: Counter) -> None:
    card_number, tag_number = new_chip_number(ChipKind.CARD), new_chip_number(ChipKind.TAG)
    factory = desk.context.factory
    assert factory is not None
    factory.make_blanks("card", [card_number], card_type=CardType.STORED_VALUE)
    factory.make_blanks("tag", [tag_number])
    desk.insert_card(card_number)
    found = await detect(desk)
    assert found.verdict is CardVerdict.NOT_OURS and found.chip is None and not found.activation_offered
    await refused(activate(desk, card_number), "card_blank")
    _card, field = desk.desk
    field.insert(tag_number)
    assert (await detect_tag(desk)).verdict is TagVerdict.NOT_OURS
