"""Unit tests of the ledger service (:class:`etcwallet.ledger.service.Ledger`) against real PostgreSQL.

Every test opens its own accounts with random ids, so tests never see each other's money. The ``ledger``
fixture is the shared, started service (its writers gather concurrent calls into batches); tests that need
to move time use a second ``Ledger`` on the same pool with a :class:`FakeClock` and no writers, so each call
is applied directly in its own transaction.

The builders (``FakeClock``, ``open_account``, ``move``, ``hold``, ``post``, ``void``) live in
``tests/ledger/builders.py``, the fixtures in ``conftest.py``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.errors import DomainError
from etcwallet.ledger.engine import apply_transfers
from etcwallet.ledger.errors import LedgerError
from etcwallet.ledger.service import HISTORY_BLOCK_SHIFT, MAX_BATCH, AccountSpec, Ledger, utcnow, wallet_spec
from etcwallet.ledger.types import Account, PendingState, Transfer, TransferKind, TransferRequest
from tests.ledger.builders import (
    FakeClock,
    hold,
    move,
    open_account,
    pending_row,
    post,
    refused,
    rows_for_pending,
    totals,
    void,
)

# --- accounts ------------------------------------------------------------------------------------


async def test_create_account_is_idempotent(ledger: Ledger) -> None:
    spec = AccountSpec(uuid4(), "CNY", "customer_wallet", "owner-1", True, False, {"name": "钱包"})
    first = await ledger.create_account(spec)
    again = await ledger.create_account(spec)
    assert again == first
    assert first.created_at == again.created_at
    assert first.debits_must_not_exceed_credits and not first.credits_must_not_exceed_debits
    assert totals(first) == (0, 0, 0, 0) and not first.frozen
    assert first.metadata == {"name": "钱包"}
    assert await ledger.get_account_or_raise(spec.id) == first


@pytest.mark.parametrize(
    "change",
    [
        {"currency": "USD"},
        {"code": "card_purse"},
        {"owner": "owner-2"},
        {"debits_must_not_exceed_credits": False},
        {"credits_must_not_exceed_debits": True, "debits_must_not_exceed_credits": False},
        {"metadata": {"name": "other"}},
    ],
)
async def test_create_account_with_other_fields_conflicts(ledger: Ledger, change: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "id": uuid4(),
        "currency": "CNY",
        "code": "customer_wallet",
        "owner": "owner-1",
        "debits_must_not_exceed_credits": True,
        "metadata": {"name": "wallet"},
    }
    original = await ledger.create_account(AccountSpec(**fields))
    err = await refused(ledger.create_account(AccountSpec(**(fields | change))), "account_id_conflict")
    assert err.status == 409
    assert await ledger.get_account_or_raise(original.id) == original


async def test_account_cannot_carry_both_limits(ledger: Ledger) -> None:
    spec = AccountSpec(uuid4(), "CNY", "general", "x", True, True)
    await refused(ledger.create_account(spec), "account_id_conflict")
    await refused(ledger.get_account_or_raise(spec.id), "account_not_found")


async def test_unknown_account(ledger: Ledger) -> None:
    err = await refused(ledger.get_account_or_raise(uuid4()), "account_not_found")
    assert err.status == 404
    await refused(ledger.set_frozen(uuid4(), True), "account_not_found")


async def test_get_account_answers_none_and_the_or_raise_form_refuses(ledger: Ledger) -> None:
    """``get_x`` answers None for a missing row; ``get_x_or_raise`` refuses with ``x_not_found``."""
    assert await ledger.get_account(uuid4()) is None
    account = await open_account(ledger)
    assert await ledger.get_account(account.id) == account
    err = await refused(ledger.get_account_or_raise(uuid4()), "account_not_found")
    assert err.field == "account_id"


# --- single transfers ----------------------------------------------------------------------------


async def test_single_transfer_moves_money(ledger: Ledger) -> None:
    source = await open_account(ledger)
    wallet = await ledger.create_account(wallet_spec(uuid4(), "c"))
    req = move(source.id, wallet.id, 1234, code="topup", metadata={"channel": "alipay", "备注": "充值"})
    t = await ledger.create_transfer(req)
    assert t.id == req.id and t.kind is TransferKind.SINGLE
    assert (t.debit_account_id, t.credit_account_id, t.amount, t.currency, t.code) == (
        source.id,
        wallet.id,
        1234,
        "CNY",
        "topup",
    )
    assert t.pending_id is None and t.expires_at is None
    assert t.metadata == {"channel": "alipay", "备注": "充值"}
    # Posted totals of both sides just after the transfer.
    assert (t.debit_debits_after, t.debit_credits_after) == (1234, 0)
    assert (t.credit_debits_after, t.credit_credits_after) == (0, 1234)

    stored = await ledger.get_transfer(req.id)
    assert stored is not None and stored.seq is not None
    assert stored._replace(seq=None) == t._replace(seq=None)

    src, wal = await ledger.get_account_or_raise(source.id), await ledger.get_account_or_raise(wallet.id)
    assert totals(src) == (1234, 0, 0, 0)
    assert totals(wal) == (0, 1234, 0, 0)
    assert wal.balance == 1234 and wal.available == 1234
    assert src.balance == -1234  # credit-normal account that went below zero: allowed, unconstrained

    back = await ledger.create_transfer(move(wallet.id, source.id, 234))
    assert (back.debit_debits_after, back.debit_credits_after) == (234, 1234)
    assert (back.credit_debits_after, back.credit_credits_after) == (1234, 234)
    assert (await ledger.get_account_or_raise(wallet.id)).balance == 1000
    assert await ledger.get_transfer(uuid4()) is None


async def test_debit_normal_account_balance(ledger: Ledger) -> None:
    """An account with credits_must_not_exceed_debits is debit-normal: balance = debits − credits."""
    asset = await open_account(ledger, credits_must_not_exceed_debits=True)
    wallet = await ledger.create_account(wallet_spec(uuid4(), "c"))
    await ledger.create_transfer(move(asset.id, wallet.id, 700))
    await ledger.create_transfer(move(wallet.id, asset.id, 200))
    a = await ledger.get_account_or_raise(asset.id)
    assert not a.credit_normal and a.balance == 500 and a.available == 500
    await ledger.create_transfer(hold(wallet.id, asset.id, 100))
    a = await ledger.get_account_or_raise(asset.id)
    assert a.credits_pending == 100 and a.available == 400


# --- two-phase transfers -------------------------------------------------------------------------


async def test_pending_then_post_in_full(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    _, wallet = funded
    merchant = await open_account(ledger)
    p = await ledger.create_transfer(hold(wallet.id, merchant.id, 1500, code="toll"))
    assert p.kind is TransferKind.PENDING and p.expires_at is None and p.timeout_seconds is None
    assert (p.debit_debits_after, p.debit_credits_after) == (0, 5000)  # posted totals do not move
    w, m = await ledger.get_account_or_raise(wallet.id), await ledger.get_account_or_raise(merchant.id)
    assert totals(w) == (0, 5000, 1500, 0) and w.balance == 5000 and w.available == 3500
    assert totals(m) == (0, 0, 0, 1500)
    assert await ledger.pending_state(p.id) is PendingState.OPEN

    done = await ledger.create_transfer(post(p.id))
    assert done.kind is TransferKind.POST_PENDING and done.pending_id == p.id
    assert (done.debit_account_id, done.credit_account_id, done.amount) == (wallet.id, merchant.id, 1500)
    assert done.code == "toll" and done.currency == "CNY"
    w, m = await ledger.get_account_or_raise(wallet.id), await ledger.get_account_or_raise(merchant.id)
    assert totals(w) == (1500, 5000, 0, 0) and w.available == 3500
    assert totals(m) == (0, 1500, 0, 0)
    assert await ledger.pending_state(p.id) is PendingState.POSTED
    assert await pending_row(ledger.pool, p.id) == ("posted", done.id)


async def test_partial_post_releases_the_rest(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    _, wallet = funded
    merchant = await open_account(ledger)
    p = await ledger.create_transfer(hold(wallet.id, merchant.id, 1000))
    done = await ledger.create_transfer(post(p.id, 400))
    assert done.amount == 400
    assert (done.debit_debits_after, done.debit_credits_after) == (400, 5000)
    w, m = await ledger.get_account_or_raise(wallet.id), await ledger.get_account_or_raise(merchant.id)
    assert totals(w) == (400, 5000, 0, 0) and w.available == 4600
    assert totals(m) == (0, 400, 0, 0)
    # The released 600 is spendable at once.
    await ledger.create_transfer(move(wallet.id, merchant.id, 4600))
    assert (await ledger.get_account_or_raise(wallet.id)).available == 0


async def test_void_releases_the_hold(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    _, wallet = funded
    merchant = await open_account(ledger)
    p = await ledger.create_transfer(hold(wallet.id, merchant.id, 1000))
    v = await ledger.create_transfer(void(p.id))
    assert v.kind is TransferKind.VOID_PENDING and v.pending_id == p.id and v.amount == 1000
    w, m = await ledger.get_account_or_raise(wallet.id), await ledger.get_account_or_raise(merchant.id)
    assert totals(w) == (0, 5000, 0, 0) and totals(m) == (0, 0, 0, 0)
    assert await ledger.pending_state(p.id) is PendingState.VOIDED
    assert await pending_row(ledger.pool, p.id) == ("voided", v.id)


async def test_second_phase_amount_checks(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    _, wallet = funded
    merchant = await open_account(ledger)
    p = await ledger.create_transfer(hold(wallet.id, merchant.id, 1000))
    err = await refused(ledger.create_transfer(post(p.id, 1001)), "amount_exceeds_pending")
    assert err.extra["pending_amount"] == 1000
    # A void releases the whole hold; a void of another amount is refused.
    await refused(ledger.create_transfer(replace(void(p.id), amount=10)), "amount_exceeds_pending")
    w = await ledger.get_account_or_raise(wallet.id)
    assert totals(w) == (0, 5000, 1000, 0)
    assert await ledger.pending_state(p.id) is PendingState.OPEN
    assert await rows_for_pending(ledger.pool, p.id) == 0
    # The hold is still usable after the refusals.
    assert (await ledger.create_transfer(post(p.id, 1000))).amount == 1000


async def test_second_phase_retries_are_idempotent(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    _, wallet = funded
    merchant = await open_account(ledger)
    p1 = await ledger.create_transfer(hold(wallet.id, merchant.id, 1000))
    p2 = await ledger.create_transfer(hold(wallet.id, merchant.id, 700))
    post_id, void_id = uuid4(), uuid4()
    posted = await ledger.create_transfer(post(p1.id, 600, id=post_id))
    voided = await ledger.create_transfer(void(p2.id, id=void_id))

    again = await ledger.create_transfer(post(p1.id, 600, id=post_id))
    assert again._replace(seq=None) == posted._replace(seq=None)
    assert again.created_at == posted.created_at
    # Leaving the amount out of a retry still names the same post.
    assert (await ledger.create_transfer(post(p1.id, id=post_id))).created_at == posted.created_at
    again_void = await ledger.create_transfer(void(p2.id, id=void_id))
    assert again_void._replace(seq=None) == voided._replace(seq=None)
    # A retry under the same id with another amount is a different request.
    await refused(ledger.create_transfer(post(p1.id, 500, id=post_id)), "transfer_id_conflict")

    # A second resolution under a new id is refused with the state the hold ended in.
    await refused(ledger.create_transfer(post(p1.id)), "pending_already_posted")
    await refused(ledger.create_transfer(void(p1.id)), "pending_already_posted")
    err = await refused(ledger.create_transfer(post(p2.id)), "pending_already_voided")
    assert err.status == 409
    await refused(ledger.create_transfer(void(p2.id)), "pending_already_voided")

    w = await ledger.get_account_or_raise(wallet.id)
    assert totals(w) == (600, 5000, 0, 0)
    assert await rows_for_pending(ledger.pool, p1.id) == 1
    assert await rows_for_pending(ledger.pool, p2.id) == 1


async def test_pending_not_found(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    source, wallet = funded
    err = await refused(ledger.create_transfer(post(uuid4())), "pending_not_found")
    assert err.status == 404 and err.field == "pending_id"
    await refused(ledger.create_transfer(void(uuid4())), "pending_not_found")
    # A single (not pending) transfer cannot be posted either.
    single = await ledger.create_transfer(move(source.id, wallet.id, 1))
    await refused(ledger.create_transfer(post(single.id)), "pending_not_found")


async def test_pending_retry_does_not_hold_twice(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    _, wallet = funded
    merchant = await open_account(ledger)
    req = hold(wallet.id, merchant.id, 2000, timeout=3600)
    first = await ledger.create_transfer(req)
    again = await ledger.create_transfer(hold(wallet.id, merchant.id, 2000, timeout=3600, id=req.id))
    assert again.created_at == first.created_at and again.expires_at == first.expires_at
    assert first.expires_at is not None
    assert first.expires_at - first.created_at == timedelta(seconds=3600)
    await refused(
        ledger.create_transfer(hold(wallet.id, merchant.id, 2000, timeout=60, id=req.id)),
        "transfer_id_conflict",
    )
    assert (await ledger.get_account_or_raise(wallet.id)).debits_pending == 2000


# --- timeouts ------------------------------------------------------------------------------------


async def test_expired_hold_cannot_be_posted(timed: Ledger, clock: FakeClock) -> None:
    source = await open_account(timed)
    wallet = await timed.create_account(wallet_spec(uuid4(), "c"))
    merchant = await open_account(timed)
    await timed.create_transfer(move(source.id, wallet.id, 1000))
    p = await timed.create_transfer(hold(wallet.id, merchant.id, 800, timeout=30))
    assert p.expires_at == clock.now + timedelta(seconds=30)

    clock.advance(29)
    assert await timed.pending_state(p.id) is PendingState.OPEN
    clock.advance(1)  # exactly at expires_at: expired
    assert await timed.pending_state(p.id) is PendingState.EXPIRED
    err = await refused(timed.create_transfer(post(p.id)), "pending_expired")
    assert err.status == 409
    await refused(timed.create_transfer(void(p.id)), "pending_expired")
    # The refused post's transaction released the hold it found expired.
    assert (await pending_row(timed.pool, p.id) or ("",))[0] == "expired"
    assert totals(await timed.get_account_or_raise(wallet.id)) == (0, 1000, 0, 0)
    assert totals(await timed.get_account_or_raise(merchant.id)) == (0, 0, 0, 0)
    assert await rows_for_pending(timed.pool, p.id) == 0


async def test_hold_posted_just_before_timeout(timed: Ledger, clock: FakeClock) -> None:
    source = await open_account(timed)
    wallet = await timed.create_account(wallet_spec(uuid4(), "c"))
    await timed.create_transfer(move(source.id, wallet.id, 1000))
    p = await timed.create_transfer(hold(wallet.id, source.id, 800, timeout=30))
    clock.advance(29.999)
    assert (await timed.create_transfer(post(p.id))).amount == 800
    clock.advance(3600)
    assert await timed.pending_state(p.id) is PendingState.POSTED
    assert totals(await timed.get_account_or_raise(wallet.id)) == (800, 1000, 0, 0)


async def test_expired_hold_no_longer_blocks_money(timed: Ledger, clock: FakeClock) -> None:
    source = await open_account(timed)
    wallet = await timed.create_account(wallet_spec(uuid4(), "c"))
    merchant = await open_account(timed)
    await timed.create_transfer(move(source.id, wallet.id, 1000))
    p = await timed.create_transfer(hold(wallet.id, merchant.id, 800, timeout=10))
    await refused(timed.create_transfer(move(wallet.id, merchant.id, 500)), "exceeds_credits")
    clock.advance(11)
    t = await timed.create_transfer(move(wallet.id, merchant.id, 1000))
    assert t.amount == 1000
    assert totals(await timed.get_account_or_raise(wallet.id)) == (1000, 1000, 0, 0)
    assert totals(await timed.get_account_or_raise(merchant.id)) == (0, 1000, 0, 0)
    assert (await pending_row(timed.pool, p.id) or ("",))[0] == "expired"


async def test_expire_due_releases_holds(timed: Ledger, clock: FakeClock) -> None:
    source = await open_account(timed)
    wallet = await timed.create_account(wallet_spec(uuid4(), "c"))
    merchant = await open_account(timed)
    await timed.create_transfer(move(source.id, wallet.id, 5000))
    short1 = await timed.create_transfer(hold(wallet.id, merchant.id, 300, timeout=5))
    short2 = await timed.create_transfer(hold(wallet.id, source.id, 200, timeout=8))
    long = await timed.create_transfer(hold(wallet.id, merchant.id, 1000, timeout=600))
    forever = await timed.create_transfer(hold(wallet.id, merchant.id, 50))
    assert totals(await timed.get_account_or_raise(wallet.id)) == (0, 5000, 1550, 0)

    clock.advance(10)
    released = await timed.expire_due()
    assert released >= 2  # other tests' holds may be due too; ours must be among them
    assert (await pending_row(timed.pool, short1.id) or ("",))[0] == "expired"
    assert (await pending_row(timed.pool, short2.id) or ("",))[0] == "expired"
    assert (await pending_row(timed.pool, long.id) or ("",))[0] == "open"
    assert (await pending_row(timed.pool, forever.id) or ("",))[0] == "open"
    assert totals(await timed.get_account_or_raise(wallet.id)) == (0, 5000, 1050, 0)
    assert totals(await timed.get_account_or_raise(merchant.id)) == (0, 0, 0, 1050)
    assert totals(await timed.get_account_or_raise(source.id)) == (5000, 0, 0, 0)

    # Sweeping again releases nothing twice.
    await timed.expire_due()
    assert totals(await timed.get_account_or_raise(wallet.id)) == (0, 5000, 1050, 0)
    await refused(timed.create_transfer(post(short1.id)), "pending_expired")
    assert totals(await timed.get_account_or_raise(merchant.id)) == (0, 0, 0, 1050)
    # The holds still open resolve normally.
    await timed.create_transfer(post(long.id, 1000))
    await timed.create_transfer(void(forever.id))
    assert totals(await timed.get_account_or_raise(wallet.id)) == (1000, 5000, 0, 0)


# --- linked chains -------------------------------------------------------------------------------


async def test_linked_chain_commits_together(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    _, wallet = funded
    merchant, fees = await open_account(ledger), await open_account(ledger)
    chain = [move(wallet.id, merchant.id, 900), move(wallet.id, fees.id, 100), move(merchant.id, fees.id, 5)]
    out = await ledger.create_linked(chain)
    assert [t.id for t in out] == [r.id for r in chain]
    assert (await ledger.get_account_or_raise(wallet.id)).balance == 4000
    assert (await ledger.get_account_or_raise(merchant.id)).balance == 895
    assert (await ledger.get_account_or_raise(fees.id)).balance == 105
    assert await ledger.create_linked([]) == []


@pytest.mark.parametrize("bad_index", [0, 1, 2])
async def test_linked_chain_fails_together(
    ledger: Ledger, funded: tuple[Account, Account], bad_index: int
) -> None:
    source, wallet = funded
    merchant = await open_account(ledger)
    chain = [
        move(wallet.id, merchant.id, 1000),
        move(source.id, wallet.id, 10),
        move(wallet.id, merchant.id, 2000),
    ]
    chain[bad_index] = move(wallet.id, merchant.id, 999_999)  # more than the wallet holds
    err = await refused(ledger.create_linked(chain), "exceeds_credits")
    assert err.index == bad_index
    assert err.extra["index"] == bad_index
    for req in chain:
        assert await ledger.get_transfer(req.id) is None
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 5000, 0, 0)
    assert totals(await ledger.get_account_or_raise(merchant.id)) == (0, 0, 0, 0)
    assert totals(await ledger.get_account_or_raise(source.id)) == (5000, 0, 0, 0)


async def test_calls_leave_the_callers_requests_as_sent(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    """The ledger sets ``linked`` on its own copies: a caller may keep, log or resend its requests."""
    _, wallet = funded
    merchant = await open_account(ledger)
    single = replace(move(wallet.id, merchant.id, 10), linked=True)
    sent = replace(single)
    await ledger.create_transfer(single)
    assert single == sent and single.linked
    chain = [move(wallet.id, merchant.id, 20), replace(move(wallet.id, merchant.id, 30), linked=True)]
    sent_chain = [replace(r) for r in chain]
    await ledger.create_linked(chain)
    assert chain == sent_chain
    assert [r.linked for r in chain] == [False, True]


async def test_linked_chain_with_holds_rolls_back_their_state(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    """A chain that creates or resolves holds and then fails leaves every hold as it was."""
    _, wallet = funded
    merchant = await open_account(ledger)
    existing = await ledger.create_transfer(hold(wallet.id, merchant.id, 1000))
    new_hold = hold(wallet.id, merchant.id, 500)
    chain = [
        post(existing.id, 700),
        new_hold,
        post(new_hold.id),
        move(merchant.id, wallet.id, 1, currency="USD"),
    ]
    err = await refused(ledger.create_linked(chain), "currency_mismatch")
    assert err.index == 3
    assert await ledger.pending_state(existing.id) is PendingState.OPEN
    assert await ledger.pending_state(new_hold.id) is None
    for req in chain:
        assert await ledger.get_transfer(req.id) is None
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 5000, 1000, 0)
    assert totals(await ledger.get_account_or_raise(merchant.id)) == (0, 0, 0, 1000)

    # A refusal is final: the same ids again, even with the broken member fixed, stay refused.
    fixed = [replace(req) for req in chain]
    fixed[3] = move(merchant.id, wallet.id, 1)
    await refused(ledger.create_linked(fixed), "linked_event_failed")
    assert await ledger.pending_state(existing.id) is PendingState.OPEN

    # The chain fixed, under new ids, commits whole: a hold created and posted inside one chain works.
    new_hold = hold(wallet.id, merchant.id, 500)
    chain = [post(existing.id, 700), new_hold, post(new_hold.id), move(merchant.id, wallet.id, 1)]
    out = await ledger.create_linked(chain)
    assert [t.kind for t in out] == [
        TransferKind.POST_PENDING,
        TransferKind.PENDING,
        TransferKind.POST_PENDING,
        TransferKind.SINGLE,
    ]
    assert await ledger.pending_state(existing.id) is PendingState.POSTED
    assert await ledger.pending_state(new_hold.id) is PendingState.POSTED
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (1200, 5001, 0, 0)
    assert totals(await ledger.get_account_or_raise(merchant.id)) == (1, 1200, 0, 0)


# --- the bulk call -------------------------------------------------------------------------------


async def test_bulk_results_in_order(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    source, wallet = funded
    merchant = await open_account(ledger)
    usd = await open_account(ledger, currency="USD")
    dup = move(wallet.id, merchant.id, 7)
    reqs = [
        move(wallet.id, merchant.id, 1000),  # 0 ok: wallet 4000
        move(wallet.id, merchant.id, 10_000),  # 1 exceeds_credits
        move(wallet.id, usd.id, 1),  # 2 currency_mismatch
        move(wallet.id, merchant.id, 100),  # 3 linked, ok alone
        move(wallet.id, wallet.id, 1),  # 4 same_account: fails the chain 3-5
        move(merchant.id, wallet.id, 50),  # 5 end of chain
        move(source.id, wallet.id, 3),  # 6 linked ok
        move(wallet.id, merchant.id, 3),  # 7 end of chain ok: wallet 4000
        dup,  # 8 ok: wallet 3993
        move(wallet.id, merchant.id, 7, id=dup.id),  # 9 same id, same fields: the same transfer
        move(wallet.id, merchant.id, 8, id=dup.id),  # 10 transfer_id_conflict
        move(uuid4(), merchant.id, 1),  # 11 account_not_found
        hold(wallet.id, merchant.id, 3993),  # 12 ok: available 0
        move(wallet.id, merchant.id, 1),  # 13 exceeds_credits
    ]
    for i in (3, 4, 6):
        reqs[i].linked = True
    results = await ledger.create_transfers(reqs)
    assert len(results) == len(reqs)
    expected: list[str | None] = [
        None,
        "exceeds_credits",
        "currency_mismatch",
        "linked_event_failed",
        "same_account",
        "linked_event_failed",
        None,
        None,
        None,
        None,
        "transfer_id_conflict",
        "account_not_found",
        None,
        "exceeds_credits",
    ]
    for i, (req, res, code) in enumerate(zip(reqs, results, expected, strict=True)):
        if code is None:
            assert isinstance(res, Transfer), (i, res)
            assert res.id == req.id
        else:
            assert isinstance(res, LedgerError), (i, res)
            assert (res.code, res.index) == (code, i)
    assert results[8] == results[9]
    for i in (1, 2, 3, 4, 5, 11, 13):
        assert await ledger.get_transfer(reqs[i].id) is None
    for i in (0, 6, 7, 8, 12):
        assert await ledger.get_transfer(reqs[i].id) is not None
    w = await ledger.get_account_or_raise(wallet.id)
    assert totals(w) == (1000 + 3 + 7, 5003, 3993, 0) and w.available == 0


async def test_bulk_unclosed_chain(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    source, wallet = funded
    reqs = [move(source.id, wallet.id, 1), move(source.id, wallet.id, 2), move(source.id, wallet.id, 3)]
    reqs[1].linked = reqs[2].linked = True
    results = await ledger.create_transfers(reqs)
    assert isinstance(results[0], Transfer)
    assert isinstance(results[1], LedgerError) and results[1].code == "linked_event_failed"
    assert isinstance(results[2], LedgerError) and results[2].code == "linked_event_chain_open"
    assert (await ledger.get_account_or_raise(wallet.id)).balance == 5001


async def test_bulk_large_batch_streams(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    """More than BULK_THRESHOLD transfers take the COPY path; results and totals stay exact."""
    source, wallet = funded
    merchant = await open_account(ledger)
    reqs: list[TransferRequest] = []
    for i in range(600):
        if i % 10 == 3:
            reqs.append(move(wallet.id, merchant.id, 1_000_000))  # always refused
        elif i % 50 == 20:  # closes a chain with the transfer before it; refused, so both fail
            reqs[-1].linked = True
            reqs.append(move(wallet.id, merchant.id, 1_000_000))
        else:
            reqs.append(move(source.id, wallet.id, 1) if i % 2 else move(wallet.id, merchant.id, 1))
    results = await ledger.create_transfers(reqs)
    assert len(results) == 600
    accepted = [r for r in results if isinstance(r, Transfer)]
    for i, (req, res) in enumerate(zip(reqs, results, strict=True)):
        if i % 10 == 3 or i % 50 == 20:
            assert isinstance(res, LedgerError) and (res.code, res.index) == ("exceeds_credits", i)
        elif i % 50 == 19:
            assert isinstance(res, LedgerError) and (res.code, res.index) == ("linked_event_failed", i)
            assert await ledger.get_transfer(req.id) is None
        else:
            assert isinstance(res, Transfer) and res.id == req.id, (i, res)
    assert len(accepted) == 600 - 60 - 12 - 12
    into = sum(t.amount for t in accepted if t.credit_account_id == wallet.id)
    out = sum(t.amount for t in accepted if t.debit_account_id == wallet.id)
    w = await ledger.get_account_or_raise(wallet.id)
    assert totals(w) == (out, 5000 + into, 0, 0)
    async with ledger.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*), coalesce(sum(amount), 0) FROM ledger_transfers "
            "WHERE debit_account_id = %s OR credit_account_id = %s",
            (wallet.id, wallet.id),
        )
        assert await cur.fetchone() == (len(accepted) + 1, into + out + 5000)


async def test_bulk_batch_too_large(ledger: Ledger) -> None:
    reqs = [move(uuid4(), uuid4(), 1) for _ in range(MAX_BATCH + 1)]
    with pytest.raises(DomainError) as info:
        await ledger.create_transfers(reqs)
    assert info.value.code == "batch_too_large"
    # from the ledger's error table, with the limit in both sentences and the field named
    assert isinstance(info.value, LedgerError) and info.value.status == 422
    assert (info.value.zh, info.value.en, info.value.field) == (
        f"一批最多 {MAX_BATCH} 笔转账",
        f"at most {MAX_BATCH} transfers a batch",
        "transfers",
    )


# --- idempotency ---------------------------------------------------------------------------------


async def test_same_id_same_fields_returns_the_original(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    _, wallet = funded
    merchant = await open_account(ledger)
    req = move(wallet.id, merchant.id, 5000, metadata={"order": "A-1"})
    first = await ledger.create_transfer(req)
    # The wallet is now empty: the retry must still answer with the stored transfer, not a refusal.
    again = await ledger.create_transfer(
        move(wallet.id, merchant.id, 5000, id=req.id, metadata={"order": "A-1"})
    )
    assert again.created_at == first.created_at
    assert again._replace(seq=None) == first._replace(seq=None)
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (5000, 5000, 0, 0)
    assert totals(await ledger.get_account_or_raise(merchant.id)) == (0, 5000, 0, 0)


@pytest.mark.parametrize(
    "change",
    [{"amount": 11}, {"code": "other"}, {"metadata": {"k": "v2"}}, {"credit": "other"}, {"kind": "pending"}],
)
async def test_same_id_other_fields_conflicts(
    ledger: Ledger, funded: tuple[Account, Account], change: dict[str, Any]
) -> None:
    source, wallet = funded
    merchant = await open_account(ledger)
    req = move(wallet.id, merchant.id, 10, code="pay", metadata={"k": "v"})
    first = await ledger.create_transfer(req)
    other = move(wallet.id, merchant.id, 10, code="pay", metadata={"k": "v"}, id=req.id)
    if "amount" in change:
        other.amount = change["amount"]
    if "code" in change:
        other.code = change["code"]
    if "metadata" in change:
        other.metadata = change["metadata"]
    if "credit" in change:
        other.credit_account_id = source.id
    if "kind" in change:
        other.kind = TransferKind.PENDING
    err = await refused(ledger.create_transfer(other), "transfer_id_conflict")
    assert err.status == 409
    assert await ledger.get_transfer(req.id) == (await ledger.get_transfer(first.id))
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (10, 5000, 0, 0)
    assert totals(await ledger.get_account_or_raise(source.id)) == (5000, 0, 0, 0)


# --- every refusal -------------------------------------------------------------------------------


async def test_exceeds_credits(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    _, wallet = funded
    merchant = await open_account(ledger)
    await ledger.create_transfer(hold(wallet.id, merchant.id, 1000))
    err = await refused(ledger.create_transfer(move(wallet.id, merchant.id, 4001)), "exceeds_credits")
    assert err.status == 422 and err.field == "amount" and err.extra["available"] == 4000
    await refused(ledger.create_transfer(hold(wallet.id, merchant.id, 4001)), "exceeds_credits")
    assert (await ledger.create_transfer(move(wallet.id, merchant.id, 4000))).amount == 4000
    await refused(ledger.create_transfer(move(wallet.id, merchant.id, 1)), "exceeds_credits")
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (4000, 5000, 1000, 0)


async def test_exceeds_debits(ledger: Ledger) -> None:
    """A credits_must_not_exceed_debits account (money owed to us) cannot be credited past its debits."""
    loan = await open_account(ledger, credits_must_not_exceed_debits=True)
    borrower = await open_account(ledger)
    await ledger.create_transfer(move(loan.id, borrower.id, 300))  # lend 300
    await ledger.create_transfer(hold(borrower.id, loan.id, 100))
    err = await refused(ledger.create_transfer(move(borrower.id, loan.id, 201)), "exceeds_debits")
    assert err.status == 422
    await refused(ledger.create_transfer(hold(borrower.id, loan.id, 201)), "exceeds_debits")
    await ledger.create_transfer(move(borrower.id, loan.id, 200))
    assert totals(await ledger.get_account_or_raise(loan.id)) == (300, 200, 0, 100)


async def test_account_frozen(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    source, wallet = funded
    frozen = await ledger.set_frozen(wallet.id, True)
    assert frozen.frozen
    err = await refused(ledger.create_transfer(move(wallet.id, source.id, 1)), "account_frozen")
    assert err.field == "debit_account_id"
    await refused(ledger.create_transfer(hold(wallet.id, source.id, 1)), "account_frozen")
    # Money may still come in to a frozen account.
    await ledger.create_transfer(move(source.id, wallet.id, 5))
    assert not (await ledger.set_frozen(wallet.id, False)).frozen
    await ledger.create_transfer(move(wallet.id, source.id, 1))
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (1, 5005, 0, 0)


async def test_account_not_found(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    source, _ = funded
    err = await refused(ledger.create_transfer(move(uuid4(), source.id, 1)), "account_not_found")
    assert err.field == "debit_account_id"
    err = await refused(ledger.create_transfer(move(source.id, uuid4(), 1)), "account_not_found")
    assert err.field == "credit_account_id"
    assert totals(await ledger.get_account_or_raise(source.id)) == (5000, 0, 0, 0)


async def test_currency_mismatch(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    source, wallet = funded
    usd = await open_account(ledger, currency="USD")
    usd_wallet = await ledger.create_account(wallet_spec(uuid4(), "c", currency="USD"))
    await refused(ledger.create_transfer(move(source.id, usd.id, 1)), "currency_mismatch")
    await refused(ledger.create_transfer(move(source.id, usd.id, 1, currency="USD")), "currency_mismatch")
    await refused(ledger.create_transfer(move(source.id, wallet.id, 1, currency="USD")), "currency_mismatch")
    # Within USD it works.
    t = await ledger.create_transfer(move(usd.id, usd_wallet.id, 99, currency="USD"))
    assert t.currency == "USD"
    # A second phase naming the wrong currency is refused too.
    p = await ledger.create_transfer(hold(usd_wallet.id, usd.id, 10, currency="USD"))
    bad_post = post(p.id)
    bad_post.currency = "CNY"
    await refused(ledger.create_transfer(bad_post), "currency_mismatch")
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 5000, 0, 0)
    assert totals(await ledger.get_account_or_raise(usd_wallet.id)) == (0, 99, 10, 0)


async def test_same_account(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    _, wallet = funded
    await refused(ledger.create_transfer(move(wallet.id, wallet.id, 1)), "same_account")
    await refused(ledger.create_transfer(hold(wallet.id, wallet.id, 1)), "same_account")
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 5000, 0, 0)


async def test_holds_count_against_available_balance(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    """Blnk #181: six 1,000 holds on a 5,000 balance; the sixth must be refused."""
    _, wallet = funded
    merchant = await open_account(ledger)
    holds = [await ledger.create_transfer(hold(wallet.id, merchant.id, 1000)) for _ in range(5)]
    await refused(ledger.create_transfer(hold(wallet.id, merchant.id, 1000)), "exceeds_credits")
    await refused(ledger.create_transfer(move(wallet.id, merchant.id, 1)), "exceeds_credits")
    w = await ledger.get_account_or_raise(wallet.id)
    assert w.balance == 5000 and w.available == 0 and w.debits_pending == 5000
    await ledger.create_transfer(void(holds[0].id))
    await ledger.create_transfer(hold(wallet.id, merchant.id, 1000))
    # Posting holds never needs fresh room: they were counted when taken.
    for h in holds[1:]:
        await ledger.create_transfer(post(h.id))
    w = await ledger.get_account_or_raise(wallet.id)
    assert totals(w) == (4000, 5000, 1000, 0) and w.available == 0


