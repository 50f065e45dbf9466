"""Randomised sequences of ledger operations, checked against a Python model after every step.

A hypothesis state machine (Blnk's invariant fuzzing, TigerBeetle's simulator in miniature) drives
transfers, holds with and without timeouts, full and partial posts, voids, expiry (a fake clock moved by
hand, and the sweeper), linked chains, bulk batches, retries and freezes over a few accounts in two
currencies. After every step the database must agree with the model and with the ledger's laws:

* per currency, debits posted = credits posted and debits pending = credits pending;
* no account with a limit is past it, counting its holds;
* posted totals equal the model's; pending totals equal the holds the database still has open;
* every hold is resolved at most once, by the transfer the model expects.

Hypothesis runs synchronously, so the ledger runs on its own event loop in a background thread with its
own connection pool and its own :class:`Ledger`, whose clock the machine moves.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import hypothesis.strategies as st
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.db import open_pool
from etcwallet.ledger.errors import LedgerError
from etcwallet.ledger.service import Ledger
from etcwallet.ledger.types import Transfer, TransferKind, TransferRequest
from tests.ledger.builders import FakeClock, hold, move, open_account, post, void

T = TypeVar("T")


class LoopThread:
    """An event loop running in a thread, so synchronous code can await coroutines on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ledger-invariants", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Env:
    runner: LoopThread
    pool: AsyncConnectionPool
    ledger: Ledger
    clock: FakeClock


# --- the model -----------------------------------------------------------------------------------


@dataclass
class MAccount:
    id: UUID
    currency: str
    limit: str  # "debits_must_not_exceed_credits", "credits_must_not_exceed_debits" or "none"
    frozen: bool = False
    debits_posted: int = 0
    credits_posted: int = 0


@dataclass
class MHold:
    id: UUID
    debit: UUID
    credit: UUID
    amount: int
    expires_at: datetime | None
    state: str = "open"  # open, posted, voided; "expired" once the sweeper certainly ran
    resolved_by: UUID | None = None


