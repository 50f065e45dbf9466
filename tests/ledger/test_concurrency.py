"""Real concurrency against the ledger: many simultaneous database transactions on the same hot rows.

Jepsen's bank test and Formance's stress test are the model: concurrent transfers among a few hot
accounts, concurrent whole-table reads that must always see the fixed total, then exact accounting of
what every client was told. Each client here is its own :class:`Ledger` with no writers, so each call is
its own transaction on its own pooled connection: sixteen clients means sixteen transactions at once.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import replace
from uuid import UUID, uuid4

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.db import open_pool
from etcwallet.ledger.errors import LedgerError
from etcwallet.ledger.service import Ledger, wallet_spec
from etcwallet.ledger.types import PendingState, Transfer, TransferKind, TransferRequest
from tests.ledger.builders import hold, move, open_account, post, totals, void

CLIENTS = 16
TRANSFERS_PER_CLIENT = 200
HOT_ACCOUNTS = 3
SEED = 20_000


@pytest.fixture
async def wide_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool with room for every client at once, plus concurrent retries and a reader."""
    pool = await open_pool(database_url, CLIENTS + 8)
    yield pool
    await pool.close()


async def test_sixteen_clients_on_three_hot_accounts(wide_pool: AsyncConnectionPool) -> None:
    boot = Ledger(wide_pool, writers=0)
    funding = await open_account(boot)
    hot = [await boot.create_account(wallet_spec(uuid4(), f"hot-{i}")) for i in range(HOT_ACCOUNTS)]
    hot_ids = [a.id for a in hot]
    for a in hot:
        await boot.create_transfer(move(funding.id, a.id, SEED, code="seed"))
    total = SEED * HOT_ACCOUNTS

    rng = random.Random(20261125)

    def random_request() -> TransferRequest:
        debit, credit = rng.sample(hot_ids, 2)
        return move(debit, credit, rng.randint(1, 6000), code="hot")

    # Requests that two different clients send at the same step of their plans.
    shared = {step: random_request() for step in range(0, TRANSFERS_PER_CLIENT, 10)}
    plans: list[list[tuple[str, TransferRequest]]] = []
    for c in range(CLIENTS):
        plan: list[tuple[str, TransferRequest]] = []
        for step in range(TRANSFERS_PER_CLIENT):
            if step in shared and c % 2 == (step // 10) % 2:
                plan.append(("shared", shared[step]))
            elif step % 25 == 7:
                plan.append(("retry", random_request()))  # the same request twice, at the same time
            else:
                plan.append(("one", random_request()))
        plans.append(plan)

    accepted: dict[UUID, Transfer] = {}
    told: list[tuple[UUID, str]] = []  # every answer every client got: (id, "ok" or error code)

    def record(req: TransferRequest, outcome: Transfer | BaseException) -> None:
        if isinstance(outcome, Transfer):
            assert outcome.id == req.id
            assert (outcome.debit_account_id, outcome.credit_account_id, outcome.amount) == (
                req.debit_account_id,
                req.credit_account_id,
                req.amount,
            )
            prior = accepted.setdefault(req.id, outcome)
            assert prior._replace(seq=None) == outcome._replace(seq=None), "a duplicate got another transfer"
            told.append((req.id, "ok"))
        else:
            assert isinstance(outcome, LedgerError), repr(outcome)
            assert outcome.code == "exceeds_credits", outcome
            told.append((req.id, outcome.code))

    async def client(plan: list[tuple[str, TransferRequest]]) -> None:
        mine = Ledger(wide_pool, writers=0)
        for how, req in plan:
            if how == "retry":
                outcomes = await asyncio.gather(
                    mine.create_transfer(replace(req)),
                    mine.create_transfer(replace(req)),
                    return_exceptions=True,
                )
                for outcome in outcomes:
                    record(req, outcome)
            else:
                try:
                    record(req, await mine.create_transfer(replace(req)))
                except LedgerError as exc:
                    record(req, exc)

    stop_reading = asyncio.Event()
    reads = 0

    async def reader() -> None:
        """Whole-account reads while the clients run: the total never changes, nobody goes below zero."""
        nonlocal reads
        while not stop_reading.is_set():
            async with wide_pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT sum(credits_posted - debits_posted), min(credits_posted - debits_posted), "
                    "sum(debits_pending) FROM ledger_accounts WHERE id = ANY(%s)",
                    (hot_ids,),
                )
                row = await cur.fetchone()
            assert row is not None
            assert (row[0], row[2]) == (total, 0), row
            assert row[1] >= 0, row
            reads += 1
            await asyncio.sleep(0.005)

    read_task = asyncio.create_task(reader())
    try:
        # No deadlock: everything must finish well inside this.
        await asyncio.wait_for(asyncio.gather(*(client(p) for p in plans)), timeout=120)
    finally:
        stop_reading.set()
        await read_task
    assert reads > 0

    # What the clients were told adds up.
    assert len(told) == sum(2 if how == "retry" else 1 for p in plans for how, _ in p)
    oks = {tid for tid, what in told if what == "ok"}
    assert oks == set(accepted)
    assert len(accepted) > CLIENTS * TRANSFERS_PER_CLIENT // 4, "too few transfers got through to mean much"
    assert any(what != "ok" for _, what in told), "no refusals: the limits were never exercised"

    # Every accepted transfer exists exactly once; nothing else touched the hot accounts.
    async with wide_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, count(*) FROM ledger_transfers WHERE code = 'hot' "
            "AND (debit_account_id = ANY(%(a)s) OR credit_account_id = ANY(%(a)s)) GROUP BY id",
            {"a": hot_ids},
        )
        stored = dict(await cur.fetchall())
    assert set(stored) == set(accepted)
    assert set(stored.values()) == {1}

    # Balances: never negative, the total kept, and exactly what the accepted transfers add up to.
    debits: Counter[UUID] = Counter()
    credits: Counter[UUID] = Counter()
    for t in accepted.values():
        debits[t.debit_account_id] += t.amount
        credits[t.credit_account_id] += t.amount
    final = [await boot.get_account_or_raise(a) for a in hot_ids]
    for a in final:
        assert a.balance >= 0 and a.available >= 0
        assert totals(a) == (debits[a.id], SEED + credits[a.id], 0, 0)
    assert sum(a.balance for a in final) == total
    assert (await boot.get_account_or_raise(funding.id)).balance == -total

    # Each account's running totals form one unbroken chain in seq order: no update was lost.
    for a in hot_ids:
        entries = []
        cursor = None
        while True:
            page, cursor = await boot.history(a, before_seq=cursor, limit=200)
            entries.extend(page)
            if cursor is None:
                break
        balance = 0
        for e in reversed(entries):
            balance += e.transfer.amount if e.side == "credit" else -e.transfer.amount
            assert e.balance_after == balance
            assert balance >= 0
        assert balance == next(x.balance for x in final if x.id == a)


