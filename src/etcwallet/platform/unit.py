"""The unit of work: one domain step, its own rows and its transfers, committed together or not at all.

A step is an async function of a :class:`Unit`. Inside it the domain locks and writes its rows through
``unit.conn`` (an open transaction), hands its transfers to the ledger with :meth:`Unit.transfer` (the
ledger's engine runs in the same transaction: the accounts are locked and checked now, the transfers
written with the commit), and queues its audit entries and events with :meth:`Unit.audit` and
:meth:`Unit.emit` (the transactional outbox, :mod:`etcwallet.platform.events`). When the step returns, the unit sends the ledger's writes, the events and the audit
entries (last: the audit chain's lock is held only from then to the end of the commit) with ``COMMIT`` in
one message.

- A refused transfer raises its :class:`~etcwallet.ledger.errors.LedgerError` (precise code and index)
  out of ``unit.transfer``; unless the step catches it, the whole step rolls back. A refusal the domain
  wants on record is audited in a transaction of its own (``refusal=`` of :meth:`UnitOfWork.run`).
- The whole step runs again, from the start and in a fresh transaction, on a deadlock, a serialization
  failure, a duplicate key, or an account the ledger must lock in order (:class:`RetryBatch`). A step
  must therefore be safe to run again: it reads before it writes and makes no outside call (DESIGN,
  "How a domain moves money": an outside call goes between two units, never inside one).
- Transfer ids are the step's idempotency keys: running a committed step again finds its transfers
  stored and moves no money twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg import AsyncClientCursor
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.db import autocommit
from etcwallet.core.errors import DomainError
from etcwallet.ledger.engine import ExtraWrites, RetryBatch, apply_in_unit
from etcwallet.ledger.errors import LedgerError, chain_refusal
from etcwallet.ledger.types import Transfer, TransferRequest, chained
from etcwallet.platform import audit, events
from etcwallet.platform.audit import AuditEvent
from etcwallet.platform.events import Event

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]

ATTEMPTS = 8


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RetryState:
    """What an attempt learned for the next one: accounts to lock up front, and whether to look ids up."""

    extra_accounts: frozenset[UUID] = frozenset()
    check_ids: bool = False
    attempt: int = 0


async def retrying(run: Callable[[RetryState], Awaitable[T]], *, attempts: int = ATTEMPTS) -> T:
    """Run ``run`` until it settles: again after a deadlock, a serialization failure, a duplicate key, or
    a lock the ledger must take in order. Each attempt must be its own transaction.

    The one retry loop of the platform: the ledger's gathered batches and every unit of work use it.
    """
    state = RetryState()
    for attempt in range(attempts):
        state.attempt = attempt
        try:
            return await run(state)
        except RetryBatch as retry:
            state.check_ids = state.check_ids or retry.check_ids
            state.extra_accounts = state.extra_accounts | retry.accounts
        except pg_errors.UniqueViolation:
            state.check_ids = True
        except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
            if attempt == attempts - 1:
                raise
            log.info("transaction retried", extra={"reason": type(exc).__name__, "attempt": attempt + 1})
            await asyncio.sleep(0.001 * 2**attempt)
    raise RuntimeError(f"the transaction did not settle after {attempts} attempts")


@dataclass(frozen=True)
class Along:
    """Insert-only rows that commit with a transfer or not at all: the fast path of a hot step.

    Handed to ``Ledger.create_transfer(..., along=...)``, they join the gathered writer's shared commit
    instead of a transaction of their own. They are written only when the transfers they go with are
    created by that commit (not on a resend that finds them stored), so they must not fail: a domain row
    is an ``INSERT ... ON CONFLICT DO NOTHING`` keyed by the step's own id.
    """

    statements: Sequence[tuple[str, Params]] = ()
    audit: Sequence[AuditEvent] = ()
    events: Sequence[Event] = ()


def commit_statements(
    statements: Sequence[tuple[str, Params]], outbox: Sequence[Event], entries: Sequence[AuditEvent]
) -> list[tuple[str, Params]]:
    """A commit's closing statements in their order: rows, events, then the audit entries (whose lock is
    thus held for the shortest time)."""
    out = list(statements)
    if outbox:
        out.append(events.insert_statement(outbox))
    if entries:
        out.append(audit.append_statement(entries))
    return out


def along_writes(alongs: Sequence[tuple[Along | None, Sequence[Any]]]) -> ExtraWrites:
    """The gathered writer's :data:`ExtraWrites`: each job's rows if all its transfers were just created.

    ``alongs`` pairs each job's rows with the slice of the batch its transfers occupy (a ``range``).
    """

    def writes(results: Sequence[Any], created: set[UUID]) -> list[tuple[str, Params]]:
        kept = [
            along
            for along, span in alongs
            if along is not None
            and all(isinstance(results[i], Transfer) and results[i].id in created for i in span)
        ]
        return commit_statements(
            [s for a in kept for s in a.statements],
            [e for a in kept for e in a.events],
            [e for a in kept for e in a.audit],
        )

    return writes


@dataclass
class Unit:
    """One attempt of a step: an open transaction and what is to be written with its commit."""

    conn: psycopg.AsyncConnection[Any]
    now: datetime
    clock: Callable[[], datetime]
    retry: RetryState
    ledger_writes: list[str] = field(default_factory=list)
    entries: list[AuditEvent] = field(default_factory=list)
    outbox: list[Event] = field(default_factory=list)

    async def transfer(self, request: TransferRequest) -> Transfer:
        """One transfer in this unit's transaction; raises the ledger's refusal (the step rolls back)."""
        (transfer,) = await self.transfers([request])
        return transfer

    async def transfers(self, requests: Sequence[TransferRequest], *, linked: bool = False) -> list[Transfer]:
        """Transfers in this unit's transaction, in order; ``linked`` chains them (all or none).

        The first refusal is raised with its index in ``requests``. A second call in the same unit first
        sends the earlier call's writes, so that it sees their totals.
        """
        if not requests:
            return []
        if self.ledger_writes:
            await self._send(self.ledger_writes)
            self.ledger_writes = []
        chain = chained(requests, linked)
        results, writes = await apply_in_unit(
            self.conn, chain, self.clock, extra_accounts=self.retry.extra_accounts
        )
        errors = [r for r in results if isinstance(r, LedgerError)]
        if errors:
            raise chain_refusal(errors)
        self.ledger_writes = writes
        return [r for r in results if isinstance(r, Transfer)]

    def audit(self, event: AuditEvent) -> None:
        """Append ``event`` to the audit log with this unit's commit (a success: the change is in it)."""
        self.entries.append(event)

    def emit(self, type: str, key: str, payload: Mapping[str, Any]) -> None:
        """Publish an event with this unit's commit (the transactional outbox): no commit, no event."""
        self.outbox.append(Event(type, key, payload))

    async def commit(self) -> None:
        """Send the ledger's writes, the events, the audit entries and ``COMMIT`` as one message."""
        async with AsyncClientCursor(self.conn) as cur:
            tail = [cur.mogrify(q, p) for q, p in commit_statements([], self.outbox, self.entries)]
            await cur.execute("; ".join([*self.ledger_writes, *tail, "COMMIT"]))
        if self.outbox:
            events.committed()

    async def _send(self, statements: Sequence[str]) -> None:
        async with AsyncClientCursor(self.conn) as cur:
            await cur.execute("; ".join(statements))