async def test_holds_count_within_one_batch(ledger: Ledger, funded: tuple[Account, Account]) -> None:
    """The same as above, submitted as one bulk batch: the check must see the batch's own holds."""
    _, wallet = funded
    merchant = await open_account(ledger)
    results = await ledger.create_transfers([hold(wallet.id, merchant.id, 1000) for _ in range(6)])
    assert [isinstance(r, Transfer) for r in results] == [True] * 5 + [False]
    assert isinstance(results[5], LedgerError) and results[5].code == "exceeds_credits"
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 5000, 5000, 0)


# --- history and balances ------------------------------------------------------------------------


async def test_history_pages_newest_first_with_running_balance(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    source, wallet = funded
    merchant = await open_account(ledger)
    created: list[UUID] = []
    for i in range(23):
        if i % 3 == 0:
            t = await ledger.create_transfer(move(wallet.id, merchant.id, 10 + i))
        elif i % 7 == 0:
            p = await ledger.create_transfer(hold(wallet.id, merchant.id, 100))
            created.append(p.id)
            t = await ledger.create_transfer(post(p.id, 60))
        else:
            t = await ledger.create_transfer(move(source.id, wallet.id, i))
        created.append(t.id)
    # A transfer between two other accounts must not show up.
    await ledger.create_transfer(move(source.id, merchant.id, 1))

    seen: list[Any] = []
    cursor: int | None = None
    pages = 0
    while True:
        entries, cursor = await ledger.history(wallet.id, before_seq=cursor, limit=7)
        pages += 1
        assert len(entries) <= 7
        seen.extend(entries)
        if cursor is None:
            break
        assert len(entries) == 7
    ids = [e.transfer.id for e in seen]
    assert len(ids) == len(set(ids)) == len(created) + 1  # and the funding transfer
    assert set(ids) == {*created, *(await first_transfer_ids(ledger, wallet.id))}
    assert pages == (len(ids) + 6) // 7
    seqs = [e.transfer.seq for e in seen]
    assert seqs == sorted(seqs, reverse=True) and None not in seqs

    account = await ledger.get_account_or_raise(wallet.id)
    assert seen[0].balance_after == account.balance
    # Walk from the oldest: each balance is the previous one plus the posted effect of the transfer.
    balance = 0
    for e in reversed(seen):
        t = e.transfer
        assert e.side == ("debit" if t.debit_account_id == wallet.id else "credit")
        if t.kind in (TransferKind.SINGLE, TransferKind.POST_PENDING):
            balance += t.amount if e.side == "credit" else -t.amount
        assert e.balance_after == balance, t
    assert balance == account.balance


async def first_transfer_ids(ledger: Ledger, account_id: UUID) -> set[UUID]:
    async with ledger.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id FROM ledger_transfers WHERE credit_account_id = %s AND code = 'topup'", (account_id,)
        )
        return {row[0] for row in await cur.fetchall()}


