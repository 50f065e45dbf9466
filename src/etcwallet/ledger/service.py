"""The ledger service: accounts, transfers, balances and history, for every domain that moves money.

Single transfers and linked chains submitted at the same moment are gathered into one database
transaction (as TigerBeetle batches), so throughput does not stop at one commit per transfer; each caller
still gets its own result or its own error. Bulk jobs call :meth:`Ledger.create_transfers` with up to
8,000 transfers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from etcwallet.core import metrics
from etcwallet.core.db import autocommit
from etcwallet.core.money import check_currency
from etcwallet.ledger.chart import AccountCode, AccountPurpose, platform_accounts
from etcwallet.ledger.engine import (
    BULK_THRESHOLD,
    PROBE_REFUSALS,
    TRANSFER_COLUMNS,
    ExtraWrites,
    Result,
    apply_and_commit,
    apply_transfers,
    transfer_from_row,
)
from etcwallet.ledger.errors import LedgerError, chain_refusal
from etcwallet.ledger.owners import ACCOUNT_COLUMNS, LEDGER_ACTOR, list_owned, open_owned
from etcwallet.ledger.types import Account, LedgerAction, PendingState, Transfer, TransferRequest, chained
from etcwallet.platform import audit, events
from etcwallet.platform.audit import Actor, AuditEvent
from etcwallet.platform.unit import Along, RetryState, along_writes, commit_statements, retrying

log = logging.getLogger(__name__)

MAX_BATCH = 8000
_ACCOUNT_COLUMNS = ACCOUNT_COLUMNS


HISTORY_BLOCK_SHIFT = 13
"""Account history is indexed by (account, ``seq >> 13``): transfers in one block of 8,192 share a key.

Migration 0006 builds the indexes with this literal expression; queries must spell it the same way.
"""
HISTORY_NEWEST_BLOCK = (2**63 - 1) >> HISTORY_BLOCK_SHIFT


def _side_query(side: str, condition: str, limit: str) -> str:
    """One side's newest transfers of account ``%(a)s`` meeting ``condition``, from block ``%(block)s`` down.

    The index yields the blocks newest first; within a block PostgreSQL sorts by ``seq`` (an incremental
    sort of at most 8,192 rows), so the ``LIMIT`` stops the scan early.
    """
    block = f"(seq >> {HISTORY_BLOCK_SHIFT})"
    return (
        f"(SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE {side}_account_id = %(a)s "
        f"AND {block} <= %(block)s AND {condition} ORDER BY {block} DESC, seq DESC LIMIT {limit})"
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AccountSpec:
    """An account to open. The id is the caller's, so opening it again is safe."""

    id: UUID
    currency: str
    code: str
    owner: str
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """A transfer seen from one account: which side it was on and the posted balance just after."""

    transfer: Transfer
    side: str  # "debit" or "credit"
    balance_after: int


@dataclass
class _Job:
    requests: list[TransferRequest]
    future: asyncio.Future[list[Result]]
    along: Along | None = None


