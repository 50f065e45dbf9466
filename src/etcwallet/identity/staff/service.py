"""Outlets and staff: who works where, in which role, and how staff sign in (password + mandatory TOTP).

Staff sign in in two steps: the password yields a short-lived login ticket; the TOTP code (or, at first
sign-in, the code that confirms a new TOTP enrollment) turns the ticket into a session.

A staff member enrolls TOTP themselves: the first sign-in needs, besides the password, a one-time
enrollment code (stored hashed, expiring, single use) that someone other than whoever set the password
issued (:func:`issue_enrollment_code`). So whoever set the password cannot enroll an authenticator of
their own and sign in as the new member. The rules on who may grant which role live in ``staff_changes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

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
from etcwallet.identity.validators import validate_password
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor, AuditEvent

BANKS: dict[str, tuple[str, str]] = {
    "lanzhou_bank": ("兰州银行", "Bank of Lanzhou"),
    "gansu_bank": ("甘肃银行", "Bank of Gansu"),
    "icbc": ("工商银行", "ICBC"),
    "abc": ("农业银行", "Agricultural Bank of China"),
    "rural_credit": ("农信联社", "Rural Credit Union"),
    "ccb": ("建设银行", "China Construction Bank"),
    "psbc": ("邮储银行", "Postal Savings Bank of China"),
}
TICKET_LIFETIME = timedelta(minutes=5)
TICKET_ATTEMPTS = 5
ENROLLMENT_CODE_LIFETIME = timedelta(days=3)
"""How long a TOTP enrollment code stays good: long enough to hand over, short enough to go stale."""


@dataclass(frozen=True)
class Outlet:
    id: UUID
    code: str
    name: str
    kind: str
    bank: str | None
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class StaffMember:
    id: UUID
    username: str
    display_name: str
    role: Role
    outlet_id: UUID | None
    status: str
    created_at: datetime


@dataclass(frozen=True)
class LoginStep:
    """The answer to a correct password: a ticket, and an enrollment when TOTP is not set up yet."""

    ticket: str
    expires_at: datetime
    enrollment: totp.Enrollment | None


@dataclass(frozen=True)
class EnrollmentCode:
    """A one-time TOTP enrollment code, shown once to whoever issued it (only its hash is kept)."""

    staff_id: UUID
    code: str
    expires_at: datetime


@dataclass(frozen=True)
class StaffLogin:
    tokens: sessions.IssuedTokens
    staff: StaffMember
    recovery_codes: list[str] | None


def _not_found(what: str) -> IdentityError:
    return IdentityError(f"{what}_not_found")


_OUTLET_COLUMNS = "id, code, name, kind, bank, active, created_at"
_STAFF_COLUMNS = "id, username, display_name, role, outlet_id, status, created_at"


def _staff(row: Any) -> StaffMember:
    return StaffMember(row[0], row[1], row[2], Role(row[3]), row[4], row[5], row[6])


# --- outlets -------------------------------------------------------------------------------------------


async def create_outlet(
    conn: AsyncConnection[Any], *, code: str, name: str, kind: str, bank: str | None
) -> Outlet:
    """Open an outlet; a bank outlet names its bank, a self-operated one has none."""
    if (kind == "bank") != (bank is not None):
        raise IdentityError("outlet_bank_mismatch")
    cur = await conn.execute(
        f"INSERT INTO outlets (id, code, name, kind, bank) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (code) DO NOTHING "
        f"RETURNING {_OUTLET_COLUMNS}",
        (uuid4(), code, name, kind, bank),
    )
    row = await cur.fetchone()
    if row is None:
        raise IdentityError("outlet_code_taken")
    return Outlet(*row)


async def get_outlet(conn: AsyncConnection[Any], outlet_id: UUID) -> Outlet:
    cur = await conn.execute(f"SELECT {_OUTLET_COLUMNS} FROM outlets WHERE id = %s", (outlet_id,))
    row = await cur.fetchone()
    if row is None:
        raise _not_found("outlet")
    return Outlet(*row)


async def list_outlets(conn: AsyncConnection[Any], viewer: Principal) -> list[Outlet]:
    """Every outlet for central roles; outlet staff see only their own."""
    if viewer.role in OUTLET_ROLES:
        cur = await conn.execute(f"SELECT {_OUTLET_COLUMNS} FROM outlets WHERE id = %s", (viewer.outlet_id,))
    else:
        cur = await conn.execute(f"SELECT {_OUTLET_COLUMNS} FROM outlets ORDER BY code")
    return [Outlet(*row) for row in await cur.fetchall()]


# --- staff ---------------------------------------------------------------------------------------------


async def check_placement(conn: AsyncConnection[Any], role: Role, outlet_id: UUID | None) -> None:
    """Refuse (422/404, naming outlet_id) a role and outlet that do not fit together."""
    if role not in OUTLET_ROLES:
        if outlet_id is not None:
            raise IdentityError("outlet_not_allowed")
        return
    if outlet_id is None:
        raise IdentityError("outlet_required")
    outlet = await get_outlet(conn, outlet_id)
    if role is Role.BANK_OPERATOR and outlet.kind != "bank":
        raise IdentityError("bank_outlet_required")


async def create_staff(
    conn: AsyncConnection[Any],
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
    any role at once. The API goes through ``staff_changes``, which names who set the password and keeps
    a privileged member ``pending`` until a second administrator approves.
    """
    try:
        validate_password(password, phone=None)
    except InvalidValue as refused:
        raise refused.at("password") from None
    await check_placement(conn, role, outlet_id)
    cur = await conn.execute(
        "INSERT INTO staff (id, username, display_name, password_hash, role, outlet_id, status, password_set_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (username) DO NOTHING RETURNING {_STAFF_COLUMNS}",
        (
            uuid4(), username, display_name, await hash_secret_async(password), role.value, outlet_id, status,
            password_set_by,
        ),
    )  # fmt: skip
    row = await cur.fetchone()
    if row is None:
        raise IdentityError("username_taken")
    return _staff(row)


