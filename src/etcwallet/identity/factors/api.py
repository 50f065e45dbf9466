"""A customer's second factors (TOTP, recovery codes, passkeys), step-up, and password-less passkey login.

Routes carry their full paths: ``/api/v1/me/factors/...`` for the signed-in customer and
``/api/v1/customers/auth/passkey/...`` for signing in with a passkey.

Adding or removing a factor needs a fresh step-up: otherwise a stolen session could enroll the thief's own
authenticator and then pass every step-up with it. The first factor is therefore added after an SMS
step-up, later ones after a step-up with an existing factor.

WebAuthn relying party: for now the RP id is the request's host name and the origin is its scheme and
host (``Host`` header), so the same build works on localhost, in tests and behind a domain. This is
meant to become configuration (an RP id and a list of allowed origins) rather than trust the Host header.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response, status
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

from etcwallet.core.deps import Client, ClientDep, KeysDep, PoolDep, SessionClientDep, get_settings
from etcwallet.core.errors import DomainError, InvalidValue
from etcwallet.core.masking import mask_phone
from etcwallet.core.openapi import problems
from etcwallet.core.schemas import RequestModel
from etcwallet.identity.authz import Principal, actor_of, require_customer
from etcwallet.identity.customers import service as customers
from etcwallet.identity.customers.schemas import LoginTicket
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import passkeys, stepup, totp
from etcwallet.identity.factors.schemas import TotpEnrollmentOut
from etcwallet.identity.ratelimit import Limit, hit
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.sessions.schemas import SessionOut
from etcwallet.identity.sms import SmsDep
from etcwallet.identity.validators import validate_mobile
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor
from etcwallet.platform.idempotency import idempotent

router = APIRouter(tags=["second factors"])

ME = "/api/v1/me/factors"
LOGIN = "/api/v1/customers/auth/passkey"
PASSKEY_LOGIN_PER_IP = Limit(30, timedelta(minutes=5))
PASSKEY_LOGIN_PER_PHONE = Limit(10, timedelta(minutes=5))

Customer = Annotated[Principal, Depends(require_customer)]
KeyedCustomer = Annotated[Principal, Depends(idempotent(require_customer))]
"""The customer, on a route that takes an ``Idempotency-Key``: its answer (a secret, recovery codes, a new
passkey) is stored encrypted and answered again to a retry."""


# --- bodies ----------------------------------------------------------------------------------------------


class CodeIn(RequestModel):
    code: Annotated[str, Field(min_length=6, max_length=16)]


class RecoveryCodesOut(BaseModel):
    """Shown once: store them somewhere safe; each works once."""

    recovery_codes: list[str]


class CeremonyOut(BaseModel):
    """Pass ``public_key`` to ``navigator.credentials.create/get``; send the answer with ``challenge_id``."""

    challenge_id: UUID
    expires_at: datetime
    public_key: dict[str, Any]


class PasskeyRegisterIn(RequestModel):
    challenge_id: UUID
    credential: dict[str, Any]
    name: Annotated[str | None, Field(max_length=passkeys.NAME_MAX)] = None


class PasskeyAssertionIn(RequestModel):
    challenge_id: UUID
    credential: dict[str, Any]


class PasskeyLoginOptionsIn(RequestModel):
    phone: Annotated[str | None, Field(max_length=20)] = None


class PasskeyOut(BaseModel):
    id: UUID
    name: str
    transports: list[str]
    created_at: datetime
    last_used_at: datetime | None


class StepUpOut(BaseModel):
    accepted_factors: list[str]
    stepped_up: bool
    stepped_up_at: datetime | None
    factor: str | None
    valid_until: datetime | None


class SmsSentOut(BaseModel):
    phone: str
    expires_at: datetime
    resend_after: datetime


# --- helpers ---------------------------------------------------------------------------------------------


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


async def _refused(
    pool: AsyncConnectionPool,
    who: Actor,
    action: str,
    refused: DomainError,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record a refusal on its own: whatever the refused call would have changed rolled back."""
    target = (who.type, who.id) if who.id is not None else None
    await audit.record(pool, who.refused(action, refused.code, target=target, detail=detail))


def _passkey_out(k: passkeys.Passkey) -> PasskeyOut:
    return PasskeyOut(
        id=k.id, name=k.name, transports=k.transports, created_at=k.created_at, last_used_at=k.last_used_at
    )


