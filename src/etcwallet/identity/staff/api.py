"""Staff sign-in and the administrators' management of outlets and staff."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from pydantic import Field

from etcwallet.core.deps import Client, ClientDep, KeysDep, PoolDep, SessionClientDep
from etcwallet.core.errors import DomainError
from etcwallet.core.openapi import problems
from etcwallet.identity.audit.schemas import AuditChainOut
from etcwallet.identity.authz import (
    ROLE_NAMES,
    Permission,
    Principal,
    actor_of,
    require,
    require_staff,
)
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors.schemas import TotpEnrollmentOut
from etcwallet.identity.ratelimit import Limit, hit
from etcwallet.identity.sessions.schemas import RefreshRequest, SessionOut
from etcwallet.identity.staff import changes, service
from etcwallet.identity.staff import schemas as s
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor, AuditEvent
from etcwallet.platform.idempotency import idempotent

router = APIRouter(prefix="/api/v1/staff", tags=["staff"])
ANCHOR_PATTERN = r"^\s*[0-9]{1,19}:[0-9A-Fa-f]{64}\s*$"
"""An audit anchor, ``SEQ:HASH`` (as ``etcwallet audit verify`` prints it), for the schema."""
admin = APIRouter(prefix="/api/v1/admin", tags=["administration"])

StaffManager = Annotated[Principal, Depends(idempotent(require(Permission.STAFF_MANAGE)))]
"""An administrator, on a route that takes an ``Idempotency-Key`` (docs/architecture.md lists them)."""

LOGIN_PER_IP = Limit(30, timedelta(minutes=5))
LOGIN_PER_USER = Limit(10, timedelta(minutes=5))


def staff_out(m: service.StaffMember) -> s.StaffOut:
    zh, en = ROLE_NAMES[m.role]
    return s.StaffOut(
        id=m.id, username=m.username, display_name=m.display_name, role=m.role, role_name=f"{zh} / {en}",
        outlet_id=m.outlet_id, status=m.status, created_at=m.created_at,
    )  # fmt: skip


def outlet_out(o: service.Outlet) -> s.OutletOut:
    bank_name = " / ".join(service.BANKS[o.bank]) if o.bank else None
    return s.OutletOut(
        id=o.id, code=o.code, name=o.name, kind=o.kind, bank=o.bank, bank_name=bank_name, active=o.active,
        created_at=o.created_at,
    )  # fmt: skip


async def _limit(pool: AsyncConnectionPool, *keys: tuple[str, Limit]) -> None:
    async with pool.connection() as conn:
        for key, limit in keys:
            await hit(conn, key, limit)


@router.post("/auth/login", response_model=s.LoginStepOut, responses=problems(401, 403, 423, 429))
async def login(
    body: s.StaffPasswordLogin, pool: PoolDep, keys: KeysDep, client: ClientDep
) -> s.LoginStepOut:
    """Step 1: username and password. Answers a ticket for step 2.

    At first sign-in (no TOTP yet) the one-time ``enrollment_code`` another administrator issued is needed
    too (401 ``enrollment_code_required`` without it); with it, the answer carries the TOTP enrollment.
    """
    who = actor_of(None, client)
    await _limit(
        pool,
        (f"staff-login:ip:{who.ip}", LOGIN_PER_IP),
        (f"staff-login:user:{body.username}", LOGIN_PER_USER),
    )
    step = await service.login_password(
        pool, keys.cipher, username=body.username, password=body.password, client=client,
        enrollment_code=body.enrollment_code,
    )  # fmt: skip
    enrollment = None
    if step.enrollment is not None:
        e = step.enrollment
        enrollment = TotpEnrollmentOut(
            otpauth_uri=e.otpauth_uri, secret=e.secret, qr_svg=e.qr_svg, qr_png_base64=e.qr_png_base64
        )
    return s.LoginStepOut(
        status="totp_enrollment_required" if enrollment else "totp_required",
        ticket=step.ticket, expires_at=step.expires_at, totp_enrollment=enrollment,
    )  # fmt: skip


@router.post("/auth/totp", response_model=s.StaffSessionOut, responses=problems(401, 403, 423, 429))
async def login_totp(
    body: s.SecondFactorLogin, pool: PoolDep, keys: KeysDep, client: SessionClientDep
) -> s.StaffSessionOut:
    """Step 2: the TOTP code (or a recovery code). The first code after enrollment confirms it."""
    who = actor_of(None, client)
    await _limit(pool, (f"staff-totp:ip:{who.ip}", LOGIN_PER_IP))
    done = await service.login_second_factor(
        pool,
        keys.cipher,
        lookup_key=keys.lookup_key,
        ticket=body.ticket,
        code=body.code,
        client=client,
    )
    t = done.tokens
    return s.StaffSessionOut(
        **SessionOut.of(t).model_dump(), staff=staff_out(done.staff), recovery_codes=done.recovery_codes
    )


@router.post("/auth/refresh", response_model=SessionOut, responses=problems(401, 403, 429))
async def refresh(body: RefreshRequest, pool: PoolDep, client: ClientDep) -> SessionOut:
    """Rotate the session's tokens; the old pair stops working."""
    who = actor_of(None, client)
    await _limit(pool, (f"staff-refresh:ip:{who.ip}", LOGIN_PER_IP))
    tokens = await service.refresh_session(pool, body.refresh_token, client=client)
    return SessionOut.of(tokens)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    pool: PoolDep, client: ClientDep, me: Annotated[Principal, Depends(require_staff)]
) -> Response:
    await service.logout(pool, staff_id=me.id, session_id=me.session_id, client=client)
    return Response(status_code=204)