class Ledger:
    """The one way money moves. Create with a pool, ``await start()``, and ``await stop()`` at the end."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        writers: int = 1,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self._writers = writers
        self._max_batch = min(max_batch, MAX_BATCH)
        self._jobs: deque[_Job] = deque()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._probe_conn: psycopg.AsyncConnection[Any] | None = None
        self._probe_lock = asyncio.Lock()

    # --- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writers that gather concurrent submissions into shared transactions."""
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._writer(), name=f"ledger-writer-{i}") for i in range(self._writers)
        ]

    async def stop(self) -> None:
        """Finish what was submitted, then stop the writers."""
        self._stopping = True
        self._wakeup.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._probe_conn is not None:
            await self._probe_conn.close()
            self._probe_conn = None

    async def _probe_refusals(self, ids: str) -> bool:
        """Whether any of ``ids`` (a uuid array literal) was refused before: asked on a connection of its
        own, beside the bulk batch's transaction (engine.RefusalProbe). Not from the pool: the batch holds
        its locks meanwhile, and a pool drained by callers waiting on those locks would never lend one."""
        async with self._probe_lock:
            if self._probe_conn is None or self._probe_conn.closed:
                conninfo = self.pool.conninfo  # our pools are made from a URL (core.db.open_pool)
                if not isinstance(conninfo, str):
                    raise TypeError("the ledger's pool must be made from a connection string")
                self._probe_conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
            try:
                cur = await self._probe_conn.execute(PROBE_REFUSALS, (ids,))
                row = await cur.fetchone()
            except BaseException:
                await self._probe_conn.close()  # in an unknown state: the next probe connects afresh
                raise
        return bool(row and row[0])

    # --- accounts ------------------------------------------------------------------------------

    async def create_account(self, spec: AccountSpec, *, actor: Actor | None = None) -> Account:
        """Open an account; the same id with the same fields returns it, with others is refused.

        With ``actor`` (the ledger's API), the opening is audited in the same transaction.
        """
        check_currency(spec.currency)
        if spec.debits_must_not_exceed_credits and spec.credits_must_not_exceed_debits:
            raise LedgerError("account_id_conflict", field="flags")
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "INSERT INTO ledger_accounts (id, currency, code, owner, debits_must_not_exceed_credits, "
                "credits_must_not_exceed_debits, metadata, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                f"ON CONFLICT (id) DO NOTHING RETURNING {_ACCOUNT_COLUMNS}",
                (
                    spec.id,
                    spec.currency,
                    spec.code,
                    spec.owner,
                    spec.debits_must_not_exceed_credits,
                    spec.credits_must_not_exceed_debits,
                    json.dumps(spec.metadata or {}, ensure_ascii=False),
                    self.clock(),
                ),
            )
            row = await cur.fetchone()
            if row is not None and actor is not None:
                event = actor.event(
                    LedgerAction.ACCOUNT_OPENED,
                    target=("ledger_account", str(spec.id)),
                    detail={"currency": spec.currency, "code": spec.code, "owner": spec.owner},
                )
                await audit.append(conn, event)
        if row is not None:
            return Account(*row)
        existing = await self.get_account_or_raise(spec.id)
        same = (
            existing.currency == spec.currency
            and existing.code == spec.code
            and existing.owner == spec.owner
            and existing.debits_must_not_exceed_credits == spec.debits_must_not_exceed_credits
            and existing.credits_must_not_exceed_debits == spec.credits_must_not_exceed_debits
            and existing.metadata == (spec.metadata or {})
        )
        if not same:
            raise LedgerError("account_id_conflict")
        return existing

    async def get_account(self, account_id: UUID) -> Account | None:
        """An account with its four totals, or None if there is none with this id."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id = %s", (account_id,)
            )
            row = await cur.fetchone()
        return Account(*row) if row is not None else None

    async def get_account_or_raise(self, account_id: UUID) -> Account:
        """An account with its four totals, or ``account_not_found`` (naming the field ``account_id``)."""
        account = await self.get_account(account_id)
        if account is None:
            raise LedgerError("account_not_found", field="account_id")
        return account

    async def set_frozen(self, account_id: UUID, frozen: bool, *, actor: Actor | None = None) -> Account:
        """Freeze (refuse debits) or unfreeze an account; with ``actor``, audited in the same transaction."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"UPDATE ledger_accounts SET frozen = %s WHERE id = %s RETURNING {_ACCOUNT_COLUMNS}",
                (frozen, account_id),
            )
            row = await cur.fetchone()
            if row is not None and actor is not None:
                action = LedgerAction.ACCOUNT_FROZEN if frozen else LedgerAction.ACCOUNT_UNFROZEN
                await audit.append(conn, actor.event(action, target=("ledger_account", str(account_id))))
        if row is None:
            raise LedgerError("account_not_found", field="account_id")
        return Account(*row)

    async def open_owned_account(
        self,
        *,
        owner: str,
        purpose: AccountPurpose,
        currency: str = "CNY",
        actor: Actor | None = None,
        frozen: bool = False,
        instance: str | None = None,
    ) -> Account:
        """``owner``'s account for ``purpose`` in ``currency``, opened now if it is not yet (idempotent:
        concurrent callers get the same account; one opened by hand under its id with other fields is
        ``account_id_conflict``). The id is ``chart.owned_account_id(owner=, purpose=, currency=, instance=)``;
        ``instance`` names one of several accounts of a purpose (a card purse: the card number).

        ``frozen``: whether the caller knows the owner to be frozen (a customer's status). The ledger's
        own record of the owner (``ledger/owners.py``) wins once it has one, so an opening that races
        with a freeze still opens frozen. The opening is audited with ``actor`` (the ledger otherwise).
        """
        async with self.pool.connection() as conn, conn.transaction():
            return await open_owned(
                conn,
                owner=owner,
                purpose=purpose,
                currency=currency,
                frozen=frozen,
                now=self.clock(),
                actor=actor or LEDGER_ACTOR,
                instance=instance,
            )

    async def list_accounts(self, *, owner: str) -> list[Account]:
        """Every account ``owner`` holds, oldest first (an owner with none: an empty list)."""
        async with self.pool.connection() as conn:
            return await list_owned(conn, owner=owner)

    async def ensure_chart(self) -> None:
        """Open the platform's own accounts if they are missing."""
        for acct in platform_accounts():
            await self.create_account(
                AccountSpec(
                    id=acct.id,
                    currency=acct.currency,
                    code=acct.code.value,
                    owner="platform",
                    metadata={"key": acct.key, "name_zh": acct.zh, "name_en": acct.en},
                )
            )

    # --- transfers -----------------------------------------------------------------------------

    async def create_transfer(
        self, request: TransferRequest, *, along: Along | None = None, actor: Actor | None = None
    ) -> Transfer:
        """Create one transfer; raises :class:`LedgerError` if the ledger refuses it.

        ``along``: rows (a domain's own, audit entries, events) that commit with the transfer in the
        gathered writer's shared commit, or not at all (the fast path of a hot domain step).
        ``actor`` (the ledger's API): the transfer is audited with it, a refusal on its own.
        """
        if request.linked:  # one transfer chains to nothing; the caller's request stays as it was sent
            request = replace(request, linked=False)
        if actor is not None:
            along = _audited(along, actor.event(LedgerAction.TRANSFER_CREATED, **_transfer_audit(request)))
        (result,) = await self._submit([request], along)
        if isinstance(result, LedgerError):
            error = result.at(0)
            if actor is not None:
                await self._audit_refusal(
                    actor, LedgerAction.TRANSFER_CREATED, error, _transfer_audit(request)
                )
            raise error
        return result

    async def _audit_refusal(
        self, actor: Actor, action: LedgerAction, error: LedgerError, about: Mapping[str, Any]
    ) -> None:
        detail = {**about["detail"], **({"index": error.index} if error.index else {})}
        await audit.record(
            self.pool, actor.refused(action, error.code, target=about["target"], detail=detail)
        )

    async def create_linked(
        self, requests: Sequence[TransferRequest], *, along: Along | None = None, actor: Actor | None = None
    ) -> list[Transfer]:
        """Create transfers that succeed or fail together; the error names the index that failed."""
        if not requests:
            return []
        chain = chained(requests)
        about = _chain_audit(chain)
        if actor is not None:
            along = _audited(along, actor.event(LedgerAction.LINKED_CREATED, **about))
        results = await self._submit(chain, along)
        errors = [r for r in results if isinstance(r, LedgerError)]
        if errors:
            error = chain_refusal(errors)
            if actor is not None:
                await self._audit_refusal(actor, LedgerAction.LINKED_CREATED, error, about)
            raise error
        return [r for r in results if isinstance(r, Transfer)]

    async def create_transfers(
        self, requests: Sequence[TransferRequest], *, actor: Actor | None = None
    ) -> list[Result]:
        """The bulk call: up to 8,000 transfers in one transaction, one result per transfer, in order.

        Transfers are independent unless ``linked`` chains them to the next one. With ``actor`` the call
        is audited in its transaction: how many were accepted and refused, and the first and last id.
        """
        if len(requests) > MAX_BATCH:
            raise LedgerError("batch_too_large", text={"max_batch": MAX_BATCH})
        return await self._apply_with_retry(list(requests), audit_batch=actor)

    async def _submit(self, requests: list[TransferRequest], along: Along | None = None) -> list[Result]:
        if not self._tasks:
            extra = along_writes([(along, range(len(requests)))]) if along is not None else None
            return await self._apply_with_retry(
                requests, extra, wake=along is not None and bool(along.events)
            )
        job = _Job(requests, asyncio.get_running_loop().create_future(), along)
        self._jobs.append(job)
        self._wakeup.set()
        return await job.future

    async def _writer(self) -> None:
        while True:
            if not self._jobs:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            jobs, size = [], 0
            while self._jobs and size + len(self._jobs[0].requests) <= self._max_batch:
                job = self._jobs.popleft()
                jobs.append(job)
                size += len(job.requests)
            if not jobs:  # one job larger than a batch: run it alone
                jobs = [self._jobs.popleft()]
            await self._run_jobs(jobs)

    async def _run_jobs(self, jobs: list[_Job]) -> None:
        flat = [req for job in jobs for req in job.requests]
        extra_writes = None
        if any(job.along is not None for job in jobs):
            spans, offset = [], 0
            for job in jobs:
                spans.append((job.along, range(offset, offset + len(job.requests))))
                offset += len(job.requests)
            extra_writes = along_writes(spans)
        try:
            wake = any(job.along is not None and job.along.events for job in jobs)
            results = await self._apply_with_retry(flat, extra_writes, wake=wake)
        except Exception as exc:
            if len(jobs) == 1:
                if not jobs[0].future.done():
                    jobs[0].future.set_exception(exc)
                return
            log.warning("ledger batch failed, retrying its jobs one by one", exc_info=exc)
            for job in jobs:
                await self._run_jobs([job])
            return
        offset = 0
        for job in jobs:
            mine = results[offset : offset + len(job.requests)]
            renumbered: list[Result] = [
                r.at(r.index - offset) if isinstance(r, LedgerError) and r.index is not None else r
                for r in mine
            ]
            offset += len(job.requests)
            if not job.future.done():
                job.future.set_result(renumbered)

    async def _apply_with_retry(
        self,
        requests: list[TransferRequest],
        extra_writes: ExtraWrites | None = None,
        audit_batch: Actor | None = None,
        *,
        wake: bool = False,
    ) -> list[Result]:
        """Run a batch in its own transaction, again after a deadlock, a duplicate id or a late lock.

        ``wake``: rows carried along hold events, so this process's dispatcher is woken after the commit.
        """
        bulk = len(requests) > BULK_THRESHOLD
        if audit_batch is not None and not bulk:
            extra_writes = _batch_audit_writes(audit_batch, requests)

        async def attempt(state: RetryState) -> list[Result]:
            if bulk:  # streams its transfers with COPY
                async with self.pool.connection() as conn, conn.transaction():
                    results = await apply_transfers(
                        conn,
                        requests,
                        self.clock,
                        check_ids=state.check_ids,
                        extra_accounts=state.extra_accounts,
                        bulk=True,
                        probe=self._probe_refusals,
                    )
                    if audit_batch is not None:
                        await audit.append(conn, _batch_event(audit_batch, requests, results))
                    return results
            # Sends BEGIN with the lock and the writes with COMMIT: two round trips in all. In
            # autocommit mode, so psycopg sends no BEGIN of its own before ours.
            async with autocommit(self.pool) as conn:
                return await apply_and_commit(
                    conn,
                    requests,
                    self.clock,
                    check_ids=state.check_ids,
                    extra_accounts=state.extra_accounts,
                    extra_writes=extra_writes,
                )

        started = time.perf_counter()
        results = await retrying(attempt)
        if wake:
            events.committed()
        metrics.LEDGER_BATCH_SIZE.observe(len(requests))
        metrics.LEDGER_BATCH_SECONDS.observe(time.perf_counter() - started)
        created = sum(1 for r in results if isinstance(r, Transfer))
        metrics.LEDGER_TRANSFERS.labels("accepted").inc(created)
        metrics.LEDGER_TRANSFERS.labels("refused").inc(len(results) - created)
        return results

    async def get_transfer(self, transfer_id: UUID) -> Transfer | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = %s", (transfer_id,)
            )
            row = await cur.fetchone()
        return transfer_from_row(row) if row else None

    async def pending_state(self, pending_id: UUID) -> PendingState | None:
        """Whether a hold is still open, or how it ended."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT state, expires_at FROM ledger_pending WHERE id = %s", (pending_id,)
            )
            row = await cur.fetchone()
        if row is None:
            return None
        state = PendingState(row[0])
        if state is PendingState.OPEN and row[1] is not None and row[1] <= self.clock():
            return PendingState.EXPIRED
        return state

    # --- history and balances ------------------------------------------------------------------

    async def history(
        self, account_id: UUID, *, before_seq: int | None = None, limit: int = 50
    ) -> tuple[list[HistoryEntry], int | None]:
        """An account's transfers, newest first, with the running balance; returns the next cursor."""
        account = await self.get_account_or_raise(account_id)
        cursor = before_seq if before_seq is not None else 2**63 - 1
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _side_query("debit", "seq < %(c)s", "%(n)s")
                + " UNION ALL "
                + _side_query("credit", "seq < %(c)s", "%(n)s")
                + " ORDER BY seq DESC LIMIT %(n)s",
                {"a": account_id, "c": cursor, "block": cursor >> HISTORY_BLOCK_SHIFT, "n": limit + 1},
            )
            rows = await cur.fetchall()
        entries = [_entry(account, transfer_from_row(row)) for row in rows[:limit]]
        next_cursor = entries[-1].transfer.seq if len(rows) > limit and entries else None
        return entries, next_cursor

    async def balance_as_of(self, account_id: UUID, at: datetime) -> tuple[Account, int]:
        """The account's posted balance on its normal side just after the last transfer at or before ``at``."""
        account = await self.get_account_or_raise(account_id)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                _side_query("debit", "created_at <= %(t)s", "1")
                + " UNION ALL "
                + _side_query("credit", "created_at <= %(t)s", "1")
                + " ORDER BY seq DESC LIMIT 1",
                {"a": account_id, "t": at, "block": HISTORY_NEWEST_BLOCK},
            )
            row = await cur.fetchone()
        if row is None:
            return account, 0
        return account, _entry(account, transfer_from_row(row)).balance_after

    # --- expiry --------------------------------------------------------------------------------

    async def expire_due(self, limit: int = 1000) -> int:
        """Release holds whose timeout has passed; returns how many. Run by the ``ledger.expire_holds`` job
        (``ledger/jobs.py``) and ``etcwallet ledger expire``."""
        total = 0
        while True:
            async with self.pool.connection() as conn, conn.transaction():
                now = self.clock()
                cur = await conn.execute(
                    "SELECT id, debit_account_id, credit_account_id, amount FROM ledger_pending "
                    "WHERE state = 'open' AND expires_at <= %s ORDER BY expires_at LIMIT %s",
                    (now, limit),
                )
                due = await cur.fetchall()
                if not due:
                    return total
                accounts = sorted({a for row in due for a in (row[1], row[2])})
                await conn.execute(
                    "SELECT id FROM ledger_accounts WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE",
                    (accounts,),
                )
                cur = await conn.execute(
                    "UPDATE ledger_pending SET state = 'expired', resolved_at = %s "
                    "WHERE id = ANY(%s::uuid[]) AND state = 'open' "
                    "RETURNING debit_account_id, credit_account_id, amount",
                    (now, [row[0] for row in due]),
                )
                released = await cur.fetchall()
                await conn.execute(
                    "UPDATE ledger_accounts a SET debits_pending = a.debits_pending - d.amount "
                    "FROM (SELECT u.id, sum(u.amount) AS amount FROM unnest(%s::uuid[], %s::bigint[]) "
                    "AS u(id, amount) GROUP BY u.id) d WHERE a.id = d.id",
                    ([r[0] for r in released], [r[2] for r in released]),
                )
                await conn.execute(
                    "UPDATE ledger_accounts a SET credits_pending = a.credits_pending - d.amount "
                    "FROM (SELECT u.id, sum(u.amount) AS amount FROM unnest(%s::uuid[], %s::bigint[]) "
                    "AS u(id, amount) GROUP BY u.id) d WHERE a.id = d.id",
                    ([r[1] for r in released], [r[2] for r in released]),
                )
                total += len(released)
            if len(due) < limit:
                return total