async def test_shared_batcher_gives_each_caller_its_own_answer(ledger: Ledger) -> None:
    """200 concurrent calls through ONE started Ledger: batched together, answered one by one."""
    source = await open_account(ledger)
    wallet = await ledger.create_account(wallet_spec(uuid4(), "batcher"))
    merchants = [(await open_account(ledger)).id for _ in range(4)]
    await ledger.create_transfer(move(source.id, wallet.id, 150 * 100))

    rng = random.Random(7)
    requests: list[TransferRequest] = []
    expected_code: dict[int, str] = {}
    for i in range(200):
        if i % 40 == 5:
            requests.append(move(wallet.id, uuid4(), 100))
            expected_code[i] = "account_not_found"
        elif i % 40 == 15:
            requests.append(move(wallet.id, wallet.id, 100))
            expected_code[i] = "same_account"
        elif i % 20 == 9:  # a retry of an earlier request, sent at the same time as it
            requests.append(replace(requests[i - 3]))
        else:
            requests.append(move(wallet.id, rng.choice(merchants), 100))
    # 180 distinct valid outflows of 100 compete for 150 × 100: exactly 150 can pass.
    outcomes = await asyncio.wait_for(
        asyncio.gather(*(ledger.create_transfer(r) for r in requests), return_exceptions=True), timeout=60
    )

    accepted: dict[UUID, Transfer] = {}
    refused = 0
    for i, (req, out) in enumerate(zip(requests, outcomes, strict=True)):
        if i in expected_code:
            assert isinstance(out, LedgerError) and out.code == expected_code[i], (i, out)
            assert out.index == 0, "an error must be numbered within its caller's own submission"
        elif isinstance(out, Transfer):
            assert out.id == req.id and out.credit_account_id == req.credit_account_id
            prior = accepted.setdefault(out.id, out)
            assert prior._replace(seq=None) == out._replace(seq=None)
        else:
            assert isinstance(out, LedgerError) and out.code == "exceeds_credits", (i, out)
            assert out.index == 0
            refused += 1
    # A retry and its original agree: both accepted as the same transfer, or both refused.
    for i in range(9, 200, 20):
        assert isinstance(outcomes[i], Transfer) == isinstance(outcomes[i - 3], Transfer)
    assert len(accepted) == 150
    distinct_valid = len({r.id for i, r in enumerate(requests) if i not in expected_code})
    assert distinct_valid == 180
    assert refused == 200 - len(expected_code) - sum(isinstance(o, Transfer) for o in outcomes)

    w = await ledger.get_account_or_raise(wallet.id)
    assert totals(w) == (15_000, 15_000, 0, 0) and w.available == 0
    for m in merchants:
        got = sum(t.amount for t in accepted.values() if t.credit_account_id == m)
        assert totals(await ledger.get_account_or_raise(m)) == (0, got, 0, 0)
    # The batcher really gathered calls: transfers of one batch share its time.
    assert len({t.created_at for t in accepted.values()}) < len(accepted)


