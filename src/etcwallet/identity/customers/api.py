"""The customer API: register, sign in, passwords, devices, real-name profile, payment password, freezing.

A thin router over :mod:`etcwallet.identity.customers`: it rate-limits, parses, authorizes and shapes the
answers. Routes under ``/me`` are registered before ``/{customer_id}`` so that ``me`` is never read as an id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Response, status

from etcwallet.core.deps import Client, ClientDep, ClockDep, KeysDep, PoolDep, SessionClientDep, UnitOfWorkDep
from etcwallet.core.masking import mask_phone
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Permission, Principal, require, require_customer
from etcwallet.identity.customers import schemas as s
from etcwallet.identity.customers import service
from etcwallet.identity.customers.types import (
    SELF_FREEZE_REASON,
    Customer,
    CustomerDetail,
    PinState,
    Profile,
    SignIn,
    TwoFactorState,
)
from etcwallet.identity.ratelimit import Limit, Limiter, LimiterDep
from etcwallet.identity.sessions.schemas import RefreshRequest
from etcwallet.identity.sessions.service import IssuedTokens, Session
from etcwallet.identity.sms import Purpose, SentCode, SmsDep
from etcwallet.platform.idempotency import idempotent

router = APIRouter(prefix="/api/v1/customers", tags=["customers"])

# Read at call time, so a test may lower one with monkeypatch.
SMS_PER_IP = Limit(20, timedelta(minutes=10))
AUTH_PER_IP = Limit(30, timedelta(minutes=5))
AUTH_PER_PHONE = Limit(20, timedelta(minutes=15))
REFRESH_PER_IP = Limit(60, timedelta(minutes=5))
SENSITIVE_PER_CUSTOMER = Limit(20, timedelta(minutes=15))

Me = Annotated[Principal, Depends(require_customer)]
KeyedMe = Annotated[Principal, Depends(idempotent(require_customer))]
"""The signed-in customer, on a route that takes an ``Idempotency-Key`` (docs/architecture.md lists them)."""
Freezer = Annotated[Principal, Depends(idempotent(require(Permission.CUSTOMERS_FREEZE)))]


async def _auth_limits(limiter: Limiter, client: Client, endpoint: str, phone: str | None = None) -> None:
    ip = client.ip
    keys = [(f"customer-{endpoint}:ip:{ip}", AUTH_PER_IP)]
    if phone is not None:
        keys.append((f"customer-auth:phone:{phone}", AUTH_PER_PHONE))
    await limiter.count(*keys)


def _tokens(t: IssuedTokens) -> s.TokensOut:
    return s.TokensOut.of(t)


def _sign_in_out(result: SignIn) -> s.LoginOut:
    if result.tokens is not None:
        return s.LoginOut(status="signed_in", **_tokens(result.tokens).model_dump())
    return s.LoginOut(
        status="second_factor_required",
        ticket=result.ticket,
        ticket_expires_at=result.ticket_expires_at,
        factors=list(result.factors),
    )


def _sent_out(sent: SentCode) -> s.SmsCodeSentOut:
    return s.SmsCodeSentOut(
        phone_masked=mask_phone(sent.phone),
        purpose=sent.purpose.value,
        expires_at=sent.expires_at,
        resend_after=sent.resend_after,
    )


def _customer_out(c: Customer) -> s.CustomerOut:
    return s.CustomerOut(id=c.id, phone_masked=mask_phone(c.phone), status=c.status, created_at=c.created_at)


def _state_out(c: Customer, ended: int = 0) -> s.AccountStateOut:
    return s.AccountStateOut(
        id=c.id,
        status=c.status,
        frozen_reason=c.frozen_reason,
        frozen_by=c.frozen_by_kind,
        frozen_at=c.frozen_at,
        sessions_ended=ended,
    )


def _profile_out(p: Profile) -> s.ProfileOut:
    return s.ProfileOut.of(p)


def _pin_out(p: PinState) -> s.PaymentPasswordOut:
    return s.PaymentPasswordOut(
        set=p.set, locked=p.locked, failed_attempts=p.failed_attempts, remaining_attempts=p.remaining_attempts
    )


def _session_out(x: Session, current: UUID) -> s.SessionItemOut:
    return s.SessionItemOut(
        id=x.id,
        created_at=x.created_at,
        last_seen_at=x.last_seen_at,
        expires_at=x.idle_expires_at,
        absolute_expires_at=x.absolute_expires_at,
        ip=x.ip,
        user_agent=x.user_agent,
        current=x.id == current,
        device_id=x.device_id,
    )


def _two_factor_out(t: TwoFactorState) -> s.TwoFactorOut:
    return s.TwoFactorOut(totp=t.totp, passkeys=t.passkeys, recovery_codes_left=t.recovery_codes_left)


# --- before signing in -----------------------------------------------------------------------------------


@router.post(
    "/sms-codes",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=s.SmsCodeSentOut,
    responses=problems(403, 429),
)
async def request_sms_code(
    body: s.SmsCodeRequest,
    limiter: LimiterDep,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    sms: SmsDep,
    client: ClientDep,
) -> s.SmsCodeSentOut:
    """Send a verification code; the answer is the same whether or not the number is registered."""
    await limiter.count((f"customer-sms:ip:{client.ip}", SMS_PER_IP))
    sent = await service.request_code(
        uow=uow,
        gateway=sms,
        lookup_key=keys.lookup_key,
        phone=body.phone,
        purpose=Purpose(body.purpose),
        client=client,
    )
    return _sent_out(sent)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=s.RegisterOut,
    responses=problems(409, 429),
)
async def register(
    body: s.RegisterRequest, limiter: LimiterDep, uow: UnitOfWorkDep, keys: KeysDep, client: SessionClientDep
) -> s.RegisterOut:
    """Open an account with phone, password and SMS code (purpose register); answers a signed-in session."""
    await _auth_limits(limiter, client, "register", body.phone)
    customer, tokens = await service.register(
        uow=uow,
        lookup_key=keys.lookup_key,
        phone=body.phone,
        password=body.password,
        sms_code=body.sms_code,
        client=client,
    )
    return s.RegisterOut(customer=_customer_out(customer), **_tokens(tokens).model_dump())


@router.post("/login", response_model=s.LoginOut, responses=problems(401, 403, 423, 429))
async def login(
    body: s.LoginRequest, limiter: LimiterDep, uow: UnitOfWorkDep, client: SessionClientDep
) -> s.LoginOut:
    """Sign in with phone and password; answers tokens, or a ticket when a second factor is owed."""
    await _auth_limits(limiter, client, "login", body.phone)
    result = await service.login_password(uow=uow, phone=body.phone, password=body.password, client=client)
    return _sign_in_out(result)


@router.post("/login/sms", response_model=s.LoginOut, responses=problems(401, 403, 423, 429))
async def login_sms(
    body: s.SmsLoginRequest, limiter: LimiterDep, uow: UnitOfWorkDep, keys: KeysDep, client: SessionClientDep
) -> s.LoginOut:
    """Sign in with an SMS code (purpose login) instead of the password."""
    await _auth_limits(limiter, client, "login", body.phone)
    result = await service.login_sms(
        uow=uow, lookup_key=keys.lookup_key, phone=body.phone, sms_code=body.sms_code, client=client
    )
    return _sign_in_out(result)


@router.post("/login/totp", response_model=s.LoginOut, responses=problems(401, 403, 423, 429))
async def login_totp(
    body: s.SecondFactorRequest,
    limiter: LimiterDep,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    client: SessionClientDep,
) -> s.LoginOut:
    """Finish a sign-in with the ticket and a TOTP code (or a one-time recovery code)."""
    await _auth_limits(limiter, client, "second-factor")
    tokens = await service.login_second_factor(
        uow=uow,
        cipher=keys.cipher,
        lookup_key=keys.lookup_key,
        ticket=body.ticket,
        code=body.code,
        client=client,
    )
    return s.LoginOut(status="signed_in", **_tokens(tokens).model_dump())


@router.post("/password/forgot", response_model=s.PasswordChangedOut, responses=problems(401, 403, 423, 429))
async def forgot_password(
    body: s.ForgotPasswordRequest, limiter: LimiterDep, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep
) -> s.PasswordChangedOut:
    """Set a new password with an SMS code (purpose reset_password); every session ends."""
    await _auth_limits(limiter, client, "forgot", body.phone)
    ended = await service.reset_password(
        uow=uow,
        lookup_key=keys.lookup_key,
        phone=body.phone,
        sms_code=body.sms_code,
        new_password=body.new_password,
        client=client,
    )
    return s.PasswordChangedOut(sessions_ended=ended)


@router.post("/auth/refresh", response_model=s.TokensOut, responses=problems(401, 403, 429))
async def refresh(
    body: RefreshRequest, limiter: LimiterDep, uow: UnitOfWorkDep, client: ClientDep
) -> s.TokensOut:
    """Rotate the session's tokens: the old access and refresh tokens stop working."""
    await limiter.count((f"customer-refresh:ip:{client.ip}", REFRESH_PER_IP))
    tokens = await service.refresh(uow=uow, refresh_token=body.refresh_token, client=client)
    return _tokens(tokens)