def _ceremony_out(c: passkeys.Ceremony) -> CeremonyOut:
    return CeremonyOut(challenge_id=c.challenge_id, expires_at=c.expires_at, public_key=c.options)


async def _step_up_out(pool: AsyncConnectionPool, me: Principal) -> StepUpOut:
    async with pool.connection() as conn:
        st = await stepup.status(conn, me)
    return StepUpOut(
        accepted_factors=st.accepted_factors, stepped_up=st.stepped_up, stepped_up_at=st.stepped_up_at,
        factor=st.factor, valid_until=st.valid_until,
    )  # fmt: skip


async def _phone_of(pool: AsyncConnectionPool, customer_id: UUID) -> str:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT phone FROM customers WHERE id = %s", (customer_id,))
        row = await cur.fetchone()
    assert row is not None
    return str(row[0])


# --- TOTP ------------------------------------------------------------------------------------------------


@router.post(f"{ME}/totp/enroll", response_model=TotpEnrollmentOut, responses=problems(409))
async def totp_enroll(
    request: Request, pool: PoolDep, keys: KeysDep, client: ClientDep, me: KeyedCustomer
) -> TotpEnrollmentOut:
    """Start TOTP enrollment (needs a fresh step-up): the secret, otpauth URI and its QR code (SVG/PNG)."""
    await stepup.require_step_up(request, me)
    phone = await _phone_of(pool, me.id)
    who = actor_of(me, client)
    async with pool.connection() as conn, conn.transaction():
        try:
            e = await totp.enroll(conn, keys.cipher, "customer", me.id, mask_phone(phone))
        except ValueError:
            raise IdentityError("totp_already_enrolled") from None
        await audit.append(conn, who.event("factor.totp.enroll_start", target=(who.type, who.id)))
    return TotpEnrollmentOut(
        otpauth_uri=e.otpauth_uri, secret=e.secret, qr_svg=e.qr_svg, qr_png_base64=e.qr_png_base64
    )


@router.post(f"{ME}/totp/confirm", response_model=RecoveryCodesOut, responses=problems(401, 409, 423, 429))
async def totp_confirm(
    body: CodeIn, pool: PoolDep, keys: KeysDep, client: ClientDep, me: KeyedCustomer
) -> RecoveryCodesOut:
    """Confirm TOTP with its first code; answers ten one-time recovery codes (shown only now)."""
    async with pool.connection() as conn:
        await hit(conn, f"step-up:customer:{me.id}", stepup.PROOF_LIMIT)
    who, target = actor_of(me, client), ("customer", str(me.id))
    failure: IdentityError | None = None
    async with pool.connection() as conn, conn.transaction():
        if await totp.is_enrolled(conn, "customer", me.id):
            failure = IdentityError("totp_already_enrolled")
        else:
            cur = await conn.execute(
                "SELECT 1 FROM totp_factors WHERE principal_type = 'customer' AND principal_id = %s", (me.id,)
            )
            if await cur.fetchone() is None:
                failure = IdentityError("totp_not_pending")
            elif not await totp.verify(conn, keys.cipher, "customer", me.id, body.code, confirming=True):
                failure = IdentityError("totp_invalid@step_up")
            else:
                codes = await totp.issue_recovery_codes(conn, keys.lookup_key, "customer", me.id)
                await sessions.mark_stepped_up(conn, me.session_id, "totp")
        # a refusal rolls nothing back here: it is appended in this transaction, as a success is
        event = (
            who.event("factor.totp.enroll", target=target)
            if failure is None
            else who.refused("factor.totp.enroll", failure.code, target=target)
        )
        await audit.append(conn, event)
    if failure is not None:
        raise failure
    return RecoveryCodesOut(recovery_codes=codes)


@router.delete(f"{ME}/totp", status_code=status.HTTP_204_NO_CONTENT, responses=problems(409))
async def totp_remove(request: Request, pool: PoolDep, client: ClientDep, me: Customer) -> Response:
    """Turn TOTP off (needs a fresh step-up); its recovery codes go with it."""
    await stepup.require_step_up(request, me)
    who = actor_of(me, client)
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM totp_factors WHERE principal_type = 'customer' AND principal_id = %s", (me.id,)
        )
        await conn.execute(
            "DELETE FROM recovery_codes WHERE principal_type = 'customer' AND principal_id = %s", (me.id,)
        )
        if cur.rowcount == 0:
            raise IdentityError("totp_not_enrolled")
        await audit.append(conn, who.event("factor.totp.remove", target=(who.type, who.id)))
    return Response(status_code=204)


