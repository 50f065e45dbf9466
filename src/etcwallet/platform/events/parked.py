"""Parked events: what a consumer failed to handle too often, kept for an administrator to replay.

Replaying does not call the handler here (this process may not run that consumer): it marks the event
``replaying``, and the dispatcher that holds the consumer delivers it once at its next round, then marks
it ``replayed`` or, if the handler fails again, ``parked`` with the new error. Every replay request is
audited by whoever asked (the API and the command line).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.platform.audit import Actor
from etcwallet.platform.events.errors import EventError

if TYPE_CHECKING:  # the unit of work imports the events package (its outbox)
    from etcwallet.platform.unit import Unit, UnitOfWork

Status = Literal["parked", "replaying", "replayed"]
REPLAY_ACTION = "events.replay"


@dataclass(frozen=True)
class ParkedEvent:
    """An event one consumer gave up on, with how often it tried and why it failed last."""

    id: int
    consumer: str
    event_id: UUID
    type: str
    key: str
    payload: Mapping[str, Any]
    emitted_at: datetime
    attempts: int
    last_error: str
    status: Status
    parked_at: datetime
    replay_requested_by: str | None
    replay_requested_at: datetime | None
    replayed_at: datetime | None


_COLUMNS = (
    "id, consumer, event_id, type, key, payload, emitted_at, attempts, last_error, status, parked_at, "
    "replay_requested_by, replay_requested_at, replayed_at"
)


async def list_parked(
    conn: AsyncConnection[Any],
    *,
    status: Status | None = "parked",
    consumer: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[ParkedEvent]:
    """Parked events, newest first; ``before`` (an id) pages back, ``status`` None means any."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM event_parked WHERE (%(status)s::text IS NULL OR status = %(status)s) "
        "AND (%(consumer)s::text IS NULL OR consumer = %(consumer)s) "
        "AND (%(before)s::int8 IS NULL OR id < %(before)s) ORDER BY id DESC LIMIT %(limit)s",
        {"status": status, "consumer": consumer, "before": before, "limit": limit},
    )
    return [ParkedEvent(*row) for row in await cur.fetchall()]


async def get_parked(conn: AsyncConnection[Any], parked_id: int) -> ParkedEvent | None:
    """One parked event, or None."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM event_parked WHERE id = %s", (parked_id,))
    row = await cur.fetchone()
    return None if row is None else ParkedEvent(*row)


async def get_parked_or_raise(conn: AsyncConnection[Any], parked_id: int) -> ParkedEvent:
    """One parked event, or ``parked_event_not_found``."""
    found = await get_parked(conn, parked_id)
    if found is None:
        raise EventError("parked_event_not_found")
    return found


async def request_replay(conn: AsyncConnection[Any], parked_id: int, *, requested_by: str) -> ParkedEvent:
    """Mark a parked event for one more delivery to its consumer; ``requested_by`` as ``kind:id``.

    Refused with ``parked_event_not_parked`` while it is being replayed or once a replay succeeded.
    """
    cur = await conn.execute(
        f"UPDATE event_parked SET status = 'replaying', replay_requested_by = %s, "
        f"replay_requested_at = now() WHERE id = %s AND status = 'parked' RETURNING {_COLUMNS}",
        (requested_by, parked_id),
    )
    row = await cur.fetchone()
    if row is None:
        await get_parked_or_raise(conn, parked_id)  # not found: that refusal
        raise EventError("parked_event_not_parked")
    return ParkedEvent(*row)


async def replay(uow: UnitOfWork, *, parked_id: int, actor: Actor) -> ParkedEvent:
    """:func:`request_replay` on behalf of ``actor`` as one unit of work, audited (``events.replay``) in its
    transaction; a refusal changes nothing and is audited on its own."""
    target = ("event_parked", str(parked_id))

    async def step(unit: Unit) -> ParkedEvent:
        done = await request_replay(unit.conn, parked_id, requested_by=f"{actor.type}:{actor.id}")
        detail = {"consumer": done.consumer, "event_id": str(done.event_id), "type": done.type}
        unit.audit(actor.event(REPLAY_ACTION, target=target, detail=detail))
        return done

    return await uow.run(
        step, refusal=lambda refused: actor.refused(REPLAY_ACTION, refused.code, target=target)
    )
