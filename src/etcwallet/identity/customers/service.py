"""Customers: registration, sign-in, passwords, devices, real-name profile, payment password and freezing.

Rules that run through this module:

- Nothing tells a stranger whether a phone number is registered. SMS codes for login and password reset
  on an unknown number (and for registration on a known one) are created but sent nowhere, so cooldowns,
  caps and answers are the same either way; a wrong password on an unknown number is verified against a
  dummy hash with the same cost as a real one.
- A code or password try is counted even when the answer is a refusal: those checks commit before the
  refusal is raised. Anything else that is refused changes nothing.
- Every authentication event and every change is written to the audit log, with phone numbers and ID
  numbers masked and no password, PIN or code in it.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import FieldCipher, Keys, hash_token, keyed_hash, new_token
from etcwallet.core.deps import Client as Client  # re-exported: where a request came from
from etcwallet.core.errors import DomainError, InvalidValue
from etcwallet.core.masking import mask_free_text, mask_id_number, mask_name, mask_phone
from etcwallet.identity import lockout, sms
from etcwallet.identity.authz import refresh_token_reused, unauthenticated
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import passkeys, stepup, totp
from etcwallet.identity.passwords import dummy_hash, hash_secret_async, verify_secret_async
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.sms import Purpose, SentCode, SmsGateway
from etcwallet.identity.validators import (
    validate_password,
    validate_payment_password,
    validate_resident_id,
)
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor, AuditEvent

CUSTOMER = "customer"
TICKET_LIFETIME = timedelta(minutes=5)
TICKET_ATTEMPTS = 5
PIN_MAX_FAILURES = 5
ID_TYPES = ("resident_id", "passport", "hk_macao_permit", "taiwan_permit", "military_id")
NAME_CONTEXT = b"customer_profiles.name"
ID_NUMBER_CONTEXT = b"customer_profiles.id_number"
SELF_FREEZE_REASON = "本人申请冻结"

# Purposes a code is really sent for only when the phone is registered, and the one for when it is not.
_NEEDS_ACCOUNT = frozenset({Purpose.LOGIN, Purpose.RESET_PASSWORD})
_NEEDS_NO_ACCOUNT = frozenset({Purpose.REGISTER})


@dataclass(frozen=True)
class Customer:
    id: UUID
    phone: str
    status: str
    frozen_reason: str | None
    frozen_by: str | None
    frozen_at: datetime | None
    locked_until: datetime | None
    created_at: datetime

    def __post_init__(self) -> None:
        # The freeze reason is free text shown to the customer and staff: phone and ID numbers in it are
        # masked (stored masked since issue 15; masked here too for reasons stored before).
        if self.frozen_reason:
            object.__setattr__(self, "frozen_reason", mask_free_text(self.frozen_reason))


@dataclass(frozen=True)
class SignIn:
    """A correct first factor: tokens, or (when a second factor is owed) a ticket and the factors accepted."""

    customer_id: UUID
    tokens: sessions.IssuedTokens | None
    ticket: str | None = None
    ticket_expires_at: datetime | None = None
    factors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    """The real-name profile as anyone outside the database sees it: masked."""

    name_masked: str
    id_type: str
    id_number_masked: str
    birth_date: date | None
    verified_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class PinState:
    set: bool
    locked: bool
    failed_attempts: int

    @property
    def remaining_attempts(self) -> int:
        return 0 if self.locked or not self.set else max(0, PIN_MAX_FAILURES - self.failed_attempts)


@dataclass(frozen=True)
class TwoFactorState:
    totp: bool
    passkeys: int
    recovery_codes_left: int


@dataclass(frozen=True)
class CustomerDetail:
    """Everything the customer (or support staff) may see about an account, masked."""

    customer: Customer
    profile: Profile | None
    pin: PinState
    two_factor: TwoFactorState
    live_sessions: int


# --- refusals --------------------------------------------------------------------------------------------


def pin_wrong(remaining: int) -> IdentityError:
    """A wrong payment password, saying how many tries are left before it locks."""
    return IdentityError("payment_password_wrong", remaining_attempts=remaining)


def pin_locked() -> IdentityError:
    return IdentityError("payment_password_locked", remaining_attempts=0)


def frozen_error(customer: Customer) -> IdentityError:
    """The refusal for a frozen account: the reason, since when, by whom (customer or staff), and how to undo it."""
    by = "staff" if (customer.frozen_by or "").startswith("staff") else "customer"
    return IdentityError(
        f"account_frozen@{by}",
        frozen_reason=customer.frozen_reason or "—",
        frozen_by=by,
        frozen_at=customer.frozen_at.astimezone(UTC).isoformat(timespec="seconds")
        if customer.frozen_at
        else None,
        unfreeze_by="customer_sms" if by == "customer" else "staff",
    )


def _self_frozen(customer: Customer) -> bool:
    return customer.status == "frozen" and customer.frozen_by == CUSTOMER


def closed_error() -> IdentityError:
    return IdentityError("account_closed")


# --- helpers ---------------------------------------------------------------------------------------------


class _SilentGateway:
    """A gateway that sends nothing: the code exists (so cooldowns and caps apply) but nobody receives it."""

    async def send(self, conn: AsyncConnection[Any], phone: str, text: str) -> None:
        return None


_SILENT = _SilentGateway()


def _event(
    client: Client,
    action: str,
    *,
    customer_id: UUID | None,
    failure: DomainError | None = None,
    actor: tuple[str, str | None] | None = None,
    detail: Mapping[str, Any] | None = None,
    outcome: str = "success",
) -> AuditEvent:
    """The audit entry for an action on a customer's account: refused when ``failure`` is set, and by the
    customer unless ``actor`` names someone else (anonymous when there is no customer to name).

    It is appended last in the transaction that made the change, or that counted a refused attempt; a
    refusal that rolls its transaction back is recorded on its own.
    """
    actor_type, actor_id = actor or (
        (CUSTOMER, str(customer_id)) if customer_id is not None else ("anonymous", None)
    )
    who = Actor(actor_type, actor_id, client.ip, client.user_agent)
    target = (CUSTOMER, str(customer_id) if customer_id else None)
    if failure is not None:
        return who.refused(action, failure.code, target=target, detail=detail)
    return who.event(action, target=target, detail=detail, outcome=outcome)


def _claimant(customer_id: UUID | None, proven: bool) -> tuple[str, str | None]:
    """Before sign-in the caller is the customer only once they have proved it; until then anonymous."""
    return (CUSTOMER, str(customer_id)) if proven and customer_id is not None else ("anonymous", None)


_CUSTOMER_COLUMNS = "id, phone, status, frozen_reason, frozen_by, frozen_at, locked_until, created_at"


async def get_customer(
    conn: AsyncConnection[Any], customer_id: UUID, *, for_update: bool = False
) -> Customer:
    """A customer by id; 404 when there is none."""
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE id = %s{lock}", (customer_id,))
    row = await cur.fetchone()
    if row is None:
        raise IdentityError("customer_not_found")
    return Customer(*row)


async def _by_phone(
    conn: AsyncConnection[Any], phone: str, *, for_update: bool = False
) -> tuple[Customer, str] | None:
    lock = " FOR UPDATE" if for_update else ""
    cur = await conn.execute(
        f"SELECT {_CUSTOMER_COLUMNS}, password_hash FROM customers WHERE phone = %s{lock}", (phone,)
    )
    row = await cur.fetchone()
    return None if row is None else (Customer(*row[:8]), row[8])


def _status_refusal(customer: Customer) -> IdentityError | None:
    if customer.status == "frozen":
        return frozen_error(customer)
    if customer.status == "closed":
        return closed_error()
    return None


# --- SMS codes -------------------------------------------------------------------------------------------

_SMS_REQUEST = "customer.sms_code.request"


async def request_code(
    pool: AsyncConnectionPool,
    gateway: SmsGateway,
    lookup_key: bytes,
    *,
    phone: str,
    purpose: Purpose,
    client: Client,
) -> SentCode:
    """Send a code, or (when the number's registration makes it pointless) create one silently: same answer."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM customers WHERE phone = %s", (phone,))
        row = await cur.fetchone()
    registered = row is not None
    send = not (
        (purpose in _NEEDS_ACCOUNT and not registered) or (purpose in _NEEDS_NO_ACCOUNT and registered)
    )
    if purpose is Purpose.UNFREEZE:
        # Only an account its owner froze can be unfrozen by SMS; anything else gets the same silent answer.
        async with pool.connection() as conn:
            found = await _by_phone(conn, phone)
        send = found is not None and _self_frozen(found[0])
    customer_id = row[0] if row else None
    detail = {"phone": mask_phone(phone), "purpose": purpose.value}
    anonymous = ("anonymous", None)
    try:
        async with pool.connection() as conn, conn.transaction():
            sent = await sms.send_code(
                conn, gateway if send else _SILENT, lookup_key, phone=phone, purpose=purpose, ip=client.ip
            )
            await audit.append(
                conn, _event(client, _SMS_REQUEST, customer_id=customer_id, actor=anonymous,
                             detail=detail | {"delivered": send}),
            )  # fmt: skip
    except DomainError as refused:
        await audit.record(
            pool, _event(client, _SMS_REQUEST, customer_id=customer_id, failure=refused, actor=anonymous,
                         detail=detail | {"delivered": False}),
        )  # fmt: skip
        raise
    return sent


async def request_own_code(
    pool: AsyncConnectionPool,
    gateway: SmsGateway,
    lookup_key: bytes,
    *,
    customer_id: UUID,
    purpose: Purpose,
    client: Client,
) -> SentCode:
    """Send a code to the signed-in customer's own phone (payment password, profile change)."""
    async with pool.connection() as conn:
        customer = await get_customer(conn, customer_id)
    detail = {"phone": mask_phone(customer.phone), "purpose": purpose.value}
    try:
        async with pool.connection() as conn, conn.transaction():
            sent = await sms.send_code(
                conn, gateway, lookup_key, phone=customer.phone, purpose=purpose, ip=client.ip
            )
            await audit.append(
                conn,
                _event(client, _SMS_REQUEST, customer_id=customer_id, detail=detail | {"delivered": True}),
            )
    except DomainError as refused:
        await audit.record(
            pool, _event(client, _SMS_REQUEST, customer_id=customer_id, failure=refused,
                         detail=detail | {"delivered": False}),
        )  # fmt: skip
        raise
    return sent


# --- registration and sign-in ----------------------------------------------------------------------------

_SECOND_FACTOR = "customer.login.second_factor"


async def register(
    pool: AsyncConnectionPool,
    lookup_key: bytes,
    *,
    phone: str,
    password: str,
    sms_code: str,
    client: Client,
) -> tuple[Customer, sessions.IssuedTokens]:
    """Open an account for a phone proved by an SMS code, with a password that passes the policy; signs in."""
    try:
        validate_password(password, phone=phone)
    except InvalidValue as exc:
        raise exc.at("password") from None
    failure: IdentityError | None = None
    customer: Customer | None = None
    async with pool.connection() as conn, conn.transaction():
        failure = await sms.check_code(conn, lookup_key, phone=phone, purpose=Purpose.REGISTER, code=sms_code)
        if failure is None:
            cur = await conn.execute(
                f"INSERT INTO customers (id, phone, password_hash) VALUES (%s, %s, %s) "
                f"ON CONFLICT (phone) DO NOTHING RETURNING {_CUSTOMER_COLUMNS}",
                (uuid4(), phone, await hash_secret_async(password)),
            )
            row = await cur.fetchone()
            if row is None:
                failure = IdentityError("phone_registered")
            else:
                customer = Customer(*row)
                tokens = await sessions.issue(
                    conn, principal_type=CUSTOMER, principal_id=customer.id, client=client
                )
        await audit.append(
            conn, _event(client, "customer.register", customer_id=customer.id if customer else None,
                         failure=failure, actor=_claimant(customer.id if customer else None, failure is None),
                         detail={"phone": mask_phone(phone)} | (tokens.audit_detail() if customer else {})),
        )  # fmt: skip
    if failure is not None:
        raise failure
    assert customer is not None
    return customer, tokens


async def second_factors(conn: AsyncConnection[Any], customer_id: UUID) -> tuple[str, ...]:
    """The second factors a customer has enrolled, as the login answer names them."""
    factors: list[str] = []
    if await totp.is_enrolled(conn, CUSTOMER, customer_id):
        factors += ["totp", "recovery_code"]
    cur = await conn.execute(
        "SELECT 1 FROM passkeys WHERE principal_type = 'customer' AND principal_id = %s LIMIT 1",
        (customer_id,),
    )
    if await cur.fetchone() is not None:
        factors.append("passkey")
    return tuple(factors)


async def _after_first_factor(conn: AsyncConnection[Any], customer_id: UUID, client: Client) -> SignIn:
    """Tokens, or a login ticket when the customer has a second factor."""
    factors = await second_factors(conn, customer_id)
    if factors:
        ticket = new_token()
        expires = datetime.now(UTC) + TICKET_LIFETIME
        await conn.execute(
            "INSERT INTO login_tickets (ticket_hash, principal_type, principal_id, expires_at) "
            "VALUES (%s, 'customer', %s, %s)",
            (hash_token(ticket), customer_id, expires),
        )
        return SignIn(customer_id, None, ticket, expires, factors)
    await lockout.record_success(conn, "customers", customer_id)
    tokens = await sessions.issue(conn, principal_type=CUSTOMER, principal_id=customer_id, client=client)
    return SignIn(customer_id, tokens)


async def _check_password(
    conn: AsyncConnection[Any], phone: str, password: str
) -> tuple[Customer | None, IdentityError | None]:
    """Phone and password, with lockout: (customer if known, refusal or None). Same cost for unknown phones.

    The customer's row stays locked until the caller's transaction ends, so concurrent sign-ins for one
    phone are checked and counted one after another (as staff sign-in is): at most five failures before
    the lock, and an attempt after the lock point is refused even with the right password.
    """
    found = await _by_phone(conn, phone, for_update=True)
    if found is None:
        locked = await lockout.unknown_lock_in_force(conn, "customers", phone)
        if locked is not None:
            return None, locked
        await verify_secret_async(dummy_hash(), password)
        until = await lockout.record_unknown_failure(conn, "customers", phone)
        return None, lockout.failed("invalid_credentials", until)
    customer, stored = found
    locked = lockout.lock_in_force(customer.locked_until)
    if locked is not None:
        return customer, locked
    if not await verify_secret_async(stored, password):
        until = await lockout.record_failure(conn, "customers", customer.id)
        return customer, lockout.failed("invalid_credentials", until)
    return customer, _status_refusal(customer)


async def login_password(pool: AsyncConnectionPool, *, phone: str, password: str, client: Client) -> SignIn:
    """Sign in with phone and password (lockout, frozen accounts refused, second factor when enrolled)."""
    result: SignIn | None = None
    async with pool.connection() as conn, conn.transaction():
        customer, failure = await _check_password(conn, phone, password)
        if failure is None:
            assert customer is not None
            result = await _after_first_factor(conn, customer.id, client)
        await audit.append(
            conn, _event(client, "customer.login.password", customer_id=customer.id if customer else None,
                         failure=failure, actor=_claimant(customer.id if customer else None, failure is None),
                         detail={"phone": mask_phone(phone)}
                         | ({"factors": list(result.factors)} if result else {})
                         | (result.tokens.audit_detail() if result and result.tokens else {})),
        )  # fmt: skip
    if failure is not None:
        raise failure
    assert result is not None
    return result


async def login_sms(
    pool: AsyncConnectionPool, lookup_key: bytes, *, phone: str, sms_code: str, client: Client
) -> SignIn:
    """Sign in with an SMS code (purpose login) instead of the password; the same rules otherwise."""
    result: SignIn | None = None
    customer: Customer | None = None
    async with pool.connection() as conn, conn.transaction():
        failure = await sms.check_code(conn, lookup_key, phone=phone, purpose=Purpose.LOGIN, code=sms_code)
        if failure is None:
            found = await _by_phone(conn, phone)
            if found is None:
                # only reachable by guessing a code nobody was sent
                failure = IdentityError("sms_code_invalid")
            else:
                customer = found[0]
                failure = lockout.lock_in_force(customer.locked_until) or _status_refusal(customer)
                if failure is None:
                    result = await _after_first_factor(conn, customer.id, client)
        await audit.append(
            conn, _event(client, "customer.login.sms", customer_id=customer.id if customer else None,
                         failure=failure, actor=_claimant(customer.id if customer else None, failure is None),
                         detail={"phone": mask_phone(phone)}
                         | (result.tokens.audit_detail() if result and result.tokens else {})),
        )  # fmt: skip
    if failure is not None:
        raise failure
    assert result is not None
    return result


async def login_second_factor(
    pool: AsyncConnectionPool,
    cipher: FieldCipher,
    *,
    lookup_key: bytes,
    ticket: str,
    code: str,
    client: Client,
) -> sessions.IssuedTokens:
    """Finish a sign-in with a TOTP code or a recovery code; a wrong code counts toward the lockout."""
    failure: IdentityError | None = None
    customer_id: UUID | None = None
    factor = "totp"
    ticket_hash = hash_token(ticket)
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT principal_id FROM login_tickets WHERE ticket_hash = %s AND principal_type = 'customer' "
            "AND used_at IS NULL AND expires_at > now() AND attempts < %s FOR UPDATE",
            (ticket_hash, TICKET_ATTEMPTS),
        )
        row = await cur.fetchone()
        if row is None:
            failure = IdentityError("login_ticket_invalid")
        else:
            customer_id = row[0]
            customer = await get_customer(conn, row[0], for_update=True)  # count failures one at a time
            failure = lockout.lock_in_force(customer.locked_until) or _status_refusal(customer)
        if failure is None and customer_id is not None:
            ok = await totp.verify(conn, cipher, CUSTOMER, customer_id, code)
            if not ok and not (len(code.strip()) == 6 and code.strip().isdigit()):
                factor = "recovery_code"
                ok = await totp.use_recovery_code(conn, lookup_key, CUSTOMER, customer_id, code)
            if ok:
                await conn.execute(
                    "UPDATE login_tickets SET used_at = now() WHERE ticket_hash = %s", (ticket_hash,)
                )
                await lockout.record_success(conn, "customers", customer_id)
                tokens = await sessions.issue(
                    conn, principal_type=CUSTOMER, principal_id=customer_id, client=client
                )
                await sessions.mark_stepped_up(conn, tokens.session_id, factor)
            else:
                await conn.execute(
                    "UPDATE login_tickets SET attempts = attempts + 1 WHERE ticket_hash = %s", (ticket_hash,)
                )
                until = await lockout.record_failure(conn, "customers", customer_id)
                failure = lockout.failed("second_factor_invalid", until)
        await audit.append(
            conn, _event(client, _SECOND_FACTOR, customer_id=customer_id, failure=failure,
                         actor=_claimant(customer_id, failure is None),
                         detail={"factor": factor} | (tokens.audit_detail() if failure is None else {})),
        )  # fmt: skip
    if failure is not None:
        raise failure
    return tokens


