"""Request and response bodies shared by every sign-in: a new session's tokens and the refresh request."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from etcwallet.core.schemas import RequestModel
from etcwallet.identity.sessions.types import IssuedTokens


class SessionOut(BaseModel):
    """A new session's tokens, shown once: only their hashes are stored."""

    access_token: str
    refresh_token: str
    csrf_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: datetime
    absolute_expires_at: datetime

    @classmethod
    def of(cls, t: IssuedTokens) -> SessionOut:
        return cls(
            access_token=t.access_token,
            refresh_token=t.refresh_token,
            csrf_token=t.csrf_token,
            expires_at=t.expires_at,
            absolute_expires_at=t.absolute_expires_at,
        )


class RefreshRequest(RequestModel):
    refresh_token: Annotated[str, Field(min_length=10, max_length=128)]