@router.get("/me", response_model=s.StaffOut, responses=problems(404))
async def whoami(pool: PoolDep, me: Annotated[Principal, Depends(require_staff)]) -> s.StaffOut:
    async with pool.connection() as conn:
        return staff_out(await service.get_staff(conn, me.id))


# --- administration ------------------------------------------------------------------------------------


async def _refused(
    pool: AsyncConnectionPool,
    who: Actor,
    action: str,
    target: tuple[str, str | None],
    detail: Mapping[str, object],
    refused: DomainError,
) -> None:
    """Record a refused administrative action, with the reason, on its own: the change rolled back.

    (A success is appended in the transaction of the change it records.)"""
    event = who.refused(action, refused.code, target=target, detail=detail)
    await audit.record(pool, event)


@admin.post(
    "/outlets", status_code=status.HTTP_201_CREATED, response_model=s.OutletOut, responses=problems(409)
)
async def create_outlet(
    body: s.OutletCreate,
    pool: PoolDep,
    client: ClientDep,
    me: Annotated[Principal, Depends(idempotent(require(Permission.OUTLETS_MANAGE)))],
) -> s.OutletOut:
    who, detail = actor_of(me, client), body.model_dump(mode="json")
    try:
        async with pool.connection() as conn, conn.transaction():
            outlet = await service.create_outlet(
                conn, code=body.code, name=body.name, kind=body.kind, bank=body.bank
            )
            await audit.append(
                conn, who.event("outlet.create", target=("outlet", str(outlet.id)), detail=detail)
            )
    except DomainError as refused:
        await _refused(pool, who, "outlet.create", ("outlet", None), detail, refused)
        raise
    return outlet_out(outlet)


@admin.get("/outlets", response_model=list[s.OutletOut])
async def list_outlets(
    pool: PoolDep, me: Annotated[Principal, Depends(require(Permission.OUTLETS_READ))]
) -> list[s.OutletOut]:
    async with pool.connection() as conn:
        return [outlet_out(o) for o in await service.list_outlets(conn, me)]


@admin.get("/outlets/{outlet_id}", response_model=s.OutletOut)
async def read_outlet(
    outlet_id: UUID, pool: PoolDep, me: Annotated[Principal, Depends(require(Permission.OUTLETS_READ))]
) -> s.OutletOut:
    if not me.may_see_outlet(outlet_id):
        raise service._not_found("outlet")
    async with pool.connection() as conn:
        return outlet_out(await service.get_outlet(conn, outlet_id))


def change_out(change: changes.StaffChange, member: service.StaffMember) -> s.StaffChangeOut:
    return s.StaffChangeOut(
        id=change.id, kind=change.kind, status=change.status, staff=staff_out(member), role_from=change.role_from,
        role_to=change.role_to, outlet_id=change.outlet_id, requested_by=change.requested_by,
        requested_at=change.requested_at, decided_by=change.decided_by, decided_at=change.decided_at,
    )  # fmt: skip


def _change_detail(change: changes.StaffChange, member: service.StaffMember) -> dict[str, str | None]:
    """What the audit keeps of a privileged change: what, for whom, and who asked."""
    return {
        "change_id": str(change.id), "kind": change.kind, "username": member.username,
        "role_from": change.role_from.value if change.role_from else None, "role_to": change.role_to.value,
        "outlet_id": str(change.outlet_id) if change.outlet_id else None, "requested_by": str(change.requested_by),
    }  # fmt: skip


def _done_event(
    who: Actor, action: str, outcome: changes.Outcome, detail: Mapping[str, object]
) -> AuditEvent:
    """The audit entry for an administrator's request: ``action`` when it took effect, a change request
    (with what was asked, for whom, by whom) when it waits for a second administrator."""
    target = ("staff", str(outcome.member.id))
    if outcome.change is None:
        return who.event(action, target=target, detail=detail)
    change_detail = {**detail, **_change_detail(outcome.change, outcome.member)}
    return who.event("staff.change.request", target=target, detail=change_detail)


