"""Customers: registration, SMS codes, passwords and devices (sessions); with the public look-ups other
domains call. Signing in is in :mod:`.signin`, the real-name profile and payment password in
:mod:`.profile`, freezing in :mod:`.freezing`; their names are importable from here too.

Rules that run through this package:

- Nothing tells a stranger whether a phone number is registered. SMS codes for login and password reset
  on an unknown number (and for registration on a known one) are created but sent nowhere, so cooldowns,
  caps and answers are the same either way; a wrong password on an unknown number is verified against a
  dummy hash with the same cost as a real one.
- A code or password try is counted even when the answer is a refusal: the unit that checks it commits
  (with the refused attempt's audit entry) and the refusal is raised after. Anything else that is refused
  rolls its unit back and changes nothing.
- Every change is written through the unit of work, its audit entry in the change's own transaction, with
  phone numbers and ID numbers masked and no password, PIN or code in it. Time is the unit's clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection

from etcwallet.core.crypto import FieldCipher
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError, InvalidValue
from etcwallet.core.masking import mask_phone
from etcwallet.identity import lockout, sms
from etcwallet.identity.customers import store
from etcwallet.identity.customers.actions import ANONYMOUS, claimant, event, record
from etcwallet.identity.customers.claiming import claim_in
from etcwallet.identity.customers.credentials import check_password
from etcwallet.identity.customers.errors import (
    closed_error,
    frozen_error,
    pin_locked,
    pin_wrong,
)
from etcwallet.identity.customers.freezing import freeze, request_self_unfreeze, unfreeze
from etcwallet.identity.customers.profile import (
    check_id_number,
    check_name,
    check_payment_password,
    find_by_id_number,
    find_customer_by_id_number,
    get_profile,
    get_profile_or_raise,
    normalize_id_number,
    pin_state,
    reset_payment_password,
    set_payment_password,
    set_profile,
    verify_payment_password,
)
from etcwallet.identity.customers.signin import (
    login_password,
    login_second_factor,
    login_second_factor_passkey,
    login_sms,
    logout,
    passkey_second_factor_options,
    refresh,
    second_factors,
)
from etcwallet.identity.customers.types import (
    CUSTOMER,
    ID_NUMBER_CONTEXT,
    ID_TYPES,
    NAME_CONTEXT,
    PIN_MAX_FAILURES,
    SELF_FREEZE_REASON,
    TICKET_ATTEMPTS,
    TICKET_LIFETIME,
    Customer,
    CustomerAction,
    CustomerDetail,
    CustomerStatus,
    PinState,
    Profile,
    SignIn,
    TwoFactorState,
)
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import service as factors
from etcwallet.identity.passwords import hash_secret_async, verify_secret_async
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.sms import Purpose, SentCode, SmsGateway
from etcwallet.identity.validators import validate_password
from etcwallet.platform.audit import AuditEvent
from etcwallet.platform.unit import Unit, UnitOfWork, utcnow

# The customers' front door: the use cases of the modules split off by use case are importable from here.
__all__ = [
    "CUSTOMER",
    "ID_NUMBER_CONTEXT",
    "ID_TYPES",
    "NAME_CONTEXT",
    "PIN_MAX_FAILURES",
    "SELF_FREEZE_REASON",
    "TICKET_ATTEMPTS",
    "TICKET_LIFETIME",
    "Client",
    "Customer",
    "CustomerDetail",
    "PinState",
    "Profile",
    "SignIn",
    "TwoFactorState",
    "audit_staff_read",
    "change_password",
    "check_id_number",
    "check_name",
    "check_password",
    "check_payment_password",
    "closed_error",
    "detail",
    "end_session",
    "find_by_id_number",
    "find_by_phone",
    "find_customer_by_id_number",
    "freeze",
    "frozen_error",
    "get_customer",
    "get_customer_or_raise",
    "get_phone_or_raise",
    "get_profile",
    "get_profile_or_raise",
    "hold_open_customer",
    "list_sessions",
    "login_password",
    "login_second_factor",
    "login_second_factor_passkey",
    "login_sms",
    "logout",
    "normalize_id_number",
    "passkey_second_factor_options",
    "pin_locked",
    "pin_state",
    "pin_wrong",
    "refresh",
    "register",
    "request_code",
    "request_own_code",
    "request_self_unfreeze",
    "reset_password",
    "reset_payment_password",
    "second_factors",
    "set_payment_password",
    "set_profile",
    "two_factor_state",
    "unfreeze",
    "verify_payment_password",
]

Conn = AsyncConnection[Any]

# Purposes a code is really sent for only when the phone is registered, and the one for when it is not.
_NEEDS_ACCOUNT = frozenset({Purpose.LOGIN, Purpose.RESET_PASSWORD})
_NEEDS_NO_ACCOUNT = frozenset({Purpose.REGISTER})


class _SilentGateway:
    """A gateway that sends nothing: the code exists (so cooldowns and caps apply) but nobody receives it."""

    async def send(self, conn: Conn, phone: str, text: str) -> None:
        return None


_SILENT = _SilentGateway()


# --- public look-ups -------------------------------------------------------------------------------------


async def get_customer_or_raise(conn: Conn, *, customer_id: UUID) -> Customer:
    """A customer by id; 404 ``customer_not_found`` when there is none."""
    return await store.get_customer_or_raise(conn, customer_id)


async def get_customer(conn: Conn, *, customer_id: UUID) -> Customer:
    """A customer by id; 404 when there is none (the name the factors and tests use today)."""
    return await store.get_customer_or_raise(conn, customer_id)


async def hold_open_customer(conn: Conn, *, customer_id: UUID) -> Customer:
    """For another domain's step that makes something for a customer (a card, a tag, a payment): the
    customer, share-locked until the step's transaction ends, refused when closed (403 ``account_closed``).

    A closure locks the customer's row for update before it asks the domains' closure checks, so the two
    run one after the other: either the closure's checks see what the step made, or the step sees the
    account closed. Without this a check could read "no live card" while a card is being issued.
    """
    customer = await store.share_lock_customer(conn, customer_id)
    if customer.status is CustomerStatus.CLOSED:
        raise closed_error()
    return customer


async def find_by_phone(conn: Conn, *, phone: str) -> Customer | None:
    """The customer registered with this phone number (as :func:`validators` normalizes it); None if none."""
    return await store.get_by_phone(conn, phone)


async def get_phone_or_raise(conn: Conn, *, customer_id: UUID) -> str:
    """The customer's phone number (to send them a code); 404 when there is no such customer."""
    return (await store.get_customer_or_raise(conn, customer_id)).phone