@dataclass
class Model:
    accounts: dict[UUID, MAccount] = field(default_factory=dict)
    holds: dict[UUID, MHold] = field(default_factory=dict)
    # Accepted transfer id -> (the request as sent, the transfer the ledger returned).
    transfers: dict[UUID, tuple[TransferRequest, Transfer | None]] = field(default_factory=dict)

    def live(self, h: MHold, now: datetime) -> bool:
        """Open and not past its timeout: it still holds money."""
        return h.state == "open" and (h.expires_at is None or h.expires_at > now)

    def pending(self, account: UUID, now: datetime) -> tuple[int, int]:
        debits_pending = sum(
            h.amount for h in self.holds.values() if h.debit == account and self.live(h, now)
        )
        credits_pending = sum(
            h.amount for h in self.holds.values() if h.credit == account and self.live(h, now)
        )
        return debits_pending, credits_pending

    def apply(self, req: TransferRequest, now: datetime) -> str | None:
        """Apply one request as the ledger must; the refusal code, or None when it is accepted."""
        if req.id in self.transfers:
            return None if _same(req, self.transfers[req.id][0]) else "transfer_id_conflict"
        if req.kind in (TransferKind.POST_PENDING, TransferKind.VOID_PENDING):
            return self._resolve(req, now)
        assert req.debit_account_id and req.credit_account_id and req.amount
        if req.debit_account_id == req.credit_account_id:
            return "same_account"
        debit = self.accounts.get(req.debit_account_id)
        credit = self.accounts.get(req.credit_account_id)
        if debit is None or credit is None:
            return "account_not_found"
        if req.currency != debit.currency or req.currency != credit.currency:
            return "currency_mismatch"
        if debit.frozen:
            return "account_frozen"
        debits_pending, _ = self.pending(debit.id, now)
        _, credits_pending = self.pending(credit.id, now)
        if (
            debit.limit == "debits_must_not_exceed_credits"
            and debit.debits_posted + debits_pending + req.amount > debit.credits_posted
        ):
            return "exceeds_credits"
        if (
            credit.limit == "credits_must_not_exceed_debits"
            and credit.credits_posted + credits_pending + req.amount > credit.debits_posted
        ):
            return "exceeds_debits"
        if req.kind is TransferKind.PENDING:
            expires = now + timedelta(seconds=req.timeout_seconds) if req.timeout_seconds else None
            self.holds[req.id] = MHold(req.id, debit.id, credit.id, req.amount, expires)
        else:
            debit.debits_posted += req.amount
            credit.credits_posted += req.amount
        self.transfers[req.id] = (req, None)
        return None

    def _resolve(self, req: TransferRequest, now: datetime) -> str | None:
        assert req.pending_id is not None
        h = self.holds.get(req.pending_id)
        if h is None:
            return "pending_not_found"
        if h.state == "posted":
            return "pending_already_posted"
        if h.state == "voided":
            return "pending_already_voided"
        if not self.live(h, now):
            return "pending_expired"
        posting = req.kind is TransferKind.POST_PENDING
        amount = h.amount if req.amount is None else req.amount
        if amount > h.amount or (not posting and amount != h.amount):
            return "amount_exceeds_pending"
        if posting:
            self.accounts[h.debit].debits_posted += amount
            self.accounts[h.credit].credits_posted += amount
        h.state, h.resolved_by = ("posted" if posting else "voided"), req.id
        self.transfers[req.id] = (req, None)
        return None

    def apply_batch(self, reqs: list[TransferRequest], now: datetime) -> list[str | None]:
        """A bulk submission: lone transfers and linked chains, as the ledger splits them."""
        out: list[str | None] = [None] * len(reqs)
        start = 0
        runs = []
        for i, r in enumerate(reqs):
            if not r.linked:
                runs.append((start, i + 1))
                start = i + 1
        if start < len(reqs):
            runs.append((start, len(reqs)))
        for a, b in runs:
            if b - a == 1 and not reqs[a].linked:
                out[a] = self.apply(reqs[a], now)
                continue
            if reqs[b - 1].linked:
                out[a:b] = ["linked_event_failed"] * (b - a)
                out[b - 1] = "linked_event_chain_open"
                continue
            trial = copy.deepcopy(self)
            for i in range(a, b):
                code = trial.apply(reqs[i], now)
                if code is not None:
                    out[a:b] = ["linked_event_failed"] * (b - a)
                    out[i] = code
                    break
            else:
                self.accounts, self.holds, self.transfers = trial.accounts, trial.holds, trial.transfers
        return out


def _same(req: TransferRequest, original: TransferRequest) -> bool:
    keys = ("kind", "debit_account_id", "credit_account_id", "amount", "currency", "code", "pending_id")
    return all(getattr(req, k) == getattr(original, k) for k in keys) and req.metadata == original.metadata


# --- the machine ---------------------------------------------------------------------------------

CURRENCIES = ("CNY", "USD")
LAYOUT = {  # per currency: the accounts' limits
    "CNY": (
        "none",
        "debits_must_not_exceed_credits",
        "debits_must_not_exceed_credits",
        "credits_must_not_exceed_debits",
        "none",
    ),
    "USD": ("none", "debits_must_not_exceed_credits", "credits_must_not_exceed_debits"),
}
pick = st.integers(0, 10_000)  # an index, taken modulo the list it picks from
# A plain amount, or one just around the room left under a limit (the edge where bugs live).
amounts = st.one_of(st.integers(1, 1500), st.integers(-2, 2).map(lambda d: ("edge", d)))
timeouts = st.one_of(st.none(), st.integers(1, 30))
move_op = st.tuples(st.just("move"), st.sampled_from(CURRENCIES), pick, pick, amounts, st.integers(0, 15))
hold_op = st.tuples(st.just("hold"), st.sampled_from(CURRENCIES), pick, pick, amounts, timeouts)
post_op = st.tuples(st.just("post"), pick, st.one_of(st.none(), st.integers(1, 1600)))
void_op = st.tuples(st.just("void"), pick)
any_op = st.one_of(move_op, hold_op, post_op, void_op)
small = st.integers(1, 200)
chain_op = st.one_of(
    st.tuples(st.just("move"), st.sampled_from(CURRENCIES), pick, pick, small, st.integers(1, 15)),
    st.tuples(st.just("hold"), st.sampled_from(CURRENCIES), pick, pick, small, timeouts),
    st.tuples(st.just("post"), pick, st.one_of(st.none(), small)),
)


