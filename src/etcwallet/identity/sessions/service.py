"""Sessions: opaque random tokens stored only as hashes; 30 minutes idle, 12 hours absolute.

A session holds an access token and a refresh token. Refreshing rotates both (the old pair stops
working) but never extends the absolute lifetime; every rotated-out refresh token is remembered
(``session_refresh_history``, the session's rotation family), and presenting any of them again ends
the session (:func:`rotate`). Revoking ends a session at once; changing a password
or freezing an account revokes every other session of that principal.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection

from etcwallet.core.crypto import hash_token

IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
TOUCH_EVERY = timedelta(seconds=30)


@dataclass(frozen=True)
class Session:
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


@dataclass(frozen=True)
class IssuedTokens:
    """What the client receives once: the tokens themselves are never stored."""

    session_id: UUID
    access_token: str
    refresh_token: str
    csrf_token: str
    expires_at: datetime
    absolute_expires_at: datetime


_COLUMNS = (
    "id, principal_type, principal_id, created_at, last_seen_at, idle_expires_at, absolute_expires_at, "
    "stepped_up_at, step_up_factor, csrf_token, ip, user_agent"
)


def _now() -> datetime:
    return datetime.now(UTC)


async def create(
    conn: AsyncConnection[Any],
    principal_type: str,
    principal_id: UUID,
    *,
    ip: str | None,
    user_agent: str | None,
) -> IssuedTokens:
    """Open a session for a principal who has just proved who they are."""
    now = _now()
    access, refresh, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    session_id = uuid4()
    await conn.execute(
        "INSERT INTO sessions (id, token_hash, refresh_hash, csrf_token, principal_type, principal_id, created_at, "
        "last_seen_at, idle_expires_at, absolute_expires_at, ip, user_agent) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            session_id, hash_token(access), hash_token(refresh), csrf, principal_type, principal_id, now, now,
            now + IDLE, now + ABSOLUTE, ip, (user_agent or "")[:512] or None,
        ),
    )  # fmt: skip
    return IssuedTokens(session_id, access, refresh, csrf, now + IDLE, now + ABSOLUTE)


async def authenticate(conn: AsyncConnection[Any], access_token: str) -> Session | None:
    """The live session behind an access token, touched so its idle timer restarts; None if not live."""
    now = _now()
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM sessions WHERE token_hash = %s AND revoked_at IS NULL "
        "AND idle_expires_at > %s AND absolute_expires_at > %s",
        (hash_token(access_token), now, now),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    session = Session(*row)
    if now - session.last_seen_at > TOUCH_EVERY:
        await touch(conn, session.id, now)
    return session


async def touch_many(conn: AsyncConnection[Any], session_ids: list[UUID], now: datetime) -> None:
    """Restart the idle timer of several sessions at once."""
    await conn.execute(
        "UPDATE sessions SET last_seen_at = %s, idle_expires_at = least(%s, absolute_expires_at) "
        "WHERE id = ANY(%s::uuid[])",
        (now, now + IDLE, session_ids),
    )


async def touch(conn: AsyncConnection[Any], session_id: UUID, now: datetime) -> None:
    """Restart the idle timer (written at most every ``TOUCH_EVERY``, not on every request)."""
    await conn.execute(
        "UPDATE sessions SET last_seen_at = %s, idle_expires_at = least(%s, absolute_expires_at) WHERE id = %s",
        (now, now + IDLE, session_id),
    )


async def refresh(conn: AsyncConnection[Any], principal_type: str, refresh_token: str) -> IssuedTokens | None:
    """Rotate both tokens of a live session of ``principal_type``; the old ones stop working.

    None if no such session is live: a customer's refresh token does nothing at the staff endpoint.
    """
    now = _now()
    access, new_refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    old = hash_token(refresh_token)
    cur = await conn.execute(
        "WITH rotated AS (UPDATE sessions SET token_hash = %s, refresh_hash = %s, "
        "last_seen_at = %s, idle_expires_at = least(%s, absolute_expires_at) "
        "WHERE refresh_hash = %s AND principal_type = %s AND revoked_at IS NULL AND idle_expires_at > %s "
        "AND absolute_expires_at > %s RETURNING id, csrf_token, idle_expires_at, absolute_expires_at), "
        "remembered AS (INSERT INTO session_refresh_history (refresh_hash, session_id, rotated_at) "
        "SELECT %s, id, %s FROM rotated) "
        "SELECT id, csrf_token, idle_expires_at, absolute_expires_at FROM rotated",
        (hash_token(access), hash_token(new_refresh), now, now + IDLE, old, principal_type, now, now, old, now),
    )  # fmt: skip
    row = await cur.fetchone()
    if row is None:
        return None
    return IssuedTokens(row[0], access, new_refresh, row[1], row[2], row[3])


REUSED = "refresh_token_reused"
_PRINCIPAL_TABLES = {"customer": "customers", "staff": "staff"}


@dataclass(frozen=True)
class Rotation:
    """How a refresh ended: new tokens, a session ended because its old token came back, or neither."""

    principal_id: UUID | None
    session_id: UUID | None
    tokens: IssuedTokens | None
    reused: bool


async def rotate(conn: AsyncConnection[Any], principal_type: str, refresh_token: str) -> Rotation:
    """Refresh the session of an active principal of ``principal_type``, or end it on reuse.

    A rotated-out refresh token (any of the session's, not only the last) presented again means two
    parties hold the session's tokens, one of them a thief, and nobody can tell which: the session ends
    for both. A client that retries a refresh whose
    answer it lost signs in again; that is the price of catching the theft. Run inside a transaction.
    """
    table = _PRINCIPAL_TABLES[principal_type]
    cur = await conn.execute(
        f"SELECT s.principal_id FROM sessions s JOIN {table} p ON p.id = s.principal_id "
        "WHERE s.refresh_hash = %s AND s.principal_type = %s AND p.status = 'active'",
        (hash_token(refresh_token), principal_type),
    )
    row = await cur.fetchone()
    if row is not None:
        tokens = await refresh(conn, principal_type, refresh_token)
        return Rotation(row[0], tokens.session_id if tokens else None, tokens, reused=False)
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = %s "
        "WHERE id = (SELECT session_id FROM session_refresh_history WHERE refresh_hash = %s) "
        "AND principal_type = %s AND revoked_at IS NULL "
        "RETURNING id, principal_id",
        (_now(), REUSED, hash_token(refresh_token), principal_type),
    )
    ended = await cur.fetchone()
    if ended is None:
        return Rotation(None, None, None, reused=False)
    return Rotation(ended[1], ended[0], None, reused=True)


async def revoke(conn: AsyncConnection[Any], session_id: UUID, reason: str) -> bool:
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = %s WHERE id = %s AND revoked_at IS NULL",
        (_now(), reason, session_id),
    )
    return cur.rowcount == 1


async def revoke_all(
    conn: AsyncConnection[Any],
    principal_type: str,
    principal_id: UUID,
    reason: str,
    *,
    keep: UUID | None = None,
) -> int:
    """End every session of a principal (but ``keep``); returns how many were live."""
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = %s WHERE principal_type = %s AND principal_id = %s "
        "AND revoked_at IS NULL AND id IS DISTINCT FROM %s",
        (_now(), reason, principal_type, principal_id, keep),
    )
    return cur.rowcount


async def list_live(conn: AsyncConnection[Any], principal_type: str, principal_id: UUID) -> list[Session]:
    """The principal's live sessions (their devices), newest first."""
    now = _now()
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM sessions WHERE principal_type = %s AND principal_id = %s AND revoked_at IS NULL "
        "AND idle_expires_at > %s AND absolute_expires_at > %s ORDER BY last_seen_at DESC",
        (principal_type, principal_id, now, now),
    )
    return [Session(*row) for row in await cur.fetchall()]


async def mark_stepped_up(
    conn: AsyncConnection[Any], session_id: UUID, factor: str, *, at: datetime | None = None
) -> None:
    """Record that the session's holder has just proved a second factor (at ``at``, the caller's clock)."""
    await conn.execute(
        "UPDATE sessions SET stepped_up_at = %s, step_up_factor = %s WHERE id = %s",
        (at or _now(), factor, session_id),
    )
