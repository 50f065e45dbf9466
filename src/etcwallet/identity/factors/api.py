"""A customer's second factors (TOTP, recovery codes, passkeys), step-up (customers' and staff's), and
password-less passkey login: parse, one gate, call :mod:`etcwallet.identity.factors.service`, shape the
answer (no SQL, transaction or audit here).

Routes carry their full paths: ``/api/v1/me/factors/...`` for the signed-in customer,
``/api/v1/staff/me/step-up/...`` for a signed-in staff member, and ``/api/v1/customers/auth/passkey/...``
for signing in with a passkey.

Adding or removing a factor needs a fresh step-up: otherwise a stolen session could enroll the thief's own
authenticator and then pass every step-up with it. The first factor is therefore added after an SMS
step-up, later ones after a step-up with an existing factor.

WebAuthn relying party: for now the RP id is the request's host name and the origin is its scheme and
host (``Host`` header), so the same build works on localhost, in tests and behind a domain. This is
meant to become configuration (an RP id and a list of allowed origins) rather than trust the Host header.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response, status
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.deps import (
    Client,
    ClientDep,
    KeysDep,
    PoolDep,
    SessionClientDep,
    UnitOfWorkDep,
    get_settings,
)
from etcwallet.core.errors import InvalidValue
from etcwallet.core.masking import mask_phone
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Principal, actor_of, require_customer, require_staff
from etcwallet.identity.customers import service as customers
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import service, stepup
from etcwallet.identity.factors.schemas import (
    CeremonyOut,
    CodeIn,
    PasskeyAssertionIn,
    PasskeyLoginOptionsIn,
    PasskeyOut,
    PasskeyRegisterIn,
    RecoveryCodesOut,
    SmsSentOut,
    StepUpOut,
    TicketAssertionIn,
    TicketIn,
    TotpEnrollmentOut,
)
from etcwallet.identity.ratelimit import Limit, LimiterDep
from etcwallet.identity.sessions.schemas import SessionOut
from etcwallet.identity.sms import SmsDep
from etcwallet.identity.validators import validate_mobile
from etcwallet.platform.idempotency import idempotent

__all__ = [
    "CeremonyOut",
    "CodeIn",
    "PasskeyAssertionIn",
    "PasskeyLoginOptionsIn",
    "PasskeyOut",
    "PasskeyRegisterIn",
    "RecoveryCodesOut",
    "SmsSentOut",
    "StepUpOut",
    "TicketAssertionIn",
    "TicketIn",
    "relying_party",
    "router",
]

router = APIRouter(tags=["second factors"])

ME = "/api/v1/me/factors"
STAFF_ME = "/api/v1/staff/me/step-up"
LOGIN = "/api/v1/customers/auth/passkey"
PASSKEY_LOGIN_PER_IP = Limit(30, timedelta(minutes=5))
PASSKEY_LOGIN_PER_PHONE = Limit(10, timedelta(minutes=5))

Customer = Annotated[Principal, Depends(require_customer)]
Staff = Annotated[Principal, Depends(require_staff)]
KeyedCustomer = Annotated[Principal, Depends(idempotent(require_customer))]
"""The customer, on a route that takes an ``Idempotency-Key``: its answer (a secret, recovery codes, a new
passkey) is stored encrypted and answered again to a retry."""


def relying_party(request: Request) -> tuple[str, str]:
    """(RP id, origin) for WebAuthn: from configuration, or in development from the request's own host.

    Production must configure ``ETCW_WEBAUTHN_RP_ID`` and ``ETCW_WEBAUTHN_ORIGIN``: a Host header is the
    client's to choose, and a passkey is bound to the RP id it was registered for.
    """
    settings = get_settings(request)
    if settings.webauthn_rp_id and settings.webauthn_origin:
        return settings.webauthn_rp_id, settings.webauthn_origin
    if settings.is_production:
        raise IdentityError("passkeys_not_configured")
    host = request.url.hostname or "localhost"
    return host, f"{request.url.scheme}://{request.url.netloc}"


async def _step_up_out(pool: AsyncConnectionPool, uow: UnitOfWorkDep, me: Principal) -> StepUpOut:
    async with pool.connection() as conn:
        return StepUpOut.of(await service.step_up_status(conn, principal=me, now=uow.clock()))


async def _masked_phone(pool: AsyncConnectionPool, customer_id: UUID) -> str:
    async with pool.connection() as conn:
        return mask_phone((await customers.get_customer(conn, customer_id=customer_id)).phone)


# --- TOTP ------------------------------------------------------------------------------------------------


@router.post(f"{ME}/totp/enroll", response_model=TotpEnrollmentOut, responses=problems(409))
async def totp_enroll(
    request: Request, pool: PoolDep, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, me: KeyedCustomer
) -> TotpEnrollmentOut:
    """Start TOTP enrollment (needs a fresh step-up): the secret, otpauth URI and its QR code (SVG/PNG)."""
    await stepup.require_step_up(request, me)
    enrollment = await service.start_totp_enrollment(
        uow,
        cipher=keys.cipher,
        principal=me,
        account_name=await _masked_phone(pool, me.id),
        actor=actor_of(me, client),
    )
    return TotpEnrollmentOut.of(enrollment)


@router.post(f"{ME}/totp/confirm", response_model=RecoveryCodesOut, responses=problems(401, 409, 423, 429))
async def totp_confirm(
    body: CodeIn, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, me: KeyedCustomer
) -> RecoveryCodesOut:
    """Confirm TOTP with its first code; answers ten one-time recovery codes (shown only now)."""
    codes = await service.confirm_totp(
        uow,
        cipher=keys.cipher,
        lookup_key=keys.lookup_key,
        principal=me,
        code=body.code,
        actor=actor_of(me, client),
    )
    return RecoveryCodesOut(recovery_codes=codes)


@router.delete(f"{ME}/totp", status_code=status.HTTP_204_NO_CONTENT, responses=problems(409))
async def totp_remove(request: Request, uow: UnitOfWorkDep, client: ClientDep, me: Customer) -> Response:
    """Turn TOTP off (needs a fresh step-up); its recovery codes go with it."""
    await stepup.require_step_up(request, me)
    await service.remove_totp(uow, principal=me, actor=actor_of(me, client))
    return Response(status_code=204)


@router.post(f"{ME}/recovery-codes/regenerate", response_model=RecoveryCodesOut, responses=problems(409))
async def regenerate_recovery_codes(
    request: Request, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, me: KeyedCustomer
) -> RecoveryCodesOut:
    """Replace the recovery codes with ten new ones (needs a fresh step-up); the old ones stop working."""
    await stepup.require_step_up(request, me)
    codes = await service.regenerate_recovery_codes(
        uow, lookup_key=keys.lookup_key, principal=me, actor=actor_of(me, client)
    )
    return RecoveryCodesOut(recovery_codes=codes)


# --- passkeys --------------------------------------------------------------------------------------------


@router.post(f"{ME}/passkeys/register/options", response_model=CeremonyOut, responses=problems(409, 503))
async def passkey_register_options(
    request: Request, pool: PoolDep, uow: UnitOfWorkDep, me: Customer
) -> CeremonyOut:
    """Options to create a passkey (needs a fresh step-up); answer within five minutes."""
    await stepup.require_step_up(request, me)
    rp_id, _ = relying_party(request)
    phone = await _masked_phone(pool, me.id)
    return CeremonyOut.of(
        await service.passkey_registration_options(uow, principal=me, user_name=phone, rp_id=rp_id)
    )


@router.post(
    f"{ME}/passkeys/register/verify",
    response_model=PasskeyOut,
    status_code=status.HTTP_201_CREATED,
    responses=problems(400, 409, 503),
)
async def passkey_register_verify(
    body: PasskeyRegisterIn, request: Request, uow: UnitOfWorkDep, client: ClientDep, me: KeyedCustomer
) -> PasskeyOut:
    """Store the passkey the authenticator created for the options' challenge."""
    rp_id, origin = relying_party(request)
    key = await service.register_passkey(
        uow,
        principal=me,
        challenge_id=body.challenge_id,
        credential=body.credential,
        name=body.name,
        rp_id=rp_id,
        origin=origin,
        actor=actor_of(me, client),
    )
    return PasskeyOut.of(key)


