"""User card issuance (用户卡办理) through the service, against emulated cards: the whole issuance, the seed's
rules, refusals that write nothing, tears during each write and a process that dies before recording."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime
from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.core.errors import DomainError
from etcwallet.issuance import cards
from etcwallet.issuance.chip.files import CardholderFile, CardIssueFile
from etcwallet.issuance.codes import CardType, PlateColour, VehicleClass
from etcwallet.issuance.errors import IssuanceError
from etcwallet.issuance.types import ApplicationStatus, CardIssuanceStatus, ChipKind, ChipStatus
from etcwallet.ledger.chart import AccountPurpose, owned_account_id
from etcwallet.ledger.service import Ledger
from tests.issuance.builders import Counter, car, counter, mistyped

UPDATE_BINARY = 0xD6


@pytest.fixture
async def desk(
    pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path
) -> Counter:
    return await counter(pool, keys, ledger, settings, tmp_path)


@pytest.fixture
async def bank_desk(
    pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path
) -> Counter:
    return await counter(pool, keys, ledger, settings, tmp_path, bank=True)


async def refused(call: Any, code: str) -> DomainError:
    with pytest.raises(DomainError) as caught:
        await call
    assert caught.value.code == code, caught.value
    return caught.value


async def rows(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return [tuple(row) for row in await cur.fetchall()]


async def chip_status(pool: AsyncConnectionPool, number: str) -> tuple[str, int]:
    ((status, failures),) = await rows(
        pool, "SELECT status, failures FROM issuance_chips WHERE kind = 'card' AND number = %s", number
    )
    return status, failures


# --- the whole issuance ------------------------------------------------------------------------------------


async def test_a_stored_value_card_is_written_recorded_and_given_a_purse_of_its_own(
    desk: Counter, pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    vehicle = car()
    (number,) = await desk.stock(ChipKind.CARD)
    application = await desk.apply(vehicle)
    desk.insert_card(number)
    read = await desk.read(application)
    assert (read.card_number, read.card_type, read.balance) == (number, CardType.STORED_VALUE, 0)
    assert read.issuance.status is CardIssuanceStatus.READ

    registered = await desk.register(application, number)

    card = desk.card(number)
    issue = CardIssueFile.from_bytes(card.state.issue_file)
    assert (issue.plate, issue.plate_colour, issue.vehicle_class) == (
        vehicle.plate,
        PlateColour.BLUE,
        VehicleClass.PASSENGER_1,
    )
    assert issue.expiry_date.year - issue.start_date.year == desk.context.issuer.validity_years
    holder = CardholderFile.from_bytes(card.state.holder_file)
    assert (holder.name, holder.id_number, holder.id_type) == (desk.customer_name, desk.customer_id_number, 0)
    assert registered.chip.status is ChipStatus.ISSUED and registered.chip.plate == vehicle.plate
    assert registered.chip.expires_on == issue.expiry_date
    assert registered.application.status is ApplicationStatus.CARD_ISSUED
    expected_account = owned_account_id(
        owner=f"customer:{desk.customer_id}",
        purpose=AccountPurpose.CARD_PURSE,
        currency="CNY",
        instance=number,
    )
    assert registered.account_id == expected_account
    purse = await ledger.get_account(expected_account)
    assert purse is not None and purse.metadata == {"purpose": "card_purse", "instance": number}
    history = await rows(
        pool,
        "SELECT to_status, reason FROM issuance_chip_history h JOIN issuance_chips c ON c.id = h.chip_id WHERE c.number = %s ORDER BY h.id",
        number,
    )
    assert history == [("in_stock", "stock_add"), ("issued", "card_issued")]
    events = await rows(pool, "SELECT type, payload->>'card_number' FROM event_outbox WHERE key = %s", number)
    assert events == [("issuance.card_issued", number)]
    audit = await rows(
        pool, "SELECT action FROM audit_log WHERE detail->>'card_number' = %s ORDER BY seq", number
    )
    assert [a for (a,) in audit] == ["issuance.card.read", "issuance.card.register"]


async def test_registering_again_answers_the_card_registered_and_writes_nothing(
    desk: Counter, ledger: Ledger
) -> None:
    (number,) = await desk.stock(ChipKind.CARD)
    application = await desk.apply()
    desk.insert_card(number)
    await desk.read(application)
    first = await desk.register(application, number)
    desk.card(number).damage()  # a second write would fail: none is made
    again = await desk.register(application, number)
    assert (again.chip.id, again.account_id, again.issuance.id) == (
        first.chip.id,
        first.account_id,
        first.issuance.id,
    )


async def test_an_account_card_at_a_bank_outlet_binds_the_bank_card_and_opens_a_receivable(
    bank_desk: Counter, ledger: Ledger
) -> None:
    (number,) = await bank_desk.stock(ChipKind.CARD, card_type=CardType.ACCOUNT)
    application = await bank_desk.apply(card_type=CardType.ACCOUNT)
    assert application.bank_card_id is not None
    bank_desk.insert_card(number)
    await bank_desk.read(application)
    assert bank_desk.bank_card is not None
    await refused(
        bank_desk.register(
            application, number, bank_card=(bank_desk.bank_card, mistyped(bank_desk.bank_card))
        ),
        "card_number_mismatch",
    )
    await refused(bank_desk.register(application, number, bank_card=None), "bank_card_required")
    registered = await bank_desk.register(application, number)
    account = await ledger.get_account(registered.account_id)
    assert account is not None and account.code == "account_card" and account.credits_must_not_exceed_debits


# --- refusals that write nothing -----------------------------------------------------------------------------


async def test_no_card_in_the_slot_or_a_card_not_of_the_outlets_stock_is_refused(
    desk: Counter, pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path
) -> None:
    application = await desk.apply()
    await refused(desk.read(application), "no_card_in_reader")
    other = await counter(pool, keys, ledger, settings, tmp_path)  # another outlet, the same drawer
    (theirs,) = await other.stock(ChipKind.CARD)
    desk.insert_card(theirs)
    await refused(desk.read(application), "card_not_in_outlet_stock")
    assert await chip_status(pool, theirs) == ("in_stock", 0)


async def test_a_card_of_the_other_type_is_refused_naming_both(desk: Counter) -> None:
    (number,) = await desk.stock(ChipKind.CARD, card_type=CardType.ACCOUNT)
    application = await desk.apply(card_type=CardType.STORED_VALUE)
    desk.insert_card(number)
    error = await refused(desk.read(application), "card_type_mismatch")
    assert "储值卡" in error.zh and "记账卡" in error.zh


async def test_registration_comes_after_a_read_of_that_very_card(desk: Counter) -> None:
    first, second = await desk.stock(ChipKind.CARD, count=2)
    application = await desk.apply()
    desk.insert_card(first)
    await refused(desk.register(application, first), "card_not_read")
    await desk.read(application)
    desk.insert_card(second)  # swapped after the read
    await refused(desk.register(application, first), "card_changed")
    assert desk.card(first).state.issue_file[20:] == bytes(30)


async def test_one_vehicle_holds_one_live_card(desk: Counter) -> None:
    vehicle = car()
    await desk.issue_card(vehicle)
    await refused(desk.apply(vehicle), "vehicle_has_live_card")
    other = car()
    await desk.apply(other)
    await refused(desk.apply(other), "application_open_exists")


async def test_an_issued_card_cannot_be_issued_again(desk: Counter) -> None:
    _, number = await desk.issue_card()
    application = await desk.apply()
    desk.insert_card(number)
    await refused(desk.read(application), "card_already_issued")


# --- the seed's retry rules ------------------------------------------------------------------------------


async def test_a_card_is_retried_once_then_another_is_asked_for_and_a_third_failure_marks_it_suspect(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    (number,) = await desk.stock(ChipKind.CARD)
    application = await desk.apply()
    desk.insert_card(number).damage()
    await desk.read(application)
    error = await refused(desk.register(application, number), "card_write_failed")
    assert "重试1次" in error.zh
    await refused(desk.register(application, number), "card_retry_exhausted")  # its one retry, failed
    await refused(desk.read(application), "card_retry_exhausted")
    assert await chip_status(pool, number) == ("in_stock", 2)
    later = await desk.apply()
    await desk.read(later)
    await refused(desk.register(later, number), "card_suspect_damaged")  # its third failure
    assert await chip_status(pool, number) == ("suspect_damaged", 3)
    await refused(desk.read(await desk.apply()), "card_suspect_damaged")
    (failed,) = await rows(
        pool,
        "SELECT count(*) FROM audit_log WHERE action = 'issuance.card.failed' AND detail->>'card_number' = %s",
        number,
    )
    assert failed == (3,)


async def test_a_card_that_fails_once_then_writes_is_issued(desk: Counter) -> None:
    (number,) = await desk.stock(ChipKind.CARD)
    application = await desk.apply()
    card = desk.insert_card(number)
    card.damage()
    await desk.read(application)
    await refused(desk.register(application, number), "card_write_failed")
    card.state.damaged = False  # reseated: the retry writes
    registered = await desk.register(application, number)
    assert registered.issuance.failures == 1 and registered.chip.status is ChipStatus.ISSUED


# --- tears and a process that dies ------------------------------------------------------------------------


@pytest.mark.parametrize("write", [1, 2], ids=["0015", "0016"])
@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not applied"])
async def test_a_tear_during_a_write_leaves_it_to_be_finished_by_registering_again(
    desk: Counter, pool: AsyncConnectionPool, write: int, applied: bool
) -> None:
    (number,) = await desk.stock(ChipKind.CARD)
    application = await desk.apply()
    card = desk.insert_card(number)
    await desk.read(application)
    # The register step sends SELECT, READ x2, GET BALANCE (the re-read), SELECT, then per write
    # GET CHALLENGE + UPDATE BINARY: tear on the chosen UPDATE BINARY.
    card.tear_after(5 + 2 * write, applied=applied)
    await refused(desk.register(application, number), "card_removed")
    assert await chip_status(pool, number) == ("in_stock", 0)
    ((state,),) = await rows(
        pool, "SELECT status FROM issuance_card_issuances WHERE application_id = %s", application.id
    )
    assert state == "writing"
    desk.insert_card(number)
    registered = await desk.register(application, number)
    assert registered.chip.status is ChipStatus.ISSUED and registered.issuance.failures == 0
    assert CardIssueFile.from_bytes(card.state.issue_file).plate == application.vehicle.plate
    purses = await rows(pool, "SELECT count(*) FROM ledger_accounts WHERE metadata->>'instance' = %s", number)
    assert purses == [(1,)]


async def test_a_process_dying_after_the_write_is_finished_by_registering_again(
    desk: Counter, pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    (number,) = await desk.stock(ChipKind.CARD)
    application = await desk.apply()
    desk.insert_card(number)
    await desk.read(application)
    real = cards._record_registered

    async def dies(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("killed between the chip and the record")

    monkeypatch.setattr(cards, "_record_registered", dies)
    with pytest.raises(SystemExit):
        await desk.register(application, number)
    assert desk.card(number).state.issue_file[20:43] != bytes(23)  # the card holds the issuance
    monkeypatch.setattr(cards, "_record_registered", real)
    registered = await desk.register(application, number)
    assert registered.chip.status is ChipStatus.ISSUED
    issued = await rows(pool, "SELECT count(*) FROM issuance_chips WHERE application_id = %s", application.id)
    assert issued == [(1,)]
    events = await rows(pool, "SELECT count(*) FROM event_outbox WHERE key = %s", number)
    assert events == [(1,)]


async def test_a_refused_read_is_audited_and_changes_nothing(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    (number,) = await desk.stock(ChipKind.CARD, card_type=CardType.ACCOUNT)
    application = await desk.apply()
    desk.insert_card(number)
    with pytest.raises(IssuanceError):
        await desk.read(application)
    refusals = await rows(
        pool,
        "SELECT outcome, detail->>'code' FROM audit_log WHERE action = 'issuance.card.read' AND target_id = %s",
        number,
    )
    assert refusals and refusals[-1][0] != "success"
    assert (
        await rows(pool, "SELECT 1 FROM issuance_card_issuances WHERE application_id = %s", application.id)
        == []
    )


async def test_a_customer_holding_a_live_card_cannot_close_their_account(
    desk: Counter, runtime: Runtime
) -> None:
    from etcwallet.issuance.closure import live_cards_check

    _, number = await desk.issue_card()

    async def check(unit: Any) -> Any:
        return await live_cards_check(unit, desk.customer_id)

    refusal = await desk.uow.run(check)
    assert refusal is not None and refusal.code == "issuance_chips_live"
    assert refusal.detail["chips"] == [{"kind": "card", "number": number, "status": "issued"}]
    assert "issuance.live_cards" in runtime.closure_checks.names
