"""Staff sign-in and the administrators' management of outlets and staff."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import JSONResponse

from etcwallet.core.deps import ClientDep, ClockDep, KeysDep, PoolDep, SessionClientDep, UnitOfWorkDep
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import (
    ROLE_NAMES,
    Permission,
    Principal,
    actor_of,
    require,
    require_staff,
)
from etcwallet.identity.factors.schemas import TotpEnrollmentOut
from etcwallet.identity.ratelimit import Limit, LimiterDep
from etcwallet.identity.sessions.schemas import RefreshRequest, SessionOut
from etcwallet.identity.staff import changes, service
from etcwallet.identity.staff import schemas as s
from etcwallet.platform.idempotency import idempotent

router = APIRouter(prefix="/api/v1/staff", tags=["staff"])
admin = APIRouter(prefix="/api/v1/admin", tags=["administration"])

StaffManager = Annotated[Principal, Depends(idempotent(require(Permission.STAFF_MANAGE)))]
"""An administrator, on a route that takes an ``Idempotency-Key`` (docs/architecture.md lists them)."""

LOGIN_PER_IP = Limit(30, timedelta(minutes=5))
LOGIN_PER_USER = Limit(10, timedelta(minutes=5))


def staff_out(m: service.StaffMember) -> s.StaffOut:
    zh, en = ROLE_NAMES[m.role]
    return s.StaffOut(
        id=m.id,
        username=m.username,
        display_name=m.display_name,
        role=m.role,
        role_name=f"{zh} / {en}",
        outlet_id=m.outlet_id,
        status=m.status,
        created_at=m.created_at,
    )


def outlet_out(o: service.Outlet) -> s.OutletOut:
    bank_name = " / ".join(service.BANKS[o.bank]) if o.bank else None
    return s.OutletOut(
        id=o.id,
        code=o.code,
        name=o.name,
        kind=o.kind,
        bank=o.bank,
        bank_name=bank_name,
        active=o.active,
        created_at=o.created_at,
    )


@router.post("/auth/login", response_model=s.LoginStepOut, responses=problems(401, 403, 423, 429))
async def login(
    body: s.StaffPasswordLogin,
    pool: PoolDep,
    limiter: LimiterDep,
    keys: KeysDep,
    client: ClientDep,
    clock: ClockDep,
) -> s.LoginStepOut:
    """Step 1: username and password. Answers a ticket for step 2.

    At first sign-in (no TOTP yet) the one-time ``enrollment_code`` another administrator issued is needed
    too (401 ``enrollment_code_required`` without it); with it, the answer carries the TOTP enrollment.
    """
    who = actor_of(None, client)
    await limiter.count(
        (f"staff-login:ip:{who.ip}", LOGIN_PER_IP),
        (f"staff-login:user:{body.username}", LOGIN_PER_USER),
    )
    step = await service.login_password(
        pool,
        cipher=keys.cipher,
        username=body.username,
        password=body.password,
        client=client,
        enrollment_code=body.enrollment_code,
        clock=clock,
    )
    enrollment = None
    if step.enrollment is not None:
        e = step.enrollment
        enrollment = TotpEnrollmentOut(
            otpauth_uri=e.otpauth_uri, secret=e.secret, qr_svg=e.qr_svg, qr_png_base64=e.qr_png_base64
        )
    return s.LoginStepOut(
        status="totp_enrollment_required" if enrollment else "totp_required",
        ticket=step.ticket,
        expires_at=step.expires_at,
        totp_enrollment=enrollment,
    )


@router.post("/auth/totp", response_model=s.StaffSessionOut, responses=problems(401, 403, 423, 429))
async def login_totp(
    body: s.SecondFactorLogin,
    pool: PoolDep,
    limiter: LimiterDep,
    keys: KeysDep,
    client: SessionClientDep,
    clock: ClockDep,
) -> s.StaffSessionOut:
    """Step 2: the TOTP code (or a recovery code). The first code after enrollment confirms it."""
    who = actor_of(None, client)
    await limiter.count((f"staff-totp:ip:{who.ip}", LOGIN_PER_IP))
    done = await service.login_second_factor(
        pool,
        cipher=keys.cipher,
        lookup_key=keys.lookup_key,
        ticket=body.ticket,
        code=body.code,
        client=client,
        clock=clock,
    )
    t = done.tokens
    return s.StaffSessionOut(
        **SessionOut.of(t).model_dump(), staff=staff_out(done.staff), recovery_codes=done.recovery_codes
    )


@router.post("/auth/refresh", response_model=SessionOut, responses=problems(401, 403, 429))
async def refresh(
    body: RefreshRequest, pool: PoolDep, limiter: LimiterDep, client: ClientDep, clock: ClockDep
) -> SessionOut:
    """Rotate the session's tokens; the old pair stops working."""
    who = actor_of(None, client)
    await limiter.count((f"staff-refresh:ip:{who.ip}", LOGIN_PER_IP))
    tokens = await service.refresh_session(pool, refresh_token=body.refresh_token, client=client, clock=clock)
    return SessionOut.of(tokens)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    pool: PoolDep, client: ClientDep, clock: ClockDep, me: Annotated[Principal, Depends(require_staff)]
) -> Response:
    await service.logout(pool, staff_id=me.id, session_id=me.session_id, client=client, clock=clock)
    return Response(status_code=204)