async def get_staff(
    conn: AsyncConnection[Any], staff_id: UUID, viewer: Principal | None = None, *, for_update: bool = False
) -> StaffMember:
    """A staff member, if the viewer may see them (outlet staff: only their own outlet's)."""
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(f"SELECT {_STAFF_COLUMNS} FROM staff WHERE id = %s{lock}", (staff_id,))
    row = await cur.fetchone()
    if row is None:
        raise _not_found("staff")
    member = _staff(row)
    if viewer is not None and viewer.role in OUTLET_ROLES and member.outlet_id != viewer.outlet_id:
        raise _not_found("staff")  # 404, not 403: no hint that the record exists
    return member


async def get_staff_id(conn: AsyncConnection[Any], username: str) -> UUID | None:
    """The id of the staff member signing in as ``username``, or None (bootstrap tools: CLI, demo data)."""
    cur = await conn.execute("SELECT id FROM staff WHERE username = %s", (username,))
    row = await cur.fetchone()
    return None if row is None else UUID(str(row[0]))


async def get_staff_id_or_raise(conn: AsyncConnection[Any], username: str) -> UUID:
    """As :func:`get_staff_id`, refusing (404 ``staff_not_found``) an unknown username."""
    staff_id = await get_staff_id(conn, username)
    if staff_id is None:
        raise _not_found("staff")
    return staff_id


async def list_staff(conn: AsyncConnection[Any], viewer: Principal) -> list[StaffMember]:
    if viewer.role in OUTLET_ROLES:
        cur = await conn.execute(
            f"SELECT {_STAFF_COLUMNS} FROM staff WHERE outlet_id = %s ORDER BY username", (viewer.outlet_id,)
        )
    else:
        cur = await conn.execute(f"SELECT {_STAFF_COLUMNS} FROM staff ORDER BY username")
    return [_staff(row) for row in await cur.fetchall()]


async def update_staff(
    conn: AsyncConnection[Any],
    staff_id: UUID,
    *,
    role: Role | None = None,
    outlet_id: UUID | None = None,
    clear_outlet: bool = False,
    status: str | None = None,
) -> tuple[StaffMember, StaffMember]:
    """Change a staff member's role, outlet or status; disabling ends their sessions. Returns (old, new).

    The bare change, without the separation-of-duties rules: administrators go through ``staff_changes``.
    """
    old = await get_staff(conn, staff_id)
    new_role = role or old.role
    new_outlet = None if clear_outlet else (outlet_id or old.outlet_id)
    if new_role not in OUTLET_ROLES and role is not None and outlet_id is None:
        new_outlet = None
    await check_placement(conn, new_role, new_outlet)
    cur = await conn.execute(
        f"UPDATE staff SET role = %s, outlet_id = %s, status = %s WHERE id = %s RETURNING {_STAFF_COLUMNS}",
        (new_role.value, new_outlet, status or old.status, staff_id),
    )
    row = await cur.fetchone()
    assert row is not None
    new = _staff(row)
    if new.status != "active" or new.role != old.role or new.outlet_id != old.outlet_id:
        await sessions.revoke_all(conn, "staff", staff_id, "staff_changed")
    return old, new


