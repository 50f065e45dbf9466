"""Request and response bodies of the machine-client API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, Field

from etcwallet.core.schemas import RequestModel
from etcwallet.platform.clients import signing
from etcwallet.platform.clients.types import (
    KIND_NAMES,
    AuthStyle,
    ClientKind,
    Heartbeat,
    MachineClient,
    MachinePrincipal,
    Scope,
)


class ClientOut(BaseModel):
    """A machine client as administrators see it: never its secret."""

    id: UUID
    name: str
    kind: ClientKind
    kind_name: str
    scopes: list[Scope]
    auth: AuthStyle
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None
    last_heartbeat_at: datetime | None
    last_heartbeat: dict[str, Any] | None

    @classmethod
    def of(cls, c: MachineClient) -> ClientOut:
        zh, en = KIND_NAMES[c.kind]
        return cls(
            id=c.id,
            name=c.name,
            kind=c.kind,
            kind_name=f"{zh} / {en}",
            scopes=sorted(c.scopes),
            auth=c.auth,
            created_at=c.created_at,
            created_by=c.created_by,
            revoked_at=c.revoked_at,
            revoked_by=c.revoked_by,
            last_heartbeat_at=c.last_heartbeat_at,
            last_heartbeat=c.last_heartbeat or None,
        )


class ClientPage(BaseModel):
    """One page of clients, newest first; ``next_cursor`` asks for the next (None on the last page)."""

    items: list[ClientOut]
    next_cursor: UUID | None


class WhoAmIOut(BaseModel):
    """The calling machine as the server knows it, and the server's clock for the replay window."""

    id: UUID
    name: str
    kind: ClientKind
    scopes: list[Scope]
    auth: AuthStyle
    server_time: datetime
    window_seconds: int = signing.WINDOW_SECONDS

    @classmethod
    def of(cls, p: MachinePrincipal, now: datetime) -> WhoAmIOut:
        return cls(id=p.id, name=p.name, kind=p.kind, scopes=sorted(p.scopes), auth=p.auth, server_time=now)


class HeartbeatIn(RequestModel):
    """A field device's heartbeat: its clock, its state and its software."""

    device_time: AwareDatetime = Field(description="the device's clock when it sent this, with its offset")
    status: Literal["ok", "degraded", "fault"] = "ok"
    software: Annotated[str | None, Field(max_length=64, description="software name and version")] = None


class HeartbeatOut(BaseModel):
    """The server's clock and how far the device's is off (device minus server, seconds)."""

    server_time: datetime
    clock_skew_seconds: float
    window_seconds: int = signing.WINDOW_SECONDS

    @classmethod
    def of(cls, h: Heartbeat) -> HeartbeatOut:
        return cls(server_time=h.server_time, clock_skew_seconds=h.clock_skew_seconds)
