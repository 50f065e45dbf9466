"""Events: the outbox insert, ordering by transaction, at-least-once delivery, retries, parking and replay.

Each test makes its own event type and consumer names, so that the events other tests wrote to the shared
database are not theirs to see (a new consumer starts at the oldest event kept, and reads only its types).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.db import open_pool
from etcwallet.platform import events
from etcwallet.platform.events import Consumer, Delivered, Dispatcher, Event, Policy

FAST = Policy(max_attempts=3, retry_seconds=0.05, retry_max_seconds=1.0, handler_timeout_seconds=5.0)


def new_type() -> str:
    return f"test.happened_{uuid4().hex[:12]}"


def new_name() -> str:
    return f"test.{uuid4().hex[:12]}"


class Recorder:
    """A handler that records what it was given; ``fail`` decides (by event and attempt) whether it raises."""

    def __init__(self, fail: Any = None) -> None:
        self.calls: list[Delivered] = []
        self.fail = fail

    async def __call__(self, conn: AsyncConnection[Any], event: Delivered) -> None:
        self.calls.append(event)
        if self.fail is not None and self.fail(event):
            raise RuntimeError(f"handler refused {event.payload.get('n')} (tel 13812345678)")

    @property
    def numbers(self) -> list[Any]:
        return [e.payload["n"] for e in self.calls]


async def dispatcher(pool: AsyncConnectionPool, *consumers: Consumer, policy: Policy = FAST) -> Dispatcher:
    d = Dispatcher(pool, consumers, policy=policy, poll_seconds=0.05, retention=None)
    await d.start()
    return d


async def drain(d: Dispatcher, rounds: int = 20) -> None:
    """Run rounds until one makes no progress."""
    for _ in range(rounds):
        if not await d.run_once():
            return


async def emit_committed(pool: AsyncConnectionPool, event_type: str, *numbers: int, key: str = "k") -> None:
    async with pool.connection() as conn, conn.transaction():
        for n in numbers:
            await events.emit(conn, event_type, key, {"n": n})


async def due_now(pool: AsyncConnectionPool, name: str) -> None:
    """End a consumer's backoff (instead of sleeping through it)."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE event_consumers SET retry_at = now() WHERE retry_at IS NOT NULL AND name = %s", (name,)
        )


async def consumer_row(pool: AsyncConnectionPool, name: str) -> dict[str, Any]:
    async with pool.connection() as conn:
        rows = [r for r in await events.positions(conn) if r["name"] == name]
    assert len(rows) == 1
    return rows[0]


# --- writing -----------------------------------------------------------------------------------------


def test_insert_statement_is_one_statement_with_one_json_document() -> None:
    batch = [Event(f"test.n{i}", f"key-{i}", {"amount": i * 100, "currency": "CNY"}) for i in range(500)]
    sql, params = events.insert_statement(batch)
    assert sql.count("%s") == 1 and ";" not in sql and "RETURNING" not in sql.upper()
    (doc,) = params
    rows = json.loads(doc)
    assert len(rows) == 500
    assert rows[7] == [str(batch[7].id), "test.n7", "key-7", {"amount": 700, "currency": "CNY"}]


@pytest.mark.parametrize(
    "payload",
    [{"amount": 1.5}, {"lines": [{"amount": 2.0}]}, {"rate": float("nan")}],
    ids=["float", "nested float", "nan"],
)
def test_a_float_in_a_payload_is_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="float"):
        Event("wallet.paid", "k", payload)


@pytest.mark.parametrize(
    "event_type", ["paid", "Wallet.paid", "wallet.", ".paid", "wallet paid", "wallet.pa-id"]
)
def test_an_event_type_is_domain_dot_what(event_type: str) -> None:
    with pytest.raises(ValueError, match="domain"):
        Event(event_type, "k", {})


def test_payload_values_json_cannot_carry_are_written_as_text_or_refused() -> None:
    some_id = uuid4()
    e = Event("fx.rated", "k", {"id": some_id, "rate": Decimal("7.1234")})
    assert json.loads(events.rows_json([e]))[0][3] == {"id": str(some_id), "rate": "7.1234"}
    with pytest.raises(TypeError, match="set"):
        events.rows_json([Event("fx.rated", "k", {"bad": {1, 2}})])
    with pytest.raises(ValueError, match="NUL"):
        events.rows_json([Event("fx.rated", "k", {"text": "a\x00b"})])
    with pytest.raises(ValueError, match="key"):
        Event("fx.rated", "", {})