async def test_history_of_debit_normal_account_and_empty(ledger: Ledger) -> None:
    asset = await open_account(ledger, credits_must_not_exceed_debits=True)
    other = await open_account(ledger)
    assert await ledger.history(asset.id) == ([], None)
    await ledger.create_transfer(move(asset.id, other.id, 50))
    await ledger.create_transfer(move(other.id, asset.id, 20))
    entries, cursor = await ledger.history(asset.id, limit=2)
    assert cursor is None
    assert [(e.side, e.balance_after) for e in entries] == [("credit", 30), ("debit", 50)]
    await refused(ledger.history(uuid4()), "account_not_found")


async def test_balance_as_of(timed: Ledger, clock: FakeClock) -> None:
    source = await open_account(timed)
    wallet = await timed.create_account(wallet_spec(uuid4(), "c"))
    start = clock.now
    clock.advance(1)
    t1 = await timed.create_transfer(move(source.id, wallet.id, 100))
    clock.advance(10)
    t2 = await timed.create_transfer(move(wallet.id, source.id, 50))
    clock.advance(1)
    await timed.create_transfer(hold(wallet.id, source.id, 20))  # a hold moves no posted money
    clock.advance(9)
    t3 = await timed.create_transfer(move(source.id, wallet.id, 30))
    assert (t1.created_at, t2.created_at) == (start + timedelta(seconds=1), start + timedelta(seconds=11))

    async def at(moment: datetime) -> int:
        account, balance = await timed.balance_as_of(wallet.id, moment)
        assert account.id == wallet.id
        return balance

    assert await at(start) == 0
    assert await at(t1.created_at - timedelta(microseconds=1)) == 0
    assert await at(t1.created_at) == 100
    assert await at(t1.created_at + timedelta(seconds=5)) == 100
    assert await at(t2.created_at) == 50
    assert await at(t3.created_at - timedelta(seconds=1)) == 50
    assert await at(t3.created_at) == 80
    assert await at(t3.created_at + timedelta(days=1)) == 80
    assert (await timed.get_account_or_raise(wallet.id)).balance == 80
    # The unconstrained source account, seen from its side.
    assert (await timed.balance_as_of(source.id, t2.created_at))[1] == -50
    await refused(timed.balance_as_of(uuid4(), start), "account_not_found")