@router.get(f"{ME}/passkeys", response_model=list[PasskeyOut])
async def passkey_list(pool: PoolDep, me: Customer) -> list[PasskeyOut]:
    """The customer's passkeys."""
    async with pool.connection() as conn:
        return [PasskeyOut.of(k) for k in await service.list_passkeys(conn, principal=me)]


@router.delete(f"{ME}/passkeys/{{passkey_id}}", status_code=status.HTTP_204_NO_CONTENT)
async def passkey_delete(
    passkey_id: UUID, request: Request, uow: UnitOfWorkDep, client: ClientDep, me: Customer
) -> Response:
    """Remove one of the customer's own passkeys (needs a fresh step-up); any other id is a 404."""
    await stepup.require_step_up(request, me)
    await service.remove_passkey(uow, principal=me, passkey_id=passkey_id, actor=actor_of(me, client))
    return Response(status_code=204)


# --- step-up ---------------------------------------------------------------------------------------------


@router.get(f"{ME}/step-up", response_model=StepUpOut)
async def step_up_status(pool: PoolDep, uow: UnitOfWorkDep, me: Customer) -> StepUpOut:
    """Which factors the customer can prove, and whether this session is stepped up and until when."""
    return await _step_up_out(pool, uow, me)


@router.post(f"{ME}/step-up/totp", response_model=StepUpOut, responses=problems(401, 409, 423, 429))
async def step_up_totp(
    body: CodeIn, pool: PoolDep, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, me: Customer
) -> StepUpOut:
    """Step up with an authenticator (TOTP) code."""
    await service.prove_totp(
        uow, cipher=keys.cipher, principal=me, code=body.code, actor=actor_of(me, client)
    )
    return await _step_up_out(pool, uow, me)