async def test_the_insert_travels_in_one_message_with_other_writes_and_the_commit(
    pool: AsyncConnectionPool,
) -> None:
    """The unit of work binds the statement on the client and sends it with ``COMMIT``, as the ledger's
    small batches do."""
    event_type = new_type()
    batch = [Event(event_type, "order-1", {"n": n, "amount": 100 * n}) for n in range(3)]
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            async with AsyncClientCursor(conn) as cur:
                insert = cur.mogrify(*events.insert_statement(batch))
                await cur.execute(f"BEGIN; SELECT 1; {insert}; COMMIT")
        finally:
            await conn.set_autocommit(False)
        cur2 = await conn.execute(
            "SELECT id, key, payload, xid::text FROM event_outbox WHERE type = %s ORDER BY xid, seq",
            (event_type,),
        )
        rows = await cur2.fetchall()
        await conn.rollback()
    assert [r[0] for r in rows] == [e.id for e in batch]
    assert [r[2]["n"] for r in rows] == [0, 1, 2]
    assert len({r[3] for r in rows}) == 1  # one transaction


async def test_an_event_of_a_step_that_rolled_back_is_never_delivered(pool: AsyncConnectionPool) -> None:
    event_type, seen = new_type(), Recorder()
    d = await dispatcher(pool, Consumer(new_name(), seen, frozenset({event_type})))
    async with pool.connection() as conn:
        await events.emit(conn, event_type, "k", {"n": 1})
        await conn.rollback()
    await emit_committed(pool, event_type, 2)
    await drain(d)
    assert seen.numbers == [2]


# --- order: an event that commits late is not skipped ---------------------------------------------------


