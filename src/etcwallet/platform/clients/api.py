"""Machine clients over HTTP: what a machine calls to check its credentials and report in, and the
administrators' list and revocation (creation is the command line's: it prints the secret once)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from etcwallet.core.deps import ClientDep, PoolDep
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Permission, Principal, actor_of, require
from etcwallet.platform.clients import schemas as s
from etcwallet.platform.clients import service
from etcwallet.platform.clients.gate import machine
from etcwallet.platform.clients.types import MachinePrincipal, Scope

router = APIRouter(prefix="/api/v1/machine", tags=["machine clients"])
admin = APIRouter(prefix="/api/v1/admin/machine-clients", tags=["administration"])

AnyMachine = Annotated[MachinePrincipal, Depends(machine())]
Device = Annotated[MachinePrincipal, Depends(machine(Scope.DEVICES_HEARTBEAT))]
Manager = Annotated[Principal, Depends(require(Permission.CLIENTS_MANAGE))]


@router.get("/whoami", response_model=s.WhoAmIOut)
async def whoami(pool: PoolDep, me: AnyMachine) -> s.WhoAmIOut:
    """Check the credentials: answers who the server takes the caller for, and the server's clock."""
    return s.WhoAmIOut.of(await service.whoami(pool, me), datetime.now(UTC))


@router.post("/heartbeat", response_model=s.HeartbeatOut)
async def heartbeat(body: s.HeartbeatIn, pool: PoolDep, me: Device) -> s.HeartbeatOut:
    """A field device (lane, gantry, terminal) reports in: its state is recorded, and it learns how far
    its clock is off, which must stay inside the signing window."""
    beat = await service.heartbeat(
        pool, me, device_time=body.device_time, status=body.status, software=body.software
    )
    return s.HeartbeatOut.of(beat)


@admin.get("", response_model=s.ClientPage)
async def list_clients(
    pool: PoolDep,
    me: Manager,
    include_revoked: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: UUID | None = None,
) -> s.ClientPage:
    """Machine clients (revoked ones too with ``include_revoked``), newest first, never a secret."""
    clients = await service.list_clients(pool, include_revoked=include_revoked, limit=limit, before=cursor)
    return s.ClientPage(
        items=[s.ClientOut.of(c) for c in clients],
        next_cursor=clients[-1].id if len(clients) == limit else None,
    )


@admin.post("/{client_id}/revoke", response_model=s.ClientOut, responses=problems(409))
async def revoke_client(client_id: UUID, pool: PoolDep, me: Manager, client: ClientDep) -> s.ClientOut:
    """Revoke a client: its next call, in every process, is refused (``client_revoked``)."""
    revoked = await service.revoke_client(pool, client_id=client_id, actor=actor_of(me, client))
    return s.ClientOut.of(revoked)