@router.post(f"{ME}/step-up/recovery", response_model=StepUpOut, responses=problems(401, 409, 423, 429))
async def step_up_recovery(
    body: CodeIn, pool: PoolDep, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, me: Customer
) -> StepUpOut:
    """Step up with a one-time recovery code (it is spent)."""
    await service.prove_recovery_code(
        uow, lookup_key=keys.lookup_key, principal=me, code=body.code, actor=actor_of(me, client)
    )
    return await _step_up_out(pool, uow, me)


@router.post(f"{ME}/step-up/passkey/options", response_model=CeremonyOut, responses=problems(409, 503))
async def step_up_passkey_options(request: Request, uow: UnitOfWorkDep, me: Customer) -> CeremonyOut:
    """Options for a step-up assertion with one of the customer's passkeys."""
    rp_id, _ = relying_party(request)
    return CeremonyOut.of(await service.passkey_options(uow, principal=me, rp_id=rp_id))


@router.post(
    f"{ME}/step-up/passkey/verify", response_model=StepUpOut, responses=problems(400, 401, 409, 423, 429, 503)
)
async def step_up_passkey_verify(
    body: PasskeyAssertionIn,
    request: Request,
    pool: PoolDep,
    uow: UnitOfWorkDep,
    client: ClientDep,
    me: Customer,
) -> StepUpOut:
    """Step up with the passkey assertion answering the step-up options."""
    rp_id, origin = relying_party(request)
    await service.prove_passkey(
        uow,
        principal=me,
        challenge_id=body.challenge_id,
        credential=body.credential,
        rp_id=rp_id,
        origin=origin,
        actor=actor_of(me, client),
    )
    return await _step_up_out(pool, uow, me)


@router.post(
    f"{ME}/step-up/sms/send",
    response_model=SmsSentOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(409, 429),
)
async def step_up_sms_send(
    uow: UnitOfWorkDep, keys: KeysDep, sms: SmsDep, client: ClientDep, me: Customer
) -> SmsSentOut:
    """Send a step-up code to the customer's phone (only when no TOTP or passkey is enrolled)."""
    sent = await service.send_sms(
        uow, gateway=sms, lookup_key=keys.lookup_key, principal=me, actor=actor_of(me, client)
    )
    return SmsSentOut(
        phone=mask_phone(sent.phone), expires_at=sent.expires_at, resend_after=sent.resend_after
    )


@router.post(f"{ME}/step-up/sms/verify", response_model=StepUpOut, responses=problems(401, 409, 423, 429))
async def step_up_sms_verify(
    body: CodeIn, pool: PoolDep, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, me: Customer
) -> StepUpOut:
    """Step up with the SMS code just sent."""
    await service.prove_sms(
        uow, lookup_key=keys.lookup_key, principal=me, code=body.code, actor=actor_of(me, client)
    )
    return await _step_up_out(pool, uow, me)


# --- staff step-up ---------------------------------------------------------------------------------------


@router.get(STAFF_ME, response_model=StepUpOut)
async def staff_step_up_status(pool: PoolDep, uow: UnitOfWorkDep, me: Staff) -> StepUpOut:
    """Whether this staff session is stepped up and until when (the answer a customer gets)."""
    return await _step_up_out(pool, uow, me)


