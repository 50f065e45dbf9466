"""The only module that names the staff domain's tables (``outlets``, ``staff``, ``staff_enrollment_codes``,
``staff_changes``, and staff's rows of ``login_tickets``): rows in, types out. ``get_x`` answers None when absent, ``get_x_or_raise`` refuses,
``lock_x`` takes the row FOR UPDATE. Every function runs in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection

from etcwallet.core.crypto import hash_token
from etcwallet.identity.authz import Role
from etcwallet.identity.staff.errors import change_not_found, outlet_not_found, staff_not_found
from etcwallet.identity.staff.types import ChangeKind, ChangeStatus, Outlet, StaffChange, StaffMember

Conn = AsyncConnection[Any]

STAFF_ADMIN_LOCK = 0x45544357_53544146  # "ETCW" "STAF": orders every administrative change of staff

_OUTLET_COLUMNS = "id, code, name, kind, bank, active, created_at"
_STAFF_COLUMNS = "id, username, display_name, role, outlet_id, status, created_at"
_CHANGE_COLUMNS = (
    "id, staff_id, kind, role_from, role_to, outlet_id, status, requested_by, requested_at, decided_by, "
    "decided_at"
)


def _staff(row: Any) -> StaffMember:
    return StaffMember(row[0], row[1], row[2], Role(row[3]), row[4], row[5], row[6])


def _change(row: Any) -> StaffChange:
    role_from = Role(row[3]) if row[3] else None
    return StaffChange(
        row[0], row[1], row[2], role_from, Role(row[4]), row[5], row[6], row[7], row[8], row[9], row[10]
    )


# --- outlets -------------------------------------------------------------------------------------------


async def insert_outlet(conn: Conn, *, code: str, name: str, kind: str, bank: str | None) -> Outlet | None:
    """A new outlet, or None when its code is taken."""
    cur = await conn.execute(
        "INSERT INTO outlets (id, code, name, kind, bank) VALUES (%s, %s, %s, %s, %s) "
        f"ON CONFLICT (code) DO NOTHING RETURNING {_OUTLET_COLUMNS}",
        (uuid4(), code, name, kind, bank),
    )
    row = await cur.fetchone()
    return None if row is None else Outlet(*row)


async def get_outlet(conn: Conn, outlet_id: UUID) -> Outlet | None:
    cur = await conn.execute(f"SELECT {_OUTLET_COLUMNS} FROM outlets WHERE id = %s", (outlet_id,))
    row = await cur.fetchone()
    return None if row is None else Outlet(*row)


async def get_outlet_or_raise(conn: Conn, outlet_id: UUID) -> Outlet:
    """As :func:`get_outlet`, refusing (404 ``outlet_not_found``) an unknown id."""
    outlet = await get_outlet(conn, outlet_id)
    if outlet is None:
        raise outlet_not_found()
    return outlet


async def get_outlet_by_code(conn: Conn, code: str) -> Outlet | None:
    cur = await conn.execute(f"SELECT {_OUTLET_COLUMNS} FROM outlets WHERE code = %s", (code,))
    row = await cur.fetchone()
    return None if row is None else Outlet(*row)


async def list_outlets(conn: Conn, *, only: UUID | None = None, every: bool = True) -> list[Outlet]:
    """Every outlet by code, or (``every`` False) only the outlet ``only``."""
    if not every:
        cur = await conn.execute(f"SELECT {_OUTLET_COLUMNS} FROM outlets WHERE id = %s", (only,))
    else:
        cur = await conn.execute(f"SELECT {_OUTLET_COLUMNS} FROM outlets ORDER BY code")
    return [Outlet(*row) for row in await cur.fetchall()]


# --- staff ---------------------------------------------------------------------------------------------


async def insert_staff(
    conn: Conn,
    *,
    username: str,
    display_name: str,
    password_hash: str,
    role: Role,
    outlet_id: UUID | None,
    status: str,
    password_set_by: UUID | None,
) -> StaffMember | None:
    """A new staff member, or None when the username is taken."""
    cur = await conn.execute(
        "INSERT INTO staff (id, username, display_name, password_hash, role, outlet_id, status, password_set_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (username) DO NOTHING RETURNING {_STAFF_COLUMNS}",
        (uuid4(), username, display_name, password_hash, role.value, outlet_id, status, password_set_by),
    )
    row = await cur.fetchone()
    return None if row is None else _staff(row)


async def get_staff(conn: Conn, staff_id: UUID) -> StaffMember | None:
    cur = await conn.execute(f"SELECT {_STAFF_COLUMNS} FROM staff WHERE id = %s", (staff_id,))
    row = await cur.fetchone()
    return None if row is None else _staff(row)


async def get_staff_or_raise(conn: Conn, staff_id: UUID) -> StaffMember:
    """As :func:`get_staff`, refusing (404 ``staff_not_found``) an unknown id."""
    member = await get_staff(conn, staff_id)
    if member is None:
        raise staff_not_found()
    return member


async def lock_staff(conn: Conn, staff_id: UUID) -> StaffMember:
    """The member, locked FOR UPDATE until the transaction ends; 404 when unknown."""
    cur = await conn.execute(f"SELECT {_STAFF_COLUMNS} FROM staff WHERE id = %s FOR UPDATE", (staff_id,))
    row = await cur.fetchone()
    if row is None:
        raise staff_not_found()
    return _staff(row)


async def lock_staff_setter(conn: Conn, staff_id: UUID) -> tuple[str, UUID | None]:
    """The member's status and who set their password, the row locked FOR UPDATE; 404 when unknown."""
    cur = await conn.execute(
        "SELECT status, password_set_by FROM staff WHERE id = %s FOR UPDATE", (staff_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise staff_not_found()
    return row[0], row[1]


async def lock_staff_login(conn: Conn, username: str) -> tuple[UUID, str, str, datetime | None] | None:
    """For a sign-in: id, password hash, status and lock, the row locked FOR UPDATE; None when unknown."""
    cur = await conn.execute(
        "SELECT id, password_hash, status, locked_until FROM staff WHERE username = %s FOR UPDATE",
        (username,),
    )
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


async def lock_staff_ticket(
    conn: Conn, ticket: str, *, now: datetime, attempts: int
) -> tuple[UUID, datetime | None] | None:
    """The active member a live, unused login ticket belongs to (and their lock), both rows locked."""
    cur = await conn.execute(
        "SELECT t.principal_id, st.locked_until FROM login_tickets t JOIN staff st ON st.id = t.principal_id "
        "WHERE t.ticket_hash = %s AND t.principal_type = 'staff' AND st.status = 'active' "
        "AND t.used_at IS NULL AND t.expires_at > %s AND t.attempts < %s FOR UPDATE OF t, st",
        (hash_token(ticket), now, attempts),
    )
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1])