@pytest.mark.parametrize("path", ["connections", "batcher"])
async def test_concurrent_double_resolution(
    ledger: Ledger, wide_pool: AsyncConnectionPool, path: str
) -> None:
    """Blnk PR #315: concurrent posts and voids of one hold; exactly one wins, the rest are told why."""
    boot = Ledger(wide_pool, writers=0)
    source = await open_account(boot)
    wallet = await boot.create_account(wallet_spec(uuid4(), "double"))
    merchant = await open_account(boot)
    await boot.create_transfer(move(source.id, wallet.id, 100_000))
    holds = [await boot.create_transfer(hold(wallet.id, merchant.id, 1000 + i)) for i in range(12)]

    def ledger_for(k: int) -> Ledger:
        return ledger if path == "batcher" else Ledger(wide_pool, writers=0)

    rng = random.Random(path)
    attempts: list[tuple[UUID, TransferRequest]] = []
    for h in holds:
        reqs = [post(h.id), post(h.id, 500), void(h.id), void(h.id)]
        same = post(h.id, 300)
        reqs += [same, replace(same)]  # the same post retried at the same time
        rng.shuffle(reqs)
        attempts += [(h.id, r) for r in reqs]
    outcomes = await asyncio.wait_for(
        asyncio.gather(
            *(ledger_for(k).create_transfer(r) for k, (_, r) in enumerate(attempts)), return_exceptions=True
        ),
        timeout=60,
    )

    by_hold: dict[UUID, list[tuple[TransferRequest, Transfer | BaseException]]] = defaultdict(list)
    for (hid, req), out in zip(attempts, outcomes, strict=True):
        by_hold[hid].append((req, out))
    posted = 0
    for h in holds:
        results = by_hold[h.id]
        winners = {out.id: out for _, out in results if isinstance(out, Transfer)}
        assert len(winners) == 1, results
        (winner,) = winners.values()
        ended = "posted" if winner.kind is TransferKind.POST_PENDING else "voided"
        for _req, out in results:
            if isinstance(out, Transfer):
                continue
            assert isinstance(out, LedgerError), repr(out)
            assert out.code == f"pending_already_{ended}", out
        if winner.kind is TransferKind.POST_PENDING:
            posted += winner.amount
            assert winner.amount in (h.amount, 500, 300)
        else:
            assert winner.amount == h.amount
        assert await boot.pending_state(h.id) is PendingState(ended)
        async with wide_pool.connection() as conn:
            cur = await conn.execute("SELECT id FROM ledger_transfers WHERE pending_id = %s", (h.id,))
            assert [row[0] for row in await cur.fetchall()] == [winner.id]
            cur = await conn.execute("SELECT resolved_by FROM ledger_pending WHERE id = %s", (h.id,))
            assert await cur.fetchone() == (winner.id,)
    assert totals(await boot.get_account_or_raise(wallet.id)) == (posted, 100_000, 0, 0)
    assert totals(await boot.get_account_or_raise(merchant.id)) == (0, posted, 0, 0)