@router.get("/me", response_model=s.StaffOut, responses=problems(404))
async def whoami(pool: PoolDep, me: Annotated[Principal, Depends(require_staff)]) -> s.StaffOut:
    async with pool.connection() as conn:
        return staff_out(await service.get_staff_or_raise(conn, staff_id=me.id))


# --- administration ------------------------------------------------------------------------------------


@admin.post(
    "/outlets", status_code=status.HTTP_201_CREATED, response_model=s.OutletOut, responses=problems(409)
)
async def create_outlet(
    body: s.OutletCreate,
    uow: UnitOfWorkDep,
    client: ClientDep,
    me: Annotated[Principal, Depends(idempotent(require(Permission.OUTLETS_MANAGE)))],
) -> s.OutletOut:
    outlet = await service.add_outlet(
        uow, actor=actor_of(me, client), code=body.code, name=body.name, kind=body.kind, bank=body.bank
    )
    return outlet_out(outlet)


@admin.get("/outlets", response_model=list[s.OutletOut])
async def list_outlets(
    pool: PoolDep, me: Annotated[Principal, Depends(require(Permission.OUTLETS_READ))]
) -> list[s.OutletOut]:
    async with pool.connection() as conn:
        return [outlet_out(o) for o in await service.list_outlets(conn, viewer=me)]


@admin.get("/outlets/{outlet_id}", response_model=s.OutletOut)
async def read_outlet(
    outlet_id: UUID, pool: PoolDep, me: Annotated[Principal, Depends(require(Permission.OUTLETS_READ))]
) -> s.OutletOut:
    return outlet_out(await service.read_outlet(pool, viewer=me, outlet_id=outlet_id))


def change_out(change: changes.StaffChange, member: service.StaffMember) -> s.StaffChangeOut:
    return s.StaffChangeOut(
        id=change.id,
        kind=change.kind,
        status=change.status,
        staff=staff_out(member),
        role_from=change.role_from,
        role_to=change.role_to,
        outlet_id=change.outlet_id,
        requested_by=change.requested_by,
        requested_at=change.requested_at,
        decided_by=change.decided_by,
        decided_at=change.decided_at,
    )


def _awaiting_approval(change: changes.StaffChange, member: service.StaffMember) -> JSONResponse:
    """202: the change is recorded and waits for a second administrator."""
    return JSONResponse(
        change_out(change, member).model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Location": f"/api/v1/admin/staff-changes/{change.id}"},
    )


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
    body: s.StaffCreate, uow: UnitOfWorkDep, client: ClientDep, me: StaffManager
) -> s.StaffOut | JSONResponse:
    """Create a staff member (201). In the finance or administrator role the member waits, unable to sign
    in, until another administrator approves (202 and the pending change). Either way the member enrolls
    TOTP with a code that another administrator issues, since the caller set the password."""
    done = await changes.request_creation(
        uow,
        actor=actor_of(me, client),
        principal=me,
        username=body.username,
        display_name=body.display_name,
        password=body.password,
        role=body.role,
        outlet_id=body.outlet_id,
    )
    if done.change is not None:
        return _awaiting_approval(done.change, done.member)
    return staff_out(done.member)


