"""What a session is, as plain values: the stored session, the tokens handed out once, a rotation's end.

No I/O here; ``store.py`` turns rows into these, ``service.py`` decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

IDLE = timedelta(minutes=30)
"""A session unused this long ends."""
ABSOLUTE = timedelta(hours=12)
"""No session outlives this, however busy; refreshing never extends it."""
TOUCH_EVERY = timedelta(seconds=30)
"""The idle timer is written at most this often, not on every request."""


class PrincipalType(StrEnum):
    """Who a session belongs to."""

    CUSTOMER = "customer"
    STAFF = "staff"


class EndReason(StrEnum):
    """Why a session ended (``sessions.revoked_reason``); callers may store other words too."""

    LOGOUT = "logout"
    REFRESH_TOKEN_REUSED = "refresh_token_reused"
    ENDED_BY_CUSTOMER = "ended_by_customer"


@dataclass(frozen=True)
class Session:
    """A stored session: who, since when, until when, from where (ip, user agent, device)."""

    id: UUID
    principal_type: str
    principal_id: UUID
    created_at: datetime
    last_seen_at: datetime
    idle_expires_at: datetime
    absolute_expires_at: datetime
    stepped_up_at: datetime | None
    step_up_factor: str | None
    csrf_token: str
    ip: str | None
    user_agent: str | None
    device_id: str | None = None


@dataclass(frozen=True)
class IssuedTokens:
    """What the client receives once: the tokens themselves are never stored.

    ``new_device`` says whether the session's device id was never seen on this principal's sessions
    before (None when the client sent no device id); the sign-in's audit entry records it.
    """

    session_id: UUID
    access_token: str
    refresh_token: str
    csrf_token: str
    expires_at: datetime
    absolute_expires_at: datetime
    device_id: str | None = None
    new_device: bool | None = None

    def audit_detail(self) -> dict[str, object]:
        """The device facts a sign-in's audit entry carries: ``device_id`` and ``new_device`` when sent."""
        if self.device_id is None:
            return {}
        return {"device_id": self.device_id, "new_device": bool(self.new_device)}


@dataclass(frozen=True)
class Rotation:
    """How a refresh ended: new tokens, a session ended because its old token came back, or neither."""

    principal_id: UUID | None
    session_id: UUID | None
    tokens: IssuedTokens | None
    reused: bool
