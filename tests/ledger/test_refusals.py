"""A refusal is final: a transfer refused once answers the same refusal to every resend of its id.

A client that timed out resends with the same id. If the first attempt was refused and the money has
arrived meanwhile, applying the resend would move money long after the client was told "insufficient
funds". These tests refuse a transfer, change the books so that it would now pass, resend it, and check
that it is refused the same way and moved nothing; a resend with other fields is ``transfer_id_conflict``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.db import open_pool
from etcwallet.ledger import service as ledger_service
from etcwallet.ledger.engine import BULK_THRESHOLD
from etcwallet.ledger.errors import LedgerError
from etcwallet.ledger.service import AccountSpec, Ledger, wallet_spec
from etcwallet.ledger.types import Account, Transfer, TransferRequest
from tests.ledger.builders import (
    FakeClock,
    hold,
    move,
    open_account,
    post,
    refused,
    totals,
)


def count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> Callable[[], int]:
    """Count the ledger service's calls of the engine function ``name`` (one per attempt at a batch)."""
    calls = 0
    real = getattr(ledger_service, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real(*args, **kwargs)

    monkeypatch.setattr(ledger_service, name, counted)
    return lambda: calls


async def stored_refusals(pool: AsyncConnectionPool, ids: list[UUID]) -> dict[UUID, str]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id, error FROM ledger_refusals WHERE id = ANY(%s)", (ids,))
        return dict(await cur.fetchall())


async def test_insufficient_funds_stays_refused_after_the_money_arrives(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    source, wallet = funded
    merchant = await open_account(ledger)
    spend = move(wallet.id, merchant.id, 8000, metadata={"order": "A-1"})
    first = await refused(ledger.create_transfer(replace(spend)), "exceeds_credits")
    assert first.extra["available"] == 5000

    await ledger.create_transfer(move(source.id, wallet.id, 10_000))  # now 15,000 would cover it
    again = await refused(ledger.create_transfer(replace(spend)), "exceeds_credits")
    assert (again.field, again.extra) == (first.field, first.extra), "the same refusal, details and all"
    assert await ledger.get_transfer(spend.id) is None
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 15_000, 0, 0)
    assert totals(await ledger.get_account_or_raise(merchant.id)) == (0, 0, 0, 0)

    # The same id with any field changed is another request: a conflict, not a second chance.
    for changed in (
        replace(spend, amount=7999),
        replace(spend, credit_account_id=source.id),
        replace(spend, code="other"),
        replace(spend, metadata={"order": "A-2"}),
        replace(spend, kind=hold(wallet.id, merchant.id, 1).kind),
    ):
        await refused(ledger.create_transfer(changed), "transfer_id_conflict")
    assert await stored_refusals(ledger.pool, [spend.id]) == {spend.id: "exceeds_credits"}


async def test_frozen_and_unknown_accounts_stay_refused(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    source, wallet = funded
    merchant = await open_account(ledger)
    await ledger.set_frozen(wallet.id, True)
    while_frozen = move(wallet.id, merchant.id, 10)
    await refused(ledger.create_transfer(replace(while_frozen)), "account_frozen")
    await ledger.set_frozen(wallet.id, False)
    await refused(ledger.create_transfer(replace(while_frozen)), "account_frozen")

    later = uuid4()
    to_nowhere = move(source.id, later, 10)
    await refused(ledger.create_transfer(replace(to_nowhere)), "account_not_found")
    await ledger.create_account(AccountSpec(later, "CNY", "general", "test"))
    await refused(ledger.create_transfer(replace(to_nowhere)), "account_not_found")
    assert (await ledger.get_account_or_raise(later)).credits_posted == 0
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 5000, 0, 0)


async def test_exceeds_debits_stays_refused(ledger: Ledger) -> None:
    payable = await open_account(
        ledger, credits_must_not_exceed_debits=True
    )  # may never be credited beyond its debits
    other = await open_account(ledger)
    credit_it = move(other.id, payable.id, 100)
    await refused(ledger.create_transfer(replace(credit_it)), "exceeds_debits")
    await ledger.create_transfer(move(payable.id, other.id, 500))
    await refused(ledger.create_transfer(replace(credit_it)), "exceeds_debits")
    assert totals(await ledger.get_account_or_raise(payable.id)) == (500, 0, 0, 0)


async def test_expired_hold_post_stays_refused(pool: AsyncConnectionPool) -> None:
    clock = FakeClock()
    timed = Ledger(pool, writers=0, clock=clock)
    source = await open_account(timed)
    wallet = await timed.create_account(wallet_spec(uuid4(), "expiry"))
    await timed.create_transfer(move(source.id, wallet.id, 1000))
    short = await timed.create_transfer(hold(wallet.id, source.id, 400, timeout=5))
    clock.advance(6)
    late_post = post(short.id)
    await refused(timed.create_transfer(replace(late_post)), "pending_expired")
    await refused(timed.create_transfer(replace(late_post)), "pending_expired")
    assert await timed.get_transfer(late_post.id) is None


async def test_a_retry_inside_one_batch_answers_the_first_refusal(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    """The same id twice in one batch, with the money arriving between them: both are refused."""
    source, wallet = funded
    merchant = await open_account(ledger)
    spend = move(wallet.id, merchant.id, 6000)
    results = await ledger.create_transfers([spend, move(source.id, wallet.id, 5000), replace(spend)])
    assert isinstance(results[1], Transfer)
    for i in (0, 2):
        assert isinstance(results[i], LedgerError)
        assert (results[i].code, results[i].index) == ("exceeds_credits", i)  # type: ignore[union-attr]
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 10_000, 0, 0)


async def test_a_chain_refused_as_a_whole_answers_the_same_on_resend(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    source, wallet = funded
    merchant = await open_account(ledger)
    chain = [
        move(source.id, wallet.id, 1),
        move(wallet.id, merchant.id, 9000),  # breaks the chain
        move(merchant.id, source.id, 1),
    ]
    first = await refused(ledger.create_linked([replace(r) for r in chain]), "exceeds_credits")
    assert first.index == 1
    await ledger.create_transfer(move(source.id, wallet.id, 10_000))
    again = await refused(ledger.create_linked([replace(r) for r in chain]), "exceeds_credits")
    assert again.index == 1

    # Over the bulk call: each member answers exactly as before.
    resent = [replace(r) for r in chain]
    for r in resent[:-1]:
        r.linked = True
    codes = [r.code for r in await ledger.create_transfers(resent) if isinstance(r, LedgerError)]
    assert codes == ["linked_event_failed", "exceeds_credits", "linked_event_failed"]
    for r in chain:
        assert await ledger.get_transfer(r.id) is None
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 15_000, 0, 0)
    stored = await stored_refusals(ledger.pool, [r.id for r in chain])
    assert stored == dict(zip([r.id for r in chain], codes, strict=True))


async def test_bulk_resend_answers_each_transfer_as_before(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    """Over the COPY path: accepted transfers come back stored, refused ones refused, nothing moves twice."""
    source, wallet = funded
    merchant = await open_account(ledger)
    reqs = [
        move(wallet.id, merchant.id, 1_000_000) if i % 7 == 3 else move(wallet.id, merchant.id, 1)
        for i in range(400)
    ]
    first = await ledger.create_transfers([replace(r) for r in reqs])
    refused_at = {i for i, r in enumerate(first) if isinstance(r, LedgerError)}
    assert refused_at == {i for i in range(400) if i % 7 == 3}
    await ledger.create_transfer(move(source.id, wallet.id, 100_000_000))

    again = await ledger.create_transfers([replace(r) for r in reqs])
    for i, (before, after) in enumerate(zip(first, again, strict=True)):
        if i in refused_at:
            assert isinstance(after, LedgerError) and isinstance(before, LedgerError)
            assert (after.code, after.index, after.extra) == (before.code, before.index, before.extra)
        else:
            assert isinstance(after, Transfer) and isinstance(before, Transfer)
            assert after._replace(seq=None) == before._replace(seq=None)
    moved = 400 - len(refused_at)
    assert totals(await ledger.get_account_or_raise(merchant.id)) == (0, moved, 0, 0)


async def test_refusals_cannot_be_rewritten(
    ledger: Ledger, funded: tuple[Account, Account], owner_pool: AsyncConnectionPool
) -> None:
    """Not even by the schema's owner (the service's own role has no UPDATE or DELETE on them at all)."""
    _, wallet = funded
    spend = move(wallet.id, uuid4(), 1)
    await refused(ledger.create_transfer(spend), "account_not_found")
    async with owner_pool.connection() as conn:
        for sql in (
            "UPDATE ledger_refusals SET error = 'x' WHERE id = %s",
            "DELETE FROM ledger_refusals WHERE id = %s",
        ):
            with pytest.raises(Exception, match="never deleted or rewritten"):
                await conn.execute(sql, (spend.id,))
            await conn.rollback()


# --- the bulk path: a probe on another connection ------------------------------------------------


def padded(*reqs: TransferRequest, source: UUID, sink: UUID) -> list[TransferRequest]:
    """``reqs`` at the end of a call large enough to take the bulk (COPY) path."""
    return [*(move(source, sink, 1, code="pad") for _ in range(BULK_THRESHOLD)), *map(replace, reqs)]


def last(results: list[Transfer | LedgerError]) -> str:
    out = results[-1]
    return out.code if isinstance(out, LedgerError) else "ok"


async def test_a_bulk_call_runs_once_unless_its_probe_finds_a_refused_id(
    ledger: Ledger, funded: tuple[Account, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fresh ids cost one run (the probe answers beside the COPY); a refused id makes the call run again."""
    source, wallet = funded
    sink = await open_account(ledger)
    runs = count_calls(monkeypatch, "apply_transfers")
    spend = move(wallet.id, sink.id, 9999)
    assert (
        last(await ledger.create_transfers(padded(spend, source=source.id, sink=sink.id)))
        == "exceeds_credits"
    )
    assert runs() == 1
    await ledger.create_transfer(move(source.id, wallet.id, 10_000))
    assert (
        last(await ledger.create_transfers(padded(spend, source=source.id, sink=sink.id)))
        == "exceeds_credits"
    )
    assert runs() == 3, "the resend's call ran again with every id looked up"
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 15_000, 0, 0)


async def test_bulk_resend_after_the_missing_account_is_opened(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    source, _ = funded
    sink = await open_account(ledger)
    later = uuid4()
    to_later = move(source.id, later, 10)
    assert last(await ledger.create_transfers(padded(to_later, source=source.id, sink=sink.id))) == (
        "account_not_found"
    )
    await ledger.create_account(AccountSpec(later, "CNY", "general", "test"))
    assert last(await ledger.create_transfers(padded(to_later, source=source.id, sink=sink.id))) == (
        "account_not_found"
    )
    assert (await ledger.get_account_or_raise(later)).credits_posted == 0


async def test_bulk_resend_with_other_fields_conflicts(
    ledger: Ledger, funded: tuple[Account, Account]
) -> None:
    """Whatever changed, the accounts included: the refused id is spent."""
    source, wallet = funded
    sink = await open_account(ledger)
    spend = move(wallet.id, sink.id, 9999)
    await refused(ledger.create_transfer(replace(spend)), "exceeds_credits")
    for changed in (
        replace(spend, amount=1),
        replace(spend, debit_account_id=source.id),  # another debit account, and one that could pay
        replace(spend, debit_account_id=source.id, credit_account_id=wallet.id),
    ):
        assert last(await ledger.create_transfers(padded(changed, source=source.id, sink=sink.id))) == (
            "transfer_id_conflict"
        )
    assert await ledger.get_transfer(spend.id) is None
    assert totals(await ledger.get_account_or_raise(wallet.id)) == (0, 5000, 0, 0)


# --- under concurrency ---------------------------------------------------------------------------

CLIENTS = 8
ROUNDS = 60


@pytest.fixture
async def wide_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url, CLIENTS + 6)
    yield pool
    await pool.close()


async def test_resent_refusals_never_apply_while_others_fund_the_accounts(
    wide_pool: AsyncConnectionPool,
) -> None:
    """Clients spend from thin wallets and resend every refused id, while funders keep topping up.

    With refusals not final, a resend seconds later often found the money and went through. At the
    end no refused id may have become a transfer, and the books must match what clients were told.
    """
    boot = Ledger(wide_pool, writers=0)
    funding = await open_account(boot)
    merchant = await open_account(boot)
    sink = await open_account(boot)
    wallets = [await boot.create_account(wallet_spec(uuid4(), f"thin-{i}")) for i in range(4)]
    refused_ids: set[UUID] = set()
    accepted: dict[UUID, Transfer] = {}
    funded_total = 0
    stop = asyncio.Event()

    async def spender(seed: int) -> None:
        mine = Ledger(wide_pool, writers=0)
        try:
            await spend(mine, random.Random(seed))
        finally:
            await mine.stop()  # closes its refusal probe's connection

    async def spend(mine: Ledger, rng: random.Random) -> None:
        for _ in range(ROUNDS):
            req = move(rng.choice(wallets).id, merchant.id, rng.randint(50, 400), code="spend")
            try:
                accepted[req.id] = await mine.create_transfer(replace(req))
                continue
            except LedgerError as exc:
                assert exc.code == "exceeds_credits", exc
                refused_ids.add(req.id)
            for attempt in range(3):  # resend, as a client after a timeout does, while money keeps arriving
                await asyncio.sleep(rng.random() * 0.004)
                if attempt == 1:  # once inside a bulk call: the COPY path, with its refusal probe
                    results = await mine.create_transfers(padded(req, source=funding.id, sink=sink.id))
                    assert isinstance(results[-1], LedgerError) and results[-1].code == "exceeds_credits"
                else:
                    await refused(mine.create_transfer(replace(req)), "exceeds_credits")

    async def funder(seed: int) -> None:
        nonlocal funded_total
        mine = Ledger(wide_pool, writers=0)
        rng = random.Random(seed)
        while not stop.is_set():
            amount = rng.randint(50, 300)
            await mine.create_transfer(move(funding.id, rng.choice(wallets).id, amount, code="fund"))
            funded_total += amount
            await asyncio.sleep(0.002)

    funders = [asyncio.create_task(funder(1000 + i)) for i in range(2)]
    try:
        await asyncio.wait_for(asyncio.gather(*(spender(i) for i in range(CLIENTS))), timeout=120)
    finally:
        stop.set()
        await asyncio.gather(*funders)

    assert len(refused_ids) > 20, "too few refusals to mean anything"
    assert accepted, "nothing was ever accepted"
    async with wide_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM ledger_transfers WHERE id = ANY(%s)", (list(refused_ids),)
        )
        assert await cur.fetchone() == (0,), "a refused id became a transfer"
    assert set(await stored_refusals(wide_pool, list(refused_ids))) == refused_ids
    spent = sum(t.amount for t in accepted.values())
    assert totals(await boot.get_account_or_raise(merchant.id)) == (0, spent, 0, 0)
    balances = [(await boot.get_account_or_raise(w.id)).balance for w in wallets]
    assert sum(balances) == funded_total - spent


# --- retries stay out of the server log ----------------------------------------------------------


async def test_a_small_retry_is_answered_without_a_duplicate_key_error(
    ledger: Ledger, funded: tuple[Account, Account], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resend is found by looking its id up, not by the primary key refusing it (one attempt)."""
    _, wallet = funded
    merchant = await open_account(ledger)
    spend = move(wallet.id, merchant.id, 10)
    original = await ledger.create_transfer(replace(spend))
    attempts = count_calls(monkeypatch, "apply_and_commit")
    assert (await ledger.create_transfer(replace(spend)))._replace(seq=None) == original._replace(seq=None)
    assert attempts() == 1


def server_log(tmp_root: Path) -> Path:
    """The embedded test server's log file (the fixture starts it in ``tmp_root/pg``)."""
    logs = [p for p in (tmp_root / "pg").glob("**/log*") if p.is_file()]
    if not logs:
        pytest.skip("the tests run on an external server: its log is not ours to read")
    return max(logs, key=lambda p: p.stat().st_mtime)


async def test_retries_put_no_transfer_data_in_the_server_log(
    ledger: Ledger, funded: tuple[Account, Account], tmp_root: Path
) -> None:
    source, _ = funded
    merchant = await open_account(ledger)
    marker = f"Zhang San 138{uuid4().int % 10**8:08d}"
    small = move(source.id, merchant.id, 1, metadata={"payer": marker})
    bulk = [move(source.id, merchant.id, 1, metadata={"payer": marker}) for _ in range(300)]
    for _ in range(2):
        await ledger.create_transfer(replace(small))
        await ledger.create_transfers([replace(r) for r in bulk])
        await ledger.create_transfers([replace(small)])
    await asyncio.sleep(0.2)  # the server writes its log asynchronously
    assert marker not in server_log(tmp_root).read_text(errors="replace")


async def test_small_batches_send_one_begin(pool: AsyncConnectionPool, database_url: str) -> None:
    """The server warns when a BEGIN arrives inside a transaction: a small batch must not cause that."""
    notices: list[str] = []

    async def listen(conn: Any) -> None:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))

    own = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False, configure=listen)
    await own.open(wait=True)
    try:
        mine = Ledger(own, writers=0)
        source = await open_account(mine)
        wallet = await mine.create_account(wallet_spec(uuid4(), "begin"))
        for amount in (1, 2, 3):
            await mine.create_transfer(move(source.id, wallet.id, amount))
        await mine.create_transfers([move(source.id, wallet.id, 4), move(wallet.id, source.id, 1)])
    finally:
        await own.close()
    assert not [n for n in notices if "already a transaction in progress" in n]
    assert (await Ledger(pool, writers=0).get_account_or_raise(wallet.id)).balance == 9