def _transfer_audit(request: TransferRequest) -> dict[str, Any]:
    """The audit entry's target and detail for one transfer of the ledger's API."""
    detail: dict[str, Any] = {"kind": request.kind.value}
    for name in ("debit_account_id", "credit_account_id", "amount", "currency", "code", "pending_id"):
        value = getattr(request, name)
        if value is not None:
            detail[name] = str(value) if isinstance(value, UUID) else value
    return {"target": ("transfer", str(request.id)), "detail": detail}


def _chain_audit(chain: Sequence[TransferRequest]) -> dict[str, Any]:
    return {
        "target": ("transfer", str(chain[0].id)),
        "detail": {"transfers": [_transfer_audit(r)["detail"] | {"id": str(r.id)} for r in chain]},
    }


def _audited(along: Along | None, event: AuditEvent) -> Along:
    along = along or Along()
    return replace(along, audit=[*along.audit, event])


def _batch_event(actor: Actor, requests: Sequence[TransferRequest], results: Sequence[Result]) -> AuditEvent:
    accepted = sum(1 for r in results if isinstance(r, Transfer))
    return actor.event(
        LedgerAction.BATCH_SUBMITTED,
        target=("transfer", str(requests[0].id)) if requests else None,
        detail={
            "count": len(requests),
            "accepted": accepted,
            "refused": len(results) - accepted,
            "last_id": str(requests[-1].id) if requests else None,
        },
    )


def _batch_audit_writes(actor: Actor, requests: Sequence[TransferRequest]) -> ExtraWrites:
    """A small bulk call's audit entry, written with its commit."""

    def writes(results: Sequence[Result], created: set[UUID]) -> list[tuple[str, Any]]:
        return commit_statements([], [], [_batch_event(actor, requests, results)])

    return writes


def _entry(account: Account, t: Transfer) -> HistoryEntry:
    if t.debit_account_id == account.id:
        side, debits, credits = "debit", t.debit_debits_after, t.debit_credits_after
    else:
        side, debits, credits = "credit", t.credit_debits_after, t.credit_credits_after
    balance = credits - debits if account.credit_normal else debits - credits
    return HistoryEntry(transfer=t, side=side, balance_after=balance)


def wallet_spec(
    account_id: UUID, owner: str, currency: str = "CNY", code: AccountCode = AccountCode.CUSTOMER_WALLET
) -> AccountSpec:
    """An account holding a customer's money: it may never go below zero."""
    return AccountSpec(account_id, currency, code.value, owner, debits_must_not_exceed_credits=True)