@router.post(f"{STAFF_ME}/totp", response_model=StepUpOut, responses=problems(401, 409, 422, 429))
async def staff_step_up_totp(
    body: CodeIn, pool: PoolDep, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep, me: Staff
) -> StepUpOut:
    """Step up with a fresh TOTP code before a sensitive action; a code already used (for sign-in, say) is
    refused."""
    await service.prove_totp(
        uow, cipher=keys.cipher, principal=me, code=body.code, actor=actor_of(me, client)
    )
    return await _step_up_out(pool, uow, me)


# --- a passkey as the second step of a password sign-in -------------------------------------------------


def _second_factor_attempt(client: Client) -> tuple[str, Limit]:
    """The limit a passkey second-step call counts against: its IP's."""
    return (f"customer-second-factor:ip:{client.ip}", PASSKEY_LOGIN_PER_IP)


@router.post(
    "/api/v1/customers/login/passkey/options",
    response_model=CeremonyOut,
    responses=problems(401, 403, 409, 429, 503),
)
async def login_passkey_options(
    body: TicketIn, request: Request, pool: PoolDep, limiter: LimiterDep, client: ClientDep
) -> CeremonyOut:
    """Options to finish a password sign-in (its ``ticket``) with one of the customer's passkeys."""
    await limiter.count(_second_factor_attempt(client))
    rp_id, _ = relying_party(request)
    return CeremonyOut.of(
        await customers.passkey_second_factor_options(pool, ticket=body.ticket, rp_id=rp_id)
    )


@router.post(
    "/api/v1/customers/login/passkey",
    response_model=SessionOut,
    responses=problems(400, 401, 403, 409, 423, 429, 503),
)
async def login_passkey(
    body: TicketAssertionIn,
    request: Request,
    limiter: LimiterDep,
    uow: UnitOfWorkDep,
    client: SessionClientDep,
) -> SessionOut:
    """Finish a password sign-in with the passkey assertion answering those options: the session's tokens."""
    await limiter.count(_second_factor_attempt(client))
    rp_id, origin = relying_party(request)
    tokens = await customers.login_second_factor_passkey(
        uow=uow,
        ticket=body.ticket,
        challenge_id=body.challenge_id,
        credential=body.credential,
        rp_id=rp_id,
        origin=origin,
        client=client,
    )
    return SessionOut.of(tokens)


# --- password-less sign-in -------------------------------------------------------------------------------


@router.post(f"{LOGIN}/options", response_model=CeremonyOut, responses=problems(429, 503))
async def passkey_login_options(
    request: Request,
    limiter: LimiterDep,
    uow: UnitOfWorkDep,
    keys: KeysDep,
    client: ClientDep,
    body: PasskeyLoginOptionsIn | None = None,
) -> CeremonyOut:
    """Options to sign in with a passkey: any of this device's (no body), or a phone's (``phone`` hint)."""
    rp_id, _ = relying_party(request)
    phone: str | None = None
    if body is not None and body.phone:
        try:
            phone = validate_mobile(body.phone)
        except InvalidValue as exc:
            raise exc.at("phone") from None
    limits = [(f"passkey-login:ip:{client.ip}", PASSKEY_LOGIN_PER_IP)]
    if phone:
        limits.append((f"passkey-login:phone:{phone}", PASSKEY_LOGIN_PER_PHONE))
    await limiter.count(*limits)
    ceremony = await service.passkey_login_options(uow, lookup_key=keys.lookup_key, rp_id=rp_id, phone=phone)
    return CeremonyOut.of(ceremony)


@router.post(f"{LOGIN}/verify", response_model=SessionOut, responses=problems(400, 401, 403, 423, 429, 503))
async def passkey_login_verify(
    body: PasskeyAssertionIn,
    request: Request,
    limiter: LimiterDep,
    uow: UnitOfWorkDep,
    client: SessionClientDep,
) -> SessionOut:
    """Sign in with the passkey assertion answering the login options; answers the session's tokens."""
    rp_id, origin = relying_party(request)
    await limiter.count((f"passkey-login:ip:{client.ip}", PASSKEY_LOGIN_PER_IP))
    done = await service.passkey_login(
        uow,
        challenge_id=body.challenge_id,
        credential=body.credential,
        rp_id=rp_id,
        origin=origin,
        client=client,
    )
    return SessionOut.of(done.tokens)
