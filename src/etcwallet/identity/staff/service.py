"""Outlets and staff: who works where, in which role, and how staff sign in (password + mandatory TOTP).

Staff sign in in two steps: the password yields a short-lived login ticket; the TOTP code (or, at first
sign-in, the code that confirms a new TOTP enrollment) turns the ticket into a session.

A staff member enrolls TOTP themselves: the first sign-in needs, besides the password, a one-time
enrollment code (stored hashed, expiring, single use) that someone other than whoever set the password
issued (:func:`issue_enrollment_code`). So whoever set the password cannot enroll an authenticator of
their own and sign in as the new member. The rules on who may grant which role live in ``changes``.

Two layers. The use cases (:func:`add_outlet`, :func:`give_enrollment_code`, and ``changes``'
requests and decisions) take the unit of work and an audit actor: each runs as one unit, appends its
audit entry in the change's transaction, and has its refusal audited on its own. The steps they are made
of (:func:`create_outlet`, :func:`create_staff`, :func:`update_staff`, :func:`issue_enrollment_code`)
run in the caller's transaction: a unit's ``unit.conn``, or the bootstrap path (the command line, demo
data, tests), which audits itself. Time comes from the unit's clock (``now``), so rules are tested
without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import FieldCipher, hash_token, new_token
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError, InvalidValue
from etcwallet.identity import lockout
from etcwallet.identity.authz import OUTLET_ROLES, Principal, Role, refresh_token_reused, unauthenticated
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import totp
from etcwallet.identity.passwords import dummy_hash, hash_secret_async, verify_secret_async
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.staff import store
from etcwallet.identity.staff.errors import outlet_not_found, staff_error, staff_not_found
from etcwallet.identity.staff.store import get_outlet, get_outlet_or_raise, get_staff, get_staff_id
from etcwallet.identity.staff.types import (
    BANKS,
    ENROLLMENT_CODE_LIFETIME,
    TICKET_ATTEMPTS,
    TICKET_LIFETIME,
    EnrollmentCode,
    LoginStep,
    Outlet,
    StaffAction,
    StaffLogin,
    StaffMember,
)
from etcwallet.identity.validators import validate_password
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor, AuditEvent
from etcwallet.platform.unit import Unit, UnitOfWork, utcnow

__all__ = [
    "BANKS",
    "ENROLLMENT_CODE_LIFETIME",
    "TICKET_ATTEMPTS",
    "TICKET_LIFETIME",
    "EnrollmentCode",
    "LoginStep",
    "Outlet",
    "StaffLogin",
    "StaffMember",
    "add_outlet",
    "check_placement",
    "create_outlet",
    "create_staff",
    "get_outlet",
    "get_outlet_or_raise",
    "get_staff",
    "get_staff_id",
    "get_staff_id_or_raise",
    "get_staff_or_raise",
    "give_enrollment_code",
    "issue_enrollment_code",
    "list_outlets",
    "list_staff",
    "login_password",
    "login_second_factor",
    "logout",
    "refresh_session",
    "update_staff",
]

Conn = AsyncConnection[Any]


def refusal_of(
    actor: Actor, action: StaffAction, target: tuple[str, str | None], detail: Mapping[str, object]
) -> Callable[[DomainError], AuditEvent]:
    """The unit's ``refusal=``: a refused request is audited on its own, with the reason (nothing else
    of it committed)."""
    return lambda refused: actor.refused(action, refused.code, target=target, detail=detail)


# --- outlets -------------------------------------------------------------------------------------------


async def create_outlet(conn: Conn, *, code: str, name: str, kind: str, bank: str | None) -> Outlet:
    """Open an outlet in the caller's transaction; a bank outlet names its bank, a self-operated one has
    none."""
    if (kind == "bank") != (bank is not None):
        raise staff_error("outlet_bank_mismatch")
    outlet = await store.insert_outlet(conn, code=code, name=name, kind=kind, bank=bank)
    if outlet is None:
        raise staff_error("outlet_code_taken")
    return outlet


async def add_outlet(
    uow: UnitOfWork, *, actor: Actor, code: str, name: str, kind: str, bank: str | None
) -> Outlet:
    """An administrator opens an outlet (audited ``outlet.create`` with what was asked)."""
    detail = {"code": code, "name": name, "kind": kind, "bank": bank}

    async def step(unit: Unit) -> Outlet:
        outlet = await create_outlet(unit.conn, code=code, name=name, kind=kind, bank=bank)
        target = ("outlet", str(outlet.id))
        unit.audit(actor.event(StaffAction.OUTLET_CREATE, target=target, detail=detail))
        return outlet

    refusal = refusal_of(actor, StaffAction.OUTLET_CREATE, ("outlet", None), detail)
    return await uow.run(step, refusal=refusal)


async def read_outlet(pool: AsyncConnectionPool, *, viewer: Principal, outlet_id: UUID) -> Outlet:
    """An outlet the viewer may see (outlet staff: only their own); 404 otherwise."""
    if not viewer.may_see_outlet(outlet_id):
        raise outlet_not_found()
    async with pool.connection() as conn:
        return await get_outlet_or_raise(conn, outlet_id)


async def find_outlet(conn: Conn, *, outlet_id: UUID) -> Outlet | None:
    """An outlet by id, active or not, for a domain that names one (stock moved to it, an issuance at it);
    None when there is none."""
    return await get_outlet(conn, outlet_id)


async def find_outlet_by_code(conn: Conn, *, code: str) -> Outlet | None:
    """An outlet by its code (the command line names outlets so); None when there is none."""
    return await store.get_outlet_by_code(conn, code)


async def list_outlets(conn: Conn, *, viewer: Principal) -> list[Outlet]:
    """Every outlet for central roles; outlet staff see only their own."""
    if viewer.role in OUTLET_ROLES:
        return await store.list_outlets(conn, only=viewer.outlet_id, every=False)
    return await store.list_outlets(conn)


# --- staff ---------------------------------------------------------------------------------------------


async def check_placement(conn: Conn, *, role: Role, outlet_id: UUID | None) -> None:
    """Refuse (422/404, naming outlet_id) a role and outlet that do not fit together."""
    if role not in OUTLET_ROLES:
        if outlet_id is not None:
            raise staff_error("outlet_not_allowed")
        return
    if outlet_id is None:
        raise staff_error("outlet_required")
    outlet = await get_outlet_or_raise(conn, outlet_id)
    if role is Role.BANK_OPERATOR and outlet.kind != "bank":
        raise staff_error("bank_outlet_required")


async def create_staff(
    conn: Conn,
    *,
    username: str,
    display_name: str,
    password: str,
    role: Role,
    outlet_id: UUID | None,
    status: str = "active",
    password_set_by: UUID | None = None,
) -> StaffMember:
    """Create a staff account; the password must pass the policy, and TOTP is enrolled at first sign-in.

    Called as is, this is the bootstrap path (the command line, demo data, tests): the member is active in
    any role at once. The API goes through ``changes``, which names who set the password and keeps a
    privileged member ``pending`` until a second administrator approves.
    """
    try:
        validate_password(password, phone=None)
    except InvalidValue as refused:
        raise refused.at("password") from None
    await check_placement(conn, role=role, outlet_id=outlet_id)
    member = await store.insert_staff(
        conn,
        username=username,
        display_name=display_name,
        password_hash=await hash_secret_async(password),
        role=role,
        outlet_id=outlet_id,
        status=status,
        password_set_by=password_set_by,
    )
    if member is None:
        raise staff_error("username_taken")
    return member


async def get_staff_or_raise(conn: Conn, *, staff_id: UUID, viewer: Principal | None = None) -> StaffMember:
    """A staff member, if the viewer may see them (outlet staff: only their own outlet's); 404 otherwise,
    not 403: no hint that the record exists."""
    member = await store.get_staff_or_raise(conn, staff_id)
    if viewer is not None and viewer.role in OUTLET_ROLES and member.outlet_id != viewer.outlet_id:
        raise staff_not_found()
    return member


async def get_staff_id_or_raise(conn: Conn, *, username: str) -> UUID:
    """As :func:`get_staff_id`, refusing (404 ``staff_not_found``) an unknown username."""
    staff_id = await get_staff_id(conn, username)
    if staff_id is None:
        raise staff_not_found()
    return staff_id


async def list_staff(conn: Conn, *, viewer: Principal) -> list[StaffMember]:
    """Every member for central roles; outlet staff see their own outlet's."""
    if viewer.role in OUTLET_ROLES:
        return await store.list_staff(conn, outlet_id=viewer.outlet_id, every=False)
    return await store.list_staff(conn)


async def update_staff(
    conn: Conn,
    *,
    staff_id: UUID,
    role: Role | None = None,
    outlet_id: UUID | None = None,
    clear_outlet: bool = False,
    status: str | None = None,
    now: datetime | None = None,
) -> tuple[StaffMember, StaffMember]:
    """Change a staff member's role, outlet or status; disabling ends their sessions. Returns (old, new).

    The bare change in the caller's transaction, without the separation-of-duties rules: administrators
    go through ``changes``.
    """
    old = await store.get_staff_or_raise(conn, staff_id)
    new_role = role or old.role
    new_outlet = None if clear_outlet else (outlet_id or old.outlet_id)
    if new_role not in OUTLET_ROLES and role is not None and outlet_id is None:
        new_outlet = None
    await check_placement(conn, role=new_role, outlet_id=new_outlet)
    new = await store.set_placement(
        conn, staff_id, role=new_role, outlet_id=new_outlet, status=status or old.status
    )
    if new.status != "active" or new.role != old.role or new.outlet_id != old.outlet_id:
        await sessions.end_all_sessions(
            conn, principal_type="staff", principal_id=staff_id, reason="staff_changed", now=now
        )
    return old, new


# --- TOTP enrollment codes ---------------------------------------------------------------------------


async def issue_enrollment_code(
    conn: Conn, *, staff_id: UUID, issued_by: UUID | None, now: datetime | None = None
) -> EnrollmentCode:
    """Issue a one-time TOTP enrollment code for an active staff member not enrolled yet (in the caller's
    transaction; ``now`` is the unit's time, the wall clock on the bootstrap path).

    It replaces any earlier code. ``issued_by`` is the administrator asking (None: the command line, the
    bootstrap path); whoever set the member's password may not issue it (409), so that one person never
    holds both the password and the means to enroll an authenticator.
    """
    now = now or utcnow()
    status, password_set_by = await store.lock_staff_setter(conn, staff_id)
    if status != "active":
        raise staff_error("staff_not_active")
    if await totp.is_enrolled(conn, principal_type="staff", principal_id=staff_id):
        raise staff_error("totp_already_enrolled@staff")
    if issued_by is not None and password_set_by == issued_by:
        raise staff_error("enrollment_code_by_password_setter")
    code = new_token()
    expires = now + ENROLLMENT_CODE_LIFETIME
    await store.put_enrollment_code(
        conn, staff_id, code=code, issued_by=issued_by, expires_at=expires, now=now
    )
    return EnrollmentCode(staff_id, code, expires)


async def give_enrollment_code(
    uow: UnitOfWork, *, actor: Actor, issued_by: UUID, staff_id: UUID
) -> EnrollmentCode:
    """An administrator issues a member's enrollment code (audited with its expiry, never the code)."""
    target = ("staff", str(staff_id))

    async def step(unit: Unit) -> EnrollmentCode:
        issued = await issue_enrollment_code(unit.conn, staff_id=staff_id, issued_by=issued_by, now=unit.now)
        detail = {"expires_at": issued.expires_at.isoformat()}
        unit.audit(actor.event(StaffAction.ENROLLMENT_CODE_ISSUE, target=target, detail=detail))
        return issued

    refusal = refusal_of(actor, StaffAction.ENROLLMENT_CODE_ISSUE, target, {})
    return await uow.run(step, refusal=refusal)


# --- sign-in -------------------------------------------------------------------------------------------


def _event(
    staff_id: UUID | None,
    client: Client,
    action: StaffAction,
    target: tuple[str, UUID | None],
    failure: DomainError | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """A sign-in step's audit entry: by the staff member once known (anonymous before), refused when
    ``failure`` is set. It is appended in the step's transaction, which commits refusals too (they count
    toward the lockout)."""
    ip, ua = client.ip, client.user_agent
    who = Actor("staff", str(staff_id), ip, ua) if staff_id else Actor("anonymous", None, ip, ua)
    on = (target[0], str(target[1]) if target[1] else None)
    if failure is not None:
        return who.refused(action, failure.code, target=on, detail=detail)
    return who.event(action, target=on, detail=detail)


async def _check_password(
    conn: Conn, username: str, password: str, now: datetime
) -> tuple[UUID | None, IdentityError | None]:
    """The member signing in (None: unknown) and the refusal, if any; a failure counts toward the lockout."""
    row = await store.lock_staff_login(conn, username)
    if row is None:
        failure: IdentityError | None = await lockout.unknown_lock_in_force(
            conn, table="staff", identifier=username, now=now
        )
        if failure is None:
            await verify_secret_async(dummy_hash(), password)
            until = await lockout.record_unknown_failure(conn, table="staff", identifier=username, now=now)
            failure = lockout.failed("invalid_credentials@staff", until)
        return None, failure
    staff_id, password_hash, status, locked_until = row
    failure = lockout.lock_in_force(locked_until, now=now)
    if failure is None and (status != "active" or not await verify_secret_async(password_hash, password)):
        until = await lockout.record_failure(conn, table="staff", principal_id=staff_id, now=now)
        failure = lockout.failed("invalid_credentials@staff", until)
    return staff_id, failure


async def login_password(
    pool: AsyncConnectionPool,
    *,
    cipher: FieldCipher,
    username: str,
    password: str,
    client: Client,
    enrollment_code: str | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> LoginStep:
    """Check the password; on success answer a login ticket (and a TOTP enrollment at first sign-in).

    A member without TOTP gets a ticket only with their one-time enrollment code, and only then is the
    new secret shown; a wrong code counts toward the lockout as a wrong password does. The transaction
    commits refusals too, with their audit entry.
    """
    async with pool.connection() as conn, conn.transaction():
        now = clock()
        staff_id, failure = await _check_password(conn, username, password, now)
        enrollment = None
        if failure is None:
            assert staff_id is not None
            enrollment, failure = await _first_sign_in(conn, cipher, staff_id, username, enrollment_code, now)
        if failure is None:
            assert staff_id is not None
            ticket = new_token()
            expires = now + TICKET_LIFETIME
            await store.insert_ticket(
                conn, ticket_hash=hash_token(ticket), staff_id=staff_id, expires_at=expires
            )
        detail = {"username": username} | ({"totp_enrollment": "started"} if enrollment else {})
        event = _event(staff_id, client, StaffAction.LOGIN_PASSWORD, ("staff", staff_id), failure, detail)
        await audit.append(conn, event)
    if failure is not None:
        raise failure
    return LoginStep(ticket, expires, enrollment)


async def _first_sign_in(
    conn: Conn, cipher: FieldCipher, staff_id: UUID, username: str, code: str | None, now: datetime
) -> tuple[totp.Enrollment | None, IdentityError | None]:
    """After a right password: nothing to do for an enrolled member; otherwise the enrollment code opens
    a new TOTP enrollment (and spends the code), and its absence or a wrong one refuses the sign-in."""
    if await totp.is_enrolled(conn, principal_type="staff", principal_id=staff_id):
        return None, None
    if code is None:
        return None, IdentityError("enrollment_code_required")
    if not await store.spend_enrollment_code(conn, staff_id, code, now=now):
        until = await lockout.record_failure(conn, table="staff", principal_id=staff_id, now=now)
        return None, lockout.failed("enrollment_code_invalid", until)
    return await totp.enroll(
        conn,
        cipher=cipher,
        principal_type="staff",
        principal_id=staff_id,
        account_name=f"staff:{username}",
        now=now,
    ), None


async def login_second_factor(
    pool: AsyncConnectionPool,
    *,
    cipher: FieldCipher,
    lookup_key: bytes,
    ticket: str,
    code: str,
    client: Client,
    clock: Callable[[], datetime] = utcnow,
) -> StaffLogin:
    """Finish sign-in with a TOTP code (or a recovery code); the first code also confirms enrollment.

    A wrong code counts toward the staff member's lockout, as a wrong password does (a new password
    sign-in gives a new ticket, so the ticket's own five attempts alone would not bound the guesses); the
    staff row is locked while the code is checked, so concurrent guesses are counted one after another.
    """
    recovery: list[str] | None = None
    failure: IdentityError | None = None
    staff_id: UUID | None = None
    async with pool.connection() as conn, conn.transaction():
        now = clock()
        row = await store.lock_staff_ticket(conn, ticket, now=now, attempts=TICKET_ATTEMPTS)
        if row is None:
            failure = IdentityError("login_ticket_invalid")
        elif (failure := lockout.lock_in_force(row[1], now=now)) is not None:
            staff_id = row[0]
        else:
            staff_id = row[0]
            enrolled = await totp.is_enrolled(conn, principal_type="staff", principal_id=staff_id)
            ok = await totp.verify(
                conn,
                cipher=cipher,
                principal_type="staff",
                principal_id=staff_id,
                code=code,
                confirming=not enrolled,
                now=now,
            )
            if not ok and enrolled and "-" in code:
                ok = await totp.use_recovery_code(
                    conn,
                    lookup_key=lookup_key,
                    principal_type="staff",
                    principal_id=staff_id,
                    code=code,
                    now=now,
                )
            if not ok:
                await store.count_ticket_attempt(conn, ticket_hash=hash_token(ticket))
                until = await lockout.record_failure(conn, table="staff", principal_id=staff_id, now=now)
                failure = lockout.failed("totp_invalid", until)
            else:
                await store.spend_ticket(conn, ticket_hash=hash_token(ticket), now=now)
                if not enrolled:
                    recovery = await totp.issue_recovery_codes(
                        conn, lookup_key=lookup_key, principal_type="staff", principal_id=staff_id
                    )
                await lockout.record_success(conn, table="staff", principal_id=staff_id)
                tokens = await sessions.issue(
                    conn, principal_type="staff", principal_id=staff_id, client=client, now=now
                )
                member = await store.get_staff_or_raise(conn, staff_id)
        detail = {} if failure else {"enrolled_now": recovery is not None} | tokens.audit_detail()
        event = _event(staff_id, client, StaffAction.LOGIN_TOTP, ("staff", staff_id), failure, detail)
        await audit.append(conn, event)
    if failure is not None:
        raise failure
    return StaffLogin(tokens, member, recovery)


async def refresh_session(
    pool: AsyncConnectionPool, *, refresh_token: str, client: Client, clock: Callable[[], datetime] = utcnow
) -> sessions.IssuedTokens:
    """Rotate an active staff member's session tokens (audited); 401 for any other token."""
    async with pool.connection() as conn, conn.transaction():
        rotation = await sessions.rotate_refresh(
            conn, principal_type="staff", refresh_token=refresh_token, now=clock()
        )
        tokens = rotation.tokens
        failure = (
            None if tokens is not None else refresh_token_reused() if rotation.reused else unauthenticated()
        )
        actor = rotation.principal_id if tokens is not None else None
        # A reused token ended its session: the refusal names the member whose session that was.
        detail = {"staff_id": str(rotation.principal_id)} if rotation.reused else {}
        event = _event(
            actor, client, StaffAction.SESSION_REFRESH, ("session", rotation.session_id), failure, detail
        )
        await audit.append(conn, event)
    if failure is not None:
        raise failure
    assert tokens is not None
    return tokens


async def logout(
    pool: AsyncConnectionPool,
    *,
    staff_id: UUID,
    session_id: UUID,
    client: Client,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """End the staff member's current session (audited)."""
    async with pool.connection() as conn, conn.transaction():
        await sessions.end_session(conn, session_id=session_id, reason="logout", now=clock())
        await audit.append(conn, _event(staff_id, client, StaffAction.LOGOUT, ("session", session_id)))
