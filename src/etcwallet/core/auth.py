"""The admin token that guards staff APIs until staff identity and roles exist.

In production it must be configured (``ETCW_ADMIN_TOKEN``); elsewhere a random one is generated once and
kept in ``<data_dir>/admin-token`` so a developer can read it.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from fastapi import Request

from etcwallet.core.config import Settings
from etcwallet.core.errors import DomainError


def load_admin_token(settings: Settings) -> str:
    """The configured admin token, or (outside production) one generated and kept in the data directory."""
    if settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
        if len(token) < 16:
            raise SystemExit("ETCW_ADMIN_TOKEN must be at least 16 characters")
        return token
    if settings.is_production:
        raise SystemExit("ETCW_ADMIN_TOKEN must be set in production")
    path: Path = settings.data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


_UNAUTHORIZED = DomainError(
    "unauthorized",
    401,
    "需要有效的管理令牌（Authorization: Bearer …）",
    "a valid admin token is required (Authorization: Bearer …)",
    field="Authorization",
)


async def require_admin(request: Request) -> None:
    """Refuse the request unless it carries the admin bearer token."""
    expected: str = request.app.state.admin_token
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise _UNAUTHORIZED
