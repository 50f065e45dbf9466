"""Delivering events: consumers by name, each with its own offset, fed by a dispatcher in every process.

**Order without gaps.** Sequence numbers are taken when a row is inserted, not when its transaction
commits, so a consumer that remembered "the highest number I saw" would skip an event whose transaction
took a lower number and committed later. Each row therefore carries its transaction's id, and a consumer
reads only events whose transaction is older than the oldest one still running
(``xid < pg_snapshot_xmin(pg_current_snapshot())``), ordered by ``(xid, seq)``. Every transaction below
that horizon has ended, and a transaction that writes later takes a larger id, so the set of events
below the horizon never grows again: an offset ``(xid, seq)`` is passed exactly once. (Transaction ids
are handed out in increasing order; a row's id is its top-level transaction's, ``pg_current_xact_id()``.)
Once a consumer has read everything below the horizon, its offset moves to ``(horizon, 0)``, so a
consumer of a few types does not read the others' events again. The price: an event waits until every
transaction that was running when it committed has ended; one long transaction delays delivery for all.

**At least once.** A handler is called with the dispatcher's connection, inside a savepoint of the
transaction that then advances the offset: what the handler writes through that connection commits
with the offset (so a handler that only writes to the database sees each event once), but anything
else it does (a message, a call to another system) may happen again after a crash or a timeout.
Handlers must be idempotent: key the effect by :attr:`Delivered.id`.

**Retries, then parking.** A failing handler is retried with a doubling delay (per consumer, for the
event at its head: later events wait, so each consumer sees its events in order). After
``max_attempts`` failures the event is *parked* for that consumer (copied to ``event_parked``) and the
consumer moves on; an administrator lists parked events and replays them (:mod:`.parked`). A handler
that raises :class:`Unavailable` (its broker is down, not the event's fault) is retried with backoff
but never parked.

**Several processes.** Every process runs a dispatcher; a consumer's offset row is locked
(``FOR UPDATE SKIP LOCKED``) for the length of a round, so two processes never deliver to the same
consumer at the same moment. Dispatchers look for work every ``poll_seconds`` (one cheap query that
takes no lock) and at once when :func:`committed` says this process committed events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings
from etcwallet.core.db import autocommit
from etcwallet.core.masking import mask_free_text

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,99}")


@dataclass(frozen=True)
class Delivered:
    """An event as a consumer receives it."""

    id: UUID
    type: str
    key: str
    payload: Mapping[str, Any]
    emitted_at: datetime
    xid: int
    seq: int
    attempt: int = 1
    """1 on the first delivery to this consumer; more on a retry or a replay."""
    replay: bool = False
    """Delivered again because an administrator replayed it after it was parked."""


Handler = Callable[[AsyncConnection[Any], Delivered], Awaitable[None]]
"""``async def handle(conn, event)``: ``conn`` is in the dispatcher's transaction, inside a savepoint."""


class Unavailable(Exception):
    """Raised by a handler whose failure is not the event's (a broker is down): retried, never parked."""


@dataclass(frozen=True)
class Consumer:
    """A named reader of events: ``handler`` gets each event of ``types`` (every type if None) once its
    transaction has committed, in (xid, seq) order, at least once."""

    name: str
    handler: Handler
    types: frozenset[str] | None = None
    batch: int = 100
    """Most events handled in one transaction (one round)."""
    writes: bool = True
    """Whether the handler writes through the connection it is given: each delivery then runs in a
    savepoint (two more round trips), so a failure undoes its writes. A handler that never touches the
    connection (the NATS relay) says False and is delivered about twice as fast."""

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"consumer name {self.name!r}: lower case letters, digits, _ . -")
        if self.types is not None:
            object.__setattr__(self, "types", frozenset(self.types))


class Registry:
    """The consumers a process runs: domains register theirs when their modules are imported."""

    def __init__(self) -> None:
        self._consumers: dict[str, Consumer] = {}

    def add(self, consumer: Consumer) -> Consumer:
        """Register ``consumer``; a second consumer with the same name is refused."""
        if consumer.name in self._consumers:
            raise ValueError(f"a consumer named {consumer.name!r} is already registered")
        self._consumers[consumer.name] = consumer
        return consumer

    def register(self, name: str, handler: Handler, *, types: Iterable[str] | None = None) -> Consumer:
        """Register ``handler`` as consumer ``name``, for ``types`` (every type if None)."""
        return self.add(Consumer(name, handler, frozenset(types) if types is not None else None))

    def __iter__(self) -> Iterator[Consumer]:
        return iter(list(self._consumers.values()))