@router.post("/unfreeze", response_model=s.AccountStateOut, responses=problems(401, 403, 409, 423, 429))
async def request_unfreeze(
    body: s.SelfUnfreezeRequest, limiter: LimiterDep, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep
) -> s.AccountStateOut:
    """Unfreeze an account you froze yourself (password + SMS code, purpose ``unfreeze``).

    An account frozen by staff answers 403 ``unfreeze_needs_staff``.
    """
    await _auth_limits(limiter, client, "unfreeze", body.phone)
    customer = await service.request_self_unfreeze(
        uow=uow,
        lookup_key=keys.lookup_key,
        phone=body.phone,
        password=body.password,
        sms_code=body.sms_code,
        client=client,
    )
    return _state_out(customer)


# --- the signed-in customer ------------------------------------------------------------------------------


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(uow: UnitOfWorkDep, client: ClientDep, me: Me) -> Response:
    """End this session."""
    await service.logout(uow=uow, customer_id=me.id, session_id=me.session_id, client=client)
    return Response(status_code=204)


@router.get("/me", response_model=s.MeOut, responses=problems(404))
async def whoami(pool: PoolDep, keys: KeysDep, me: Me) -> s.MeOut:
    """The signed-in customer's account, masked, with what is set up (profile, payment password, factors)."""
    async with pool.connection() as conn:
        d = await service.detail(conn, cipher=keys.cipher, customer_id=me.id)
    base = _customer_out(d.customer)
    verified = _profile_out(d.profile) if d.profile else None
    return s.MeOut(
        **base.model_dump(),
        profile_set=d.profile is not None,
        verified_at=verified.verified_at if verified else None,
        verified_by=verified.verified_by if verified else None,
        payment_password=_pin_out(d.pin),
        two_factor=_two_factor_out(d.two_factor),
    )