class LedgerMachine(RuleBasedStateMachine):
    env: Env  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.by_currency: dict[str, list[UUID]] = {}
        self.hold_ids: list[UUID] = []

    # helpers ---------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.env.runner.run(coro)

    @property
    def now(self) -> datetime:
        return self.env.clock.now

    def build(self, op: tuple[Any, ...], *, unknown: bool = True) -> TransferRequest:
        kind = op[0]
        if kind in ("move", "hold"):
            currency, i, j, amount = op[1], op[2], op[3], op[4]
            ids = self.by_currency[currency]
            debit = ids[i % len(ids)]
            others = [a for a in ids if a != debit]
            credit = others[j % len(others)]
            if i % 29 == 0:  # now and then, the same account on both sides
                credit = debit
            if isinstance(amount, tuple):
                amount = max(1, self.room(debit, credit) + amount[1])
            if kind == "move":
                if op[5] == 0:  # now and then, an account of the other currency
                    other = self.by_currency["USD" if currency == "CNY" else "CNY"]
                    credit = other[j % len(other)]
                return move(debit, credit, amount, currency=currency)
            return hold(debit, credit, amount, currency=currency, timeout=op[5])
        # Mostly a hold that is still open; sometimes any hold, or one that never existed.
        open_ids = [h for h in self.hold_ids if self.model.holds[h].state == "open"]
        if not self.hold_ids or (unknown and op[1] % 19 == 18):
            target = uuid4()
        elif op[1] % 4 == 3 or not open_ids:
            target = self.hold_ids[op[1] % len(self.hold_ids)]
        else:
            target = open_ids[op[1] % len(open_ids)]
        return post(target, op[2]) if kind == "post" else void(target)

    def room(self, debit: UUID, credit: UUID) -> int:
        """How much may move from ``debit`` to ``credit`` under their limits, counting live holds."""
        d, c = self.model.accounts[debit], self.model.accounts[credit]
        debits_pending, _ = self.model.pending(debit, self.now)
        _, credits_pending = self.model.pending(credit, self.now)
        room = 1000
        if d.limit == "debits_must_not_exceed_credits":
            room = d.credits_posted - d.debits_posted - debits_pending
        if c.limit == "credits_must_not_exceed_debits":
            room = (
                min(room, c.debits_posted - c.credits_posted - credits_pending)
                if d.limit == "debits_must_not_exceed_credits"
                else c.debits_posted - c.credits_posted - credits_pending
            )
        return room

    def note_holds(self, reqs: list[TransferRequest]) -> None:
        for r in reqs:
            if r.id in self.model.holds and r.id not in self.hold_ids:
                self.hold_ids.append(r.id)

    def check_transfer(self, req: TransferRequest, got: Transfer) -> None:
        """A returned transfer carries the request and, if new, the model's totals just after it."""
        assert got.id == req.id and got.kind is req.kind
        original, seen = self.model.transfers[req.id]
        if seen is not None:  # a retry: the very same transfer comes back
            assert got._replace(seq=None) == seen._replace(seq=None)
            return
        self.model.transfers[req.id] = (original, got)
        if req.kind in (TransferKind.POST_PENDING, TransferKind.VOID_PENDING):
            h = self.model.holds[req.pending_id]  # type: ignore[index]
            assert (got.debit_account_id, got.credit_account_id, got.pending_id) == (h.debit, h.credit, h.id)
        else:
            assert (got.debit_account_id, got.credit_account_id, got.amount) == (
                req.debit_account_id,
                req.credit_account_id,
                req.amount,
            )

    # rules -----------------------------------------------------------------------------------

    @initialize(seeds=st.lists(st.integers(0, 2000), min_size=8, max_size=8))
    def open_accounts(self, seeds: list[int]) -> None:
        async def go() -> None:
            k = 0
            for currency in CURRENCIES:
                ids = []
                for limit in LAYOUT[currency]:
                    a = await open_account(
                        self.env.ledger,
                        currency=currency,
                        debits_must_not_exceed_credits=limit == "debits_must_not_exceed_credits",
                        credits_must_not_exceed_debits=limit == "credits_must_not_exceed_debits",
                    )
                    self.model.accounts[a.id] = MAccount(a.id, currency, limit)
                    ids.append(a.id)
                self.by_currency[currency] = ids
                # Fund the constrained accounts from the currency's unconstrained first account.
                for acct_id, limit in zip(ids, LAYOUT[currency], strict=True):
                    amount = seeds[k % len(seeds)]
                    k += 1
                    if limit == "none" or amount == 0:
                        continue
                    req = (
                        move(ids[0], acct_id, amount, currency=currency)
                        if limit == "debits_must_not_exceed_credits"
                        else move(acct_id, ids[0], amount, currency=currency)
                    )
                    assert self.model.apply(req, self.now) is None
                    self.check_transfer(req, await self.env.ledger.create_transfer(req))

        self.run(go())

    @rule(op=move_op)
    def transfer(self, op: tuple[Any, ...]) -> None:
        self.submit_one(self.build(op))

    @rule(op=hold_op)
    def pending(self, op: tuple[Any, ...]) -> None:
        self.submit_one(self.build(op))

    @rule(op=post_op)
    def post_hold(self, op: tuple[Any, ...]) -> None:
        self.submit_one(self.build(op))

    @rule(op=void_op)
    def void_hold(self, op: tuple[Any, ...]) -> None:
        self.submit_one(self.build(op))

    def submit_one(self, req: TransferRequest) -> None:
        expected = self.model.apply(replace(req), self.now)
        try:
            got = self.run(self.env.ledger.create_transfer(replace(req)))
        except LedgerError as exc:
            assert exc.code == expected, (exc.code, expected, req)
            assert exc.index == 0
            event(f"{req.kind.value}: {exc.code}")
            return
        event(f"{req.kind.value}: accepted")
        assert expected is None, (expected, req, got)
        self.check_transfer(req, got)
        self.note_holds([req])

    @rule(ops=st.lists(chain_op, min_size=2, max_size=4))
    def linked_chain(self, ops: list[tuple[Any, ...]]) -> None:
        reqs: list[TransferRequest] = []
        for op in ops:
            req = self.build(op, unknown=False)
            if op[0] == "post" and reqs and op[1] % 2 == 0 and reqs[-1].kind is TransferKind.PENDING:
                req = post(reqs[-1].id, op[2])  # post a hold made earlier in the same chain
            reqs.append(req)
        for i, r in enumerate(reqs):
            r.linked = i < len(reqs) - 1
        expected = self.model.apply_batch([replace(r) for r in reqs], self.now)
        failing = next((i for i, c in enumerate(expected) if c not in (None, "linked_event_failed")), None)
        try:
            got = self.run(self.env.ledger.create_linked([replace(r) for r in reqs]))
        except LedgerError as exc:
            assert failing is not None, (exc, expected, reqs)
            assert (exc.code, exc.index) == (expected[failing], failing), (exc.code, exc.index, expected)
            event(f"chain: {exc.code}")
            return
        event("chain: accepted")
        assert failing is None, (expected, reqs)
        assert len(got) == len(reqs)
        for r, t in zip(reqs, got, strict=True):
            self.check_transfer(r, t)
        self.note_holds(reqs)

    @rule(ops=st.lists(any_op, min_size=1, max_size=6), links=st.lists(st.booleans(), min_size=6, max_size=6))
    def bulk(self, ops: list[tuple[Any, ...]], links: list[bool]) -> None:
        reqs = [self.build(op) for op in ops]
        for r, linked in zip(reqs, links, strict=False):
            r.linked = linked
        if links[-1]:  # mostly close the last chain; an open one is refused whole
            reqs[-1].linked = False
        expected = self.model.apply_batch([replace(r) for r in reqs], self.now)
        results = self.run(self.env.ledger.create_transfers([replace(r) for r in reqs]))
        assert len(results) == len(reqs)
        for i, (r, res, code) in enumerate(zip(reqs, results, expected, strict=True)):
            if code is None:
                assert isinstance(res, Transfer), (i, res, expected)
                self.check_transfer(r, res)
            else:
                assert isinstance(res, LedgerError), (i, res, expected)
                assert (res.code, res.index) == (code, i), (i, res.code, expected)
            event(f"bulk: {code or 'accepted'}")
        self.note_holds(reqs)

    @rule(which=pick, change=st.integers(0, 3))
    def retry(self, which: int, change: int) -> None:
        """Send an accepted transfer again: the same request returns it, another is a conflict."""
        if not self.model.transfers:
            return
        ids = list(self.model.transfers)
        original, _ = self.model.transfers[ids[which % len(ids)]]
        req = replace(original, linked=False)
        if change == 0:
            req.metadata = {"changed": True}
        self.submit_one(req)

    def move_clock(self, seconds: int) -> None:
        """Forward by ``seconds``; with 0, exactly to the next open hold's timeout (the boundary case)."""
        if seconds == 0:
            due = [
                h.expires_at
                for h in self.model.holds.values()
                if h.expires_at is not None and self.model.live(h, self.now)
            ]
            if due:
                self.env.clock.now = min(due)
            return
        self.env.clock.advance(seconds)

    @rule(seconds=st.integers(0, 20))
    def advance_clock(self, seconds: int) -> None:
        self.move_clock(seconds)

    @rule(seconds=st.integers(0, 30))
    def sweep(self, seconds: int) -> None:
        self.move_clock(seconds)
        due = [h for h in self.model.holds.values() if h.state == "open" and not self.model.live(h, self.now)]
        released = self.run(self.env.ledger.expire_due())
        assert released >= 0
        event(f"sweep: {min(len(due), 3)}+ due")
        for h in due:
            h.state = "expired"

    @rule(op=hold_op, timeout=st.integers(1, 10), then=st.sampled_from(["sweep", "post", "void", "spend"]))
    def hold_and_let_expire(self, op: tuple[Any, ...], timeout: int, then: str) -> None:
        """A hold with a timeout that runs out; then the sweeper, a late post or void, or a spend."""
        req = self.build((*op[:5], timeout))
        self.submit_one(req)
        self.move_clock(0)
        if then == "sweep":
            self.sweep(0)
        elif then in ("post", "void"):
            self.submit_one(post(req.id) if then == "post" else void(req.id))
        else:  # spend what the hold had reserved: it must be free again
            assert req.debit_account_id and req.credit_account_id and req.amount and req.currency
            self.submit_one(
                move(req.debit_account_id, req.credit_account_id, req.amount, currency=req.currency)
            )

    @rule(which=pick)
    def toggle_frozen(self, which: int) -> None:
        ids = list(self.model.accounts)
        acct = self.model.accounts[ids[which % len(ids)]]
        acct.frozen = not acct.frozen
        assert self.run(self.env.ledger.set_frozen(acct.id, acct.frozen)).frozen is acct.frozen

    # the invariant ---------------------------------------------------------------------------

    @invariant()
    def database_agrees(self) -> None:
        if not self.model.accounts:
            return
        accounts, holds, resolutions, stored = self.run(self.read_state())
        now = self.now
        assert set(accounts) == set(self.model.accounts)
        # Conservation per currency, posted and pending.
        for currency in CURRENCIES:
            rows = [r for r in accounts.values() if r[0] == currency]
            assert sum(r[1] for r in rows) == sum(r[2] for r in rows), (currency, rows)
            assert sum(r[3] for r in rows) == sum(r[4] for r in rows), (currency, rows)
        # Every hold is where the model says, and resolved at most once, by the expected transfer.
        assert set(holds) == set(self.model.holds)
        for h in self.model.holds.values():
            state, resolved_by = holds[h.id]
            if h.state in ("posted", "voided"):
                assert (state, resolved_by) == (h.state, h.resolved_by), (h, state)
                assert resolutions.get(h.id) == 1
            else:
                assert h.id not in resolutions
                assert resolved_by is None
                if h.state == "expired":
                    assert state == "expired", (h, state)
                elif self.model.live(h, now):
                    assert state == "open", (h, state)
                else:  # past its timeout: released by the sweeper or a batch, or not yet
                    assert state in ("open", "expired"), (h, state)
        # Totals: posted as the model says; pending exactly the holds still open in the database.
        for acct in self.model.accounts.values():
            currency, debits_posted, credits_posted, debits_pending, credits_pending, frozen = accounts[
                acct.id
            ]
            assert (currency, debits_posted, credits_posted, frozen) == (
                acct.currency,
                acct.debits_posted,
                acct.credits_posted,
                acct.frozen,
            ), acct
            open_holds = [h for h in self.model.holds.values() if holds[h.id][0] == "open"]
            assert debits_pending == sum(h.amount for h in open_holds if h.debit == acct.id), acct
            assert credits_pending == sum(h.amount for h in open_holds if h.credit == acct.id), acct
            if acct.limit == "debits_must_not_exceed_credits":
                assert debits_posted + debits_pending <= credits_posted, acct
            if acct.limit == "credits_must_not_exceed_debits":
                assert credits_posted + credits_pending <= debits_posted, acct
        # Nothing was written that the model did not accept (failed chains leave no trace).
        assert stored == set(self.model.transfers)

    async def read_state(
        self,
    ) -> tuple[dict[UUID, tuple[Any, ...]], dict[UUID, tuple[str, UUID | None]], dict[UUID, int], set[UUID]]:
        mine = list(self.model.accounts)
        hold_ids = list(self.model.holds)
        async with self.env.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, currency, debits_posted, credits_posted, debits_pending, credits_pending, frozen "
                "FROM ledger_accounts WHERE id = ANY(%s)",
                (mine,),
            )
            accounts = {row[0]: tuple(row[1:]) for row in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT id, state, resolved_by FROM ledger_pending WHERE debit_account_id = ANY(%s)", (mine,)
            )
            holds = {row[0]: (row[1], row[2]) for row in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT pending_id, count(*) FROM ledger_transfers WHERE pending_id = ANY(%s) GROUP BY 1",
                (hold_ids,),
            )
            resolutions = dict(await cur.fetchall())
            cur = await conn.execute(
                "SELECT pending_id, count(*) FROM ledger_transfers WHERE pending_id = ANY(%s) "
                "GROUP BY 1 HAVING count(*) > 1",
                (hold_ids,),
            )
            assert await cur.fetchall() == []
            cur = await conn.execute(
                "SELECT id FROM ledger_transfers WHERE debit_account_id = ANY(%(a)s) "
                "OR credit_account_id = ANY(%(a)s)",
                {"a": mine},
            )
            stored = {row[0] for row in await cur.fetchall()}
        return accounts, holds, resolutions, stored


def test_ledger_invariants_hold_under_random_operations(database_url: str) -> None:
    runner = LoopThread()
    pool = runner.run(open_pool(database_url, 4))
    try:
        clock = FakeClock()
        LedgerMachine.env = Env(runner, pool, Ledger(pool, writers=0, clock=clock), clock)
        run_state_machine_as_test(
            LedgerMachine,
            settings=settings(
                max_examples=25,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            ),
        )
    finally:
        runner.run(pool.close())
        runner.close()