async def insert_ticket(conn: Conn, *, ticket_hash: bytes, staff_id: UUID, expires_at: datetime) -> None:
    """A login ticket for a member who passed the password step (staff's rows of ``login_tickets``)."""
    await conn.execute(
        "INSERT INTO login_tickets (ticket_hash, principal_type, principal_id, expires_at) "
        "VALUES (%s, 'staff', %s, %s)",
        (ticket_hash, staff_id, expires_at),
    )


async def count_ticket_attempt(conn: Conn, *, ticket_hash: bytes) -> None:
    """Count a wrong second factor against a staff login ticket."""
    await conn.execute(
        "UPDATE login_tickets SET attempts = attempts + 1 WHERE ticket_hash = %s AND principal_type = 'staff'",
        (ticket_hash,),
    )


async def spend_ticket(conn: Conn, *, ticket_hash: bytes, now: datetime) -> None:
    """Mark a staff login ticket used: it opened a session."""
    await conn.execute(
        "UPDATE login_tickets SET used_at = %s WHERE ticket_hash = %s AND principal_type = 'staff'",
        (now, ticket_hash),
    )


async def get_staff_id(conn: Conn, username: str) -> UUID | None:
    cur = await conn.execute("SELECT id FROM staff WHERE username = %s", (username,))
    row = await cur.fetchone()
    return None if row is None else UUID(str(row[0]))


async def list_staff(conn: Conn, *, outlet_id: UUID | None = None, every: bool = True) -> list[StaffMember]:
    """Every member by username, or (``every`` False) the members of ``outlet_id``."""
    if not every:
        cur = await conn.execute(
            f"SELECT {_STAFF_COLUMNS} FROM staff WHERE outlet_id = %s ORDER BY username", (outlet_id,)
        )
    else:
        cur = await conn.execute(f"SELECT {_STAFF_COLUMNS} FROM staff ORDER BY username")
    return [_staff(row) for row in await cur.fetchall()]