async def test_an_event_committed_later_than_one_with_a_higher_number_is_not_skipped(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    """Two overlapping transactions: A takes the lower number, B the higher; B commits first.

    A consumer that kept "the highest number I delivered" would deliver B's event and never A's. Here
    B's waits until A has ended, and then both come in (xid, seq) order.
    """
    event_type, seen = new_type(), Recorder()
    name = new_name()
    d = await dispatcher(pool, Consumer(name, seen, frozenset({event_type})))
    a = await psycopg.AsyncConnection.connect(database_url)
    b = await psycopg.AsyncConnection.connect(database_url)
    try:
        await events.emit(a, event_type, "k", {"n": 1})
        await events.emit(b, event_type, "k", {"n": 2})
        positions = {}
        for label, conn in (("a", a), ("b", b)):
            cur = await conn.execute(
                "SELECT xid::text::numeric, seq FROM event_outbox WHERE type = %s", (event_type,)
            )
            ((xid, seq),) = await cur.fetchall()
            positions[label] = (xid, seq)
        assert positions["a"][1] < positions["b"][1], positions  # A holds the lower number
        await b.commit()

        # Only B's event is visible: the trap a highest-number consumer falls into.
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT payload->>'n' FROM event_outbox WHERE type = %s", (event_type,))
            assert [r[0] for r in await cur.fetchall()] == ["2"]
        await drain(d)
        assert seen.numbers == []  # held back while A may still commit
        assert int((await consumer_row(pool, name))["after_xid"]) <= positions["a"][0]

        await a.commit()
        await drain(d)
        assert seen.numbers == [1, 2]
    finally:
        await a.close()
        await b.close()


async def test_a_late_transaction_that_rolls_back_releases_the_events_after_it(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    event_type, seen = new_type(), Recorder()
    d = await dispatcher(pool, Consumer(new_name(), seen, frozenset({event_type})))
    a = await psycopg.AsyncConnection.connect(database_url)
    try:
        await events.emit(a, event_type, "k", {"n": 1})
        await emit_committed(pool, event_type, 2, 3)
        await drain(d)
        assert seen.numbers == []
        await a.rollback()
        await drain(d)
        assert seen.numbers == [2, 3]
    finally:
        await a.close()


async def test_a_consumer_sees_only_its_types_in_order_and_moves_past_the_rest(
    pool: AsyncConnectionPool,
) -> None:
    mine, other, seen = new_type(), new_type(), Recorder()
    name = new_name()
    d = await dispatcher(pool, Consumer(name, seen, frozenset({mine}), batch=2))
    async with pool.connection() as conn, conn.transaction():
        for n in range(7):
            await events.emit(conn, mine if n % 2 else other, "k", {"n": n})
        cur = await conn.execute("SELECT pg_current_xact_id()::text::numeric")
        row = await cur.fetchone()
        assert row is not None
        xid = row[0]
    await drain(d)
    assert seen.numbers == [1, 3, 5]
    # Past everything below the horizon, the other type included: it is not read again.
    assert int((await consumer_row(pool, name))["after_xid"]) > xid


# --- crashes and at-least-once --------------------------------------------------------------------------


async def test_an_event_committed_while_no_dispatcher_ran_is_delivered_after_restart(
    pool: AsyncConnectionPool,
) -> None:
    event_type, name = new_type(), new_name()
    first = Recorder()
    d = await dispatcher(pool, Consumer(name, first, frozenset({event_type})))
    await emit_committed(pool, event_type, 1)
    await drain(d)
    del d  # the process stops; an event commits meanwhile
    await emit_committed(pool, event_type, 2)

    after_restart = Recorder()
    d2 = await dispatcher(pool, Consumer(name, after_restart, frozenset({event_type})))
    await drain(d2)
    assert first.numbers == [1] and after_restart.numbers == [2]


async def test_a_crash_during_delivery_delivers_again_and_an_idempotent_handler_applies_once(
    pool: AsyncConnectionPool,
) -> None:
    """The process dies after the handler's outside effect and before the offset commits: the event
    comes again after restart (at least once), and a handler keyed by the event id does nothing twice."""
    event_type, name = new_type(), new_name()
    applied: dict[UUID, int] = {}  # an effect outside the database (a message sent), keyed by event id
    calls: list[UUID] = []
    entered, never = asyncio.Event(), asyncio.Event()

    async def idempotent(conn: AsyncConnection[Any], event: Delivered) -> None:
        calls.append(event.id)
        applied.setdefault(event.id, event.payload["n"])
        if len(calls) == 1:
            entered.set()
            await never.wait()  # the process dies here

    await emit_committed(pool, event_type, 1, 2)
    d = Dispatcher(
        pool, [Consumer(name, idempotent, frozenset({event_type}))], policy=FAST, poll_seconds=0.05
    )
    task = asyncio.create_task(d.run())
    await asyncio.wait_for(entered.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await consumer_row(pool, name))["after_seq"] == 0  # nothing was committed

    d2 = await dispatcher(pool, Consumer(name, idempotent, frozenset({event_type})))
    await drain(d2)
    assert len(calls) == 3 and calls[0] == calls[1]  # the first event came twice
    assert sorted(applied.values()) == [1, 2]


async def test_what_a_handler_writes_commits_with_the_offset(pool: AsyncConnectionPool) -> None:
    """A handler's own database writes roll back with a failed delivery: its savepoint is undone."""
    event_type, name = new_type(), new_name()
    attempts: list[int] = []

    async def writes_then_fails(conn: AsyncConnection[Any], event: Delivered) -> None:
        attempts.append(event.attempt)
        await events.emit(conn, f"{event_type}_echo", "k", {"attempt": event.attempt})
        if event.attempt == 1:
            raise RuntimeError("first attempt fails after writing")

    d = await dispatcher(
        pool, Consumer(name, writes_then_fails, frozenset({event_type})), policy=Policy(retry_seconds=0.01)
    )
    await emit_committed(pool, event_type, 1)
    await drain(d)
    await asyncio.sleep(0.05)
    await drain(d)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT payload->>'attempt' FROM event_outbox WHERE type = %s", (f"{event_type}_echo",)
        )
        assert [r[0] for r in await cur.fetchall()] == ["2"]
    assert attempts == [1, 2]


# --- retries, parking, replay ---------------------------------------------------------------------------


async def test_a_handler_failing_twice_then_succeeding_is_retried_with_backoff_in_order(
    pool: AsyncConnectionPool,
) -> None:
    event_type, name = new_type(), new_name()
    policy = Policy(max_attempts=5, retry_seconds=0.2, retry_max_seconds=5)
    seen = Recorder(fail=lambda e: e.payload["n"] == 1 and e.attempt <= 2)
    d = await dispatcher(pool, Consumer(name, seen, frozenset({event_type})), policy=policy)
    await emit_committed(pool, event_type, 1, 2)

    await d.run_once()
    assert [(e.payload["n"], e.attempt) for e in seen.calls] == [(1, 1)]
    row = await consumer_row(pool, name)
    assert row["attempts"] == 1 and row["failing_seq"] is not None
    assert "RuntimeError: handler refused 1" in row["last_error"]
    assert "13812345678" not in row["last_error"]  # masked: administrators read it

    await d.run_once()  # too early: the backoff holds
    assert len(seen.calls) == 1

    await asyncio.sleep(0.25)
    await d.run_once()
    assert [(e.payload["n"], e.attempt) for e in seen.calls] == [(1, 1), (1, 2)]
    await asyncio.sleep(0.25)
    await d.run_once()  # 0.4 s since the second failure: still waiting
    assert len(seen.calls) == 2
    await asyncio.sleep(0.2)
    await drain(d)
    assert [(e.payload["n"], e.attempt) for e in seen.calls] == [(1, 1), (1, 2), (1, 3), (2, 1)]
    row = await consumer_row(pool, name)
    assert (row["attempts"], row["failing_seq"], row["retry_at"], row["last_error"]) == (0, None, None, None)


async def test_after_n_failures_an_event_is_parked_and_the_consumer_moves_on_then_replay(
    pool: AsyncConnectionPool,
) -> None:
    event_type, name = new_type(), new_name()
    fixed = False
    seen = Recorder(fail=lambda e: e.payload["n"] == 1 and not fixed)
    d = await dispatcher(pool, Consumer(name, seen, frozenset({event_type})))
    await emit_committed(pool, event_type, 1, 2)
    for _ in range(FAST.max_attempts):
        await drain(d)
        await due_now(pool, name)
    await drain(d)
    assert seen.numbers == [1, 1, 1, 2]

    async with pool.connection() as conn:
        (parked,) = await events.list_parked(conn, consumer=name)
    assert (parked.type, parked.payload, parked.attempts, parked.status) == (
        event_type,
        {"n": 1},
        3,
        "parked",
    )
    assert "handler refused 1" in parked.last_error

    # Replay while the handler still fails: parked again, with one more attempt.
    async with pool.connection() as conn:
        await events.request_replay(conn, parked.id, requested_by="system:test")
    await drain(d)
    async with pool.connection() as conn:
        again = await events.get_parked_or_raise(conn, parked.id)
    assert (again.status, again.attempts, again.replay_requested_by) == ("parked", 4, "system:test")
    assert seen.calls[-1].replay and seen.calls[-1].attempt == 4

    fixed = True
    async with pool.connection() as conn:
        await events.request_replay(conn, parked.id, requested_by="system:test")
        with pytest.raises(events.EventError) as refused:
            await events.request_replay(conn, parked.id, requested_by="system:test")
        assert refused.value.code == "parked_event_not_parked"
        await conn.commit()
    await drain(d)
    async with pool.connection() as conn:
        done = await events.get_parked_or_raise(conn, parked.id)
        with pytest.raises(events.EventError) as missing:
            await events.request_replay(conn, 2**62, requested_by="system:test")
    assert missing.value.code == "parked_event_not_found" and missing.value.status == 404
    assert (done.status, done.attempts) == ("replayed", 5) and done.replayed_at is not None
    assert seen.numbers == [1, 1, 1, 2, 1, 1]


async def test_a_handler_stuck_in_a_query_times_out_as_a_failure_and_is_parked(
    pool: AsyncConnectionPool,
) -> None:
    """The timeout cancels the handler's query; the savepoint rolls back and the round goes on."""
    event_type, name = new_type(), new_name()
    attempts: list[int] = []

    async def stuck(conn: AsyncConnection[Any], event: Delivered) -> None:
        attempts.append(event.attempt)
        await conn.execute("SELECT pg_sleep(5)")

    policy = Policy(max_attempts=2, retry_seconds=0.01, handler_timeout_seconds=0.3)
    d = await dispatcher(pool, Consumer(name, stuck, frozenset({event_type})), policy=policy)
    await emit_committed(pool, event_type, 1)
    for _ in range(3):
        await drain(d)
        await due_now(pool, name)
    async with pool.connection() as conn:
        (parked,) = await events.list_parked(conn, consumer=name)
    assert attempts == [1, 2] and (parked.attempts, parked.last_error) == (2, "TimeoutError")


async def test_an_unavailable_broker_is_retried_but_never_parked(pool: AsyncConnectionPool) -> None:
    event_type, name = new_type(), new_name()
    down = True
    calls: list[int] = []

    async def relay(conn: AsyncConnection[Any], event: Delivered) -> None:
        calls.append(event.attempt)
        if down:
            raise events.Unavailable("broker down")

    d = await dispatcher(pool, Consumer(name, relay, frozenset({event_type})))
    await emit_committed(pool, event_type, 1)
    for _ in range(FAST.max_attempts + 2):
        await drain(d)
        await due_now(pool, name)
    async with pool.connection() as conn:
        assert await events.list_parked(conn, consumer=name) == []
    assert (await consumer_row(pool, name))["attempts"] == FAST.max_attempts + 2
    down = False
    await due_now(pool, name)
    await drain(d)
    assert calls == list(range(1, FAST.max_attempts + 4))


# --- several processes ----------------------------------------------------------------------------------


@pytest.fixture
async def second_pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    p = await open_pool(database_url, 3)
    yield p
    await p.close()


async def test_two_processes_never_deliver_one_event_to_one_consumer_at_once(
    pool: AsyncConnectionPool, second_pool: AsyncConnectionPool
) -> None:
    event_type, name = new_type(), new_name()
    delivered: list[int] = []
    busy = 0
    overlap = False

    async def slow(conn: AsyncConnection[Any], event: Delivered) -> None:
        nonlocal busy, overlap
        busy += 1
        overlap = overlap or busy > 1
        await asyncio.sleep(0.001)
        delivered.append(event.payload["n"])
        busy -= 1

    consumer = Consumer(name, slow, frozenset({event_type}), batch=7)
    one = await dispatcher(pool, consumer)
    two = await dispatcher(second_pool, consumer)
    tasks = [asyncio.create_task(d.run()) for d in (one, two)]
    try:
        for chunk in range(10):
            await emit_committed(pool, event_type, *range(chunk * 20, chunk * 20 + 20))
            events.committed()
        for _ in range(200):
            if len(delivered) >= 200:
                break
            await asyncio.sleep(0.05)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert delivered == list(range(200))
    assert not overlap


async def test_committed_wakes_the_dispatcher_before_its_poll(pool: AsyncConnectionPool) -> None:
    event_type, delivered = new_type(), asyncio.Event()

    async def handler(conn: AsyncConnection[Any], event: Delivered) -> None:
        delivered.set()

    d = Dispatcher(pool, [Consumer(new_name(), handler, frozenset({event_type}))], poll_seconds=60)
    task = asyncio.create_task(d.run())
    try:
        await asyncio.sleep(0.3)  # its first round is done; the next poll is a minute away
        await emit_committed(pool, event_type, 1)
        events.committed()
        await asyncio.wait_for(delivered.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_prune_deletes_only_what_every_consumer_has_passed(
    fresh_database: Callable[[], str],
) -> None:
    """In a database of its own: every consumer of the shared one would hold the events back."""
    p = await open_pool(fresh_database(), 2)
    try:
        event_type, lagging, passing = new_type(), new_name(), new_name()
        await emit_committed(p, event_type, 1)
        d = await dispatcher(
            p,
            Consumer(lagging, Recorder(fail=lambda e: True), frozenset({event_type})),
            Consumer(passing, Recorder()),
        )
        await drain(d)  # the lagging one fails: its offset stays before the event
        assert await events.prune(p, timedelta(0)) == 0
        async with p.connection() as conn:
            await conn.execute("DELETE FROM event_consumers WHERE name = %s", (lagging,))  # retired
        assert await events.prune(p, timedelta(days=1)) == 0  # too young
        assert await events.prune(p, timedelta(0)) == 1
        async with p.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM event_outbox")
            assert await cur.fetchone() == (0,)
    finally:
        await p.close()