async def skip_to_block_end(owner_pool: AsyncConnectionPool, left: int) -> None:
    """Move the transfer sequence so that only ``left`` values remain in its current history block.

    As the owner: the service's role may use the sequence only through inserts.
    """
    async with owner_pool.connection() as conn:
        cur = await conn.execute("SELECT last_value FROM ledger_transfers_seq_seq")
        row = await cur.fetchone()
        assert row is not None
        block_end = ((row[0] >> HISTORY_BLOCK_SHIFT) + 1) << HISTORY_BLOCK_SHIFT
        await conn.execute("SELECT setval('ledger_transfers_seq_seq', %s)", (block_end - 1 - left,))


async def test_history_and_balance_as_of_across_index_blocks(
    timed: Ledger, clock: FakeClock, owner_pool: AsyncConnectionPool
) -> None:
    """History is indexed per block of 8,192 seqs: pages and "as of" must not notice where blocks end."""
    source = await open_account(timed)
    wallet = await timed.create_account(wallet_spec(uuid4(), "c"))
    made: list[Transfer] = []
    for i in range(14):
        if i % 3 == 0:
            await skip_to_block_end(owner_pool, left=i % 2)
        clock.advance(1)
        if i % 4 == 3:
            created = await timed.create_transfer(move(wallet.id, source.id, 5))
        else:
            created = await timed.create_transfer(move(source.id, wallet.id, 10 + i))
        stored = await timed.get_transfer(created.id)
        assert stored is not None
        made.append(stored)
    assert len({t.seq >> HISTORY_BLOCK_SHIFT for t in made if t.seq is not None}) >= 5

    seen: list[Any] = []
    cursor: int | None = None
    while True:
        entries, cursor = await timed.history(wallet.id, before_seq=cursor, limit=4)
        seen.extend(entries)
        if cursor is None:
            break
    assert [e.transfer.id for e in seen] == [t.id for t in reversed(made)]

    balance = 0
    for t in made:
        balance += t.amount if t.credit_account_id == wallet.id else -t.amount
        assert (await timed.balance_as_of(wallet.id, t.created_at))[1] == balance
        assert (await timed.balance_as_of(wallet.id, t.created_at + timedelta(microseconds=1)))[1] == balance
    assert (await timed.get_account_or_raise(wallet.id)).balance == balance