@router.post(f"{ME}/recovery-codes/regenerate", response_model=RecoveryCodesOut, responses=problems(409))
async def regenerate_recovery_codes(
    request: Request, pool: PoolDep, keys: KeysDep, client: ClientDep, me: KeyedCustomer
) -> RecoveryCodesOut:
    """Replace the recovery codes with ten new ones (needs a fresh step-up); the old ones stop working."""
    await stepup.require_step_up(request, me)
    who = actor_of(me, client)
    async with pool.connection() as conn, conn.transaction():
        if not await totp.is_enrolled(conn, "customer", me.id):
            raise IdentityError("totp_not_enrolled")
        codes = await totp.issue_recovery_codes(conn, keys.lookup_key, "customer", me.id)
        await audit.append(conn, who.event("factor.recovery_codes.regenerate", target=(who.type, who.id)))
    return RecoveryCodesOut(recovery_codes=codes)


# --- passkeys --------------------------------------------------------------------------------------------


@router.post(f"{ME}/passkeys/register/options", response_model=CeremonyOut, responses=problems(409, 503))
async def passkey_register_options(request: Request, pool: PoolDep, me: Customer) -> CeremonyOut:
    """Options to create a passkey (needs a fresh step-up); answer within five minutes."""
    await stepup.require_step_up(request, me)
    rp_id, _ = relying_party(request)
    phone = mask_phone(await _phone_of(pool, me.id))
    async with pool.connection() as conn, conn.transaction():
        ceremony = await passkeys.registration_options(
            conn, principal_type="customer", principal_id=me.id, user_name=phone, display_name=phone,
            rp_id=rp_id,
        )  # fmt: skip
    return _ceremony_out(ceremony)


@router.post(
    f"{ME}/passkeys/register/verify",
    response_model=PasskeyOut,
    status_code=status.HTTP_201_CREATED,
    responses=problems(400, 409, 503),
)
async def passkey_register_verify(
    body: PasskeyRegisterIn, request: Request, pool: PoolDep, client: ClientDep, me: KeyedCustomer
) -> PasskeyOut:
    """Store the passkey the authenticator created for the options' challenge."""
    rp_id, origin = relying_party(request)
    who = actor_of(me, client)
    try:
        key = await passkeys.verify_registration(
            pool, principal_type="customer", principal_id=me.id,
            challenge_id=body.challenge_id, credential=body.credential, name=body.name, rp_id=rp_id, origin=origin,
            actor=who,
        )  # fmt: skip
    except DomainError as exc:
        detail = {"credential": passkeys.fingerprint(body.credential)}
        await _refused(pool, who, "factor.passkey.register", exc, detail)
        raise
    return _passkey_out(key)


@router.get(f"{ME}/passkeys", response_model=list[PasskeyOut])
async def passkey_list(pool: PoolDep, me: Customer) -> list[PasskeyOut]:
    """The customer's passkeys."""
    async with pool.connection() as conn:
        return [_passkey_out(k) for k in await passkeys.list_passkeys(conn, "customer", me.id)]


@router.delete(f"{ME}/passkeys/{{passkey_id}}", status_code=status.HTTP_204_NO_CONTENT)
async def passkey_delete(
    passkey_id: UUID, request: Request, pool: PoolDep, client: ClientDep, me: Customer
) -> Response:
    """Remove one of the customer's own passkeys (needs a fresh step-up); any other id is a 404."""
    await stepup.require_step_up(request, me)
    who = actor_of(me, client)
    async with pool.connection() as conn, conn.transaction():
        key = await passkeys.delete_passkey(conn, "customer", me.id, passkey_id)
        detail = {"passkey_id": str(key.id), "name": key.name}
        await audit.append(conn, who.event("factor.passkey.remove", target=(who.type, who.id), detail=detail))
    return Response(status_code=204)


# --- step-up ---------------------------------------------------------------------------------------------


@router.get(f"{ME}/step-up", response_model=StepUpOut)
async def step_up_status(pool: PoolDep, me: Customer) -> StepUpOut:
    """Which factors the customer can prove, and whether this session is stepped up and until when."""
    return await _step_up_out(pool, me)


