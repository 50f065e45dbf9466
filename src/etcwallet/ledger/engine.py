"""Apply a batch of transfers inside one database transaction.

This is the only code that changes account totals. It is set-based so that thousands of transfers cost
a handful of round trips:

1. read the pending transfers the batch posts or voids, to learn their accounts;
2. lock every account involved with one ``SELECT … ORDER BY id FOR UPDATE``: one fixed order, so two
   batches never deadlock;
3. now that nobody else can move these accounts, read the holds on them (to release expired ones; a
   hold whose other account is not locked yet is locked with NOWAIT, or the batch runs again with it)
   and, where needed, the transfer ids already stored (idempotency);
4. check and apply each transfer in order, in memory, exactly as the database would (balance limits
   counting pending debits, frozen accounts, currencies, linked chains rolled back together);
5. write the new transfers (a large batch streams them with binary COPY while later ones are still being
   checked, so Python and PostgreSQL work at the same time) and the new totals with one UPDATE.

Idempotency. A refusal is final: every refusal a batch makes is stored with it (``ledger_refusals``),
and a resend with the same fields gets the same refusal, even if the money has arrived since. Small
batches look every id up among refusals and stored transfers in the same round trip as the locks (after
them), so an ordinary retry never raises a duplicate-key error, whose log line would carry the batch's
literal SQL. Bulk batches are optimistic: a new id is not looked up first, since the primary key
refuses a duplicate anyway, and a probe on another connection (:data:`RefusalProbe`) says, while the
COPY finishes, whether any id was refused before. When a duplicate or a refused id turns up, the
caller runs the batch again with ``check_ids=True``, which looks every id up and answers from storage.

The caller owns the transaction: commit after this returns, roll back on an exception.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncClientCursor, AsyncConnection, AsyncCursor
from psycopg import errors as pg_errors

from etcwallet.core.money import MAX_AMOUNT
from etcwallet.ledger import pgcopy
from etcwallet.ledger.errors import LedgerError
from etcwallet.ledger.types import PendingState, Transfer, TransferKind, TransferRequest

Result = Transfer | LedgerError
Params = Sequence[Any] | Mapping[str, Any]
ExtraWrites = Callable[[Sequence[Result], set[UUID]], Sequence[tuple[str, Params]]]
"""Rows that commit with a small batch: given the results and the ids this batch created (not found
stored), the insert-only statements to write last, before ``COMMIT`` (a domain's rows, audit, events)."""

TRANSFER_COLUMNS = (
    "id, seq, kind, debit_account_id, credit_account_id, amount, currency, code, pending_id, "
    "timeout_seconds, expires_at, metadata, created_at, debit_debits_after, debit_credits_after, "
    "credit_debits_after, credit_credits_after"
)
_INSERT_COLUMNS = pgcopy.COLUMNS
_INSERT_TYPES = [
    "uuid",
    "text",
    "uuid",
    "uuid",
    "int8",
    "text",
    "text",
    "uuid",
    "int4",
    "timestamptz",
    "jsonb",
    "timestamptz",
    "int8",
    "int8",
    "int8",
    "int8",
]
_COPY_TRANSFERS = f"COPY ledger_transfers ({_INSERT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
# Small batches send their rows as one JSON document: json.dumps is C, psycopg's array dumpers are not.
_JSON_INSERT = (
    f"INSERT INTO ledger_transfers ({_INSERT_COLUMNS}) SELECT "
    + ", ".join(
        f"(r->{i})::jsonb" if t == "jsonb" else f"(r->>{i})::{t}" for i, t in enumerate(_INSERT_TYPES)
    )
    + " FROM json_array_elements(%s::json) AS r"
)
_PENDING_COLUMNS = (
    "p.id, p.debit_account_id, p.credit_account_id, p.amount, p.expires_at, p.state, p.resolved_by, "
    "p.resolved_at, t.code, t.currency FROM ledger_pending p JOIN ledger_transfers t ON t.id = p.id"
)
_PENDING_QUERY = (
    f"SELECT {_PENDING_COLUMNS} WHERE p.id = ANY(%(ids)s::uuid[]) OR (p.state = 'open' "
    "AND p.expires_at <= %(now)s "
    "AND (p.debit_account_id = ANY(%(accounts)s::uuid[]) OR p.credit_account_id = ANY(%(accounts)s::uuid[])))"
)
_LOCK_ACCOUNTS = (
    "SELECT id, currency, debits_must_not_exceed_credits, credits_must_not_exceed_debits, frozen, "
    "debits_posted, credits_posted, debits_pending, credits_pending FROM ledger_accounts "
    "WHERE id = ANY(%s::uuid[]) ORDER BY id FOR UPDATE"
)
_REFUSAL_COLUMNS = (
    "id, kind, debit_account_id, credit_account_id, amount, currency, code, pending_id, timeout_seconds, "
    "metadata, linked, error, error_field, error_details"
)
_REFUSALS_QUERY = f"SELECT {_REFUSAL_COLUMNS} FROM ledger_refusals WHERE id = ANY(%s::uuid[])"
_TRANSFERS_QUERY = f"SELECT {TRANSFER_COLUMNS} FROM ledger_transfers WHERE id = ANY(%s::uuid[])"
# ON CONFLICT: the same id refused by two batches at once (their accounts differ, so neither waited on
# the other) keeps the first refusal and raises no error.
_INSERT_REFUSALS = (
    f"INSERT INTO ledger_refusals ({_REFUSAL_COLUMNS}, refused_at) SELECT (r->>0)::uuid, r->>1, "
    "(r->>2)::uuid, (r->>3)::uuid, (r->>4)::numeric, r->>5, r->>6, (r->>7)::uuid, (r->>8)::int8, "
    "(r->9)::jsonb, (r->>10)::boolean, r->>11, r->>12, (r->13)::jsonb, %s "
    "FROM json_array_elements(%s::json) AS r ON CONFLICT (id) DO NOTHING"
)
PROBE_REFUSALS = "SELECT EXISTS (SELECT 1 FROM ledger_refusals WHERE id = ANY(%s::uuid[]))"
RefusalProbe = Callable[[str], Coroutine[Any, Any, bool]]
"""Whether any id of a uuid array literal is among the refused ids, asked on *another* connection.

A first bulk run does not look its 8,000 ids up among the refusals before applying them (that cost 7-8 ms
of a 55-60 ms call); it streams its rows, and once Python is done, while PostgreSQL still inserts them,
it asks the probe on a second backend. Any hit makes the batch run again with every id looked up. The
probe's snapshot is taken after this batch's locks were granted, so it sees every refusal a batch on the
same accounts made before.
"""
BULK_THRESHOLD = 256
"""Batches larger than this stream their transfers with COPY while they are being checked."""


class RetryBatch(Exception):
    """The batch must run again in a new transaction: with more accounts locked, or with ids checked.

    Raised before anything is committed; the caller rolls back and calls again with these hints.
    """

    def __init__(self, *, accounts: frozenset[UUID] = frozenset(), check_ids: bool = False) -> None:
        super().__init__("ledger batch needs another attempt")
        self.accounts = accounts
        self.check_ids = check_ids


def transfer_from_row(row: Sequence[Any]) -> Transfer:
    """A :class:`Transfer` from a row selected with ``TRANSFER_COLUMNS``."""
    return Transfer(
        id=row[0],
        seq=row[1],
        kind=TransferKind(row[2]),
        debit_account_id=row[3],
        credit_account_id=row[4],
        amount=row[5],
        currency=row[6],
        code=row[7],
        pending_id=row[8],
        timeout_seconds=row[9],
        expires_at=row[10],
        metadata=row[11],
        created_at=row[12],
        debit_debits_after=row[13],
        debit_credits_after=row[14],
        credit_debits_after=row[15],
        credit_credits_after=row[16],
    )


@dataclass(slots=True)
class _AccountState:
    id: UUID
    currency: str
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    frozen: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    dirty: bool = False


@dataclass(slots=True)
class _Pending:
    id: UUID
    debit: UUID
    credit: UUID
    amount: int
    expires_at: datetime | None
    state: PendingState
    resolved_by: UUID | None
    resolved_at: datetime | None
    code: str | None = None
    currency: str | None = None
    new: bool = False
    dirty: bool = False


RequestKey = tuple[Any, ...]
"""Every field of a request as sent: a resend of a refused transfer must match it exactly."""


def _request_key(req: TransferRequest) -> RequestKey:
    return (
        req.kind.value,
        req.debit_account_id,
        req.credit_account_id,
        req.amount,
        req.currency,
        req.code,
        req.pending_id,
        req.timeout_seconds,
        req.metadata,
        req.linked,
    )


@dataclass(slots=True, frozen=True)
class _Refusal:
    """A refusal made earlier (stored) or earlier in this batch: final for its id."""

    request: RequestKey
    code: str
    field: str | None
    details: dict[str, Any]

    @staticmethod
    def of(req: TransferRequest, error: LedgerError) -> _Refusal:
        details = {k: v for k, v in error.extra.items() if k != "index"}
        return _Refusal(_request_key(req), error.code, error.field, details)

    @staticmethod
    def from_row(row: Sequence[Any]) -> _Refusal:
        return _Refusal(tuple(row[1:11]), row[11], row[12], row[13])

    def answer(self, index: int, req: TransferRequest) -> LedgerError:
        """The same refusal for a resend with the same fields; ``transfer_id_conflict`` for other fields."""
        if _request_key(req) != self.request:
            return LedgerError("transfer_id_conflict", index=index)
        return LedgerError(self.code, index=index, field=self.field, **self.details)


def _refusal_row(req: TransferRequest, refusal: _Refusal) -> list[Any]:
    return [
        str(req.id),
        req.kind.value,
        _str(req.debit_account_id),
        _str(req.credit_account_id),
        req.amount,
        req.currency,
        req.code,
        _str(req.pending_id),
        req.timeout_seconds,
        req.metadata,
        req.linked,
        refusal.code,
        refusal.field,
        refusal.details,
    ]


def _str(value: UUID | None) -> str | None:
    return str(value) if value is not None else None


def _same_request(req: TransferRequest, t: Transfer) -> bool:
    """Whether a retried request asks for exactly what the stored transfer did."""
    if req.kind != t.kind or req.metadata != t.metadata:
        return False
    if req.code is not None and req.code != t.code:
        return False
    if req.currency is not None and req.currency != t.currency:
        return False
    if req.kind in (TransferKind.POST_PENDING, TransferKind.VOID_PENDING):
        return req.pending_id == t.pending_id and (req.amount is None or req.amount == t.amount)
    return (
        req.debit_account_id == t.debit_account_id
        and req.credit_account_id == t.credit_account_id
        and req.amount == t.amount
        and req.timeout_seconds == t.timeout_seconds
    )


class _Batch:
    """The in-memory state of one batch while its transfers are checked and applied in order."""

    def __init__(
        self,
        accounts: dict[UUID, _AccountState],
        pendings: dict[UUID, _Pending],
        existing: dict[UUID, Transfer],
        refusals: dict[UUID, _Refusal],
        now: datetime,
    ) -> None:
        self.accounts = accounts
        self.pendings = pendings
        self.existing = existing
        self.refusals = refusals
        self.new_refusals: list[tuple[TransferRequest, _Refusal]] = []
        self.now = now
        self.created: list[Transfer] = []
        self.flushed = 0
        self.created_ids: dict[UUID, Transfer] = {}
        # Snapshots taken while a linked chain is open, to undo it if a later member fails.
        self.chain_accounts: dict[UUID, tuple[int, int, int, int, bool]] | None = None
        self.chain_pendings: dict[UUID, tuple[PendingState, UUID | None, datetime | None, bool]] | None = None
        self.chain_created_from = 0

    # --- linked chains -------------------------------------------------------------------------

    def begin_chain(self) -> None:
        self.chain_accounts = {}
        self.chain_pendings = {}
        self.chain_created_from = len(self.created)

    def end_chain(self) -> None:
        self.chain_accounts = None
        self.chain_pendings = None

    def rollback_chain(self) -> None:
        assert self.chain_accounts is not None and self.chain_pendings is not None
        for account_id, (
            debits_posted,
            credits_posted,
            debits_pending,
            credits_pending,
            dirty,
        ) in self.chain_accounts.items():
            a = self.accounts[account_id]
            a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending, a.dirty = (
                debits_posted,
                credits_posted,
                debits_pending,
                credits_pending,
                dirty,
            )
        for pending_id, (state, resolved_by, resolved_at, dirty) in self.chain_pendings.items():
            p = self.pendings[pending_id]
            p.state, p.resolved_by, p.resolved_at, p.dirty = state, resolved_by, resolved_at, dirty
        for t in self.created[self.chain_created_from :]:
            del self.created_ids[t.id]
            if t.kind is TransferKind.PENDING:
                del self.pendings[t.id]
        del self.created[self.chain_created_from :]
        self.end_chain()

    def _touch(self, a: _AccountState) -> None:
        if self.chain_accounts is not None and a.id not in self.chain_accounts:
            self.chain_accounts[a.id] = (
                a.debits_posted,
                a.credits_posted,
                a.debits_pending,
                a.credits_pending,
                a.dirty,
            )
        a.dirty = True

    def _touch_pending(self, p: _Pending) -> None:
        if self.chain_pendings is not None and p.id not in self.chain_pendings and not p.new:
            self.chain_pendings[p.id] = (p.state, p.resolved_by, p.resolved_at, p.dirty)
        p.dirty = True

    # --- expiry --------------------------------------------------------------------------------

    def expire_due(self) -> None:
        """Release every open hold whose timeout has passed and whose accounts this batch holds."""
        for p in self.pendings.values():
            if p.state is PendingState.OPEN and p.expires_at is not None and p.expires_at <= self.now:
                debit, credit = self.accounts.get(p.debit), self.accounts.get(p.credit)
                if debit is None or credit is None:
                    continue
                debit.debits_pending -= p.amount
                credit.credits_pending -= p.amount
                debit.dirty = credit.dirty = True
                p.state, p.resolved_at, p.dirty = PendingState.EXPIRED, self.now, True

    # --- one transfer --------------------------------------------------------------------------

    def apply(self, index: int, req: TransferRequest) -> Result:
        """The transfer applied, its stored answer, or a refusal (recorded unless a chain is open)."""
        prior = self.created_ids.get(req.id) or self.existing.get(req.id)
        if prior is not None:
            return prior if _same_request(req, prior) else LedgerError("transfer_id_conflict", index=index)
        refused = self.refusals.get(req.id)
        if refused is not None:
            return refused.answer(index, req)
        if req.kind in (TransferKind.POST_PENDING, TransferKind.VOID_PENDING):
            outcome = self._resolve(index, req)
        else:
            outcome = self._move(index, req)
        if self.chain_accounts is None and isinstance(outcome, LedgerError):
            self.refuse(req, outcome)
        return outcome

    def settled(self, req: TransferRequest) -> bool:
        """Whether ``req.id`` already has an answer: a transfer, or a refusal that is final."""
        return req.id in self.created_ids or req.id in self.existing or req.id in self.refusals

    def refuse(self, req: TransferRequest, error: LedgerError) -> None:
        """Record a new refusal: stored with the batch, and the answer to any resend of this id."""
        refusal = _Refusal.of(req, error)
        self.refusals[req.id] = refusal
        self.new_refusals.append((req, refusal))

    def _move(self, index: int, req: TransferRequest) -> Result:
        assert req.debit_account_id is not None and req.credit_account_id is not None
        assert req.amount is not None and req.currency is not None
        if req.debit_account_id == req.credit_account_id:
            return LedgerError("same_account", index=index)
        debit = self.accounts.get(req.debit_account_id)
        if debit is None:
            return LedgerError("account_not_found", index=index, field="debit_account_id")
        credit = self.accounts.get(req.credit_account_id)
        if credit is None:
            return LedgerError("account_not_found", index=index, field="credit_account_id")
        if req.currency != debit.currency or req.currency != credit.currency:
            return LedgerError("currency_mismatch", index=index)
        if debit.frozen:
            return LedgerError("account_frozen", index=index)
        amount = req.amount
        debits_after = debit.debits_posted + debit.debits_pending + amount  # pending and posted alike
        credits_after = credit.credits_posted + credit.credits_pending + amount
        if debits_after > MAX_AMOUNT:
            return LedgerError("overflows_debits", index=index)
        if credits_after > MAX_AMOUNT:
            return LedgerError("overflows_credits", index=index)
        if debit.debits_must_not_exceed_credits and debits_after > debit.credits_posted:
            available = debit.credits_posted - debit.debits_posted - debit.debits_pending
            return LedgerError("exceeds_credits", index=index, field="amount", available=available)
        if credit.credits_must_not_exceed_debits and credits_after > credit.debits_posted:
            return LedgerError("exceeds_debits", index=index)
        self._touch(debit)
        self._touch(credit)
        expires_at = None
        if req.kind is TransferKind.PENDING:
            debit.debits_pending += amount
            credit.credits_pending += amount
            if req.timeout_seconds:
                expires_at = self.now + timedelta(seconds=req.timeout_seconds)
        else:
            debit.debits_posted += amount
            credit.credits_posted += amount
        transfer = self._record(req, debit, credit, amount, req.currency, req.code or "", None, expires_at)
        if req.kind is TransferKind.PENDING:
            self.pendings[req.id] = _Pending(
                req.id,
                debit.id,
                credit.id,
                amount,
                expires_at,
                PendingState.OPEN,
                resolved_by=None,
                resolved_at=None,
                code=transfer.code,
                currency=req.currency,
                new=True,
                dirty=True,
            )
        return transfer

    def _resolve(self, index: int, req: TransferRequest) -> Result:
        assert req.pending_id is not None
        p = self.pendings.get(req.pending_id)
        if p is None:
            return LedgerError("pending_not_found", index=index)
        if p.state is PendingState.POSTED:
            return LedgerError("pending_already_posted", index=index)
        if p.state is PendingState.VOIDED:
            return LedgerError("pending_already_voided", index=index)
        if p.state is PendingState.EXPIRED or (p.expires_at is not None and p.expires_at <= self.now):
            return LedgerError("pending_expired", index=index)
        debit, credit = self.accounts[p.debit], self.accounts[p.credit]
        if req.currency is not None and req.currency != debit.currency:
            return LedgerError("currency_mismatch", index=index)
        posting = req.kind is TransferKind.POST_PENDING
        amount = p.amount if req.amount is None else req.amount
        if amount > p.amount or (not posting and amount != p.amount):
            return LedgerError("amount_exceeds_pending", index=index, pending_amount=p.amount)
        self._touch(debit)
        self._touch(credit)
        self._touch_pending(p)
        debit.debits_pending -= p.amount
        credit.credits_pending -= p.amount
        if posting:
            debit.debits_posted += amount
            credit.credits_posted += amount
        p.state = PendingState.POSTED if posting else PendingState.VOIDED
        p.resolved_by, p.resolved_at = req.id, self.now
        code = req.code if req.code is not None else (p.code or "")
        return self._record(req, debit, credit, amount, debit.currency, code, p.id, None)

    def _record(
        self,
        req: TransferRequest,
        debit: _AccountState,
        credit: _AccountState,
        amount: int,
        currency: str,
        code: str,
        pending_id: UUID | None,
        expires_at: datetime | None,
    ) -> Transfer:
        # Positional, in Transfer's field order: this runs once per transfer in bulk batches.
        transfer = Transfer(
            req.id,
            None,
            req.kind,
            debit.id,
            credit.id,
            amount,
            currency,
            code,
            pending_id,
            req.timeout_seconds if req.kind is TransferKind.PENDING else None,
            expires_at,
            req.metadata,
            self.now,
            debit.debits_posted,
            debit.credits_posted,
            credit.debits_posted,
            credit.credits_posted,
        )
        self.created.append(transfer)
        self.created_ids[req.id] = transfer
        return transfer


def _chains(requests: Sequence[TransferRequest]) -> list[tuple[int, int]]:
    """Split a submission into [start, end) runs: a lone transfer, or a linked chain."""
    runs, start = [], 0
    for i, req in enumerate(requests):
        if not req.linked:
            runs.append((start, i + 1))
            start = i + 1
    if start < len(requests):
        runs.append((start, len(requests)))
    return runs


def uuid_array(ids: Iterable[UUID]) -> str:
    """A PostgreSQL array literal of uuids: far cheaper to send than a list through the array dumper."""
    return "{" + ",".join(map(str, ids)) + "}"


def _int_array(values: Iterable[int]) -> str:
    """A PostgreSQL array literal of integers."""
    return "{" + ",".join(map(str, values)) + "}"


def _json_row(t: Transfer, created_at: str) -> list[Any]:
    return [
        str(t.id),
        t.kind.value,
        str(t.debit_account_id),
        str(t.credit_account_id),
        t.amount,
        t.currency,
        t.code,
        str(t.pending_id) if t.pending_id else None,
        t.timeout_seconds,
        t.expires_at.isoformat() if t.expires_at else None,
        t.metadata,
        created_at,
        t.debit_debits_after,
        t.debit_credits_after,
        t.credit_debits_after,
        t.credit_credits_after,
    ]


class _Statements:
    """Runs the engine's SQL inside the caller's transaction, one round trip per statement."""

    def __init__(self, cur: AsyncCursor[Any]) -> None:
        self.cur = cur

    async def rows(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
        await self.cur.execute(query, params)
        return await self.cur.fetchall()

    async def write(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
        await self.cur.execute(query, params)

    async def rows_many(self, queries: Sequence[tuple[str, Params]]) -> list[list[Any]]:
        """Several reads that run in order; each sees what was committed before it started."""
        return [await self.rows(query, params) for query, params in queries]

    async def finish(self) -> None:
        """Nothing is held back: the caller commits."""


class _OneTrip(_Statements):
    """Runs a small batch in two round trips: ``BEGIN`` with the first read, the writes with ``COMMIT``.

    Client-side binding lets several statements travel in one simple-protocol message, which costs far
    less Python per batch than the extended protocol's message-by-message exchange. The connection is in
    autocommit mode and the transaction is spelled out, so the first read opens it and ``finish`` ends it.
    """

    def __init__(self, cur: AsyncClientCursor[Any]) -> None:
        super().__init__(cur)
        self.client = cur
        self.begun = False
        self.pending_writes: list[str] = []

    async def rows(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
        (rows,) = await self.rows_many([(query, params)])
        return rows

    async def rows_many(self, queries: Sequence[tuple[str, Params]]) -> list[list[Any]]:
        """The reads in one message (after ``BEGIN`` if the transaction is not open yet), one round trip.

        The server runs them in order; under READ COMMITTED each takes its snapshot when it starts, so
        a read placed after the lock query sees everything committed before the locks were granted.
        """
        statements = [self.client.mogrify(query, params) for query, params in queries]
        if not self.begun:
            statements.insert(0, "BEGIN")
        await self.cur.execute("; ".join(statements))
        if not self.begun:
            self.begun = True
            self.cur.nextset()  # past BEGIN's empty result
        results = []
        for i in range(len(queries)):
            if i:
                self.cur.nextset()
            results.append(await self.cur.fetchall())
        return results

    async def write(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
        self.pending_writes.append(self.client.mogrify(query, params))

    async def finish(self) -> None:
        await self.cur.execute("; ".join([*self.pending_writes, "COMMIT"]))


class _InUnit(_OneTrip):
    """Runs a batch inside a unit of work's open transaction: the reads now, the writes kept back.

    The unit sends the writes with its own rows, audit entries, events and ``COMMIT`` in one message.
    """

    def __init__(self, cur: AsyncClientCursor[Any]) -> None:
        super().__init__(cur)
        self.begun = True

    async def finish(self) -> None:
        """Nothing is sent: the unit takes :attr:`pending_writes`."""


async def apply_transfers(
    conn: AsyncConnection[Any],
    requests: Sequence[TransferRequest],
    clock: Callable[[], datetime],
    *,
    check_ids: bool = False,
    extra_accounts: frozenset[UUID] = frozenset(),
    bulk: bool | None = None,
    probe: RefusalProbe | None = None,
) -> list[Result]:
    """Check and apply ``requests`` in order inside the caller's transaction; one result per request.

    ``clock`` gives the batch its time (UTC). A refused transfer changes nothing; a linked chain is
    applied whole or not at all. The same id with the same fields returns the stored transfer; with
    other fields, ``transfer_id_conflict``. Raises :class:`RetryBatch` when the batch must run again.
    ``bulk`` (default: more than ``BULK_THRESHOLD`` requests) streams the transfers with COPY; a bulk run
    without ``check_ids`` needs ``probe`` (see :data:`RefusalProbe`), or it looks every id up itself.
    The caller commits; :func:`apply_and_commit` runs a small batch in a transaction of its own instead.
    """
    if bulk is None:
        bulk = len(requests) > BULK_THRESHOLD
    if bulk and probe is None:
        check_ids = True
    async with conn.cursor() as cur:
        return await _apply(_Statements(cur), requests, clock, check_ids, extra_accounts, bulk, probe)


async def apply_and_commit(
    conn: AsyncConnection[Any],
    requests: Sequence[TransferRequest],
    clock: Callable[[], datetime],
    *,
    check_ids: bool = False,
    extra_accounts: frozenset[UUID] = frozenset(),
    extra_writes: ExtraWrites | None = None,
) -> list[Result]:
    """:func:`apply_transfers` for a small batch in its own transaction, committed in two round trips.

    ``conn`` must be in autocommit mode (``etcwallet.core.db.autocommit``): the transaction is spelled
    out in the same messages as the work. On a failure the caller's context rolls it back.
    """
    async with AsyncClientCursor(conn) as cur:
        return await _apply(
            _OneTrip(cur), requests, clock, check_ids, extra_accounts, False, None, extra_writes
        )


async def apply_in_unit(
    conn: AsyncConnection[Any],
    requests: Sequence[TransferRequest],
    clock: Callable[[], datetime],
    *,
    extra_accounts: frozenset[UUID] = frozenset(),
    extra_writes: ExtraWrites | None = None,
) -> tuple[list[Result], list[str]]:
    """:func:`apply_transfers` inside an open transaction, keeping the writes for the caller's commit.

    The reads (locks, holds, stored ids) take one round trip now; the writes come back as SQL text for
    the caller (the unit of work) to send with its ``COMMIT``. Every id is looked up, as on the small path.
    """
    async with AsyncClientCursor(conn) as cur:
        db = _InUnit(cur)
        results = await _apply(db, requests, clock, True, extra_accounts, False, None, extra_writes)
        return results, db.pending_writes


async def _apply(
    db: _Statements,
    requests: Sequence[TransferRequest],
    clock: Callable[[], datetime],
    check_ids: bool,
    extra_accounts: frozenset[UUID],
    bulk: bool,
    probe: RefusalProbe | None,
    extra_writes: ExtraWrites | None = None,
) -> list[Result]:
    if not requests:
        return []
    if not bulk:
        # A small batch looks every id up in the same round trip as its locks, so a retry never meets
        # the primary key: a duplicate-key error would log the batch's literal SQL with its metadata.
        check_ids = True
    batch = await _read_state(db, requests, clock, check_ids, extra_accounts)
    batch.expire_due()
    if bulk:
        probing: asyncio.Task[bool] | None = None
        try:
            async with db.cur.copy(_COPY_TRANSFERS) as copy:
                encoder = pgcopy.RowEncoder(batch.now)
                await copy.write(pgcopy.HEADER)

                async def stream() -> None:
                    rows = batch.created[batch.flushed :]
                    batch.flushed = len(batch.created)
                    await copy.write(b"".join(map(encoder.encode, rows)))

                results = await _apply_all(batch, requests, stream)
                if probe is not None and not check_ids:
                    # Python is done and PostgreSQL still inserts: ask another connection meanwhile.
                    probing = asyncio.create_task(probe(_hex_array(r.id.int for r in requests)))
                await copy.write(pgcopy.TRAILER)
            if probing is not None and await probing:
                raise RetryBatch(check_ids=True)
        finally:
            if probing is not None and not probing.done():
                await asyncio.gather(probing, return_exceptions=True)
    else:
        results = await _apply_all(batch, requests, None)
        if batch.created:
            stamp = batch.now.isoformat()
            rows_json = json.dumps([_json_row(t, stamp) for t in batch.created], ensure_ascii=False)
            await db.write(_JSON_INSERT, (rows_json,))

    if not check_ids:
        refused = [r.id for r, out in zip(requests, results, strict=True) if isinstance(out, LedgerError)]
        if refused and await db.rows(
            "SELECT 1 FROM ledger_transfers WHERE id = ANY(%s::uuid[]) LIMIT 1", (uuid_array(refused),)
        ):
            raise RetryBatch(check_ids=True)
    await _write_state(db, batch)
    if extra_writes is not None:
        created = {t.id for t in batch.created}
        for query, params in extra_writes(results, created):
            await db.write(query, params)
    await db.finish()
    return results


async def _read_state(
    db: _Statements,
    requests: Sequence[TransferRequest],
    clock: Callable[[], datetime],
    check_ids: bool,
    extra_accounts: frozenset[UUID],
) -> _Batch:
    """Lock the batch's accounts, then read its holds, refusals and (where needed) stored transfers."""
    pending_ids = list({r.pending_id for r in requests if r.pending_id is not None})
    # Collected as 128-bit integers: hashing an int is C, hashing a UUID object a Python call, and a bulk
    # batch names 16,000 accounts.
    wanted = {a.int for r in requests for a in (r.debit_account_id, r.credit_account_id) if a is not None}
    wanted.update(a.int for a in extra_accounts)
    if pending_ids:
        for debit_id, credit_id in await db.rows(
            "SELECT debit_account_id, credit_account_id FROM ledger_pending WHERE id = ANY(%s::uuid[])",
            (uuid_array(pending_ids),),
        ):
            wanted.add(debit_id.int)
            wanted.add(credit_id.int)

    # With every id (small batches and bulk re-runs), refusals and stored transfers are looked up in the
    # same round trip as the locks, after them: a batch that refused one of these ids on the same accounts
    # has committed by the time the locks are granted. A first bulk run leaves refusals to its probe.
    reads: list[tuple[str, Params]] = [(_LOCK_ACCOUNTS, (_hex_array(wanted),))]
    if check_ids:
        ids = _hex_array(r.id.int for r in requests)
        reads += [(_REFUSALS_QUERY, (ids,)), (_TRANSFERS_QUERY, (ids,))]
    elif pending_ids:  # a retried post or void must answer the original, not pending_already_posted
        reads.append((_TRANSFERS_QUERY, (uuid_array(r.id for r in requests if r.pending_id is not None),)))
    locked, *looked_up = await db.rows_many(reads)
    refused, stored = looked_up if check_ids else ([], looked_up[0] if looked_up else [])
    accounts = {row[0]: _AccountState(*row) for row in locked}
    refusals = {row[0]: _Refusal.from_row(row) for row in refused}
    existing = {row[0]: transfer_from_row(row) for row in stored}
    # The batch's time is read once the locks are held, so an account's transfers carry times in
    # the order they were applied, and a balance "as of" a time is well defined.
    now = clock()

    pendings: dict[UUID, _Pending] = {}
    if pending_ids or any(a.debits_pending or a.credits_pending for a in accounts.values()):
        params = {"ids": uuid_array(pending_ids), "now": now, "accounts": uuid_array(accounts)}
        for row in await db.rows(_PENDING_QUERY, params):
            pendings[row[0]] = _Pending(
                id=row[0],
                debit=row[1],
                credit=row[2],
                amount=row[3],
                expires_at=row[4],
                state=PendingState(row[5]),
                resolved_by=row[6],
                resolved_at=row[7],
                code=row[8],
                currency=row[9],
            )
        missing = {a for p in pendings.values() for a in (p.debit, p.credit)} - accounts.keys()
        if missing:
            await _lock_more(db, missing, accounts)
    return _Batch(accounts, pendings, existing, refusals, now)


def _hex_array(ids: Iterable[int]) -> str:
    """A uuid array literal from 128-bit integers: ``format`` is C, ``str(UUID)`` a Python call per id."""
    return "{" + ",".join(format(i, "032x") for i in ids) + "}"


async def _lock_more(db: _Statements, missing: set[UUID], accounts: dict[UUID, _AccountState]) -> None:
    """Lock accounts found late (the other side of an expired hold) without waiting out of order.

    If another transaction holds one, the batch runs again from the start with it locked in order.
    """
    try:
        rows = await db.rows(
            _LOCK_ACCOUNTS.replace("FOR UPDATE", "FOR UPDATE NOWAIT"), (uuid_array(missing),)
        )
    except pg_errors.LockNotAvailable:
        raise RetryBatch(accounts=frozenset(missing)) from None
    for row in rows:
        accounts[row[0]] = _AccountState(*row)


FLUSH_EVERY = 256
"""A streaming batch hands its rows to COPY this many at a time, so PostgreSQL works while Python checks."""


async def _apply_all(
    batch: _Batch, requests: Sequence[TransferRequest], flush: Callable[[], Awaitable[None]] | None
) -> list[Result]:
    if not any(r.linked for r in requests):
        # No chains: the common bulk case, without the bookkeeping linked chains need.
        results: list[Result] = []
        apply = batch.apply
        for i, req in enumerate(requests):
            results.append(apply(i, req))
            if flush is not None and len(batch.created) - batch.flushed >= FLUSH_EVERY:
                await flush()
        if flush is not None:
            await flush()
        return results
    slots: list[Result | None] = [None] * len(requests)
    for start, end in _chains(requests):
        if end - start == 1 and not requests[start].linked:
            slots[start] = batch.apply(start, requests[start])
        else:
            batch.begin_chain()
            failure: LedgerError | None = None
            if requests[end - 1].linked:
                failure = LedgerError("linked_event_chain_open", index=end - 1)
            else:
                for i in range(start, end):
                    outcome = batch.apply(i, requests[i])
                    if isinstance(outcome, LedgerError):
                        failure = outcome
                        break
                    slots[i] = outcome
            if failure is None:
                batch.end_chain()
            else:
                batch.rollback_chain()
                _refuse_chain(batch, requests, slots, start, end, failure)
        if flush is not None and len(batch.created) - batch.flushed >= FLUSH_EVERY:
            await flush()
    if flush is not None:
        await flush()
    return [r for r in slots if r is not None]


def _refuse_chain(
    batch: _Batch,
    requests: Sequence[TransferRequest],
    slots: list[Result | None],
    start: int,
    end: int,
    failure: LedgerError,
) -> None:
    """Answer every member of a refused chain and record the new refusals.

    A member refused before answers as it did then (so a chain refused as a whole answers the same on
    resend); the others get the failure that broke the chain, or ``linked_event_failed``.
    """
    for i in range(start, end):
        req = requests[i]
        refused = batch.refusals.get(req.id)
        if refused is not None:
            slots[i] = refused.answer(i, req)
            continue
        error = failure if i == failure.index else LedgerError("linked_event_failed", index=i)
        slots[i] = error
        if error.code != "transfer_id_conflict" and not batch.settled(req):
            batch.refuse(req, error)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


async def _write_state(db: _Statements, batch: _Batch) -> None:
    """Persist what the batch changed besides the transfers: hold states and account totals."""
    new_pendings = [p for p in batch.pendings.values() if p.new]
    if new_pendings:
        holds = [
            [
                str(p.id),
                str(p.debit),
                str(p.credit),
                p.amount,
                _iso(p.expires_at),
                p.state.value,
                str(p.resolved_by) if p.resolved_by else None,
                _iso(p.resolved_at),
            ]
            for p in new_pendings
        ]
        await db.write(
            "INSERT INTO ledger_pending (id, debit_account_id, credit_account_id, amount, expires_at, state, "
            "resolved_by, resolved_at) SELECT (h->>0)::uuid, (h->>1)::uuid, (h->>2)::uuid, (h->>3)::bigint, "
            "(h->>4)::timestamptz, h->>5, (h->>6)::uuid, (h->>7)::timestamptz "
            "FROM json_array_elements(%s::json) AS h",
            (json.dumps(holds),),
        )
    resolved = [p for p in batch.pendings.values() if p.dirty and not p.new]
    if resolved:
        ends = [
            [
                str(p.id),
                p.state.value,
                str(p.resolved_by) if p.resolved_by else None,
                p.resolved_at.isoformat() if p.resolved_at else None,
            ]
            for p in resolved
        ]
        await db.write(
            "UPDATE ledger_pending p SET state = u->>1, resolved_by = (u->>2)::uuid, "
            "resolved_at = (u->>3)::timestamptz FROM json_array_elements(%s::json) AS u "
            "WHERE p.id = (u->>0)::uuid AND p.state = 'open'",
            (json.dumps(ends),),
        )
    if batch.new_refusals:
        refusals = [_refusal_row(req, refusal) for req, refusal in batch.new_refusals]
        await db.write(_INSERT_REFUSALS, (batch.now, json.dumps(refusals, ensure_ascii=False)))
    dirty = [a for a in batch.accounts.values() if a.dirty]
    if dirty:
        # Five array literals parse faster in PostgreSQL than one JSON document of the same rows.
        await db.write(
            "UPDATE ledger_accounts a SET debits_posted = u.debits_posted, credits_posted = u.credits_posted, "
            "debits_pending = u.debits_pending, credits_pending = u.credits_pending "
            "FROM unnest(%s::uuid[], %s::int8[], %s::int8[], %s::int8[], %s::int8[]) "
            "AS u (id, debits_posted, credits_posted, debits_pending, credits_pending) WHERE a.id = u.id",
            (
                uuid_array(a.id for a in dirty),
                _int_array(a.debits_posted for a in dirty),
                _int_array(a.credits_posted for a in dirty),
                _int_array(a.debits_pending for a in dirty),
                _int_array(a.credits_pending for a in dirty),
            ),
        )
