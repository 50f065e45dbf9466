"""Machine clients over HTTP: what a machine calls to check its credentials and report in, and the
administrators' list and revocation (creation is the command line's: it prints the secret once)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Permission, Principal, require
from etcwallet.platform.audit import Actor
from etcwallet.platform.clients import schemas as s
from etcwallet.platform.clients import service
from etcwallet.platform.clients.gate import machine
from etcwallet.platform.clients.types import MachinePrincipal, Scope

router = APIRouter(prefix="/api/v1/machine", tags=["machine clients"])
admin = APIRouter(prefix="/api/v1/admin/machine-clients", tags=["administration"])

AnyMachine = Annotated[MachinePrincipal, Depends(machine())]
Device = Annotated[MachinePrincipal, Depends(machine(Scope.DEVICES_HEARTBEAT))]
Manager = Annotated[Principal, Depends(require(Permission.CLIENTS_MANAGE))]


def _pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = request.app.state.runtime.pool
    return pool


@router.get("/whoami", response_model=s.WhoAmIOut)
async def whoami(request: Request, me: AnyMachine) -> s.WhoAmIOut:
    """Check the credentials: answers who the server takes the caller for, and the server's clock."""
    return s.WhoAmIOut.of(await service.whoami(_pool(request), me), datetime.now(UTC))


@router.post("/heartbeat", response_model=s.HeartbeatOut)
async def heartbeat(body: s.HeartbeatIn, request: Request, me: Device) -> s.HeartbeatOut:
    """A field device (lane, gantry, terminal) reports in: its state is recorded, and it learns how far
    its clock is off, which must stay inside the signing window."""
    beat = await service.heartbeat(
        _pool(request), me, device_time=body.device_time, status=body.status, software=body.software
    )
    return s.HeartbeatOut.of(beat)


def _staff_actor(request: Request, me: Principal) -> Actor:
    return Actor(
        "staff",
        str(me.id),
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
    )


@admin.get("", response_model=s.ClientPage)
async def list_clients(
    request: Request,
    me: Manager,
    include_revoked: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: UUID | None = None,
) -> s.ClientPage:
    """Machine clients (revoked ones too with ``include_revoked``), newest first, never a secret."""
    clients = await service.list_clients(
        _pool(request), include_revoked=include_revoked, limit=limit, before=cursor
    )
    return s.ClientPage(
        items=[s.ClientOut.of(c) for c in clients],
        next_cursor=clients[-1].id if len(clients) == limit else None,
    )


@admin.post("/{client_id}/revoke", response_model=s.ClientOut, responses=problems(409))
async def revoke_client(client_id: UUID, request: Request, me: Manager) -> s.ClientOut:
    """Revoke a client: its next call, in every process, is refused (``client_revoked``)."""
    revoked = await service.revoke_client(
        _pool(request), client_id=client_id, actor=_staff_actor(request, me)
    )
    return s.ClientOut.of(revoked)