# --- SMS codes -------------------------------------------------------------------------------------------


async def request_code(
    *,
    uow: UnitOfWork,
    gateway: SmsGateway,
    lookup_key: bytes,
    phone: str,
    purpose: Purpose,
    client: Client,
) -> SentCode:
    """Send a code, or (when the number's registration makes it pointless) create one silently: same answer."""
    async with uow.pool.connection() as conn:
        customer = await store.get_by_phone(conn, phone)
    registered = customer is not None
    # An account an outlet opened is claimed by registering its phone: a register code is sent to it.
    claimed = customer is not None and customer.claimed
    send = not ((purpose in _NEEDS_ACCOUNT and not registered) or (purpose in _NEEDS_NO_ACCOUNT and claimed))
    if purpose is Purpose.UNFREEZE:
        # Only an account its owner froze can be unfrozen by SMS; anything else gets the same silent answer.
        send = customer is not None and customer.self_frozen
    customer_id = customer.id if customer else None
    detail = {"phone": mask_phone(phone), "purpose": purpose.value}

    async def step(unit: Unit) -> SentCode:
        sent = await sms.send_code(
            unit.conn,
            gateway=gateway if send else _SILENT,
            lookup_key=lookup_key,
            phone=phone,
            purpose=purpose,
            ip=client.ip,
            now=unit.now,
        )
        unit.audit(
            event(
                client,
                CustomerAction.SMS_CODE_REQUEST,
                customer_id=customer_id,
                actor=ANONYMOUS,
                detail=detail | {"delivered": send},
            )
        )
        return sent

    def refused(error: DomainError) -> AuditEvent:
        return event(
            client,
            CustomerAction.SMS_CODE_REQUEST,
            customer_id=customer_id,
            failure=error,
            actor=ANONYMOUS,
            detail=detail | {"delivered": False},
        )

    return await uow.run(step, refusal=refused)