@router.post(f"{ME}/step-up/totp", response_model=StepUpOut, responses=problems(401, 409, 423, 429))
async def step_up_totp(
    body: CodeIn, request: Request, pool: PoolDep, keys: KeysDep, client: ClientDep, me: Customer
) -> StepUpOut:
    """Step up with an authenticator (TOTP) code."""
    who = actor_of(me, client)
    try:
        await stepup.prove_totp(pool, keys.cipher, me, body.code, actor=who)
    except DomainError as exc:
        await _refused(pool, who, "step_up.totp", exc)
        raise
    return await _step_up_out(pool, me)


@router.post(f"{ME}/step-up/recovery", response_model=StepUpOut, responses=problems(401, 409, 423, 429))
async def step_up_recovery(
    body: CodeIn, request: Request, pool: PoolDep, keys: KeysDep, client: ClientDep, me: Customer
) -> StepUpOut:
    """Step up with a one-time recovery code (it is spent)."""
    who = actor_of(me, client)
    try:
        await stepup.prove_recovery_code(pool, keys.lookup_key, me, body.code, actor=who)
    except DomainError as exc:
        await _refused(pool, who, "step_up.recovery_code", exc)
        raise
    return await _step_up_out(pool, me)


@router.post(f"{ME}/step-up/passkey/options", response_model=CeremonyOut, responses=problems(409, 503))
async def step_up_passkey_options(request: Request, pool: PoolDep, me: Customer) -> CeremonyOut:
    """Options for a step-up assertion with one of the customer's passkeys."""
    rp_id, _ = relying_party(request)
    async with pool.connection() as conn, conn.transaction():
        ceremony = await stepup.passkey_options(conn, me, rp_id)
    return _ceremony_out(ceremony)


@router.post(
    f"{ME}/step-up/passkey/verify", response_model=StepUpOut, responses=problems(400, 401, 409, 423, 429, 503)
)
async def step_up_passkey_verify(
    body: PasskeyAssertionIn, request: Request, pool: PoolDep, client: ClientDep, me: Customer
) -> StepUpOut:
    """Step up with the passkey assertion answering the step-up options."""
    rp_id, origin = relying_party(request)
    who = actor_of(me, client)
    try:
        await stepup.prove_passkey(
            pool, me, challenge_id=body.challenge_id, credential=body.credential,
            rp_id=rp_id, origin=origin, actor=who,
        )  # fmt: skip
    except DomainError as exc:
        await _refused(pool, who, "step_up.passkey", exc)
        raise
    return await _step_up_out(pool, me)


@router.post(
    f"{ME}/step-up/sms/send",
    response_model=SmsSentOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=problems(409, 429),
)
async def step_up_sms_send(
    request: Request, pool: PoolDep, keys: KeysDep, sms: SmsDep, client: ClientDep, me: Customer
) -> SmsSentOut:
    """Send a step-up code to the customer's phone (only when no TOTP or passkey is enrolled)."""
    who = actor_of(me, client)
    try:
        sent = await stepup.send_sms(pool, sms, keys.lookup_key, me, actor=who)
    except DomainError as exc:
        await _refused(pool, who, "step_up.sms.send", exc)
        raise
    return SmsSentOut(
        phone=mask_phone(sent.phone), expires_at=sent.expires_at, resend_after=sent.resend_after
    )


@router.post(f"{ME}/step-up/sms/verify", response_model=StepUpOut, responses=problems(401, 409, 423, 429))
async def step_up_sms_verify(
    body: CodeIn, request: Request, pool: PoolDep, keys: KeysDep, sms: SmsDep, client: ClientDep, me: Customer
) -> StepUpOut:
    """Step up with the SMS code just sent."""
    who = actor_of(me, client)
    try:
        await stepup.prove_sms(pool, keys.lookup_key, me, body.code, actor=who)
    except DomainError as exc:
        await _refused(pool, who, "step_up.sms", exc)
        raise
    return await _step_up_out(pool, me)


# --- a passkey as the second step of a password sign-in -------------------------------------------------


class TicketIn(RequestModel):
    ticket: LoginTicket


class TicketAssertionIn(PasskeyAssertionIn):
    ticket: LoginTicket


