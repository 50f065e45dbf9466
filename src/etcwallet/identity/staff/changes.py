"""Separation of duties among administrators: privileged roles take two people.

Granting or taking the ``finance`` role (which moves money) or the ``administrator`` role (which grants
roles) is never one person's act. An administrator who creates a staff member in one of those roles, or
changes a role to or from one of them, only *requests* it: the change waits (202) until a second, different
active administrator approves it, or anyone who manages staff rejects it. A member created that way waits
in status ``pending`` and cannot sign in. Other changes take effect at once, as before.

Always, whoever asks: nobody changes their own role or disables themselves, and the last active
administrator is neither disabled nor demoted (409). Every administrative change of staff takes one
transaction-scoped advisory lock, so two administrators acting at once (say, disabling each other) are
judged one after the other and cannot both succeed.

The command line (``etcwallet staff create``) and the service function :func:`staff.create_staff` called
directly are the bootstrap path: whoever runs them holds the database itself, so the rule cannot bind
them; they are audited as the system.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from psycopg import AsyncConnection

from etcwallet.identity.authz import OUTLET_ROLES, Role
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.staff import service as staff
from etcwallet.identity.staff.service import StaffMember

PRIVILEGED_ROLES = frozenset({Role.FINANCE, Role.ADMINISTRATOR})
"""Roles whose granting or taking waits for a second administrator."""

_STAFF_ADMIN_LOCK = 0x45544357_53544146  # "ETCW" "STAF": orders every administrative change of staff

ChangeStatus = Literal["pending", "approved", "rejected"]


@dataclass(frozen=True)
class StaffChange:
    """A privileged change of one staff member, and who requested and decided it."""

    id: UUID
    staff_id: UUID
    kind: Literal["create", "role"]
    role_from: Role | None
    role_to: Role
    outlet_id: UUID | None
    status: ChangeStatus
    requested_by: UUID
    requested_at: datetime
    decided_by: UUID | None
    decided_at: datetime | None


@dataclass(frozen=True)
class Outcome:
    """What an administrator's request did: ``change`` is set when it waits for approval (the member is
    then as before), otherwise it took effect (``before`` is None for a creation)."""

    before: StaffMember | None
    member: StaffMember
    change: StaffChange | None = None


_CHANGE_COLUMNS = "id, staff_id, kind, role_from, role_to, outlet_id, status, requested_by, requested_at, decided_by, decided_at"


def _change(row: Any) -> StaffChange:
    return StaffChange(
        row[0], row[1], row[2], Role(row[3]) if row[3] else None, Role(row[4]), row[5], row[6], row[7], row[8],
        row[9], row[10],
    )  # fmt: skip


def needs_approval(before: Role | None, after: Role) -> bool:
    """Whether going from ``before`` (None: a new member) to ``after`` grants or takes a privileged role."""
    return before != after and (before in PRIVILEGED_ROLES or after in PRIVILEGED_ROLES)


async def _serialize(conn: AsyncConnection[Any]) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_STAFF_ADMIN_LOCK,))


async def _keep_an_administrator(conn: AsyncConnection[Any], leaving: UUID, field: str) -> None:
    """Refuse (409) if ``leaving`` is the only active administrator."""
    cur = await conn.execute(
        "SELECT count(*) FROM staff WHERE role = 'administrator' AND status = 'active' AND id <> %s",
        (leaving,),
    )
    row = await cur.fetchone()
    if row is None or row[0] == 0:
        raise IdentityError("last_administrator", field=field)


async def _pending_for(conn: AsyncConnection[Any], staff_id: UUID) -> StaffChange | None:
    cur = await conn.execute(
        f"SELECT {_CHANGE_COLUMNS} FROM staff_changes WHERE staff_id = %s AND status = 'pending'", (staff_id,)
    )
    row = await cur.fetchone()
    return _change(row) if row else None


async def _record_request(
    conn: AsyncConnection[Any], member: StaffMember, kind: str, role_from: Role | None, role_to: Role,
    outlet_id: UUID | None, requested_by: UUID,
) -> StaffChange:  # fmt: skip
    cur = await conn.execute(
        "INSERT INTO staff_changes (id, staff_id, kind, role_from, role_to, outlet_id, requested_by) "
        f"VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_CHANGE_COLUMNS}",
        (
            uuid4(),
            member.id,
            kind,
            role_from.value if role_from else None,
            role_to.value,
            outlet_id,
            requested_by,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return _change(row)


# --- requests ------------------------------------------------------------------------------------------


async def create_staff(
    conn: AsyncConnection[Any],
    *,
    actor: UUID,
    username: str,
    display_name: str,
    password: str,
    role: Role,
    outlet_id: UUID | None,
) -> Outcome:
    """An administrator creates a staff member; in a privileged role the member waits for approval.

    Runs in the caller's transaction. The actor is recorded as whoever set the password, so the actor can
    never issue this member's TOTP enrollment code.
    """
    await _serialize(conn)
    pending = needs_approval(None, role)
    member = await staff.create_staff(
        conn, username=username, display_name=display_name, password=password, role=role, outlet_id=outlet_id,
        status="pending" if pending else "active", password_set_by=actor,
    )  # fmt: skip
    if not pending:
        return Outcome(None, member)
    change = await _record_request(conn, member, "create", None, role, outlet_id, actor)
    return Outcome(None, member, change)


async def update_staff(
    conn: AsyncConnection[Any],
    staff_id: UUID,
    *,
    actor: UUID,
    role: Role | None = None,
    outlet_id: UUID | None = None,
    status: str | None = None,
) -> Outcome:
    """An administrator changes a member's role, outlet or status; a privileged role change only waits.

    Runs in the caller's transaction.
    """
    await _serialize(conn)
    before = await staff.get_staff(conn, staff_id, for_update=True)
    if before.status == "pending":
        raise IdentityError("change_pending", field="staff_id")
    if before.status == "rejected":
        raise IdentityError("staff_rejected", field="staff_id")
    role_changes = role is not None and role != before.role
    if staff_id == actor and role_changes:
        raise IdentityError("own_role", field="role")
    if staff_id == actor and status == "disabled":
        raise IdentityError("own_status", field="status")
    new_role = role or before.role
    if (role_changes or outlet_id is not None) and await _pending_for(conn, staff_id) is not None:
        raise IdentityError("change_pending", field="staff_id")
    if needs_approval(before.role, new_role):
        return await _request_role_change(conn, before, new_role, outlet_id, status, actor)
    if status == "disabled" and before.role is Role.ADMINISTRATOR and before.status == "active":
        await _keep_an_administrator(conn, staff_id, "status")
    old, new = await staff.update_staff(conn, staff_id, role=role, outlet_id=outlet_id, status=status)
    return Outcome(old, new)


async def _request_role_change(
    conn: AsyncConnection[Any], before: StaffMember, new_role: Role, outlet_id: UUID | None,
    status: str | None, actor: UUID,
) -> Outcome:  # fmt: skip
    if status is not None and status != before.status:
        raise IdentityError("change_with_status", field="status")
    if before.role is Role.ADMINISTRATOR and before.status == "active":
        await _keep_an_administrator(conn, before.id, "role")
    new_outlet = (
        outlet_id if outlet_id is not None else (before.outlet_id if new_role in OUTLET_ROLES else None)
    )
    await staff.check_placement(conn, new_role, new_outlet)
    change = await _record_request(conn, before, "role", before.role, new_role, new_outlet, actor)
    return Outcome(before, before, change)


# --- decisions -----------------------------------------------------------------------------------------


async def _lock_pending(conn: AsyncConnection[Any], change_id: UUID) -> StaffChange:
    cur = await conn.execute(
        f"SELECT {_CHANGE_COLUMNS} FROM staff_changes WHERE id = %s FOR UPDATE", (change_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise IdentityError("change_not_found", field="change_id")
    change = _change(row)
    if change.status != "pending":
        raise IdentityError("change_not_pending", field="change_id")
    return change


async def _decide(
    conn: AsyncConnection[Any], change_id: UUID, status: ChangeStatus, actor: UUID
) -> StaffChange:
    cur = await conn.execute(
        "UPDATE staff_changes SET status = %s, decided_by = %s, decided_at = now() WHERE id = %s "
        f"RETURNING {_CHANGE_COLUMNS}",
        (status, actor, change_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return _change(row)


async def approve(conn: AsyncConnection[Any], change_id: UUID, *, actor: UUID) -> Outcome:
    """A second administrator approves a pending change, which then takes effect (in the caller's
    transaction). Refused (409) to whoever requested it and to the member it concerns."""
    await _serialize(conn)
    change = await _lock_pending(conn, change_id)
    if change.requested_by == actor:
        raise IdentityError("self_approval", field="change_id")
    if change.staff_id == actor:
        raise IdentityError("own_role", field="change_id")
    before = await staff.get_staff(conn, change.staff_id, for_update=True)
    if change.kind == "create":
        _, member = await staff.update_staff(conn, before.id, status="active")
    else:
        if before.role != change.role_from:
            raise IdentityError("change_stale", field="change_id")
        if before.role is Role.ADMINISTRATOR and before.status == "active":
            await _keep_an_administrator(conn, before.id, "change_id")
        _, member = await staff.update_staff(
            conn,
            before.id,
            role=change.role_to,
            outlet_id=change.outlet_id,
            clear_outlet=change.outlet_id is None,
        )
    return Outcome(before, member, await _decide(conn, change_id, "approved", actor))


async def reject(conn: AsyncConnection[Any], change_id: UUID, *, actor: UUID) -> Outcome:
    """Reject a pending change (the requester may withdraw their own); a member waiting to be created
    ends ``rejected`` and can never sign in. Runs in the caller's transaction."""
    await _serialize(conn)
    change = await _lock_pending(conn, change_id)
    before = await staff.get_staff(conn, change.staff_id, for_update=True)
    member = before
    if change.kind == "create":
        _, member = await staff.update_staff(conn, before.id, status="rejected")
    return Outcome(before, member, await _decide(conn, change_id, "rejected", actor))


# --- reading -------------------------------------------------------------------------------------------


async def get_change(conn: AsyncConnection[Any], change_id: UUID) -> StaffChange:
    cur = await conn.execute(f"SELECT {_CHANGE_COLUMNS} FROM staff_changes WHERE id = %s", (change_id,))
    row = await cur.fetchone()
    if row is None:
        raise IdentityError("change_not_found", field="change_id")
    return _change(row)


async def list_changes(conn: AsyncConnection[Any], status: ChangeStatus, limit: int) -> list[StaffChange]:
    """Changes in one status, newest first."""
    cur = await conn.execute(
        f"SELECT {_CHANGE_COLUMNS} FROM staff_changes WHERE status = %s ORDER BY requested_at DESC, id LIMIT %s",
        (status, limit),
    )
    return [_change(row) for row in await cur.fetchall()]