async def request_own_code(
    *,
    uow: UnitOfWork,
    gateway: SmsGateway,
    lookup_key: bytes,
    customer_id: UUID,
    purpose: Purpose,
    client: Client,
) -> SentCode:
    """Send a code to the signed-in customer's own phone (payment password, profile change)."""
    async with uow.pool.connection() as conn:
        phone = await get_phone_or_raise(conn, customer_id=customer_id)
    detail = {"phone": mask_phone(phone), "purpose": purpose.value}
    action = CustomerAction.SMS_CODE_REQUEST

    async def step(unit: Unit) -> SentCode:
        sent = await sms.send_code(
            unit.conn,
            gateway=gateway,
            lookup_key=lookup_key,
            phone=phone,
            purpose=purpose,
            ip=client.ip,
            now=unit.now,
        )
        unit.audit(event(client, action, customer_id=customer_id, detail=detail | {"delivered": True}))
        return sent

    def refused(error: DomainError) -> AuditEvent:
        return event(
            client, action, customer_id=customer_id, failure=error, detail=detail | {"delivered": False}
        )

    return await uow.run(step, refusal=refused)


# --- registration and sign-in ----------------------------------------------------------------------------


async def register(
    *,
    uow: UnitOfWork,
    lookup_key: bytes,
    phone: str,
    password: str,
    sms_code: str,
    client: Client,
) -> tuple[Customer, sessions.IssuedTokens]:
    """Open an account for a phone proved by an SMS code, with a password that passes the policy; signs in.

    On the phone of an account an outlet opened and nobody claimed yet, the same call claims it (sets its
    first password: :func:`.claiming.claim_in`); a claimed phone stays ``phone_registered``."""
    try:
        validate_password(password, phone=phone)
    except InvalidValue as exc:
        raise exc.at("password") from None

    async def step(unit: Unit) -> tuple[Customer | None, sessions.IssuedTokens | None, IdentityError | None]:
        customer: Customer | None = None
        tokens: sessions.IssuedTokens | None = None
        claimed = False
        failure = await sms.check_code(
            unit.conn,
            lookup_key=lookup_key,
            phone=phone,
            purpose=Purpose.REGISTER,
            code=sms_code,
            now=unit.now,
        )
        if failure is None:
            password_hash = await hash_secret_async(password)
            customer = await store.insert_customer(
                unit.conn, customer_id=uuid4(), phone=phone, password_hash=password_hash, now=unit.now
            )
            if customer is None:
                customer, failure = await claim_in(unit, phone=phone, password_hash=password_hash)
                claimed = customer is not None
            if customer is not None:
                tokens = await sessions.issue(
                    unit.conn, principal_type=CUSTOMER, principal_id=customer.id, client=client, now=unit.now
                )
        customer_id = customer.id if customer else None
        unit.audit(
            event(
                client,
                CustomerAction.REGISTER,
                customer_id=customer_id,
                failure=failure,
                actor=claimant(customer_id, failure is None),
                detail={"phone": mask_phone(phone)}
                | ({"claimed_outlet_account": True} if claimed else {})
                | (tokens.audit_detail() if tokens else {}),
            )
        )
        return customer, tokens, failure

    customer, tokens, failure = await uow.run(step)
    if failure is not None:
        raise failure
    assert customer is not None and tokens is not None
    return customer, tokens


# --- passwords -------------------------------------------------------------------------------------------