def _awaiting_approval(change: changes.StaffChange, member: service.StaffMember) -> JSONResponse:
    """202: the change is recorded and waits for a second administrator."""
    return JSONResponse(
        change_out(change, member).model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/api/v1/admin/staff-changes/{change.id}"},
    )  # fmt: skip


_AWAITS_APPROVAL: dict[int | str, dict[str, object]] = {
    202: {
        "model": s.StaffChangeOut,
        "description": "granting or taking finance or administrator: recorded, awaiting a second administrator",
    }
}


@admin.post(
    "/staff",
    status_code=status.HTTP_201_CREATED,
    response_model=s.StaffOut,
    responses={**_AWAITS_APPROVAL, **problems(404, 409)},
)
async def create_staff(
    body: s.StaffCreate, pool: PoolDep, client: ClientDep, me: StaffManager
) -> s.StaffOut | JSONResponse:
    """Create a staff member (201). In the finance or administrator role the member waits, unable to sign
    in, until another administrator approves (202 and the pending change). Either way the member enrolls
    TOTP with a code that another administrator issues, since the caller set the password."""
    who, detail = actor_of(me, client), body.model_dump(mode="json", exclude={"password"})
    try:
        async with pool.connection() as conn, conn.transaction():
            done = await changes.create_staff(
                conn, actor=me.id, username=body.username, display_name=body.display_name, password=body.password,
                role=body.role, outlet_id=body.outlet_id,
            )  # fmt: skip
            await audit.append(conn, _done_event(who, "staff.create", done, detail))
    except DomainError as refused:
        await _refused(pool, who, "staff.create", ("staff", None), detail, refused)
        raise
    if done.change is not None:
        return _awaiting_approval(done.change, done.member)
    return staff_out(done.member)


@admin.get("/staff", response_model=list[s.StaffOut])
async def list_staff(
    pool: PoolDep, me: Annotated[Principal, Depends(require(Permission.STAFF_READ))]
) -> list[s.StaffOut]:
    async with pool.connection() as conn:
        return [staff_out(m) for m in await service.list_staff(conn, me)]


@admin.get("/staff/{staff_id}", response_model=s.StaffOut)
async def read_staff(
    staff_id: UUID, pool: PoolDep, me: Annotated[Principal, Depends(require(Permission.STAFF_READ))]
) -> s.StaffOut:
    async with pool.connection() as conn:
        return staff_out(await service.get_staff(conn, staff_id, viewer=me))


@admin.patch("/staff/{staff_id}", response_model=s.StaffOut, responses={**_AWAITS_APPROVAL, **problems(409)})
async def update_staff(
    staff_id: UUID,
    body: s.StaffUpdate,
    pool: PoolDep,
    client: ClientDep,
    me: Annotated[Principal, Depends(require(Permission.STAFF_MANAGE))],
) -> s.StaffOut | JSONResponse:
    """Change a member's role, outlet or status (200). A role change to or from finance or administrator
    waits for another administrator (202). Nobody changes their own role or disables themselves, and the
    last active administrator stays (409)."""
    who, asked = actor_of(me, client), body.model_dump(mode="json", exclude_unset=True)
    try:
        async with pool.connection() as conn, conn.transaction():
            done = await changes.update_staff(
                conn, staff_id, actor=me.id, role=body.role, outlet_id=body.outlet_id, status=body.status
            )
            detail: dict[str, object] = {"asked": asked}
            if done.change is None:  # it took effect: what it changed
                assert done.before is not None
                detail = {"before": _placement(done.before), "after": _placement(done.member)}
            await audit.append(conn, _done_event(who, "staff.update", done, detail))
    except DomainError as refused:
        await _refused(pool, who, "staff.update", ("staff", str(staff_id)), {"asked": asked}, refused)
        raise
    if done.change is not None:
        return _awaiting_approval(done.change, done.member)
    return staff_out(done.member)


def _placement(m: service.StaffMember) -> dict[str, str | None]:
    return {"role": m.role.value, "outlet_id": str(m.outlet_id) if m.outlet_id else None, "status": m.status}


