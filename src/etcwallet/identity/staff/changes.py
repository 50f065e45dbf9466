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

The use cases (:func:`request_creation`, :func:`request_update`, :func:`approve_change`,
:func:`reject_change`) each run as one unit of work that appends its audit entry in the change's
transaction (a refusal is audited on its own). They are made of the steps below them
(:func:`create_staff`, :func:`update_staff`, :func:`approve`, :func:`reject`), which run in the caller's
transaction. :func:`request_update` is the one path of a role change, and a role change is a sensitive action:
the requesting administrator's session must have proved a fresh TOTP (staff step-up, 403
``step_up_required`` otherwise, nothing written). The approving administrator's act is the second pair
of eyes and proves a fresh step-up too (approving is what gives the role); so does creating a member
(giving a first role). Rejecting needs none.

The command line (``etcwallet staff create``) and the service function :func:`service.create_staff`
called directly are the bootstrap path: whoever runs them holds the database itself, so the rule cannot
bind them; they are audited as the system.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.authz import OUTLET_ROLES, Principal, Role
from etcwallet.identity.factors.service import require_fresh
from etcwallet.identity.staff import service as staff
from etcwallet.identity.staff import store
from etcwallet.identity.staff.errors import staff_error
from etcwallet.identity.staff.service import refusal_of
from etcwallet.identity.staff.types import (
    PRIVILEGED_ROLES,
    ChangeStatus,
    Outcome,
    StaffAction,
    StaffChange,
    StaffMember,
    needs_approval,
)
from etcwallet.platform.audit import Actor, AuditEvent
from etcwallet.platform.unit import Unit, UnitOfWork, utcnow

__all__ = [
    "PRIVILEGED_ROLES",
    "ChangeStatus",
    "Outcome",
    "StaffChange",
    "approve",
    "approve_change",
    "change_detail",
    "create_staff",
    "get_change_or_raise",
    "list_changes",
    "needs_approval",
    "reject",
    "reject_change",
    "request_creation",
    "request_update",
    "update_staff",
]

Conn = AsyncConnection[Any]


async def _keep_an_administrator(conn: Conn, leaving: UUID, field: str) -> None:
    """Refuse (409) if ``leaving`` is the only active administrator."""
    if await store.count_other_active_administrators(conn, leaving) == 0:
        raise staff_error("last_administrator", field=field)


# --- requests, in the caller's transaction -----------------------------------------------------------


async def create_staff(
    conn: Conn,
    *,
    actor: UUID,
    username: str,
    display_name: str,
    password: str,
    role: Role,
    outlet_id: UUID | None,
    now: datetime | None = None,
) -> Outcome:
    """An administrator creates a staff member; in a privileged role the member waits for approval.

    Runs in the caller's transaction. The actor is recorded as whoever set the password, so the actor can
    never issue this member's TOTP enrollment code.
    """
    await store.serialize_administration(conn)
    pending = needs_approval(None, role)
    member = await staff.create_staff(
        conn,
        username=username,
        display_name=display_name,
        password=password,
        role=role,
        outlet_id=outlet_id,
        status="pending" if pending else "active",
        password_set_by=actor,
    )
    if not pending:
        return Outcome(None, member)
    change = await store.insert_change(
        conn,
        staff_id=member.id,
        kind="create",
        role_from=None,
        role_to=role,
        outlet_id=outlet_id,
        requested_by=actor,
        now=now or utcnow(),
    )
    return Outcome(None, member, change)


async def update_staff(
    conn: Conn,
    *,
    staff_id: UUID,
    actor: UUID,
    role: Role | None = None,
    outlet_id: UUID | None = None,
    status: str | None = None,
    now: datetime | None = None,
) -> Outcome:
    """An administrator changes a member's role, outlet or status; a privileged role change only waits.

    Runs in the caller's transaction.
    """
    await store.serialize_administration(conn)
    before = await store.lock_staff(conn, staff_id)
    if before.status == "pending":
        raise staff_error("change_pending", field="staff_id")
    if before.status == "rejected":
        raise staff_error("staff_rejected", field="staff_id")
    role_changes = role is not None and role != before.role
    if staff_id == actor and role_changes:
        raise staff_error("own_role", field="role")
    if staff_id == actor and status == "disabled":
        raise staff_error("own_status", field="status")
    new_role = role or before.role
    if (role_changes or outlet_id is not None) and await store.get_pending_change_for(conn, staff_id):
        raise staff_error("change_pending", field="staff_id")
    if needs_approval(before.role, new_role):
        return await _request_role_change(conn, before, new_role, outlet_id, status, actor, now or utcnow())
    if status == "disabled" and before.role is Role.ADMINISTRATOR and before.status == "active":
        await _keep_an_administrator(conn, staff_id, "status")
    old, new = await staff.update_staff(
        conn, staff_id=staff_id, role=role, outlet_id=outlet_id, status=status, now=now or utcnow()
    )
    return Outcome(old, new)