async def reset_password(
    *,
    uow: UnitOfWork,
    lookup_key: bytes,
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

    async def step(unit: Unit) -> tuple[int, IdentityError | None]:
        customer_id: UUID | None = None
        ended = 0
        failure = await sms.check_code(
            unit.conn,
            lookup_key=lookup_key,
            phone=phone,
            purpose=Purpose.RESET_PASSWORD,
            code=sms_code,
            now=unit.now,
        )
        if failure is None:
            found = await store.lock_credentials_by_phone(unit.conn, phone)
            if found is None:
                # only reachable by guessing a code nobody was sent
                failure = IdentityError("sms_code_invalid")
            else:
                customer_id = found[0].id
                password_hash = await hash_secret_async(new_password)
                await store.set_password(
                    unit.conn, customer_id, password_hash=password_hash, now=unit.now, clear_lock=True
                )
                ended = await sessions.end_all_sessions(
                    unit.conn,
                    principal_type=CUSTOMER,
                    principal_id=customer_id,
                    reason="password_reset",
                    now=unit.now,
                )
        unit.audit(
            event(
                client,
                CustomerAction.PASSWORD_RESET,
                customer_id=customer_id,
                failure=failure,
                actor=claimant(customer_id, failure is None),
                detail={"phone": mask_phone(phone), "sessions_ended": ended},
            )
        )
        return ended, failure

    ended, failure = await uow.run(step)
    if failure is not None:
        raise failure
    return ended


async def change_password(
    *,
    uow: UnitOfWork,
    customer_id: UUID,
    session_id: UUID,
    old_password: str,
    new_password: str,
    client: Client,
) -> int:
    """Change the password knowing the current one; ends every other session (how many)."""

    async def step(unit: Unit) -> tuple[int, IdentityError | None]:
        ended = 0
        customer, stored = await store.lock_credentials(unit.conn, customer_id)
        try:
            validate_password(new_password, phone=customer.phone)
        except InvalidValue as exc:
            raise exc.at("new_password") from None
        failure = lockout.lock_in_force(customer.locked_until, now=unit.now)
        # An unclaimed account (signed in by SMS) has no current password to prove: the owner sets one with
        # the forgot-password flow (an SMS code), which claims the account; the attempt is no failed guess.
        if failure is None and stored is None:
            failure = IdentityError("password_not_set")
        if failure is None and stored is not None and not await verify_secret_async(stored, old_password):
            until = await lockout.record_failure(
                unit.conn, table="customers", principal_id=customer_id, now=unit.now
            )
            failure = lockout.failed("old_password_wrong", until)
        if failure is None and new_password == old_password:
            failure = IdentityError("password_unchanged")
        if failure is None:
            password_hash = await hash_secret_async(new_password)
            await store.set_password(
                unit.conn, customer_id, password_hash=password_hash, now=unit.now, clear_lock=False
            )
            ended = await sessions.end_all_sessions(
                unit.conn,
                principal_type=CUSTOMER,
                principal_id=customer_id,
                reason="password_changed",
                keep=session_id,
                now=unit.now,
            )
        unit.audit(
            event(
                client,
                CustomerAction.PASSWORD_CHANGE,
                customer_id=customer_id,
                failure=failure,
                detail={"sessions_ended": ended},
            )
        )
        return ended, failure

    ended, failure = await uow.run(step)
    if failure is not None:
        raise failure
    return ended


# --- sessions (devices) ----------------------------------------------------------------------------------


async def list_sessions(conn: Conn, *, customer_id: UUID, now: datetime) -> list[sessions.Session]:
    """The customer's sessions live at ``now`` (their signed-in devices), most recently used first."""
    return await sessions.list_devices(conn, principal_type=CUSTOMER, principal_id=customer_id, now=now)


async def end_session(*, uow: UnitOfWork, customer_id: UUID, session_id: UUID, client: Client) -> None:
    """End one of the customer's own sessions; anybody else's (or an ended one) is a 404."""

    async def step(unit: Unit) -> IdentityError | None:
        ended = await sessions.end_owned_session(
            unit.conn, principal_type=CUSTOMER, principal_id=customer_id, session_id=session_id, now=unit.now
        )
        failure = None if ended else IdentityError("session_not_found")
        unit.audit(
            event(
                client,
                CustomerAction.SESSION_END,
                customer_id=customer_id,
                failure=failure,
                detail={"session_id": str(session_id)},
            )
        )
        return failure

    failure = await uow.run(step)
    if failure is not None:
        raise failure


# --- read models -----------------------------------------------------------------------------------------


async def two_factor_state(conn: Conn, *, customer_id: UUID) -> TwoFactorState:
    """Which second factors the customer has: TOTP, how many passkeys, how many recovery codes are left."""
    counts = await factors.factor_counts(conn, principal_type=CUSTOMER, principal_id=customer_id)
    return TwoFactorState(counts.totp, counts.passkeys, counts.unused_recovery_codes)


async def detail(
    conn: Conn, *, cipher: FieldCipher, customer_id: UUID, now: datetime | None = None
) -> CustomerDetail:
    """The whole masked picture of one account (for the customer themself or for support staff)."""
    customer = await store.get_customer_or_raise(conn, customer_id)
    return CustomerDetail(
        customer,
        await get_profile(conn, cipher=cipher, customer_id=customer_id),
        await store.get_pin_state(conn, customer_id),
        await two_factor_state(conn, customer_id=customer_id),
        await sessions.count_live_sessions(
            conn, principal_type=CUSTOMER, principal_id=customer_id, now=now or utcnow()
        ),
    )


async def audit_staff_read(*, uow: UnitOfWork, staff_id: UUID, customer_id: UUID, client: Client) -> None:
    """Record that a staff member looked a customer up (a read changes nothing, so it is recorded alone)."""
    staff = ("staff", str(staff_id))
    await record(uow, event(client, CustomerAction.READ, customer_id=customer_id, actor=staff))


async def get_customer_id_by_phone(conn: Conn, *, phone: str) -> UUID | None:
    """The id of the customer registered with ``phone``, or None (for a passkey sign-in's phone hint)."""
    found = await find_by_phone(conn, phone=phone)
    return None if found is None else found.id
