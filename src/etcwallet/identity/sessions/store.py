"""The only module that names the sessions tables (``sessions``, ``session_refresh_history``).

Row -> :class:`Session`; ``get_x`` answers None when absent. Every time comes from the caller (``now``),
never from SQL ``now()``: the service reads its clock once per step, as a transaction's ``now()`` would.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.identity.sessions.types import IDLE, Session

COLUMNS = (
    "id, principal_type, principal_id, created_at, last_seen_at, idle_expires_at, absolute_expires_at, "
    "stepped_up_at, step_up_factor, csrf_token, ip, user_agent, device_id"
)
_LIVE = "revoked_at IS NULL AND idle_expires_at > %(now)s AND absolute_expires_at > %(now)s"

PRINCIPAL_LOOKUP = (
    "SELECT s.token_hash, s.id, s.principal_type, s.principal_id, s.stepped_up_at, s.csrf_token, s.last_seen_at, "
    "st.role, st.outlet_id, o.bank, st.status, c.status "
    "FROM sessions s "
    "LEFT JOIN staff st ON s.principal_type = 'staff' AND st.id = s.principal_id "
    "LEFT JOIN outlets o ON o.id = st.outlet_id "
    "LEFT JOIN customers c ON s.principal_type = 'customer' AND c.id = s.principal_id "
    "WHERE s.token_hash = ANY(%s) AND s.revoked_at IS NULL AND s.idle_expires_at > %s "
    "AND s.absolute_expires_at > %s"
)
"""The hot path's look-up: live sessions by access-token hash, joined with their principal in one query."""


def _session(row: tuple[Any, ...]) -> Session:
    return Session(*row)


async def insert(
    conn: AsyncConnection[Any],
    *,
    session_id: UUID,
    token_hash: bytes,
    refresh_hash: bytes,
    csrf_token: str,
    principal_type: str,
    principal_id: UUID,
    now: datetime,
    absolute_expires_at: datetime,
    ip: str | None,
    user_agent: str | None,
    device_id: str | None,
) -> bool | None:
    """Store a new session; answers whether its device is new to the principal (None without a device).

    One statement: the ``RETURNING`` sub-query reads the table as it was before this insert (and skips this
    row anyway), so "new" means no earlier session of the principal, ended ones included, named the device.
    """
    cur = await conn.execute(
        "INSERT INTO sessions (id, token_hash, refresh_hash, csrf_token, principal_type, principal_id, "
        "created_at, last_seen_at, idle_expires_at, absolute_expires_at, ip, user_agent, device_id) "
        "VALUES (%(id)s, %(token)s, %(refresh)s, %(csrf)s, %(type)s, %(principal)s, %(now)s, %(now)s, "
        "%(idle)s, %(absolute)s, %(ip)s, %(ua)s, %(device)s) "
        "RETURNING CASE WHEN %(device)s::text IS NULL THEN NULL ELSE NOT EXISTS (SELECT 1 FROM sessions "
        "WHERE principal_type = %(type)s AND principal_id = %(principal)s AND device_id = %(device)s "
        "AND id <> %(id)s) END",
        {
            "id": session_id,
            "token": token_hash,
            "refresh": refresh_hash,
            "csrf": csrf_token,
            "type": principal_type,
            "principal": principal_id,
            "now": now,
            "idle": now + IDLE,
            "absolute": absolute_expires_at,
            "ip": ip,
            "ua": user_agent,
            "device": device_id,
        },
    )
    row = await cur.fetchone()
    return None if row is None else row[0]


async def get_session(conn: AsyncConnection[Any], *, session_id: UUID) -> Session | None:
    """The session with this id, live or ended; None if there is none."""
    cur = await conn.execute(f"SELECT {COLUMNS} FROM sessions WHERE id = %s", (session_id,))
    row = await cur.fetchone()
    return None if row is None else _session(row)


async def get_live_by_token(
    conn: AsyncConnection[Any], *, token_hash: bytes, now: datetime
) -> Session | None:
    """The live session whose access token hashes to ``token_hash``, or None."""
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM sessions WHERE token_hash = %(token)s AND {_LIVE}",
        {"token": token_hash, "now": now},
    )
    row = await cur.fetchone()
    return None if row is None else _session(row)


async def live_with_principals(
    conn: AsyncConnection[Any], *, token_hashes: list[bytes], now: datetime
) -> list[tuple[Any, ...]]:
    """Rows of :data:`PRINCIPAL_LOOKUP` for the live sessions among ``token_hashes``."""
    cur = await conn.execute(PRINCIPAL_LOOKUP, (token_hashes, now, now))
    return await cur.fetchall()


async def touch(conn: AsyncConnection[Any], *, session_ids: list[UUID], now: datetime) -> None:
    """Restart the idle timer of these sessions (never past their absolute end)."""
    await conn.execute(
        "UPDATE sessions SET last_seen_at = %s, idle_expires_at = least(%s, absolute_expires_at) "
        "WHERE id = ANY(%s::uuid[])",
        (now, now + IDLE, session_ids),
    )