CONSUMERS = Registry()
"""The process's consumers, which the runtime's dispatcher delivers to."""


def register(name: str, handler: Handler, *, types: Iterable[str] | None = None) -> Consumer:
    """Register ``handler`` as consumer ``name`` in the process's registry (:data:`CONSUMERS`)."""
    return CONSUMERS.register(name, handler, types=types)


@dataclass(frozen=True)
class Policy:
    """How failures are retried and when an event is parked."""

    max_attempts: int = 5
    retry_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    handler_timeout_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            settings.events_max_attempts,
            settings.events_retry_seconds,
            settings.events_retry_max_seconds,
            settings.events_handler_timeout_seconds,
        )

    def backoff(self, attempt: int) -> timedelta:
        """The wait after the ``attempt``-th failure: doubling from ``retry_seconds``, capped."""
        return timedelta(seconds=min(self.retry_seconds * 2 ** min(attempt - 1, 30), self.retry_max_seconds))


_running: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


def committed() -> None:
    """Tell this process's dispatchers that a transaction with events has just committed.

    Call it after the commit (the unit of work does). It costs nothing and sends nothing: other
    processes find the events at their next poll.
    """
    for dispatcher in list(_running):
        dispatcher.wake()


_OFFSET = (
    "SELECT after_xid::text, after_seq, failing_xid::text, failing_seq, attempts, "
    "retry_at IS NULL OR retry_at <= now(), pg_snapshot_xmin(pg_current_snapshot())::text "
    "FROM event_consumers WHERE name = %s FOR UPDATE SKIP LOCKED"
)
_EVENTS = (
    "SELECT xid::text, seq, id, type, key, payload, emitted_at FROM event_outbox "
    "WHERE (xid, seq) > (%(xid)s::xid8, %(seq)s) AND xid < %(horizon)s::xid8{types} "
    "ORDER BY xid, seq LIMIT %(limit)s"
)
_REPLAYS = (
    "SELECT id, event_id, event_xid::text, event_seq, type, key, payload, emitted_at, attempts "
    "FROM event_parked WHERE consumer = %s AND status = 'replaying' ORDER BY id LIMIT %s"
)
_SAVE_OFFSET = (
    "UPDATE event_consumers SET after_xid = %s::xid8, after_seq = %s, failing_xid = %s::xid8, "
    "failing_seq = %s, attempts = %s, retry_at = %s, last_error = %s, updated_at = now() WHERE name = %s"
)
_PARK = (
    "INSERT INTO event_parked (consumer, event_id, event_xid, event_seq, type, key, payload, emitted_at, "
    "attempts, last_error) VALUES (%s, %s, %s::xid8, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (consumer, event_id) DO UPDATE SET status = 'parked', attempts = excluded.attempts, "
    "last_error = excluded.last_error, parked_at = now()"
)
_DUE = (
    "SELECT c.name FROM event_consumers c WHERE c.name = ANY(%s) "
    "AND (c.retry_at IS NULL OR c.retry_at <= now()) "
    "AND (EXISTS (SELECT 1 FROM event_outbox e WHERE (e.xid, e.seq) > (c.after_xid, c.after_seq) "
    "             AND e.xid < pg_snapshot_xmin(pg_current_snapshot())) "
    "     OR EXISTS (SELECT 1 FROM event_parked p WHERE p.consumer = c.name AND p.status = 'replaying'))"
)
_PRUNE = (
    "DELETE FROM event_outbox WHERE (xid, seq) IN (SELECT e.xid, e.seq FROM event_outbox e "
    "WHERE e.emitted_at < now() - %s AND NOT EXISTS (SELECT 1 FROM event_consumers c "
    "WHERE (c.after_xid, c.after_seq) < (e.xid, e.seq)) ORDER BY e.xid, e.seq LIMIT %s)"
)


def describe(exc: BaseException) -> str:
    """What is kept of a handler's failure (masked: administrators read it)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return mask_free_text(text)[:1000]


@dataclass
class _Round:
    """One consumer's state while a round runs: its offset and the event at its head that fails."""

    after: tuple[int, int]
    failing: tuple[int, int] | None
    attempts: int
    retry_at: datetime | None = None
    last_error: str | None = None
    progress: int = 0