@router.post(
    "/me/sms-codes",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=s.SmsCodeSentOut,
    responses=problems(404, 409, 429),
)
async def request_own_sms_code(
    body: s.OwnSmsCodeRequest,
    limiter: LimiterDep,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    sms: SmsDep,
    client: ClientDep,
    me: Me,
) -> s.SmsCodeSentOut:
    """Send a code to my own phone (payment password, profile change)."""
    await limiter.count((f"customer-sms:ip:{client.ip}", SMS_PER_IP))
    sent = await service.request_own_code(
        uow=uow,
        gateway=sms,
        lookup_key=keys.lookup_key,
        customer_id=me.id,
        purpose=Purpose(body.purpose),
        client=client,
    )
    return _sent_out(sent)


@router.post("/me/password", response_model=s.PasswordChangedOut, responses=problems(404, 423, 429))
async def change_password(
    body: s.ChangePasswordRequest, limiter: LimiterDep, uow: UnitOfWorkDep, client: ClientDep, me: KeyedMe
) -> s.PasswordChangedOut:
    """Change my password; every other session ends."""
    await limiter.count((f"customer-password:id:{me.id}", SENSITIVE_PER_CUSTOMER))
    ended = await service.change_password(
        uow=uow,
        customer_id=me.id,
        session_id=me.session_id,
        old_password=body.old_password,
        new_password=body.new_password,
        client=client,
    )
    return s.PasswordChangedOut(sessions_ended=ended)