async def _request_role_change(
    conn: Conn,
    before: StaffMember,
    new_role: Role,
    outlet_id: UUID | None,
    status: str | None,
    actor: UUID,
    now: datetime,
) -> Outcome:
    if status is not None and status != before.status:
        raise staff_error("change_with_status", field="status")
    if before.role is Role.ADMINISTRATOR and before.status == "active":
        await _keep_an_administrator(conn, before.id, "role")
    kept_outlet = before.outlet_id if new_role in OUTLET_ROLES else None
    new_outlet = outlet_id if outlet_id is not None else kept_outlet
    await staff.check_placement(conn, role=new_role, outlet_id=new_outlet)
    change = await store.insert_change(
        conn,
        staff_id=before.id,
        kind="role",
        role_from=before.role,
        role_to=new_role,
        outlet_id=new_outlet,
        requested_by=actor,
        now=now,
    )
    return Outcome(before, before, change)


# --- decisions, in the caller's transaction ----------------------------------------------------------


async def _lock_pending(conn: Conn, change_id: UUID) -> StaffChange:
    change = await store.lock_change(conn, change_id)
    if change.status != "pending":
        raise staff_error("change_not_pending", field="change_id")
    return change


async def approve(conn: Conn, *, change_id: UUID, actor: UUID, now: datetime | None = None) -> Outcome:
    """A second administrator approves a pending change, which then takes effect (in the caller's
    transaction). Refused (409) to whoever requested it and to the member it concerns."""
    await store.serialize_administration(conn)
    change = await _lock_pending(conn, change_id)
    if change.requested_by == actor:
        raise staff_error("self_approval", field="change_id")
    if change.staff_id == actor:
        raise staff_error("own_role", field="change_id")
    now = now or utcnow()
    before = await store.lock_staff(conn, change.staff_id)
    if change.kind == "create":
        _, member = await staff.update_staff(conn, staff_id=before.id, status="active", now=now)
    else:
        if before.role != change.role_from:
            raise staff_error("change_stale", field="change_id")
        if before.role is Role.ADMINISTRATOR and before.status == "active":
            await _keep_an_administrator(conn, before.id, "change_id")
        _, member = await staff.update_staff(
            conn,
            staff_id=before.id,
            role=change.role_to,
            outlet_id=change.outlet_id,
            clear_outlet=change.outlet_id is None,
            now=now,
        )
    decided = await store.decide_change(conn, change_id, status="approved", decided_by=actor, now=now)
    return Outcome(before, member, decided)


async def reject(conn: Conn, *, change_id: UUID, actor: UUID, now: datetime | None = None) -> Outcome:
    """Reject a pending change (the requester may withdraw their own); a member waiting to be created
    ends ``rejected`` and can never sign in. Runs in the caller's transaction."""
    await store.serialize_administration(conn)
    change = await _lock_pending(conn, change_id)
    before = await store.lock_staff(conn, change.staff_id)
    member = before
    now = now or utcnow()
    if change.kind == "create":
        _, member = await staff.update_staff(conn, staff_id=before.id, status="rejected", now=now)
    decided = await store.decide_change(conn, change_id, status="rejected", decided_by=actor, now=now)
    return Outcome(before, member, decided)


# --- use cases: one unit of work each, audited in the change's transaction ---------------------------


def change_detail(change: StaffChange, member: StaffMember) -> dict[str, str | None]:
    """What the audit keeps of a privileged change: what, for whom, and who asked."""
    return {
        "change_id": str(change.id),
        "kind": change.kind,
        "username": member.username,
        "role_from": change.role_from.value if change.role_from else None,
        "role_to": change.role_to.value,
        "outlet_id": str(change.outlet_id) if change.outlet_id else None,
        "requested_by": str(change.requested_by),
    }


def _done_event(
    actor: Actor, action: StaffAction, outcome: Outcome, detail: Mapping[str, object]
) -> AuditEvent:
    """The audit entry for an administrator's request: ``action`` when it took effect, a change request
    (with what was asked, for whom, by whom) when it waits for a second administrator."""
    target = ("staff", str(outcome.member.id))
    if outcome.change is None:
        return actor.event(action, target=target, detail=detail)
    with_change = {**detail, **change_detail(outcome.change, outcome.member)}
    return actor.event(StaffAction.CHANGE_REQUEST, target=target, detail=with_change)


def _placement(member: StaffMember) -> dict[str, str | None]:
    outlet = str(member.outlet_id) if member.outlet_id else None
    return {"role": member.role.value, "outlet_id": outlet, "status": member.status}