class Dispatcher:
    """Delivers committed events to ``consumers``; one per process, or several (they share the work).

    ``await start()`` records the consumers (a new one starts at the oldest event kept), then ``run()``
    loops until cancelled. ``run_once()`` is one pass over every consumer, for tests and the CLI.
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        consumers: Iterable[Consumer],
        *,
        policy: Policy | None = None,
        poll_seconds: float = 0.5,
        retention: timedelta | None = timedelta(days=7),
        prune_every: timedelta = timedelta(hours=1),
    ) -> None:
        self.pool = pool
        self.consumers = {c.name: c for c in consumers}
        self.policy = policy or Policy()
        self.poll_seconds = poll_seconds
        self.retention = retention
        self.prune_every = prune_every
        self._wake = asyncio.Event()
        self._pruned_at: datetime | None = None

    @classmethod
    def from_settings(
        cls, pool: AsyncConnectionPool, consumers: Iterable[Consumer], settings: Settings
    ) -> Dispatcher:
        return cls(
            pool,
            consumers,
            policy=Policy.from_settings(settings),
            poll_seconds=settings.events_poll_seconds,
            retention=timedelta(days=settings.events_retention_days),
        )

    def wake(self) -> None:
        """Look for events now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        """Record every consumer's offset row (kept if it exists)."""
        if not self.consumers:
            return
        async with autocommit(self.pool) as conn:
            await conn.execute(
                "INSERT INTO event_consumers (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
                (sorted(self.consumers),),
            )

    async def run(self) -> None:
        """Deliver until cancelled: a round after every wake-up or poll, again at once while it progresses."""
        started = False
        _running.add(self)
        try:
            while True:
                self._wake.clear()
                try:
                    if not started:
                        await self.start()
                        started = True
                    progress = await self.run_once()
                    await self._maybe_prune()
                except Exception:  # the database is away, or a bug: keep dispatching, say why
                    log.exception("event dispatch round failed")
                    progress = 0
                if progress:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
        finally:
            _running.discard(self)

    async def run_once(self) -> int:
        """One round for every consumer with work; returns how many events were handled or parked."""
        if not self.consumers:
            return 0
        async with autocommit(self.pool) as conn:
            cur = await conn.execute(_DUE, (sorted(self.consumers),))
            due = [name for (name,) in await cur.fetchall()]
        progress = 0
        for name in due:
            progress += await self.consume(self.consumers[name])
        return progress

    async def consume(self, consumer: Consumer) -> int:
        """One round for ``consumer``, in one transaction under its offset row's lock; 0 if another process
        holds it, or it waits for a retry."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_OFFSET, (consumer.name,))
            row = await cur.fetchone()
            if row is None or not row[5]:
                return 0
            after_xid, after_seq, failing_xid, failing_seq, attempts, _, horizon = row
            state = _Round(
                (int(after_xid), after_seq),
                (int(failing_xid), failing_seq) if failing_xid is not None else None,
                attempts,
            )
            before = (state.after, state.failing, state.attempts)
            state.progress += await self._replays(conn, consumer)
            events = await self._read(conn, consumer, state.after, int(horizon))
            blocked = False
            for event in events:
                if not await self._handle(conn, consumer, event, state):
                    blocked = True
                    break
            if not blocked and len(events) < consumer.batch:
                # Everything below the horizon is read: later events all lie past (horizon, 0).
                state.after = max(state.after, (int(horizon), 0))
            if (state.after, state.failing, state.attempts) != before:
                await conn.execute(
                    _SAVE_OFFSET,
                    (
                        str(state.after[0]),
                        state.after[1],
                        str(state.failing[0]) if state.failing else None,
                        state.failing[1] if state.failing else None,
                        state.attempts,
                        state.retry_at,
                        state.last_error,
                        consumer.name,
                    ),
                )
            return state.progress

    async def _read(
        self, conn: AsyncConnection[Any], consumer: Consumer, after: tuple[int, int], horizon: int
    ) -> list[Delivered]:
        params: dict[str, Any] = {
            "xid": str(after[0]),
            "seq": after[1],
            "horizon": str(horizon),
            "limit": consumer.batch,
        }
        types = ""
        if consumer.types is not None:
            types, params["types"] = " AND type = ANY(%(types)s)", sorted(consumer.types)
        cur = await conn.execute(_EVENTS.format(types=types), params)
        return [
            Delivered(id_, type_, key, payload, at, int(xid), seq)
            for xid, seq, id_, type_, key, payload, at in await cur.fetchall()
        ]

    async def _handle(
        self, conn: AsyncConnection[Any], consumer: Consumer, event: Delivered, state: _Round
    ) -> bool:
        """Deliver ``event``; False when the consumer must stop here and retry it later."""
        position = (event.xid, event.seq)
        attempt = state.attempts + 1 if state.failing == position else 1
        failure = await self._call(conn, consumer, replace(event, attempt=attempt))
        if failure is None:
            state.after, state.failing, state.attempts, state.retry_at = position, None, 0, None
            state.last_error = None
            state.progress += 1
            return True
        error = describe(failure)
        if attempt >= self.policy.max_attempts and not isinstance(failure, Unavailable):
            await conn.execute(
                _PARK,
                (
                    consumer.name,
                    event.id,
                    str(event.xid),
                    event.seq,
                    event.type,
                    event.key,
                    Jsonb(event.payload),
                    event.emitted_at,
                    attempt,
                    error,
                ),
            )
            log.error(
                "event parked",
                extra={"consumer": consumer.name, "event_id": str(event.id), "type": event.type},
            )
            state.after, state.failing, state.attempts, state.retry_at = position, None, 0, None
            state.last_error = None
            state.progress += 1
            return True
        state.failing, state.attempts, state.last_error = position, attempt, error
        state.retry_at = datetime.now(UTC) + self.policy.backoff(attempt)
        return False

    async def _call(
        self, conn: AsyncConnection[Any], consumer: Consumer, event: Delivered
    ) -> Exception | None:
        """Run the handler in a savepoint with a time limit; the exception it failed with, if any."""
        try:
            async with contextlib.AsyncExitStack() as scope:
                if consumer.writes:
                    await scope.enter_async_context(conn.transaction())
                async with asyncio.timeout(self.policy.handler_timeout_seconds):
                    await consumer.handler(conn, event)
        except Exception as exc:
            log.warning(
                "event handler failed",
                exc_info=True,
                extra={
                    "consumer": consumer.name,
                    "event_id": str(event.id),
                    "type": event.type,
                    "attempt": event.attempt,
                },
            )
            return exc
        return None

    async def _replays(self, conn: AsyncConnection[Any], consumer: Consumer) -> int:
        """Deliver the events an administrator asked to replay: once each; a failure parks it again."""
        cur = await conn.execute(_REPLAYS, (consumer.name, consumer.batch))
        rows = await cur.fetchall()
        for parked_id, event_id, xid, seq, type_, key, payload, at, attempts in rows:
            event = Delivered(event_id, type_, key, payload, at, int(xid), seq, attempts + 1, replay=True)
            failure = await self._call(conn, consumer, event)
            if failure is None:
                await conn.execute(
                    "UPDATE event_parked SET status = 'replayed', attempts = attempts + 1, "
                    "replayed_at = now() WHERE id = %s",
                    (parked_id,),
                )
            else:
                await conn.execute(
                    "UPDATE event_parked SET status = 'parked', attempts = attempts + 1, last_error = %s "
                    "WHERE id = %s",
                    (describe(failure), parked_id),
                )
        return len(rows)

    async def _maybe_prune(self) -> None:
        now = datetime.now(UTC)
        if self.retention is None or (self._pruned_at and now - self._pruned_at < self.prune_every):
            return
        self._pruned_at = now
        pruned = await prune(self.pool, self.retention)
        if pruned:
            log.info("events pruned", extra={"count": pruned})


async def prune(pool: AsyncConnectionPool, older_than: timedelta, chunk: int = 10_000) -> int:
    """Delete events older than ``older_than`` that every consumer has passed, ``chunk`` rows a
    transaction; returns how many. A consumer that is no longer run keeps its row (and so the events
    after its offset) until its row is deleted."""
    total = 0
    while True:
        async with autocommit(pool) as conn:
            cur = await conn.execute(_PRUNE, (older_than, chunk))
        total += cur.rowcount
        if cur.rowcount < chunk:
            return total


async def positions(conn: AsyncConnection[Any]) -> Sequence[Mapping[str, Any]]:
    """Every consumer's offset and the event it is retrying, if any (for administrators)."""
    cur = await conn.execute(
        "SELECT name, after_xid::text, after_seq, failing_xid::text, failing_seq, attempts, retry_at, "
        "last_error, updated_at FROM event_consumers ORDER BY name"
    )
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