async def rotate_tokens(
    conn: AsyncConnection[Any],
    *,
    principal_type: str,
    old_refresh_hash: bytes,
    token_hash: bytes,
    refresh_hash: bytes,
    now: datetime,
) -> tuple[UUID, str, datetime, datetime, str | None] | None:
    """Swap a live session's token hashes, remembering the old refresh hash in its family.

    Answers (id, csrf token, idle end, absolute end, device id), or None when no live session of
    ``principal_type`` holds ``old_refresh_hash``.
    """
    cur = await conn.execute(
        "WITH rotated AS (UPDATE sessions SET token_hash = %(token)s, refresh_hash = %(refresh)s, "
        "last_seen_at = %(now)s, idle_expires_at = least(%(idle)s, absolute_expires_at) "
        "WHERE refresh_hash = %(old)s AND principal_type = %(type)s AND " + _LIVE + " "
        "RETURNING id, csrf_token, idle_expires_at, absolute_expires_at, device_id), "
        "remembered AS (INSERT INTO session_refresh_history (refresh_hash, session_id, rotated_at) "
        "SELECT %(old)s, id, %(now)s FROM rotated) "
        "SELECT id, csrf_token, idle_expires_at, absolute_expires_at, device_id FROM rotated",
        {
            "token": token_hash,
            "refresh": refresh_hash,
            "now": now,
            "idle": now + IDLE,
            "old": old_refresh_hash,
            "type": principal_type,
        },
    )
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3], row[4])


async def active_principal_of_refresh(
    conn: AsyncConnection[Any], *, principal_type: str, principal_table: str, refresh_hash: bytes
) -> UUID | None:
    """The active principal whose session holds this current refresh hash, or None."""
    cur = await conn.execute(
        f"SELECT s.principal_id FROM sessions s JOIN {principal_table} p ON p.id = s.principal_id "
        "WHERE s.refresh_hash = %s AND s.principal_type = %s AND p.status = 'active'",
        (refresh_hash, principal_type),
    )
    row = await cur.fetchone()
    return None if row is None else row[0]


async def end_by_old_refresh(
    conn: AsyncConnection[Any], *, principal_type: str, old_refresh_hash: bytes, reason: str, now: datetime
) -> tuple[UUID, UUID] | None:
    """End the live session whose rotation family holds this old refresh hash: (id, principal) or None."""
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = %s "
        "WHERE id = (SELECT session_id FROM session_refresh_history WHERE refresh_hash = %s) "
        "AND principal_type = %s AND revoked_at IS NULL "
        "RETURNING id, principal_id",
        (now, reason, old_refresh_hash, principal_type),
    )
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1])


async def end(conn: AsyncConnection[Any], *, session_id: UUID, reason: str, now: datetime) -> bool:
    """Mark a session ended; False if it had ended already."""
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = %s WHERE id = %s AND revoked_at IS NULL",
        (now, reason, session_id),
    )
    return cur.rowcount == 1


async def end_live_owned(
    conn: AsyncConnection[Any],
    *,
    session_id: UUID,
    principal_type: str,
    principal_id: UUID,
    reason: str,
    now: datetime,
) -> bool:
    """End a live session if it is this principal's; False for anybody else's or an ended one."""
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = %(now)s, revoked_reason = %(reason)s WHERE id = %(id)s "
        "AND principal_type = %(type)s AND principal_id = %(principal)s AND " + _LIVE,
        {"now": now, "reason": reason, "id": session_id, "type": principal_type, "principal": principal_id},
    )
    return cur.rowcount == 1


async def end_all(
    conn: AsyncConnection[Any],
    *,
    principal_type: str,
    principal_id: UUID,
    reason: str,
    keep: UUID | None,
    now: datetime,
) -> int:
    """Mark every unended session of a principal (but ``keep``) ended; answers how many."""
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = %s, revoked_reason = %s WHERE principal_type = %s AND principal_id = %s "
        "AND revoked_at IS NULL AND id IS DISTINCT FROM %s",
        (now, reason, principal_type, principal_id, keep),
    )
    return cur.rowcount


async def list_live(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, now: datetime
) -> list[Session]:
    """The principal's live sessions, most recently used first."""
    cur = await conn.execute(
        f"SELECT {COLUMNS} FROM sessions WHERE principal_type = %(type)s AND principal_id = %(principal)s "
        f"AND {_LIVE} ORDER BY last_seen_at DESC",
        {"type": principal_type, "principal": principal_id, "now": now},
    )
    return [_session(row) for row in await cur.fetchall()]


async def count_live(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, now: datetime
) -> int:
    """How many live sessions the principal has."""
    cur = await conn.execute(
        f"SELECT count(*) FROM sessions WHERE principal_type = %(type)s AND principal_id = %(principal)s "
        f"AND {_LIVE}",
        {"type": principal_type, "principal": principal_id, "now": now},
    )
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def mark_stepped_up(
    conn: AsyncConnection[Any], *, session_id: UUID, factor: str, now: datetime
) -> None:
    """Record the time and factor of the session holder's latest second-factor proof."""
    await conn.execute(
        "UPDATE sessions SET stepped_up_at = %s, step_up_factor = %s WHERE id = %s", (now, factor, session_id)
    )


async def forget_ended_families(conn: AsyncConnection[Any], *, ended_before: datetime) -> int:
    """Delete the rotated-out refresh hashes of sessions ended (or past their absolute end) before a time."""
    cur = await conn.execute(
        "DELETE FROM session_refresh_history h USING sessions s WHERE s.id = h.session_id "
        "AND (s.revoked_at < %(spent)s OR s.absolute_expires_at < %(spent)s)",
        {"spent": ended_before},
    )
    return cur.rowcount


async def strip_devices(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> None:
    """Forget where the principal's sessions came from (ip, user agent, device id); the rows stay."""
    await conn.execute(
        "UPDATE sessions SET ip = NULL, user_agent = NULL, device_id = NULL "
        "WHERE principal_type = %s AND principal_id = %s",
        (principal_type, principal_id),
    )