async def _second_factor_attempt(pool: AsyncConnectionPool, client: Client) -> None:
    """Count a passkey second-step call against its IP's limit."""
    async with pool.connection() as conn:
        await hit(conn, f"customer-second-factor:ip:{client.ip}", PASSKEY_LOGIN_PER_IP)


@router.post(
    "/api/v1/customers/login/passkey/options",
    response_model=CeremonyOut,
    responses=problems(401, 403, 409, 429, 503),
)
async def login_passkey_options(
    body: TicketIn, request: Request, pool: PoolDep, client: ClientDep
) -> CeremonyOut:
    """Options to finish a password sign-in (its ``ticket``) with one of the customer's passkeys."""
    await _second_factor_attempt(pool, client)
    rp_id, _ = relying_party(request)
    return _ceremony_out(await customers.passkey_second_factor_options(pool, ticket=body.ticket, rp_id=rp_id))


@router.post(
    "/api/v1/customers/login/passkey",
    response_model=SessionOut,
    responses=problems(400, 401, 403, 409, 423, 429, 503),
)
async def login_passkey(
    body: TicketAssertionIn, request: Request, pool: PoolDep, client: SessionClientDep
) -> SessionOut:
    """Finish a password sign-in with the passkey assertion answering those options: the session's tokens."""
    await _second_factor_attempt(pool, client)
    rp_id, origin = relying_party(request)
    tokens = await customers.login_second_factor_passkey(
        pool, ticket=body.ticket, challenge_id=body.challenge_id,
        credential=body.credential, rp_id=rp_id, origin=origin, client=client,
    )  # fmt: skip
    return SessionOut.of(tokens)


# --- password-less sign-in -------------------------------------------------------------------------------


@router.post(f"{LOGIN}/options", response_model=CeremonyOut, responses=problems(429, 503))
async def passkey_login_options(
    request: Request,
    pool: PoolDep,
    keys: KeysDep,
    client: ClientDep,
    body: PasskeyLoginOptionsIn | None = None,
) -> CeremonyOut:
    """Options to sign in with a passkey: any of this device's (no body), or a phone's (``phone`` hint)."""
    ip = client.ip
    rp_id, _ = relying_party(request)
    phone: str | None = None
    if body is not None and body.phone:
        try:
            phone = validate_mobile(body.phone)
        except InvalidValue as exc:
            raise exc.at("phone") from None
    async with pool.connection() as conn:
        await hit(conn, f"passkey-login:ip:{ip}", PASSKEY_LOGIN_PER_IP)
        if phone:
            await hit(conn, f"passkey-login:phone:{phone}", PASSKEY_LOGIN_PER_PHONE)
    principal: tuple[str, UUID] | None = None
    decoys: list[bytes] = []
    async with pool.connection() as conn, conn.transaction():
        if phone:
            cur = await conn.execute("SELECT id FROM customers WHERE phone = %s", (phone,))
            row = await cur.fetchone()
            principal = ("customer", row[0]) if row else None
            decoys = [passkeys.decoy_credential_id(keys.lookup_key, phone)]
        ceremony = await passkeys.authentication_options(
            conn, purpose="login", rp_id=rp_id, principal=principal, decoy_ids=decoys
        )
    return _ceremony_out(ceremony)


@router.post(f"{LOGIN}/verify", response_model=SessionOut, responses=problems(400, 401, 403, 423, 429, 503))
async def passkey_login_verify(
    body: PasskeyAssertionIn, request: Request, pool: PoolDep, client: SessionClientDep
) -> SessionOut:
    """Sign in with the passkey assertion answering the login options; answers the session's tokens."""
    who = actor_of(None, client)
    rp_id, origin = relying_party(request)
    async with pool.connection() as conn:
        await hit(conn, f"passkey-login:ip:{who.ip}", PASSKEY_LOGIN_PER_IP)
    detail = {"credential": passkeys.fingerprint(body.credential)}
    try:
        done = await passkeys.login(
            pool, challenge_id=body.challenge_id, credential=body.credential, rp_id=rp_id, origin=origin,
            client=client,
        )  # fmt: skip
    except DomainError as exc:
        await _refused(pool, who, "customer.login.passkey", exc, detail)
        raise
    except passkeys.LoginRefused as refused:
        customer = Actor("customer", str(refused.customer_id), who.ip, who.user_agent)
        await _refused(pool, customer, "customer.login.passkey", refused.error, detail)
        raise refused.error from None
    return SessionOut.of(done.tokens)
