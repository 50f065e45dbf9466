"""The append-only audit log: who did what to what, when, from where, and how it ended.

Each row carries the SHA-256 of the row before it and of its own content, so editing or deleting a row
breaks the chain at that row (``etcwallet audit verify`` names it); the database also refuses UPDATE,
DELETE and TRUNCATE. Rows deleted from the end leave a chain that still links up: verifying against an
:class:`Anchor` (a row's hash recorded elsewhere earlier) catches that too. Appends are serialized with
a transaction-scoped advisory lock taken just before them, at the end of the transaction they record;
the server computes each row's hash (``audit_append``, migration 0015), so a whole batch of rows is one
statement that travels in one message with the commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

GENESIS = bytes(32)


@dataclass(frozen=True)
class AuditEvent:
    """One thing a person (or the system on their behalf) did."""

    actor_type: str  # customer | staff | system | anonymous
    actor_id: str | None
    action: str  # e.g. customer.login, staff.create, ledger.transfer
    outcome: str  # success | refused | failure
    target_type: str | None = None
    target_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Actor:
    """Who acts and from where: the one place that turns a caller into audit events.

    Build it once per request (from the principal and the client, or :meth:`system` for jobs and the
    command line) and ask it for each event, instead of spelling nine fields at every call. Staff placed at
    an outlet act for it: their events carry ``outlet_id`` in the detail, which the audit search filters on
    (the row's columns, and so what its hash covers, stay as they are).
    """

    type: str  # customer | staff | machine | system | anonymous
    id: str | None
    ip: str | None = None
    user_agent: str | None = None
    outlet_id: str | None = None

    @classmethod
    def system(cls, name: str) -> Actor:
        """The platform itself acting (a job, the command line), named by what it is."""
        return cls("system", name)

    def event(
        self,
        action: str,
        *,
        target: tuple[str, str | None] | None = None,
        detail: Mapping[str, Any] | None = None,
        outcome: str = "success",
    ) -> AuditEvent:
        """What this actor did, with the target as ``(type, id)``."""
        target_type, target_id = target if target is not None else (None, None)
        if self.outlet_id is not None:
            detail = {**(detail or {}), "outlet_id": self.outlet_id}  # where the act was done wins
        return AuditEvent(
            self.type,
            self.id,
            action,
            outcome,
            target_type,
            target_id,
            self.ip,
            self.user_agent,
            dict(detail or {}),
        )

    def refused(
        self,
        action: str,
        reason: str,
        *,
        target: tuple[str, str | None] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """An attempt that was refused, with the refusal's code as the reason."""
        return self.event(
            action, target=target, detail={**(detail or {}), "reason": reason}, outcome="refused"
        )


def _digest(prev: bytes, at: datetime, e: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(prev + _content(at, e)).digest()


def _content(at: datetime, e: Mapping[str, Any]) -> bytes:
    """The bytes a row's hash covers after the previous row's hash: its fields as canonical JSON."""
    return json.dumps(
        [
            at.astimezone(UTC).isoformat(),
            e["actor_type"],
            e["actor_id"],
            e["action"],
            e["target_type"],
            e["target_id"],
            e["outcome"],
            e["ip"],
            e["user_agent"],
            e["detail"],
        ],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    ).encode()


_PLAIN = (str, int, bool, type(None))


def as_stored(detail: Mapping[str, Any]) -> Any:
    """The detail exactly as jsonb will give it back, computed without asking the server.

    Everything but floats survives jsonb unchanged once it has been through JSON (keys become strings,
    tuples lists, other objects their ``str``); a float may come back spelled differently (``1e+20`` as an
    integer), so floats are stored as the decimal text Python writes for them. A flat detail of strings,
    integers, booleans and nulls (the common case) is already what jsonb gives back.
    """
    if all(type(k) is str and type(v) in _PLAIN for k, v in detail.items()):
        return dict(detail)
    return json.loads(json.dumps(dict(detail), ensure_ascii=False, default=str), parse_float=str)


def contents(events: Sequence[AuditEvent], at: datetime | None = None) -> list[str]:
    """Each event's canonical content (what its hash covers after the previous hash), as text.

    The database function ``audit_append`` (migration 0015) reads the row's fields back out of it, so
    what is stored is exactly what was hashed.
    """
    at = at or datetime.now(UTC)
    out = []
    for event in events:
        fields = {
            "actor_type": event.actor_type,
            "actor_id": event.actor_id,
            "action": event.action,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "outcome": event.outcome,
            "ip": event.ip,
            "user_agent": (event.user_agent or "")[:512] or None,
            "detail": as_stored(event.detail),
        }
        out.append(_content(at, fields).decode())
    return out


APPEND = "SELECT audit_append(ARRAY(SELECT json_array_elements_text(%s::json)))"
"""Appends a batch of entries (their :func:`contents`, as one JSON array of strings) under the chain's
lock; answers the last ``seq``. One JSON document binds far faster on the client than a text array,
whose every element psycopg quotes in Python."""


def append_statement(events: Sequence[AuditEvent], at: datetime | None = None) -> tuple[str, tuple[Any, ...]]:
    """The one statement that appends ``events`` in order: for a commit that sends its writes in one message.

    The server links each row to the one before, so the statement needs no answer from earlier ones, and
    the chain's lock is held only from this statement to the end of its commit.
    """
    return APPEND, (json.dumps(contents(events, at), ensure_ascii=False),)


async def append_many(conn: AsyncConnection[Any], events: Sequence[AuditEvent]) -> None:
    """Append ``events`` inside the caller's transaction, in one statement."""
    if events:
        await conn.execute(*append_statement(events))


async def append(conn: AsyncConnection[Any], event: AuditEvent) -> int:
    """Append ``event`` inside the caller's transaction; returns its sequence number."""
    cur = await conn.execute(*append_statement([event]))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def record(pool: AsyncConnectionPool, event: AuditEvent) -> int:
    """Append ``event`` in a transaction of its own (so it stays even if the caller's work rolls back)."""
    async with pool.connection() as conn, conn.transaction():
        return await append(conn, event)


@dataclass(frozen=True)
class ChainReport:
    rows: int
    first_broken_seq: int | None
    reason: str | None
    head_seq: int | None = None
    """The last row that verified, and its hash (hex): the anchor to keep somewhere else."""
    head_hash: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None


async def head(conn: AsyncConnection[Any]) -> tuple[int, str] | None:
    """The newest row's seq and hash (hex), unverified: for logging as an anchor, not for trusting."""
    cur = await conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    row = await cur.fetchone()
    return (row[0], bytes(row[1]).hex()) if row else None


@dataclass(frozen=True)
class Anchor:
    """A row's hash recorded outside the database (a ticket, a log archive, a printed report).

    The chain alone cannot show rows deleted from its end: what remains still links up. A row
    anchored earlier that is gone, or has another hash, shows it.
    """

    seq: int
    hash: bytes

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``SEQ:HASH`` with the hash as 64 hex digits, as ``etcwallet audit verify`` prints it."""
        seq_text, sep, hash_text = text.strip().partition(":")
        if not sep or not seq_text.isdigit() or len(hash_text) != 64:
            raise ValueError("an anchor is SEQ:HASH, the hash 64 hex digits")
        try:
            return cls(int(seq_text), bytes.fromhex(hash_text))
        except ValueError:
            raise ValueError("an anchor's hash is 64 hex digits") from None


async def verify(
    conn: AsyncConnection[Any], batch: int = 5000, anchors: Sequence[Anchor] = ()
) -> ChainReport:
    """Walk the whole chain; report the first row whose link or content does not hold.

    Each of ``anchors`` must still be there with the hash recorded for it.
    """
    prev, last_seq, rows = GENESIS, 0, 0
    wanted = {a.seq: a.hash for a in anchors}
    while True:
        cur = await conn.execute(
            "SELECT seq, at, actor_type, actor_id, action, target_type, target_id, outcome, ip, user_agent, "
            "detail, prev_hash, hash FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s",
            (last_seq, batch),
        )
        page = await cur.fetchall()
        if not page:
            head = (last_seq, prev.hex()) if rows else (None, None)
            if wanted:
                seq = min(wanted)
                reason = (
                    "an anchored row is missing (rows were deleted from the end of the log)"
                    if seq > last_seq
                    else "no row has the anchored seq"
                )
                return ChainReport(rows, seq, reason, *head)
            return ChainReport(rows, None, None, *head)
        for r in page:
            seq, at = r[0], r[1]
            fields = dict(
                zip(
                    (
                        "actor_type",
                        "actor_id",
                        "action",
                        "target_type",
                        "target_id",
                        "outcome",
                        "ip",
                        "user_agent",
                        "detail",
                    ),
                    r[2:11],
                    strict=True,
                )
            )
            if bytes(r[11]) != prev:
                return ChainReport(
                    rows, seq, "prev_hash does not match the row before (a row was removed or edited)"
                )
            if _digest(prev, at, fields) != bytes(r[12]):
                return ChainReport(rows, seq, "content does not match its hash (the row was edited)")
            anchored = wanted.pop(seq, None)
            if anchored is not None and anchored != bytes(r[12]):
                return ChainReport(
                    rows, seq, "the row's hash is not the one anchored for it (the log was rewritten)"
                )
            prev, last_seq, rows = bytes(r[12]), seq, rows + 1