@admin.post(
    "/staff/{staff_id}/enrollment-code",
    status_code=status.HTTP_201_CREATED,
    response_model=s.EnrollmentCodeOut,
    responses=problems(409),
)
async def issue_enrollment_code(
    staff_id: UUID, pool: PoolDep, client: ClientDep, me: StaffManager
) -> s.EnrollmentCodeOut:
    """Issue a one-time TOTP enrollment code (shown once; replaces an earlier one) for an active member who
    has not enrolled. Whoever set the member's password may not (409): another administrator does, and
    hands it to the member, who signs in with it and the password to see their new TOTP secret."""
    who, action, target = actor_of(me, client), "staff.enrollment_code.issue", ("staff", str(staff_id))
    try:
        async with pool.connection() as conn, conn.transaction():
            issued = await service.issue_enrollment_code(conn, staff_id, issued_by=me.id)
            detail = {"expires_at": issued.expires_at.isoformat()}
            await audit.append(conn, who.event(action, target=target, detail=detail))
    except DomainError as refused:
        await _refused(pool, who, action, target, {}, refused)
        raise
    return s.EnrollmentCodeOut(staff_id=staff_id, enrollment_code=issued.code, expires_at=issued.expires_at)


# --- privileged changes awaiting a second administrator --------------------------------------------------


@admin.get("/staff-changes", response_model=list[s.StaffChangeOut])
async def list_staff_changes(
    pool: PoolDep,
    me: Annotated[Principal, Depends(require(Permission.STAFF_MANAGE))],
    change_status: Annotated[
        Literal["pending", "approved", "rejected"], Query(alias="status", description="which changes")
    ] = "pending",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[s.StaffChangeOut]:
    """Privileged changes in one status (pending by default), newest first."""
    async with pool.connection() as conn:
        found = await changes.list_changes(conn, change_status, limit)
        return [change_out(c, await service.get_staff(conn, c.staff_id)) for c in found]


@admin.get("/staff-changes/{change_id}", response_model=s.StaffChangeOut)
async def read_staff_change(
    change_id: UUID, pool: PoolDep, me: Annotated[Principal, Depends(require(Permission.STAFF_MANAGE))]
) -> s.StaffChangeOut:
    async with pool.connection() as conn:
        change = await changes.get_change(conn, change_id)
        return change_out(change, await service.get_staff(conn, change.staff_id))


async def _decide(
    pool: AsyncConnectionPool, client: Client, me: Principal, change_id: UUID, verdict: str
) -> s.StaffChangeOut:
    who, action = actor_of(me, client), f"staff.change.{verdict}"
    decide = changes.approve if verdict == "approve" else changes.reject
    try:
        async with pool.connection() as conn, conn.transaction():
            done = await decide(conn, change_id, actor=me.id)
            assert done.change is not None
            detail = _change_detail(done.change, done.member)
            await audit.append(conn, who.event(action, target=("staff", str(done.member.id)), detail=detail))
    except DomainError as refused:
        await _refused(pool, who, action, ("staff_change", str(change_id)), {}, refused)
        raise
    return change_out(done.change, done.member)


@admin.post("/staff-changes/{change_id}/approve", response_model=s.StaffChangeOut, responses=problems(409))
async def approve_staff_change(
    change_id: UUID, pool: PoolDep, client: ClientDep, me: StaffManager
) -> s.StaffChangeOut:
    """Approve a pending change: it takes effect now. Not by whoever requested it, nor by the member it
    concerns (409); a change already decided is 409 too."""
    return await _decide(pool, client, me, change_id, "approve")


@admin.post("/staff-changes/{change_id}/reject", response_model=s.StaffChangeOut, responses=problems(409))
async def reject_staff_change(
    change_id: UUID, pool: PoolDep, client: ClientDep, me: StaffManager
) -> s.StaffChangeOut:
    """Reject a pending change (the requester may withdraw their own); a member waiting to be created ends
    ``rejected``."""
    return await _decide(pool, client, me, change_id, "reject")


@admin.get("/audit/verify", response_model=AuditChainOut)
async def verify_audit(
    pool: PoolDep,
    me: Annotated[Principal, Depends(require(Permission.AUDIT_READ))],
    anchor: Annotated[
        list[Annotated[str, Field(json_schema_extra={"pattern": ANCHOR_PATTERN})]] | None,
        Query(description="SEQ:HASH of a row recorded earlier (repeatable)", max_length=100),
    ] = None,
) -> AuditChainOut:
    """Walk the audit chain and name the first broken row, if any; answer the head to anchor next time."""
    try:
        anchors = [audit.Anchor.parse(text) for text in anchor or []]
    except ValueError:
        raise IdentityError("invalid_anchor") from None
    async with pool.connection() as conn:
        report = await audit.verify(conn, anchors=anchors)
    return AuditChainOut(
        ok=report.ok, rows=report.rows, first_broken_seq=report.first_broken_seq, reason=report.reason,
        head_seq=report.head_seq, head_hash=report.head_hash,
    )  # fmt: skip