# --- TOTP enrollment codes ---------------------------------------------------------------------------


async def issue_enrollment_code(
    conn: AsyncConnection[Any], staff_id: UUID, *, issued_by: UUID | None
) -> EnrollmentCode:
    """Issue a one-time TOTP enrollment code for an active staff member not enrolled yet.

    It replaces any earlier code. ``issued_by`` is the administrator asking (None: the command line, the
    bootstrap path); whoever set the member's password may not issue it (409), so that one person never
    holds both the password and the means to enroll an authenticator.
    """
    cur = await conn.execute(
        "SELECT status, password_set_by FROM staff WHERE id = %s FOR UPDATE", (staff_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise _not_found("staff")
    if row[0] != "active":
        raise IdentityError("staff_not_active")
    if await totp.is_enrolled(conn, "staff", staff_id):
        raise IdentityError("totp_already_enrolled@staff")
    if issued_by is not None and row[1] == issued_by:
        raise IdentityError("enrollment_code_by_password_setter")
    code = new_token()
    expires = datetime.now(UTC) + ENROLLMENT_CODE_LIFETIME
    await conn.execute(
        "INSERT INTO staff_enrollment_codes (staff_id, code_hash, issued_by, expires_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (staff_id) DO UPDATE SET code_hash = excluded.code_hash, issued_by = excluded.issued_by, "
        "expires_at = excluded.expires_at, used_at = NULL, created_at = now()",
        (staff_id, hash_token(code), issued_by, expires),
    )
    return EnrollmentCode(staff_id, code, expires)


async def _spend_enrollment_code(conn: AsyncConnection[Any], staff_id: UUID, code: str) -> bool:
    """Use the member's enrollment code if ``code`` is it, unused and unexpired; each works once."""
    cur = await conn.execute(
        "UPDATE staff_enrollment_codes SET used_at = now() WHERE staff_id = %s AND code_hash = %s "
        "AND used_at IS NULL AND expires_at > now()",
        (staff_id, hash_token(code)),
    )
    return cur.rowcount == 1


# --- sign-in -------------------------------------------------------------------------------------------


def _event(
    staff_id: UUID | None,
    client: Client,
    action: str,
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


async def login_password(
    pool: AsyncConnectionPool,
    cipher: FieldCipher,
    *,
    username: str,
    password: str,
    client: Client,
    enrollment_code: str | None = None,
) -> LoginStep:
    """Check the password; on success answer a login ticket (and a TOTP enrollment at first sign-in).

    A member without TOTP gets a ticket only with their one-time enrollment code, and only then is the
    new secret shown; a wrong code counts toward the lockout as a wrong password does.
    """
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT id, password_hash, status, locked_until FROM staff WHERE username = %s FOR UPDATE",
            (username,),
        )
        row = await cur.fetchone()
        staff_id = None
        if row is None:
            failure: IdentityError | None = await lockout.unknown_lock_in_force(conn, "staff", username)
            if failure is None:
                await verify_secret_async(dummy_hash(), password)
                until = await lockout.record_unknown_failure(conn, "staff", username)
                failure = lockout.failed("invalid_credentials@staff", until)
        else:
            staff_id = row[0]
            failure = lockout.lock_in_force(row[3])
            if failure is None and (row[2] != "active" or not await verify_secret_async(row[1], password)):
                until = await lockout.record_failure(conn, "staff", staff_id)
                failure = lockout.failed("invalid_credentials@staff", until)
        enrollment = None
        if failure is None:
            assert staff_id is not None
            enrollment, failure = await _first_sign_in(conn, cipher, staff_id, username, enrollment_code)
        if failure is None:
            ticket = new_token()
            expires = datetime.now(UTC) + TICKET_LIFETIME
            await conn.execute(
                "INSERT INTO login_tickets (ticket_hash, principal_type, principal_id, expires_at) "
                "VALUES (%s, 'staff', %s, %s)",
                (hash_token(ticket), staff_id, expires),
            )
        detail = {"username": username} | ({"totp_enrollment": "started"} if enrollment else {})
        await audit.append(
            conn, _event(staff_id, client, "staff.login.password", ("staff", staff_id), failure, detail)
        )
    if failure is not None:
        raise failure
    return LoginStep(ticket, expires, enrollment)


async def _first_sign_in(
    conn: AsyncConnection[Any], cipher: FieldCipher, staff_id: UUID, username: str, code: str | None
) -> tuple[totp.Enrollment | None, IdentityError | None]:
    """After a right password: nothing to do for an enrolled member; otherwise the enrollment code opens
    a new TOTP enrollment (and spends the code), and its absence or a wrong one refuses the sign-in."""
    if await totp.is_enrolled(conn, "staff", staff_id):
        return None, None
    if code is None:
        return None, IdentityError("enrollment_code_required")
    if not await _spend_enrollment_code(conn, staff_id, code):
        until = await lockout.record_failure(conn, "staff", staff_id)
        return None, lockout.failed("enrollment_code_invalid", until)
    return await totp.enroll(conn, cipher, "staff", staff_id, f"staff:{username}"), None


async def login_second_factor(
    pool: AsyncConnectionPool,
    cipher: FieldCipher,
    *,
    lookup_key: bytes,
    ticket: str,
    code: str,
    client: Client,
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
        cur = await conn.execute(
            "SELECT t.principal_id, st.locked_until FROM login_tickets t JOIN staff st ON st.id = t.principal_id "
            "WHERE t.ticket_hash = %s AND t.principal_type = 'staff' AND st.status = 'active' "
            "AND t.used_at IS NULL AND t.expires_at > now() AND t.attempts < %s FOR UPDATE OF t, st",
            (hash_token(ticket), TICKET_ATTEMPTS),
        )
        row = await cur.fetchone()
        if row is None:
            failure = IdentityError("login_ticket_invalid")
        elif (failure := lockout.lock_in_force(row[1])) is not None:
            staff_id = row[0]
        else:
            staff_id = row[0]
            enrolled = await totp.is_enrolled(conn, "staff", staff_id)
            ok = await totp.verify(conn, cipher, "staff", staff_id, code, confirming=not enrolled)
            if not ok and enrolled and "-" in code:
                ok = await totp.use_recovery_code(conn, lookup_key, "staff", staff_id, code)
            if not ok:
                await conn.execute(
                    "UPDATE login_tickets SET attempts = attempts + 1 WHERE ticket_hash = %s",
                    (hash_token(ticket),),
                )
                until = await lockout.record_failure(conn, "staff", staff_id)
                failure = lockout.failed("totp_invalid", until)
            else:
                await conn.execute(
                    "UPDATE login_tickets SET used_at = now() WHERE ticket_hash = %s", (hash_token(ticket),)
                )
                if not enrolled:
                    recovery = await totp.issue_recovery_codes(conn, lookup_key, "staff", staff_id)
                await lockout.record_success(conn, "staff", staff_id)
                tokens = await sessions.issue(
                    conn, principal_type="staff", principal_id=staff_id, client=client
                )
                member = await get_staff(conn, staff_id)
        detail = {} if failure else {"enrolled_now": recovery is not None} | tokens.audit_detail()
        await audit.append(
            conn, _event(staff_id, client, "staff.login.totp", ("staff", staff_id), failure, detail)
        )
    if failure is not None:
        raise failure
    return StaffLogin(tokens, member, recovery)


async def refresh_session(
    pool: AsyncConnectionPool, refresh_token: str, *, client: Client
) -> sessions.IssuedTokens:
    """Rotate an active staff member's session tokens (audited); 401 for any other token."""
    async with pool.connection() as conn, conn.transaction():
        rotation = await sessions.rotate(conn, "staff", refresh_token)
        tokens = rotation.tokens
        failure = (
            None if tokens is not None else refresh_token_reused() if rotation.reused else unauthenticated()
        )
        actor = rotation.principal_id if tokens is not None else None
        # A reused token ended its session: the refusal names the member whose session that was.
        detail = {"staff_id": str(rotation.principal_id)} if rotation.reused else {}
        event = _event(
            actor, client, "staff.session.refresh", ("session", rotation.session_id), failure, detail
        )
        await audit.append(conn, event)
    if failure is not None:
        raise failure
    assert tokens is not None
    return tokens


async def logout(pool: AsyncConnectionPool, *, staff_id: UUID, session_id: UUID, client: Client) -> None:
    """End the staff member's current session (audited)."""
    async with pool.connection() as conn, conn.transaction():
        await sessions.revoke(conn, session_id, "logout")
        await audit.append(conn, _event(staff_id, client, "staff.logout", ("session", session_id)))