@router.get("/me/sessions", response_model=list[s.SessionItemOut])
async def list_sessions(pool: PoolDep, clock: ClockDep, me: Me) -> list[s.SessionItemOut]:
    """My signed-in devices, most recently used first; ``current`` marks this one."""
    async with pool.connection() as conn:
        live = await service.list_sessions(conn, customer_id=me.id, now=clock())
    return [_session_out(x, me.session_id) for x in live]


@router.delete("/me/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_session(session_id: UUID, uow: UnitOfWorkDep, client: ClientDep, me: Me) -> Response:
    """Sign one of my devices out (only my own: anything else is a 404)."""
    await service.end_session(uow=uow, customer_id=me.id, session_id=session_id, client=client)
    return Response(status_code=204)


@router.get("/me/profile", response_model=s.ProfileOut, responses=problems(404))
async def read_profile(pool: PoolDep, keys: KeysDep, me: Me) -> s.ProfileOut:
    """My real-name profile, masked (404 profile_missing when none is on file)."""
    async with pool.connection() as conn:
        profile = await service.get_profile_or_raise(conn, cipher=keys.cipher, customer_id=me.id)
    return _profile_out(profile)


@router.put("/me/profile", response_model=s.ProfileOut, responses=problems(404, 409, 429))
async def set_profile(
    body: s.ProfileRequest, limiter: LimiterDep, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, me: Me
) -> s.ProfileOut:
    """Record my real name and ID (needs a fresh step-up, so that the answer cannot tell whether an ID number
    is someone else's); changing data already on file also needs an SMS code (purpose profile_change)."""
    await limiter.count((f"customer-profile:id:{me.id}", SENSITIVE_PER_CUSTOMER))
    profile = await service.set_profile(
        uow=uow,
        keys=keys,
        customer_id=me.id,
        name=body.name,
        id_type=body.id_type,
        id_number=body.id_number,
        sms_code=body.sms_code,
        stepped_up_at=me.stepped_up_at,
        client=client,
    )
    return _profile_out(profile)


@router.get("/me/payment-password", response_model=s.PaymentPasswordOut, responses=problems(404))
async def payment_password_state(pool: PoolDep, me: Me) -> s.PaymentPasswordOut:
    """Whether my payment password is set or locked, and how many tries are left."""
    async with pool.connection() as conn:
        return _pin_out(await service.pin_state(conn, customer_id=me.id))


@router.put("/me/payment-password", response_model=s.PaymentPasswordOut, responses=problems(404, 409, 429))
async def set_payment_password(
    body: s.PaymentPasswordSetRequest,
    pool: PoolDep,
    limiter: LimiterDep,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    client: ClientDep,
    me: Me,
) -> s.PaymentPasswordOut:
    """Set my 6-digit payment password the first time, with an SMS code (purpose reset_payment_password)."""
    await limiter.count((f"customer-pin:id:{me.id}", SENSITIVE_PER_CUSTOMER))
    await service.set_payment_password(
        uow=uow,
        lookup_key=keys.lookup_key,
        customer_id=me.id,
        pin=body.pin,
        sms_code=body.sms_code,
        client=client,
    )
    async with pool.connection() as conn:
        return _pin_out(await service.pin_state(conn, customer_id=me.id))


@router.post(
    "/me/payment-password/verify", response_model=s.PinVerifiedOut, responses=problems(404, 409, 423)
)
async def verify_payment_password(
    body: s.PaymentPasswordVerifyRequest, uow: UnitOfWorkDep, client: ClientDep, me: Me
) -> s.PinVerifiedOut:
    """Check my payment password (5 wrong tries lock it)."""
    await service.check_payment_password(uow=uow, customer_id=me.id, pin=body.pin, client=client)
    return s.PinVerifiedOut()


@router.post(
    "/me/payment-password/reset", response_model=s.PaymentPasswordOut, responses=problems(404, 409, 423, 429)
)
async def reset_payment_password(
    body: s.PaymentPasswordResetRequest,
    pool: PoolDep,
    limiter: LimiterDep,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    client: ClientDep,
    me: KeyedMe,
) -> s.PaymentPasswordOut:
    """Reset (and unlock) my payment password with an SMS code and the ID number of my real-name profile."""
    await limiter.count((f"customer-pin:id:{me.id}", SENSITIVE_PER_CUSTOMER))
    await service.reset_payment_password(
        uow=uow,
        keys=keys,
        customer_id=me.id,
        sms_code=body.sms_code,
        id_number=body.id_number,
        new_pin=body.new_pin,
        client=client,
    )
    async with pool.connection() as conn:
        return _pin_out(await service.pin_state(conn, customer_id=me.id))


@router.post("/me/freeze", response_model=s.AccountStateOut, responses=problems(409))
async def freeze_self(
    uow: UnitOfWorkDep, client: ClientDep, me: Me, body: s.SelfFreezeRequest | None = None
) -> s.AccountStateOut:
    """Freeze my own account (lost phone, suspected fraud): every session ends; only staff can unfreeze."""
    reason = body.reason if body is not None and body.reason else SELF_FREEZE_REASON
    customer, ended = await service.freeze(
        uow=uow,
        customer_id=me.id,
        reason=reason,
        by=("customer", me.id),
        client=client,
    )
    return _state_out(customer, ended)


# --- staff -----------------------------------------------------------------------------------------------


@router.get("/{customer_id}", response_model=s.StaffCustomerOut)
async def read_customer(
    customer_id: UUID,
    pool: PoolDep,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    client: ClientDep,
    staff: Annotated[Principal, Depends(require(Permission.CUSTOMERS_READ))],
) -> s.StaffCustomerOut:
    """Support look-up of one customer: masked data only; the look-up itself is audited."""
    async with pool.connection() as conn:
        d = await service.detail(conn, cipher=keys.cipher, customer_id=customer_id)
    await service.audit_staff_read(uow=uow, staff_id=staff.id, customer_id=customer_id, client=client)
    return staff_view(d)


def staff_view(d: CustomerDetail) -> s.StaffCustomerOut:
    """What staff see of a customer (support's look-up, an outlet's find): masked data only."""
    c = d.customer
    state = _state_out(c)
    return s.StaffCustomerOut(
        id=c.id,
        phone_masked=mask_phone(c.phone),
        status=c.status,
        frozen_reason=c.frozen_reason,
        frozen_by=state.frozen_by,
        frozen_at=c.frozen_at,
        locked_until=c.locked_until,
        created_at=c.created_at,
        profile=_profile_out(d.profile) if d.profile else None,
        payment_password=_pin_out(d.pin),
        two_factor=_two_factor_out(d.two_factor),
        live_sessions=d.live_sessions,
        claimed=c.claimed,
    )


@router.post("/{customer_id}/freeze", response_model=s.AccountStateOut, responses=problems(409))
async def freeze_customer(
    customer_id: UUID,
    body: s.StaffFreezeRequest,
    uow: UnitOfWorkDep,
    client: ClientDep,
    staff: Freezer,
) -> s.AccountStateOut:
    """Risk staff freeze an account with a reason the customer will be shown; every session ends."""
    customer, ended = await service.freeze(
        uow=uow,
        customer_id=customer_id,
        reason=body.reason,
        by=("staff", staff.id),
        client=client,
    )
    return _state_out(customer, ended)


@router.post("/{customer_id}/unfreeze", response_model=s.AccountStateOut, responses=problems(409))
async def unfreeze_customer(
    customer_id: UUID,
    uow: UnitOfWorkDep,
    client: ClientDep,
    staff: Freezer,
) -> s.AccountStateOut:
    """Risk staff lift a freeze (and any sign-in lockout)."""
    customer = await service.unfreeze(uow=uow, customer_id=customer_id, staff_id=staff.id, client=client)
    return _state_out(customer)