@admin.get("/staff", response_model=list[s.StaffOut])
async def list_staff(
    pool: PoolDep, me: Annotated[Principal, Depends(require(Permission.STAFF_READ))]
) -> list[s.StaffOut]:
    async with pool.connection() as conn:
        return [staff_out(m) for m in await service.list_staff(conn, viewer=me)]


@admin.get("/staff/{staff_id}", response_model=s.StaffOut)
async def read_staff(
    staff_id: UUID, pool: PoolDep, me: Annotated[Principal, Depends(require(Permission.STAFF_READ))]
) -> s.StaffOut:
    async with pool.connection() as conn:
        return staff_out(await service.get_staff_or_raise(conn, staff_id=staff_id, viewer=me))


@admin.patch("/staff/{staff_id}", response_model=s.StaffOut, responses={**_AWAITS_APPROVAL, **problems(409)})
async def update_staff(
    staff_id: UUID,
    body: s.StaffUpdate,
    uow: UnitOfWorkDep,
    client: ClientDep,
    me: Annotated[Principal, Depends(require(Permission.STAFF_MANAGE))],
) -> s.StaffOut | JSONResponse:
    """Change a member's role, outlet or status (200). A role change to or from finance or administrator
    waits for another administrator (202). A role change needs a fresh staff step-up (403
    ``step_up_required``). Nobody changes their own role or disables themselves, and the
    last active administrator stays (409)."""
    done = await changes.request_update(
        uow,
        actor=actor_of(me, client),
        principal=me,
        staff_id=staff_id,
        asked=body.model_dump(mode="json", exclude_unset=True),
        role=body.role,
        outlet_id=body.outlet_id,
        status=body.status,
    )
    if done.change is not None:
        return _awaiting_approval(done.change, done.member)
    return staff_out(done.member)


@admin.post(
    "/staff/{staff_id}/enrollment-code",
    status_code=status.HTTP_201_CREATED,
    response_model=s.EnrollmentCodeOut,
    responses=problems(409),
)
async def issue_enrollment_code(
    staff_id: UUID, uow: UnitOfWorkDep, client: ClientDep, me: StaffManager
) -> s.EnrollmentCodeOut:
    """Issue a one-time TOTP enrollment code (shown once; replaces an earlier one) for an active member who
    has not enrolled. Whoever set the member's password may not (409): another administrator does, and
    hands it to the member, who signs in with it and the password to see their new TOTP secret."""
    issued = await service.give_enrollment_code(
        uow, actor=actor_of(me, client), issued_by=me.id, staff_id=staff_id
    )
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
    found = await changes.changes_with_members(pool, status=change_status, limit=limit)
    return [change_out(change, member) for change, member in found]


@admin.get("/staff-changes/{change_id}", response_model=s.StaffChangeOut)
async def read_staff_change(
    change_id: UUID, pool: PoolDep, me: Annotated[Principal, Depends(require(Permission.STAFF_MANAGE))]
) -> s.StaffChangeOut:
    change, member = await changes.change_with_member(pool, change_id=change_id)
    return change_out(change, member)


@admin.post("/staff-changes/{change_id}/approve", response_model=s.StaffChangeOut, responses=problems(409))
async def approve_staff_change(
    change_id: UUID, uow: UnitOfWorkDep, client: ClientDep, me: StaffManager
) -> s.StaffChangeOut:
    """Approve a pending change: it takes effect now. Not by whoever requested it, nor by the member it
    concerns (409); a change already decided is 409 too."""
    done = await changes.approve_change(uow, actor=actor_of(me, client), principal=me, change_id=change_id)
    assert done.change is not None
    return change_out(done.change, done.member)


@admin.post("/staff-changes/{change_id}/reject", response_model=s.StaffChangeOut, responses=problems(409))
async def reject_staff_change(
    change_id: UUID, uow: UnitOfWorkDep, client: ClientDep, me: StaffManager
) -> s.StaffChangeOut:
    """Reject a pending change (the requester may withdraw their own); a member waiting to be created ends
    ``rejected``."""
    done = await changes.reject_change(uow, actor=actor_of(me, client), principal=me, change_id=change_id)
    assert done.change is not None
    return change_out(done.change, done.member)