_LIVE_TICKET = (
    "SELECT principal_id FROM login_tickets WHERE ticket_hash = %s AND principal_type = 'customer' "
    "AND used_at IS NULL AND expires_at > now() AND attempts < %s"
)


async def passkey_second_factor_options(
    pool: AsyncConnectionPool, *, ticket: str, rp_id: str
) -> passkeys.Ceremony:
    """Options to finish a password sign-in with one of the ticket's customer's passkeys."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(_LIVE_TICKET, (hash_token(ticket), TICKET_ATTEMPTS))
        row = await cur.fetchone()
        if row is None:
            raise IdentityError("login_ticket_invalid")
        return await passkeys.authentication_options(
            conn, purpose="login", rp_id=rp_id, principal=(CUSTOMER, row[0])
        )


async def login_second_factor_passkey(
    pool: AsyncConnectionPool,
    *,
    ticket: str,
    challenge_id: UUID,
    credential: dict[str, Any],
    rp_id: str,
    origin: str,
    client: Client,
) -> sessions.IssuedTokens:
    """Finish a password sign-in with a passkey assertion answering :func:`passkey_second_factor_options`."""
    ticket_hash = hash_token(ticket)
    detail = {"factor": "passkey"}
    async with pool.connection() as conn:
        cur = await conn.execute(_LIVE_TICKET, (ticket_hash, TICKET_ATTEMPTS))
        row = await cur.fetchone()
    if row is None:
        failure = IdentityError("login_ticket_invalid")
        await audit.record(
            pool, _event(client, _SECOND_FACTOR, customer_id=None, failure=failure, detail=detail)
        )
        raise failure
    customer_id: UUID = row[0]
    try:
        challenge, _ = await passkeys.take_challenge(pool, challenge_id, "login", (CUSTOMER, customer_id))
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(_LIVE_TICKET + " FOR UPDATE", (ticket_hash, TICKET_ATTEMPTS))
            if await cur.fetchone() is None:
                raise IdentityError("login_ticket_invalid")  # spent by a concurrent attempt
            customer = await get_customer(conn, customer_id)
            refusal = lockout.lock_in_force(customer.locked_until) or _status_refusal(customer)
            if refusal is not None:
                raise refusal
            await passkeys.verify_assertion(
                conn, challenge=challenge, credential=credential, rp_id=rp_id, origin=origin,
                principal=(CUSTOMER, customer_id), principal_type=CUSTOMER,
            )  # fmt: skip
            await conn.execute(
                "UPDATE login_tickets SET used_at = now() WHERE ticket_hash = %s", (ticket_hash,)
            )
            await lockout.record_success(conn, "customers", customer_id)
            tokens = await sessions.issue(
                conn, principal_type=CUSTOMER, principal_id=customer_id, client=client
            )
            await sessions.mark_stepped_up(conn, tokens.session_id, "passkey")
            await audit.append(
                conn,
                _event(
                    client, _SECOND_FACTOR, customer_id=customer_id, detail=detail | tokens.audit_detail()
                ),
            )
    except DomainError as refused:
        # The refused attempt counts against the ticket, and is audited with that count.
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(
                "UPDATE login_tickets SET attempts = attempts + 1 WHERE ticket_hash = %s", (ticket_hash,)
            )
            await audit.append(
                conn, _event(client, _SECOND_FACTOR, customer_id=customer_id, failure=refused,
                             actor=_claimant(customer_id, False), detail=detail),
            )  # fmt: skip
        raise
    return tokens


async def refresh(pool: AsyncConnectionPool, refresh_token: str, client: Client) -> sessions.IssuedTokens:
    """Rotate a customer session's tokens (the old pair stops working); 401 if it is not live."""
    async with pool.connection() as conn, conn.transaction():
        rotation = await sessions.rotate(conn, "customer", refresh_token)
        tokens, customer_id = rotation.tokens, rotation.principal_id
        failure = (
            None if tokens is not None else refresh_token_reused() if rotation.reused else unauthenticated()
        )
        await audit.append(
            conn, _event(client, "customer.session.refresh", customer_id=customer_id, failure=failure,
                         actor=_claimant(customer_id, failure is None),
                         detail={"session_id": str(rotation.session_id)} if rotation.session_id else {}),
        )  # fmt: skip
    if failure is not None:
        raise failure
    assert tokens is not None
    return tokens