async def set_placement(
    conn: Conn, staff_id: UUID, *, role: Role, outlet_id: UUID | None, status: str
) -> StaffMember:
    cur = await conn.execute(
        f"UPDATE staff SET role = %s, outlet_id = %s, status = %s WHERE id = %s RETURNING {_STAFF_COLUMNS}",
        (role.value, outlet_id, status, staff_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise staff_not_found()
    return _staff(row)


async def count_other_active_administrators(conn: Conn, leaving: UUID) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM staff WHERE role = 'administrator' AND status = 'active' AND id <> %s",
        (leaving,),
    )
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def serialize_administration(conn: Conn) -> None:
    """Take the one advisory lock every administrative change of staff takes (until the transaction ends)."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (STAFF_ADMIN_LOCK,))


# --- TOTP enrollment codes ---------------------------------------------------------------------------


async def put_enrollment_code(
    conn: Conn, staff_id: UUID, *, code: str, issued_by: UUID | None, expires_at: datetime, now: datetime
) -> None:
    """Store (the hash of) the member's enrollment code, replacing an earlier one."""
    await conn.execute(
        "INSERT INTO staff_enrollment_codes (staff_id, code_hash, issued_by, expires_at, created_at) "
        "VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (staff_id) DO UPDATE SET code_hash = excluded.code_hash, issued_by = excluded.issued_by, "
        "expires_at = excluded.expires_at, used_at = NULL, created_at = excluded.created_at",
        (staff_id, hash_token(code), issued_by, expires_at, now),
    )


async def spend_enrollment_code(conn: Conn, staff_id: UUID, code: str, *, now: datetime) -> bool:
    """Use the member's enrollment code if ``code`` is it, unused and unexpired at ``now``."""
    cur = await conn.execute(
        "UPDATE staff_enrollment_codes SET used_at = %s WHERE staff_id = %s AND code_hash = %s "
        "AND used_at IS NULL AND expires_at > %s",
        (now, staff_id, hash_token(code), now),
    )
    return cur.rowcount == 1


# --- privileged changes --------------------------------------------------------------------------------


async def insert_change(
    conn: Conn,
    *,
    staff_id: UUID,
    kind: ChangeKind,
    role_from: Role | None,
    role_to: Role,
    outlet_id: UUID | None,
    requested_by: UUID,
    now: datetime,
) -> StaffChange:
    cur = await conn.execute(
        "INSERT INTO staff_changes (id, staff_id, kind, role_from, role_to, outlet_id, requested_by, requested_at) "
        f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_CHANGE_COLUMNS}",
        (
            uuid4(),
            staff_id,
            kind,
            role_from.value if role_from else None,
            role_to.value,
            outlet_id,
            requested_by,
            now,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return _change(row)


async def get_pending_change_for(conn: Conn, staff_id: UUID) -> StaffChange | None:
    cur = await conn.execute(
        f"SELECT {_CHANGE_COLUMNS} FROM staff_changes WHERE staff_id = %s AND status = 'pending'", (staff_id,)
    )
    row = await cur.fetchone()
    return _change(row) if row else None


async def get_change(conn: Conn, change_id: UUID) -> StaffChange | None:
    cur = await conn.execute(f"SELECT {_CHANGE_COLUMNS} FROM staff_changes WHERE id = %s", (change_id,))
    row = await cur.fetchone()
    return _change(row) if row else None


async def get_change_or_raise(conn: Conn, change_id: UUID) -> StaffChange:
    change = await get_change(conn, change_id)
    if change is None:
        raise change_not_found()
    return change


async def lock_change(conn: Conn, change_id: UUID) -> StaffChange:
    """The change, locked FOR UPDATE; 404 ``change_not_found`` when unknown."""
    cur = await conn.execute(
        f"SELECT {_CHANGE_COLUMNS} FROM staff_changes WHERE id = %s FOR UPDATE", (change_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise change_not_found()
    return _change(row)


async def decide_change(
    conn: Conn, change_id: UUID, *, status: ChangeStatus, decided_by: UUID, now: datetime
) -> StaffChange:
    cur = await conn.execute(
        "UPDATE staff_changes SET status = %s, decided_by = %s, decided_at = %s WHERE id = %s "
        f"RETURNING {_CHANGE_COLUMNS}",
        (status, decided_by, now, change_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return _change(row)


async def list_changes(conn: Conn, *, status: ChangeStatus, limit: int) -> list[StaffChange]:
    """Changes in one status, newest first."""
    cur = await conn.execute(
        f"SELECT {_CHANGE_COLUMNS} FROM staff_changes WHERE status = %s "
        "ORDER BY requested_at DESC, id LIMIT %s",
        (status, limit),
    )
    return [_change(row) for row in await cur.fetchall()]
