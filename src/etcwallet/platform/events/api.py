"""Administrators' view of events: consumers' positions, parked events, and replaying one.

Gated by ``platform.operate`` (administrators). A replay request is audited in its own transaction with
the change; a refused one is audited on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, status
from pydantic import BaseModel

from etcwallet.core.deps import ClientDep, PoolDep, UnitOfWorkDep
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Permission, Principal, actor_of, require
from etcwallet.platform.events import dispatch, parked
from etcwallet.platform.events.dispatch import NAME_PATTERN

admin = APIRouter(prefix="/api/v1/admin/events", tags=["administration"])
Operator = Annotated[Principal, Depends(require(Permission.PLATFORM_OPERATE))]
ParkedId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the parked event's id")]


class ParkedEventOut(BaseModel):
    id: int
    consumer: str
    event_id: UUID
    type: str
    key: str
    payload: dict[str, Any]
    emitted_at: datetime
    attempts: int
    last_error: str
    status: Literal["parked", "replaying", "replayed"]
    parked_at: datetime
    replay_requested_by: str | None
    replay_requested_at: datetime | None
    replayed_at: datetime | None

    @classmethod
    def of(cls, p: parked.ParkedEvent) -> ParkedEventOut:
        return cls(
            id=p.id,
            consumer=p.consumer,
            event_id=p.event_id,
            type=p.type,
            key=p.key,
            payload=dict(p.payload),
            emitted_at=p.emitted_at,
            attempts=p.attempts,
            last_error=p.last_error,
            status=p.status,
            parked_at=p.parked_at,
            replay_requested_by=p.replay_requested_by,
            replay_requested_at=p.replay_requested_at,
            replayed_at=p.replayed_at,
        )


class ConsumerOut(BaseModel):
    name: str
    after_xid: str
    after_seq: int
    failing: bool
    attempts: int
    retry_at: datetime | None
    last_error: str | None
    updated_at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ConsumerOut:
        return cls(
            name=row["name"],
            after_xid=row["after_xid"],
            after_seq=row["after_seq"],
            failing=row["failing_seq"] is not None,
            attempts=row["attempts"],
            retry_at=row["retry_at"],
            last_error=row["last_error"],
            updated_at=row["updated_at"],
        )


@admin.get("/consumers", response_model=list[ConsumerOut])
async def list_consumers(pool: PoolDep, me: Operator) -> list[ConsumerOut]:
    """Every consumer's offset, and the event it is retrying (with the last error), if any."""
    async with pool.connection() as conn:
        return [ConsumerOut.of(row) for row in await dispatch.positions(conn)]


@admin.get("/parked", response_model=list[ParkedEventOut])
async def list_parked_events(
    pool: PoolDep,
    me: Operator,
    parked_status: Annotated[
        Literal["parked", "replaying", "replayed", "all"], Query(alias="status", description="which ones")
    ] = "parked",
    consumer: Annotated[str | None, Query(pattern=f"^{NAME_PATTERN.pattern}$")] = None,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="page back: ids below this")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[ParkedEventOut]:
    """Events a consumer gave up on after too many failures, newest first."""
    async with pool.connection() as conn:
        found = await parked.list_parked(
            conn,
            status=None if parked_status == "all" else parked_status,
            consumer=consumer,
            limit=limit,
            before=before,
        )
    return [ParkedEventOut.of(p) for p in found]


@admin.post(
    "/parked/{parked_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ParkedEventOut,
    responses=problems(404, 409),
)
async def replay_parked_event(
    parked_id: ParkedId, uow: UnitOfWorkDep, me: Operator, client: ClientDep
) -> ParkedEventOut:
    """Deliver a parked event to its consumer once more (202: the dispatcher holding the consumer does it
    at its next round). Its handler must be idempotent, as always. 409 while a replay is under way or
    after one succeeded."""
    done = await parked.replay(uow, parked_id=parked_id, actor=actor_of(me, client))
    return ParkedEventOut.of(done)