async def test_a_batch_rewrites_account_totals_in_place(ledger: Ledger, pool: Any) -> None:
    """Account pages keep half their room (migration 0007), so updated totals stay on the page (HOT).

    On a full page the new row version goes elsewhere and every index of the table gets a new entry.
    """
    source = await open_account(ledger)
    wallets = [await ledger.create_account(wallet_spec(uuid4(), "in-place")) for _ in range(300)]
    # The backend's counters may still hold its earlier transactions' counts: compare before and after.
    counters = (
        "SELECT pg_stat_get_xact_tuples_updated(t.oid), pg_stat_get_xact_tuples_hot_updated(t.oid) "
        "FROM pg_class t WHERE t.relname = 'ledger_accounts'"
    )
    async with pool.connection() as conn, conn.transaction():
        before = await (await conn.execute(counters)).fetchone()
        results = await apply_transfers(conn, [move(source.id, w.id, 1) for w in wallets], utcnow)
        after = await (await conn.execute(counters)).fetchone()
    assert all(isinstance(r, Transfer) for r in results)
    assert before is not None and after is not None
    updated, in_place = after[0] - before[0], after[1] - before[1]
    assert updated == len(wallets) + 1
    assert in_place == updated


# --- immutability --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_transfers SET amount = amount + 1 WHERE id = %(id)s",
        "UPDATE ledger_transfers SET metadata = '{}'::jsonb WHERE id = %(id)s",
        "DELETE FROM ledger_transfers WHERE id = %(id)s",
        "TRUNCATE ledger_transfers CASCADE",
        "DELETE FROM ledger_accounts WHERE id = %(account)s",
        "TRUNCATE ledger_accounts CASCADE",
    ],
)
async def test_transfers_are_immutable(
    ledger: Ledger, owner_pool: Any, funded: tuple[Account, Account], statement: str
) -> None:
    """Even the tables' owner is refused (the service's role lacks the privilege altogether)."""
    source, wallet = funded
    t = await ledger.create_transfer(move(wallet.id, source.id, 10))

    class Rollback(Exception):
        pass

    # Run in a transaction that is always rolled back: even if the guard were missing, nothing is lost.
    with pytest.raises(psycopg.Error) as info:
        async with owner_pool.connection() as conn:
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '10s'")
                    params = {"id": t.id, "account": wallet.id} if "%(" in statement else None
                    await conn.execute(statement, params)
                    raise Rollback
            except Rollback:
                pytest.fail(f"the database accepted: {statement}")
    assert isinstance(info.value, pg_errors.RestrictViolation), info.value
    stored = await ledger.get_transfer(t.id)
    assert stored is not None and stored.amount == 10
    assert (await ledger.get_account_or_raise(wallet.id)).balance == 4990