async def logout(pool: AsyncConnectionPool, *, customer_id: UUID, session_id: UUID, client: Client) -> None:
    """End the current session."""
    async with pool.connection() as conn, conn.transaction():
        await sessions.revoke(conn, session_id, "logout")
        await audit.append(
            conn, _event(client, "customer.logout", customer_id=customer_id,
                         detail={"session_id": str(session_id)}),
        )  # fmt: skip


# --- passwords -------------------------------------------------------------------------------------------


async def reset_password(
    pool: AsyncConnectionPool,
    lookup_key: bytes,
    *,
    phone: str,
    sms_code: str,
    new_password: str,
    client: Client,
) -> int:
    """Forgot password: an SMS code sets a new one, clears the lockout and ends every session (how many)."""
    try:
        validate_password(new_password, phone=phone)
    except InvalidValue as exc:
        raise exc.at("new_password") from None
    customer_id: UUID | None = None
    ended = 0
    async with pool.connection() as conn, conn.transaction():
        failure = await sms.check_code(
            conn, lookup_key, phone=phone, purpose=Purpose.RESET_PASSWORD, code=sms_code
        )
        if failure is None:
            cur = await conn.execute("SELECT id FROM customers WHERE phone = %s FOR UPDATE", (phone,))
            row = await cur.fetchone()
            if row is None:
                # only reachable by guessing a code nobody was sent
                failure = IdentityError("sms_code_invalid")
            else:
                customer_id = row[0]
                await conn.execute(
                    "UPDATE customers SET password_hash = %s, password_changed_at = now(), failed_logins = 0, "
                    "locked_until = NULL WHERE id = %s",
                    (await hash_secret_async(new_password), customer_id),
                )
                ended = await sessions.revoke_all(conn, CUSTOMER, row[0], "password_reset")
        await audit.append(
            conn, _event(client, "customer.password.reset", customer_id=customer_id, failure=failure,
                         actor=_claimant(customer_id, failure is None),
                         detail={"phone": mask_phone(phone), "sessions_ended": ended}),
        )  # fmt: skip
    if failure is not None:
        raise failure
    return ended