async def request_creation(
    uow: UnitOfWork,
    *,
    actor: Actor,
    principal: Principal,
    username: str,
    display_name: str,
    password: str,
    role: Role,
    outlet_id: UUID | None,
) -> Outcome:
    """An administrator creates a member (audited ``staff.create``), or, in a privileged role, requests
    it (audited ``staff.change.request``), after a fresh step-up (giving someone a role is a role change).
    The audit keeps what was asked, never the password."""
    detail = {
        "username": username,
        "display_name": display_name,
        "role": role.value,
        "outlet_id": str(outlet_id) if outlet_id else None,
    }

    async def step(unit: Unit) -> Outcome:
        await require_fresh(unit.conn, principal=principal, now=unit.now)
        done = await create_staff(
            unit.conn,
            actor=principal.id,
            username=username,
            display_name=display_name,
            password=password,
            role=role,
            outlet_id=outlet_id,
            now=unit.now,
        )
        unit.audit(_done_event(actor, StaffAction.CREATE, done, detail))
        return done

    refusal = refusal_of(actor, StaffAction.CREATE, ("staff", None), detail)
    return await uow.run(step, refusal=refusal)


async def request_update(
    uow: UnitOfWork,
    *,
    actor: Actor,
    principal: Principal,
    staff_id: UUID,
    asked: Mapping[str, object],
    role: Role | None = None,
    outlet_id: UUID | None = None,
    status: str | None = None,
) -> Outcome:
    """An administrator changes a member's role, outlet or status (audited ``staff.update`` with before
    and after), or requests a privileged role change (audited ``staff.change.request`` with ``asked``,
    the fields as the request gave them). The one path of a role change."""

    async def step(unit: Unit) -> Outcome:
        if role is not None:
            await require_fresh(unit.conn, principal=principal, now=unit.now)
        done = await update_staff(
            unit.conn,
            staff_id=staff_id,
            actor=principal.id,
            role=role,
            outlet_id=outlet_id,
            status=status,
            now=unit.now,
        )
        detail: dict[str, object] = {"asked": dict(asked)}
        if done.change is None:  # it took effect: what it changed
            assert done.before is not None
            detail = {"before": _placement(done.before), "after": _placement(done.member)}
        unit.audit(_done_event(actor, StaffAction.UPDATE, done, detail))
        return done

    refusal = refusal_of(actor, StaffAction.UPDATE, ("staff", str(staff_id)), {"asked": dict(asked)})
    return await uow.run(step, refusal=refusal)


async def _decide_change(
    uow: UnitOfWork, actor: Actor, principal: Principal, change_id: UUID, action: StaffAction
) -> Outcome:
    approving = action is StaffAction.CHANGE_APPROVE
    decide = approve if approving else reject

    async def step(unit: Unit) -> Outcome:
        if approving:  # the act that gives the role: a fresh step-up, as asking for it took
            await require_fresh(unit.conn, principal=principal, now=unit.now)
        done = await decide(unit.conn, change_id=change_id, actor=principal.id, now=unit.now)
        assert done.change is not None
        detail = change_detail(done.change, done.member)
        unit.audit(actor.event(action, target=("staff", str(done.member.id)), detail=detail))
        return done

    refusal = refusal_of(actor, action, ("staff_change", str(change_id)), {})
    return await uow.run(step, refusal=refusal)


async def approve_change(uow: UnitOfWork, *, actor: Actor, principal: Principal, change_id: UUID) -> Outcome:
    """A second administrator approves a pending change (audited ``staff.change.approve``), after a fresh
    step-up of their own."""
    return await _decide_change(uow, actor, principal, change_id, StaffAction.CHANGE_APPROVE)


async def reject_change(uow: UnitOfWork, *, actor: Actor, principal: Principal, change_id: UUID) -> Outcome:
    """Someone who manages staff rejects a pending change (audited ``staff.change.reject``); refusing a
    role needs no step-up."""
    return await _decide_change(uow, actor, principal, change_id, StaffAction.CHANGE_REJECT)


# --- reading -------------------------------------------------------------------------------------------


async def get_change_or_raise(conn: Conn, *, change_id: UUID) -> StaffChange:
    """A change; 404 ``change_not_found`` when unknown."""
    return await store.get_change_or_raise(conn, change_id)


async def list_changes(conn: Conn, *, status: ChangeStatus, limit: int) -> list[StaffChange]:
    """Changes in one status, newest first."""
    return await store.list_changes(conn, status=status, limit=limit)


async def changes_with_members(
    pool: AsyncConnectionPool, *, status: ChangeStatus, limit: int
) -> list[tuple[StaffChange, StaffMember]]:
    """Changes in one status, newest first, each with the member as they are now."""
    async with pool.connection() as conn:
        found = await list_changes(conn, status=status, limit=limit)
        return [(change, await store.get_staff_or_raise(conn, change.staff_id)) for change in found]


async def change_with_member(
    pool: AsyncConnectionPool, *, change_id: UUID
) -> tuple[StaffChange, StaffMember]:
    """One change with the member as they are now."""
    async with pool.connection() as conn:
        change = await get_change_or_raise(conn, change_id=change_id)
        return change, await store.get_staff_or_raise(conn, change.staff_id)
