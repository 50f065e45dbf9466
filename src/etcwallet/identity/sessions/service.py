"""Sessions: opaque random tokens stored only as hashes; 30 minutes idle, 12 hours absolute.

A session holds an access token and a refresh token. Refreshing rotates both (the old pair stops
working) but never extends the absolute lifetime; every rotated-out refresh token is remembered
(``session_refresh_history``, the session's rotation family), and presenting any of them again ends
the session (:func:`rotate_refresh`). Revoking ends a session at once; changing a password
or freezing an account revokes every other session of that principal.

A session records the client it was opened from (``core.deps.Client``: ip, user agent, and the device id
the app sends as ``X-Device-Id``); :func:`issue` says whether that device is new to the principal, for
the sign-in's audit entry (``IssuedTokens.audit_detail()``).

Every function takes the time as ``now`` (the caller's clock reading: ``unit.now``, or the runtime's
clock, ``core.deps.ClockDep``), the system clock when omitted; SQL ``now()`` is never used, so the
idle and absolute ends are tested by moving a clock. A caller in one transaction reads its clock once,
as ``now()`` (the transaction's start) did.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection

from etcwallet.core.clock import system_clock
from etcwallet.core.crypto import hash_token
from etcwallet.core.deps import Client
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.sessions import store
from etcwallet.identity.sessions.types import (
    ABSOLUTE,
    IDLE,
    TOUCH_EVERY,
    EndReason,
    IssuedTokens,
    PrincipalType,
    Rotation,
    Session,
)

__all__ = [
    "ABSOLUTE",
    "IDLE",
    "REUSED",
    "TOUCH_EVERY",
    "EndReason",
    "IssuedTokens",
    "PrincipalType",
    "Rotation",
    "Session",
    "count_live_sessions",
    "end_all_sessions",
    "end_owned_session",
    "end_session",
    "find_live",
    "forget_devices",
    "get_session",
    "get_session_or_raise",
    "issue",
    "list_devices",
    "lookup_principals",
    "record_step_up",
    "rotate_refresh",
    "touch_sessions",
]

REUSED = EndReason.REFRESH_TOKEN_REUSED.value
_PRINCIPAL_TABLES = {PrincipalType.CUSTOMER.value: "customers", PrincipalType.STAFF.value: "staff"}
USER_AGENT_KEPT = 512
"""A longer User-Agent is cut to this many characters."""


def _read(now: datetime | None) -> datetime:
    return system_clock() if now is None else now


async def issue(
    conn: AsyncConnection[Any],
    *,
    principal_type: str,
    principal_id: UUID,
    client: Client,
    now: datetime | None = None,
) -> IssuedTokens:
    """Open a session for a principal who has just proved who they are, from ``client``.

    The answer carries the tokens (shown once) and whether ``client.device_id`` is new to the principal.
    """
    now = _read(now)
    access, refresh_token, csrf = (
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(16),
    )
    session_id = uuid4()
    new_device = await store.insert(
        conn,
        session_id=session_id,
        token_hash=hash_token(access),
        refresh_hash=hash_token(refresh_token),
        csrf_token=csrf,
        principal_type=principal_type,
        principal_id=principal_id,
        now=now,
        absolute_expires_at=now + ABSOLUTE,
        ip=client.ip,
        user_agent=(client.user_agent or "")[:USER_AGENT_KEPT] or None,
        device_id=client.device_id,
    )
    return IssuedTokens(
        session_id, access, refresh_token, csrf, now + IDLE, now + ABSOLUTE, client.device_id, new_device
    )


async def get_session(conn: AsyncConnection[Any], *, session_id: UUID) -> Session | None:
    """The session with this id (live or ended), or None."""
    return await store.get_session(conn, session_id=session_id)


async def get_session_or_raise(conn: AsyncConnection[Any], *, session_id: UUID) -> Session:
    """The session with this id; ``session_not_found`` (404) when there is none."""
    session = await store.get_session(conn, session_id=session_id)
    if session is None:
        raise IdentityError("session_not_found")
    return session


async def find_live(
    conn: AsyncConnection[Any], *, access_token: str, now: datetime | None = None
) -> Session | None:
    """The live session behind an access token, touched so its idle timer restarts; None if not live."""
    now = _read(now)
    session = await store.get_live_by_token(conn, token_hash=hash_token(access_token), now=now)
    if session is not None and now - session.last_seen_at > TOUCH_EVERY:
        await store.touch(conn, session_ids=[session.id], now=now)
    return session


async def lookup_principals(
    conn: AsyncConnection[Any], *, token_hashes: list[bytes], now: datetime
) -> dict[bytes, tuple[Any, ...]]:
    """The hot path's look-up: each live session among ``token_hashes`` joined with its principal.

    Keyed by token hash; each value is (session id, principal type, principal id, stepped up at, csrf
    token, last seen at, staff role, outlet, outlet's bank, staff status, customer status). Sessions
    not touched for :data:`TOUCH_EVERY` are touched in the same connection (a second round trip only
    then, as before).
    """
    rows = {
        bytes(r[0]): tuple(r[1:])
        for r in await store.live_with_principals(conn, token_hashes=token_hashes, now=now)
    }
    stale = [r[0] for r in rows.values() if now - r[5] > TOUCH_EVERY]
    if stale:
        await store.touch(conn, session_ids=stale, now=now)
    return rows


async def touch_sessions(conn: AsyncConnection[Any], *, session_ids: list[UUID], now: datetime) -> None:
    """Restart the idle timer of several sessions at once."""
    await store.touch(conn, session_ids=session_ids, now=now)


async def rotate_refresh(
    conn: AsyncConnection[Any], *, principal_type: str, refresh_token: str, now: datetime | None = None
) -> Rotation:
    """Refresh the session of an active principal of ``principal_type``, or end it on reuse.

    A rotated-out refresh token (any of the session's, not only the last) presented again means two
    parties hold the session's tokens, one of them a thief, and nobody can tell which: the session ends
    for both. A client that retries a refresh whose answer it lost signs in again; that is the price of
    catching the theft. A customer's refresh token does nothing at the staff endpoint. Run inside a
    transaction.
    """
    now = _read(now)
    old = hash_token(refresh_token)
    principal_id = await store.active_principal_of_refresh(
        conn,
        principal_type=principal_type,
        principal_table=_PRINCIPAL_TABLES[principal_type],
        refresh_hash=old,
    )
    if principal_id is not None:
        access, new_refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        row = await store.rotate_tokens(
            conn,
            principal_type=principal_type,
            old_refresh_hash=old,
            token_hash=hash_token(access),
            refresh_hash=hash_token(new_refresh),
            now=now,
        )
        if row is None:
            return Rotation(principal_id, None, None, reused=False)
        session_id, csrf, idle_end, absolute_end, device_id = row
        tokens = IssuedTokens(session_id, access, new_refresh, csrf, idle_end, absolute_end, device_id)
        return Rotation(principal_id, session_id, tokens, reused=False)
    ended = await store.end_by_old_refresh(
        conn, principal_type=principal_type, old_refresh_hash=old, reason=REUSED, now=now
    )
    if ended is None:
        return Rotation(None, None, None, reused=False)
    return Rotation(ended[1], ended[0], None, reused=True)


async def end_session(
    conn: AsyncConnection[Any], *, session_id: UUID, reason: str, now: datetime | None = None
) -> bool:
    """End a session at once; False if it had ended already."""
    return await store.end(conn, session_id=session_id, reason=reason, now=_read(now))


async def end_owned_session(
    conn: AsyncConnection[Any],
    *,
    principal_type: str,
    principal_id: UUID,
    session_id: UUID,
    reason: str = EndReason.ENDED_BY_CUSTOMER.value,
    now: datetime | None = None,
) -> bool:
    """End one of the principal's own live sessions; False for anybody else's, or one already ended."""
    return await store.end_live_owned(
        conn,
        session_id=session_id,
        principal_type=principal_type,
        principal_id=principal_id,
        reason=reason,
        now=_read(now),
    )


async def end_all_sessions(
    conn: AsyncConnection[Any],
    *,
    principal_type: str,
    principal_id: UUID,
    reason: str,
    keep: UUID | None = None,
    now: datetime | None = None,
) -> int:
    """End every session of a principal (but ``keep``); returns how many were live."""
    return await store.end_all(
        conn,
        principal_type=principal_type,
        principal_id=principal_id,
        reason=reason,
        keep=keep,
        now=_read(now),
    )


async def list_devices(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, now: datetime | None = None
) -> list[Session]:
    """The principal's live sessions (their devices), most recently used first."""
    return await store.list_live(
        conn, principal_type=principal_type, principal_id=principal_id, now=_read(now)
    )


async def count_live_sessions(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, now: datetime | None = None
) -> int:
    """How many live sessions the principal has."""
    return await store.count_live(
        conn, principal_type=principal_type, principal_id=principal_id, now=_read(now)
    )


async def record_step_up(
    conn: AsyncConnection[Any], *, session_id: UUID, factor: str, now: datetime | None = None
) -> None:
    """Record that the session's holder has just proved a second factor."""
    await store.mark_stepped_up(conn, session_id=session_id, factor=factor, now=_read(now))


async def forget_devices(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> None:
    """Strip the principal's sessions of the ip, user agent and device id they were opened from, in the
    caller's transaction; the sessions stay as records (an anonymized customer's)."""
    await store.strip_devices(conn, principal_type=principal_type, principal_id=principal_id)