async def change_password(
    pool: AsyncConnectionPool,
    *,
    customer_id: UUID,
    session_id: UUID,
    old_password: str,
    new_password: str,
    client: Client,
) -> int:
    """Change the password knowing the current one; ends every other session (how many)."""
    failure: IdentityError | None = None
    ended = 0
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT phone, password_hash, locked_until FROM customers WHERE id = %s FOR UPDATE",
            (customer_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise IdentityError("customer_not_found")
        try:
            validate_password(new_password, phone=row[0])
        except InvalidValue as exc:
            raise exc.at("new_password") from None
        failure = lockout.lock_in_force(row[2])
        if failure is None and not await verify_secret_async(row[1], old_password):
            until = await lockout.record_failure(conn, "customers", customer_id)
            failure = lockout.failed("old_password_wrong", until)
        if failure is None and new_password == old_password:
            failure = IdentityError("password_unchanged")
        if failure is None:
            await conn.execute(
                "UPDATE customers SET password_hash = %s, password_changed_at = now(), failed_logins = 0 "
                "WHERE id = %s",
                (await hash_secret_async(new_password), customer_id),
            )
            ended = await sessions.revoke_all(
                conn, CUSTOMER, customer_id, "password_changed", keep=session_id
            )
        await audit.append(
            conn, _event(client, "customer.password.change", customer_id=customer_id, failure=failure,
                         detail={"sessions_ended": ended}),
        )  # fmt: skip
    if failure is not None:
        raise failure
    return ended


# --- sessions (devices) ----------------------------------------------------------------------------------


async def list_sessions(conn: AsyncConnection[Any], customer_id: UUID) -> list[sessions.Session]:
    """The customer's live sessions (their signed-in devices), most recently used first."""
    return await sessions.list_live(conn, CUSTOMER, customer_id)


async def end_session(
    pool: AsyncConnectionPool, *, customer_id: UUID, session_id: UUID, client: Client
) -> None:
    """End one of the customer's own sessions; anybody else's (or an ended one) is a 404."""
    async with pool.connection() as conn, conn.transaction():
        ended = await sessions.end_owned_session(
            conn, principal_type=CUSTOMER, principal_id=customer_id, session_id=session_id
        )
        failure = None if ended else IdentityError("session_not_found")
        await audit.append(
            conn, _event(client, "customer.session.end", customer_id=customer_id, failure=failure,
                         detail={"session_id": str(session_id)}),
        )  # fmt: skip
    if failure is not None:
        raise failure


# --- real-name profile -----------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\-]+")
_NAME = re.compile(r"[^\W\d_](?:[^\W\d_]|[ ·・.'\-])*")
_ID_FORMATS: dict[str, tuple[re.Pattern[str], str, str]] = {
    "passport": (re.compile(r"[A-Z0-9]{5,17}"), "护照号码应为5–17位字母或数字", "a passport number has 5 to 17 letters or digits"),
    "hk_macao_permit": (
        re.compile(r"[HM][0-9]{8}(?:[0-9]{2})?"), "港澳居民来往内地通行证号码应为H或M加8位或10位数字",
        "a Hong Kong/Macao permit number is H or M followed by 8 or 10 digits",
    ),
    "taiwan_permit": (
        re.compile(r"[0-9]{8}|[0-9A-Z]{10}"), "台湾居民来往大陆通行证号码应为8位数字或10位字母数字",
        "a Taiwan permit number has 8 digits or 10 letters and digits",
    ),
    "military_id": (
        re.compile(r"[\u4e00-\u9fffA-Z0-9]{4,20}"), "军官证号码应为4–20位汉字、字母或数字",
        "a military ID number has 4 to 20 Chinese characters, letters or digits",
    ),
}  # fmt: skip


def normalize_id_number(number: str) -> str:
    """The stored form of an ID number: full-width folded, no spaces or hyphens, upper case."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", number)).upper()


def check_id_number(id_type: str, number: str) -> tuple[str, date | None]:
    """The normalized number and (for a resident ID) its birth date; InvalidValue when it is not valid."""
    if id_type == "resident_id":
        rid = validate_resident_id(number)
        return rid.number, rid.birth_date
    if id_type not in _ID_FORMATS:
        raise InvalidValue("id_type", "不支持的证件类型", "unsupported ID type")
    value = normalize_id_number(number)
    pattern, zh, en = _ID_FORMATS[id_type]
    if not pattern.fullmatch(value):
        raise InvalidValue("id_format", zh, en)
    return value, None


def check_name(name: str) -> str:
    """A person's name: letters (any script), with the middle dot, spaces, periods, apostrophes, hyphens."""
    value = " ".join(unicodedata.normalize("NFKC", name).split())
    if not value or len(value) > 64 or not _NAME.fullmatch(value):
        raise InvalidValue(
            "name_format", "姓名只能包含文字和间隔号（·），不能有数字或符号",
            "a name has letters and separators (·, space, hyphen) only, no digits or symbols",
        )  # fmt: skip
    return value


def _id_hash(id_type: str, number: str, lookup_key: bytes) -> bytes:
    del id_type  # the index is (id_type, hash): the type is a separate column, not part of the hash
    return keyed_hash(normalize_id_number(number), lookup_key)


async def find_customer_by_id_number(
    conn: AsyncConnection[Any], lookup_key: bytes, id_type: str, number: str
) -> UUID | None:
    """The customer whose real-name profile holds this ID number: one indexed keyed-hash look-up, no decryption."""
    cur = await conn.execute(
        "SELECT customer_id FROM customer_profiles WHERE id_type = %s AND id_number_hash = %s",
        (id_type, _id_hash(id_type, number, lookup_key)),
    )
    row = await cur.fetchone()
    return None if row is None else UUID(str(row[0]))


_PROFILE_COLUMNS = "name_enc, id_type, id_number_masked, birth_date, verified_at, updated_at, id_number_hash"


def _profile(cipher: FieldCipher, row: Any) -> Profile:
    name = cipher.decrypt(bytes(row[0]), context=NAME_CONTEXT)
    return Profile(mask_name(name), row[1], row[2], row[3], row[4], row[5])


async def get_profile(conn: AsyncConnection[Any], cipher: FieldCipher, customer_id: UUID) -> Profile | None:
    """The customer's real-name profile, masked; None when none is on file."""
    cur = await conn.execute(
        f"SELECT {_PROFILE_COLUMNS} FROM customer_profiles WHERE customer_id = %s", (customer_id,)
    )
    row = await cur.fetchone()
    return None if row is None else _profile(cipher, row)


_PROFILE_SET = "customer.profile.set"


async def set_profile(
    pool: AsyncConnectionPool,
    keys: Keys,
    *,
    customer_id: UUID,
    name: str,
    id_type: str,
    id_number: str,
    sms_code: str | None,
    stepped_up: bool,
    client: Client,
) -> Profile:
    """Record (or, with an SMS code, change) the real-name profile: encrypted, keyed-hashed, one ID per customer.

    Recording or changing it needs a fresh step-up (``stepped_up``), checked before the ID number is
    looked up: otherwise the answer (409 ``id_number_registered`` or 200) would tell anyone signed in
    whether an ID number belongs to another customer. Saving what is already on file needs none."""
    try:
        clean_name = check_name(name)
    except InvalidValue as exc:
        raise exc.at("name") from None
    try:
        number, birth = check_id_number(id_type, id_number)
    except InvalidValue as exc:
        raise exc.at("id_number") from None
    digest = _id_hash(id_type, number, keys.lookup_key)
    masked = mask_id_number(number)
    failure: IdentityError | None = None
    changed = False
    try:
        async with pool.connection() as conn, conn.transaction():
            customer = await get_customer(conn, customer_id, for_update=True)
            cur = await conn.execute(
                f"SELECT {_PROFILE_COLUMNS} FROM customer_profiles WHERE customer_id = %s FOR UPDATE",
                (customer_id,),
            )
            current = await cur.fetchone()
            same = current is not None and (
                current[1] == id_type
                and hmac.compare_digest(bytes(current[6]), digest)
                and _stored_name(keys.cipher, current[0]) == clean_name
            )
            if not same and not stepped_up:
                factors = await stepup.accepted_factors(conn, CUSTOMER, customer_id)
                failure = stepup.step_up_required(CUSTOMER, factors, stepup.STEP_UP_WINDOW)
            elif current is not None and not same:
                if sms_code is None:
                    failure = IdentityError("sms_code_required")
                else:
                    failure = await sms.check_code(
                        conn,
                        keys.lookup_key,
                        phone=customer.phone,
                        purpose=Purpose.PROFILE_CHANGE,
                        code=sms_code,
                    )
            if failure is None and not same:
                other = await find_customer_by_id_number(conn, keys.lookup_key, id_type, number)
                if other is not None and other != customer_id:
                    failure = IdentityError("id_number_registered")
            if failure is None and not same:
                await conn.execute(
                    "INSERT INTO customer_profiles (customer_id, name_enc, id_type, id_number_enc, id_number_hash, "
                    "id_number_masked, birth_date, verified_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, now()) ON CONFLICT (customer_id) DO UPDATE SET "
                    "name_enc = EXCLUDED.name_enc, id_type = EXCLUDED.id_type, id_number_enc = EXCLUDED.id_number_enc, "
                    "id_number_hash = EXCLUDED.id_number_hash, id_number_masked = EXCLUDED.id_number_masked, "
                    "birth_date = EXCLUDED.birth_date, verified_at = NULL, updated_at = now()",
                    (
                        customer_id, keys.cipher.encrypt(clean_name, context=NAME_CONTEXT), id_type,
                        keys.cipher.encrypt(number, context=ID_NUMBER_CONTEXT), digest, masked, birth,
                    ),
                )  # fmt: skip
                changed = True
            profile = await get_profile(conn, keys.cipher, customer_id)
            await audit.append(
                conn, _event(client, _PROFILE_SET, customer_id=customer_id, failure=failure,
                             detail={"id_type": id_type, "id_number": masked, "changed": changed}),
            )  # fmt: skip
    except UniqueViolation:
        # a concurrent registration of the same number won the race
        failure = IdentityError("id_number_registered")
        await audit.record(
            pool, _event(client, _PROFILE_SET, customer_id=customer_id, failure=failure,
                         detail={"id_type": id_type, "id_number": masked, "changed": False}),
        )  # fmt: skip
    if failure is not None:
        raise failure
    assert profile is not None
    return profile


def _stored_name(cipher: FieldCipher, blob: Any) -> str:
    """The stored name, decrypted (only ever compared, never answered)."""
    return cipher.decrypt(bytes(blob), context=NAME_CONTEXT)


# --- payment password ------------------------------------------------------------------------------------


async def pin_state(conn: AsyncConnection[Any], customer_id: UUID) -> PinState:
    """Whether a payment password is set, locked, and how many wrong tries it has seen."""
    cur = await conn.execute(
        "SELECT failed_attempts, locked_at FROM payment_passwords WHERE customer_id = %s", (customer_id,)
    )
    row = await cur.fetchone()
    if row is None:
        return PinState(False, False, 0)
    return PinState(True, row[1] is not None, row[0])


async def _pin_context(conn: AsyncConnection[Any], customer_id: UUID) -> tuple[str, date | None]:
    cur = await conn.execute(
        "SELECT c.phone, p.birth_date FROM customers c LEFT JOIN customer_profiles p ON p.customer_id = c.id "
        "WHERE c.id = %s",
        (customer_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise IdentityError("customer_not_found")
    return row[0], row[1]


def _check_pin(pin: str, field: str, phone: str, birth: date | None) -> None:
    try:
        validate_payment_password(pin, birth_date=birth, phone=phone)
    except InvalidValue as exc:
        raise exc.at(field) from None


async def set_payment_password(
    pool: AsyncConnectionPool,
    lookup_key: bytes,
    *,
    customer_id: UUID,
    pin: str,
    sms_code: str,
    client: Client,
) -> None:
    """Set the 6-digit payment password the first time, proved by an SMS code (purpose reset_payment_password)."""
    failure: IdentityError | None = None
    async with pool.connection() as conn, conn.transaction():
        phone, birth = await _pin_context(conn, customer_id)
        _check_pin(pin, "pin", phone, birth)
        if (await pin_state(conn, customer_id)).set:
            raise IdentityError("payment_password_exists")
        failure = await sms.check_code(
            conn, lookup_key, phone=phone, purpose=Purpose.RESET_PAYMENT_PASSWORD, code=sms_code
        )
        if failure is None:
            cur = await conn.execute(
                "INSERT INTO payment_passwords (customer_id, password_hash) VALUES (%s, %s) "
                "ON CONFLICT (customer_id) DO NOTHING",
                (customer_id, await hash_secret_async(pin)),
            )
            if cur.rowcount != 1:
                failure = IdentityError("payment_password_exists")
        await audit.append(
            conn, _event(client, "customer.payment_password.set", customer_id=customer_id, failure=failure)
        )
    if failure is not None:
        raise failure


async def verify_payment_password(
    conn: AsyncConnection[Any], customer_id: UUID, pin: str
) -> IdentityError | None:
    """Check a payment password: None when right, else the refusal (wrong with tries left, locked, or not set).

    A wrong try is counted and the 5th locks it, so run this in a transaction that commits even when the
    answer is a refusal (or use :func:`check_payment_password`, which does).
    """
    cur = await conn.execute(
        "SELECT password_hash, failed_attempts, locked_at FROM payment_passwords WHERE customer_id = %s "
        "FOR UPDATE",
        (customer_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return IdentityError("payment_password_not_set")
    if row[2] is not None:
        return pin_locked()
    if await verify_secret_async(row[0], pin):
        if row[1]:
            await conn.execute(
                "UPDATE payment_passwords SET failed_attempts = 0 WHERE customer_id = %s", (customer_id,)
            )
        return None
    cur = await conn.execute(
        "UPDATE payment_passwords SET failed_attempts = failed_attempts + 1, "
        "locked_at = CASE WHEN failed_attempts + 1 >= %s THEN now() END WHERE customer_id = %s "
        "RETURNING failed_attempts",
        (PIN_MAX_FAILURES, customer_id),
    )
    counted = await cur.fetchone()
    assert counted is not None
    remaining = PIN_MAX_FAILURES - counted[0]
    return pin_locked() if remaining <= 0 else pin_wrong(remaining)


async def check_payment_password(
    pool: AsyncConnectionPool, customer_id: UUID, pin: str, client: Client, *, purpose: str = "verify"
) -> None:
    """Verify a payment password in a transaction of its own (tries always counted); raises the refusal."""
    async with pool.connection() as conn, conn.transaction():
        failure = await verify_payment_password(conn, customer_id, pin)
        await audit.append(
            conn, _event(client, "customer.payment_password.verify", customer_id=customer_id, failure=failure,
                         detail={"purpose": purpose}),
        )  # fmt: skip
    if failure is not None:
        raise failure


async def reset_payment_password(
    pool: AsyncConnectionPool,
    keys: Keys,
    *,
    customer_id: UUID,
    sms_code: str,
    id_number: str,
    new_pin: str,
    client: Client,
) -> None:
    """Reset (and unlock) the payment password with an SMS code plus the ID number on the real-name profile."""
    failure: IdentityError | None = None
    async with pool.connection() as conn, conn.transaction():
        phone, birth = await _pin_context(conn, customer_id)
        cur = await conn.execute(
            "SELECT id_type, id_number_hash FROM customer_profiles WHERE customer_id = %s", (customer_id,)
        )
        profile = await cur.fetchone()
        if profile is None:
            raise IdentityError("profile_required")
        _check_pin(new_pin, "new_pin", phone, birth)
        failure = await sms.check_code(
            conn, keys.lookup_key, phone=phone, purpose=Purpose.RESET_PAYMENT_PASSWORD, code=sms_code
        )
        # The code is spent even when the ID number is wrong: each guess at the number costs a new SMS.
        if failure is None and not hmac.compare_digest(
            bytes(profile[1]), _id_hash(profile[0], id_number, keys.lookup_key)
        ):
            failure = IdentityError("id_number_mismatch")
        if failure is None:
            await conn.execute(
                "INSERT INTO payment_passwords (customer_id, password_hash) VALUES (%s, %s) "
                "ON CONFLICT (customer_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, "
                "failed_attempts = 0, locked_at = NULL, updated_at = now()",
                (customer_id, await hash_secret_async(new_pin)),
            )
        await audit.append(
            conn, _event(client, "customer.payment_password.reset", customer_id=customer_id, failure=failure,
                         detail={"id_number": mask_id_number(normalize_id_number(id_number))}),
        )  # fmt: skip
    if failure is not None:
        raise failure


# --- freezing --------------------------------------------------------------------------------------------


async def freeze(
    pool: AsyncConnectionPool,
    *,
    customer_id: UUID,
    reason: str,
    by: tuple[str, UUID],
    client: Client,
) -> tuple[Customer, int]:
    """Freeze an account (by the customer or by staff): logins refused, every session ended. Idempotent.

    The reason is kept (and audited, and answered) with phone and ID numbers in it masked."""
    reason = mask_free_text(reason)
    actor_type, actor_id = by
    frozen_by = CUSTOMER if actor_type == CUSTOMER else f"staff:{actor_id}"
    async with pool.connection() as conn, conn.transaction():
        before = await get_customer(conn, customer_id, for_update=True)
        if before.status == "active":
            await conn.execute(
                "UPDATE customers SET status = 'frozen', frozen_reason = %s, frozen_by = %s, frozen_at = now() "
                "WHERE id = %s",
                (reason, frozen_by, customer_id),
            )
        ended = await sessions.revoke_all(conn, CUSTOMER, customer_id, "frozen")
        after = await get_customer(conn, customer_id)
        await audit.append(
            conn, _event(client, "customer.freeze", customer_id=customer_id, actor=(actor_type, str(actor_id)),
                         detail={"reason": reason, "status_before": before.status, "sessions_ended": ended},
                         outcome="success" if before.status == "active" else "unchanged"),
        )  # fmt: skip
    return after, ended


async def unfreeze(
    pool: AsyncConnectionPool, *, customer_id: UUID, staff_id: UUID, client: Client
) -> Customer:
    """Staff lift a freeze (and any login lockout). Unfreezing an active account changes nothing."""
    async with pool.connection() as conn, conn.transaction():
        before = await get_customer(conn, customer_id, for_update=True)
        if before.status == "frozen":
            await conn.execute(
                "UPDATE customers SET status = 'active', frozen_reason = NULL, frozen_by = NULL, frozen_at = NULL, "
                "failed_logins = 0, locked_until = NULL WHERE id = %s",
                (customer_id,),
            )
        after = await get_customer(conn, customer_id)
        await audit.append(
            conn, _event(client, "customer.unfreeze", customer_id=customer_id, actor=("staff", str(staff_id)),
                         detail={"status_before": before.status, "frozen_reason_before": before.frozen_reason},
                         outcome="success" if before.status == "frozen" else "unchanged"),
        )  # fmt: skip
    return after


async def request_self_unfreeze(
    pool: AsyncConnectionPool,
    lookup_key: bytes,
    *,
    phone: str,
    password: str,
    sms_code: str | None,
    client: Client,
) -> Customer:
    """Unfreeze an account its owner froze, with the password plus an SMS code (the step-up).

    An account frozen by staff stays frozen: the answer says staff must lift it.
    """
    async with pool.connection() as conn, conn.transaction():
        customer, failure = await _check_password(conn, phone, password)
        proven = customer is not None and (failure is None or failure.code == "account_frozen")
        if proven:
            assert customer is not None
            if failure is None:
                failure = IdentityError("account_not_frozen")
            elif not _self_frozen(customer):
                failure = IdentityError("unfreeze_needs_staff", unfreeze_by="staff")
            elif sms_code is None:
                failure = IdentityError("unfreeze_needs_sms_code", unfreeze_by="customer_sms")
            else:
                failure = await sms.check_code(
                    conn, lookup_key, phone=phone, purpose=Purpose.UNFREEZE, code=sms_code
                )
            if failure is None:
                await conn.execute(
                    "UPDATE customers SET status = 'active', frozen_reason = NULL, frozen_by = NULL, frozen_at = NULL, "
                    "failed_logins = 0, locked_until = NULL WHERE id = %s",
                    (customer.id,),
                )
                customer = await get_customer(conn, customer.id)
        await audit.append(
            conn, _event(client, "customer.unfreeze.self", customer_id=customer.id if customer else None,
                         failure=failure, actor=_claimant(customer.id if customer else None, proven),
                         detail={"phone": mask_phone(phone), "factor": "password+sms"}),
        )  # fmt: skip
    if failure is not None:
        raise failure
    assert customer is not None
    return customer


# --- read models -----------------------------------------------------------------------------------------


async def two_factor_state(conn: AsyncConnection[Any], customer_id: UUID) -> TwoFactorState:
    """Which second factors the customer has: TOTP, how many passkeys, how many recovery codes are left."""
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM totp_factors WHERE principal_type = 'customer' AND principal_id = %(id)s "
        "AND confirmed_at IS NOT NULL), "
        "(SELECT count(*) FROM passkeys WHERE principal_type = 'customer' AND principal_id = %(id)s), "
        "(SELECT count(*) FROM recovery_codes WHERE principal_type = 'customer' AND principal_id = %(id)s "
        "AND used_at IS NULL)",
        {"id": customer_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return TwoFactorState(bool(row[0]), int(row[1]), int(row[2]))


async def detail(conn: AsyncConnection[Any], cipher: FieldCipher, customer_id: UUID) -> CustomerDetail:
    """The whole masked picture of one account (for the customer themself or for support staff)."""
    customer = await get_customer(conn, customer_id)
    live = await sessions.count_live_sessions(conn, principal_type=CUSTOMER, principal_id=customer_id)
    return CustomerDetail(
        customer,
        await get_profile(conn, cipher, customer_id),
        await pin_state(conn, customer_id),
        await two_factor_state(conn, customer_id),
        live,
    )


async def audit_staff_read(
    pool: AsyncConnectionPool, *, staff_id: UUID, customer_id: UUID, client: Client
) -> None:
    """Record that a staff member looked a customer up (a read changes nothing, so it is recorded alone)."""
    await audit.record(
        pool, _event(client, "customer.read", customer_id=customer_id, actor=("staff", str(staff_id)))
    )