class UnitOfWork:
    """Runs domain steps as units of work on a pool; one per process, shared by every domain."""

    def __init__(self, pool: AsyncConnectionPool, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.pool = pool
        self.clock = clock

    async def run(
        self,
        step: Callable[[Unit], Awaitable[T]],
        *,
        refusal: Callable[[DomainError], AuditEvent | None] | None = None,
        attempts: int = ATTEMPTS,
    ) -> T:
        """Run ``step`` in a transaction and commit what it did; again from the start if it must.

        A :class:`DomainError` out of the step (a ledger refusal or the domain's own) rolls everything
        back and goes on to the caller; ``refusal`` may turn it into an audit entry, recorded on its own.
        """
        try:
            return await retrying(lambda state: self._attempt(step, state), attempts=attempts)
        except DomainError as error:
            event = refusal(error) if refusal is not None else None
            if event is not None:
                await audit.record(self.pool, event)
            raise

    async def _attempt(self, step: Callable[[Unit], Awaitable[T]], state: RetryState) -> T:
        async with autocommit(self.pool) as conn:
            await conn.execute("BEGIN")
            unit = Unit(conn=conn, now=self.clock(), clock=self.clock, retry=state)
            result = await step(unit)  # on an exception, autocommit() rolls the transaction back
            await unit.commit()
            return result
