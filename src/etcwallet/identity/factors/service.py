"""Second factors and step-up, one keyword-only function per use case, shared by customers and staff.

Every change runs as a step of the unit of work (``await uow.run(step)``) and is audited in the change's
own transaction (``unit.audit``); a refusal the route should leave on record is audited on its own
(``refusal=``), after the step rolled back. Time is the unit's clock (``unit.now``) or the ``now`` the
caller passes from it, so the step-up window is tested with an injected clock.

A proof attempt first counts against the principal's limit on a connection of its own, so the attempt
counts even when the proof is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.core.crypto import FieldCipher
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError
from etcwallet.identity import sms
from etcwallet.identity.authz import Principal, actor_of
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import passkeys, store, totp
from etcwallet.identity.factors.types import (
    STEP_UP_WINDOW,
    Enrollment,
    Factor,
    FactorAction,
    FactorCounts,
    SessionStepUp,
    StepUpStatus,
    is_fresh,
)
from etcwallet.identity.ratelimit import Limit, hit
from etcwallet.identity.sessions import service as sessions
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor, AuditEvent
from etcwallet.platform.unit import Unit, UnitOfWork

PROOF_LIMIT = Limit(10, timedelta(minutes=5))  # proof attempts per principal
CUSTOMER_BASE = "/api/v1/me/factors/step-up"
STAFF_BASE = "/api/v1/staff/me/step-up"

# Where each kind of principal proves each factor (method, path).
CUSTOMER_ENDPOINTS: dict[str, list[dict[str, str]]] = {
    "totp": [{"method": "POST", "path": f"{CUSTOMER_BASE}/totp"}],
    "passkey": [
        {"method": "POST", "path": f"{CUSTOMER_BASE}/passkey/options"},
        {"method": "POST", "path": f"{CUSTOMER_BASE}/passkey/verify"},
    ],
    "recovery_code": [{"method": "POST", "path": f"{CUSTOMER_BASE}/recovery"}],
    "sms": [
        {"method": "POST", "path": f"{CUSTOMER_BASE}/sms/send"},
        {"method": "POST", "path": f"{CUSTOMER_BASE}/sms/verify"},
    ],
}
STAFF_ENDPOINTS: dict[str, list[dict[str, str]]] = {
    "totp": [{"method": "POST", "path": f"{STAFF_BASE}/totp"}]
}
"""Staff step up with the TOTP they sign in with: the one factor every active staff member has."""


def _target(principal: Principal) -> tuple[str, str]:
    return principal.kind, str(principal.id)


def _refusal(
    actor: Actor, action: str, detail: dict[str, Any] | None = None
) -> Callable[[DomainError], AuditEvent]:
    """The audit entry of a refused ``action`` by ``actor`` (on the actor itself), for ``uow.run(refusal=)``."""
    target = (actor.type, actor.id) if actor.id is not None else None
    return lambda error: actor.refused(action, error.code, target=target, detail=detail)


# --- step-up: which factors, and whether fresh -------------------------------------------------------------


async def accepted_factors(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID
) -> list[str]:
    """The factors the principal can prove: ``totp``/``passkey`` (+ ``recovery_code``), else (customers) ``sms``."""
    on_file = await store.factors_on_file(conn, principal_type=principal_type, principal_id=principal_id)
    factors: list[str] = []
    if on_file.totp:
        factors.append("totp")
    if on_file.passkey:
        factors.append("passkey")
    if on_file.totp and on_file.unused_recovery_codes:
        factors.append("recovery_code")
    if not factors and principal_type == "customer":
        factors.append("sms")
    return factors


async def factor_counts(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID
) -> FactorCounts:
    """How many second factors the principal has, for another sub-package's read model (a customer's detail)."""
    return await store.count_factors(conn, principal_type=principal_type, principal_id=principal_id)


async def forget_principal(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> None:
    """Delete every second factor of the principal (TOTP, recovery codes, passkeys), in the caller's
    transaction: an anonymized customer keeps none."""
    await store.delete_factors(conn, principal_type=principal_type, principal_id=principal_id)


def endpoints_of(kind: str) -> dict[str, list[dict[str, str]]]:
    """Where a principal of ``kind`` proves each factor it may use for step-up."""
    return CUSTOMER_ENDPOINTS if kind == "customer" else STAFF_ENDPOINTS


def status_path(kind: str) -> str:
    """Where a principal of ``kind`` reads its step-up status."""
    return CUSTOMER_BASE if kind == "customer" else STAFF_BASE


async def usable_factors(conn: AsyncConnection[Any], *, principal: Principal) -> list[str]:
    """The factors this principal can prove here: a customer's accepted ones, staff's with a staff route."""
    factors = await accepted_factors(conn, principal_type=principal.kind, principal_id=principal.id)
    if principal.kind == "customer":
        return factors
    return [f for f in factors if f in STAFF_ENDPOINTS]


def step_up_required(kind: str, factors: list[str], max_age: timedelta = STEP_UP_WINDOW) -> IdentityError:
    """The 403 telling a principal of ``kind`` which factors it accepts and where to prove them."""
    endpoints = endpoints_of(kind)
    return IdentityError(
        "step_up_required",
        accepted_factors=factors,
        max_age_seconds=int(max_age.total_seconds()),
        step_up={
            "status": status_path(kind),
            "endpoints": {f: endpoints[f] for f in factors if f in endpoints},
        },
    )


async def step_up_status(
    conn: AsyncConnection[Any], *, principal: Principal, now: datetime, max_age: timedelta = STEP_UP_WINDOW
) -> StepUpStatus:
    """The session's step-up state at ``now`` and the factors the principal can prove."""
    factors = await usable_factors(conn, principal=principal)
    session = await sessions.get_session(conn, session_id=principal.session_id)
    step_up = (
        SessionStepUp(session.stepped_up_at, session.step_up_factor) if session else SessionStepUp(None, None)
    )
    return StepUpStatus.at(factors, step_up, now=now, max_age=max_age)


async def require_fresh(
    conn: AsyncConnection[Any], *, principal: Principal, now: datetime, max_age: timedelta = STEP_UP_WINDOW
) -> None:
    """Return if the principal's session proved a second factor within ``max_age`` of ``now``; else raise
    the 403 ``step_up_required`` (naming the factors and where to prove them). Changes nothing."""
    if is_fresh(principal.stepped_up_at, now=now, max_age=max_age):
        return
    raise step_up_required(principal.kind, await usable_factors(conn, principal=principal), max_age)


# --- proofs ------------------------------------------------------------------------------------------------


def not_accepted(factor: str, factors: list[str]) -> IdentityError:
    """A factor this principal cannot use for step-up now (not enrolled, or SMS while stronger ones exist)."""
    return IdentityError("factor_not_accepted", text={"factor": factor}, accepted_factors=factors)


async def _admit(uow: UnitOfWork, principal: Principal, factor: Factor) -> None:
    """Count a proof attempt (committed even if refused) and check the factor is one this principal may use."""
    async with uow.pool.connection() as conn:
        await hit(conn, key=f"step-up:{principal.kind}:{principal.id}", limit=PROOF_LIMIT, now=uow.clock())
        factors = await usable_factors(conn, principal=principal)
    if factor not in factors:
        raise not_accepted(factor, factors)


async def _admitted(
    uow: UnitOfWork, principal: Principal, factor: Factor, refused: Callable[[DomainError], AuditEvent]
) -> None:
    """:func:`_admit`, with a refusal audited on its own."""
    try:
        await _admit(uow, principal, factor)
    except DomainError as error:
        await audit.record(uow.pool, refused(error))
        raise


async def _mark(
    unit: Unit, principal: Principal, factor: Factor, actor: Actor, detail: dict[str, Any] | None = None
) -> None:
    """Mark the session stepped up at the unit's time and audit it with the unit's commit."""
    await sessions.record_step_up(unit.conn, session_id=principal.session_id, factor=factor, now=unit.now)
    unit.audit(actor.event(f"step_up.{factor}", target=_target(principal), detail=detail))


async def prove_totp(
    uow: UnitOfWork, *, cipher: FieldCipher, principal: Principal, code: str, actor: Actor
) -> None:
    """Step up with a TOTP code. Each code works once: one spent at sign-in or an earlier step-up is refused."""
    refused = _refusal(actor, FactorAction.STEP_UP_TOTP)
    await _admitted(uow, principal, "totp", refused)

    async def step(unit: Unit) -> None:
        if not await totp.verify(
            unit.conn,
            cipher=cipher,
            principal_type=principal.kind,
            principal_id=principal.id,
            code=code,
            now=unit.now,
        ):
            raise IdentityError("totp_invalid@step_up")
        await _mark(unit, principal, "totp", actor)

    await uow.run(step, refusal=refused)


async def prove_recovery_code(
    uow: UnitOfWork, *, lookup_key: bytes, principal: Principal, code: str, actor: Actor
) -> None:
    """Step up with a one-time recovery code (spent by this)."""
    refused = _refusal(actor, FactorAction.STEP_UP_RECOVERY_CODE)
    await _admitted(uow, principal, "recovery_code", refused)

    async def step(unit: Unit) -> None:
        if not await totp.use_recovery_code(
            unit.conn,
            lookup_key=lookup_key,
            principal_type=principal.kind,
            principal_id=principal.id,
            code=code,
            now=unit.now,
        ):
            raise IdentityError("recovery_code_invalid")
        await _mark(unit, principal, "recovery_code", actor)

    await uow.run(step, refusal=refused)


async def passkey_options(uow: UnitOfWork, *, principal: Principal, rp_id: str) -> passkeys.Ceremony:
    """Options for a step-up assertion with one of the principal's own passkeys."""

    async def step(unit: Unit) -> passkeys.Ceremony:
        factors = await usable_factors(unit.conn, principal=principal)
        if "passkey" not in factors:
            raise not_accepted("passkey", factors)
        return await passkeys.authentication_options(
            unit.conn,
            purpose="step_up",
            rp_id=rp_id,
            principal=(principal.kind, principal.id),
            now=unit.now,
        )

    return await uow.run(step)


async def prove_passkey(
    uow: UnitOfWork,
    *,
    principal: Principal,
    challenge_id: UUID,
    credential: dict[str, Any],
    rp_id: str,
    origin: str,
    actor: Actor,
) -> passkeys.Assertion:
    """Step up with an assertion answering this principal's step-up challenge."""
    refused = _refusal(actor, FactorAction.STEP_UP_PASSKEY)
    await _admitted(uow, principal, "passkey", refused)
    ref = (principal.kind, principal.id)
    try:
        challenge, _ = await passkeys.take_challenge(
            uow, challenge_id=challenge_id, purpose="step_up", principal=ref
        )
    except DomainError as error:
        await audit.record(uow.pool, refused(error))
        raise

    async def step(unit: Unit) -> passkeys.Assertion:
        assertion = await passkeys.verify_assertion(
            unit.conn,
            challenge=challenge,
            credential=credential,
            rp_id=rp_id,
            origin=origin,
            principal=ref,
            refusal_status=422,
            now=unit.now,
        )
        await _mark(unit, principal, "passkey", actor, {"passkey_id": str(assertion.passkey_id)})
        return assertion

    return await uow.run(step, refusal=refused)


async def _customer_phone(conn: AsyncConnection[Any], principal: Principal) -> str:
    if principal.kind != "customer":
        raise not_accepted("sms", [])
    from etcwallet.identity.customers import service as customers

    return (await customers.get_customer(conn, customer_id=principal.id)).phone


async def send_sms(
    uow: UnitOfWork, *, gateway: sms.SmsGateway, lookup_key: bytes, principal: Principal, actor: Actor
) -> sms.SentCode:
    """Send a step-up code to the customer's phone (only when no TOTP or passkey is enrolled)."""

    async def step(unit: Unit) -> sms.SentCode:
        factors = await usable_factors(unit.conn, principal=principal)
        if "sms" not in factors:
            raise not_accepted("sms", factors)
        phone = await _customer_phone(unit.conn, principal)
        sent = await sms.send_code(
            unit.conn,
            gateway=gateway,
            lookup_key=lookup_key,
            phone=phone,
            purpose=sms.Purpose.STEP_UP,
            ip=actor.ip,
            now=unit.now,
        )
        unit.audit(actor.event(FactorAction.STEP_UP_SMS_SEND, target=_target(principal)))
        return sent

    return await uow.run(step, refusal=_refusal(actor, FactorAction.STEP_UP_SMS_SEND), attempts=1)


async def prove_sms(
    uow: UnitOfWork, *, lookup_key: bytes, principal: Principal, code: str, actor: Actor
) -> None:
    """Step up with the SMS code just sent; a wrong code counts as one of the code's five tries (committed)."""
    refused = _refusal(actor, FactorAction.STEP_UP_SMS)
    await _admitted(uow, principal, "sms", refused)

    async def step(unit: Unit) -> str | None:
        phone = await _customer_phone(unit.conn, principal)
        refusal = await sms.check_code(
            unit.conn,
            lookup_key=lookup_key,
            phone=phone,
            purpose=sms.Purpose.STEP_UP,
            code=code,
            now=unit.now,
        )
        if refusal is None:
            await _mark(unit, principal, "sms", actor)
            return None
        return refusal.code

    refusal_code = await uow.run(step, refusal=refused)
    if refusal_code is not None:
        error = IdentityError(refusal_code, field="code")
        await audit.record(uow.pool, refused(error))
        raise error


# --- TOTP and recovery codes -------------------------------------------------------------------------------


async def start_totp_enrollment(
    uow: UnitOfWork, *, cipher: FieldCipher, principal: Principal, account_name: str, actor: Actor
) -> Enrollment:
    """Start (or restart, while unconfirmed) TOTP enrollment: the secret and its QR code."""

    async def step(unit: Unit) -> Enrollment:
        try:
            enrollment = await totp.enroll(
                unit.conn,
                cipher=cipher,
                principal_type=principal.kind,
                principal_id=principal.id,
                account_name=account_name,
                now=unit.now,
            )
        except ValueError:
            raise IdentityError("totp_already_enrolled") from None
        unit.audit(actor.event(FactorAction.TOTP_ENROLL_START, target=(actor.type, actor.id)))
        return enrollment

    return await uow.run(step)


async def confirm_totp(
    uow: UnitOfWork, *, cipher: FieldCipher, lookup_key: bytes, principal: Principal, code: str, actor: Actor
) -> list[str]:
    """Confirm TOTP with its first code: ten one-time recovery codes, and the session stepped up.

    A refusal is audited in the step's own transaction, as a success is, and then raised.
    """
    async with uow.pool.connection() as conn:
        await hit(conn, key=f"step-up:{principal.kind}:{principal.id}", limit=PROOF_LIMIT, now=uow.clock())
    target = _target(principal)
    kind, principal_id = principal.kind, principal.id

    async def step(unit: Unit) -> list[str] | IdentityError:
        failure: IdentityError | None = None
        codes: list[str] = []
        if await totp.is_enrolled(unit.conn, principal_type=kind, principal_id=principal_id):
            failure = IdentityError("totp_already_enrolled")
        elif not await store.get_totp_pending_or_confirmed(
            unit.conn, principal_type=kind, principal_id=principal_id
        ):
            failure = IdentityError("totp_not_pending")
        elif not await totp.verify(
            unit.conn,
            cipher=cipher,
            principal_type=kind,
            principal_id=principal_id,
            code=code,
            confirming=True,
            now=unit.now,
        ):
            failure = IdentityError("totp_invalid@step_up")
        else:
            codes = await totp.issue_recovery_codes(
                unit.conn, lookup_key=lookup_key, principal_type=kind, principal_id=principal_id
            )
            await sessions.record_step_up(
                unit.conn, session_id=principal.session_id, factor="totp", now=unit.now
            )
        if failure is None:
            unit.audit(actor.event(FactorAction.TOTP_ENROLL, target=target))
            return codes
        unit.audit(actor.refused(FactorAction.TOTP_ENROLL, failure.code, target=target))
        return failure

    result = await uow.run(step)
    if isinstance(result, IdentityError):
        raise result
    return result


async def remove_totp(uow: UnitOfWork, *, principal: Principal, actor: Actor) -> None:
    """Turn TOTP off; its recovery codes go with it."""

    async def step(unit: Unit) -> None:
        if not await store.delete_totp(unit.conn, principal_type=principal.kind, principal_id=principal.id):
            raise IdentityError("totp_not_enrolled")
        unit.audit(actor.event(FactorAction.TOTP_REMOVE, target=(actor.type, actor.id)))

    await uow.run(step)


async def regenerate_recovery_codes(
    uow: UnitOfWork, *, lookup_key: bytes, principal: Principal, actor: Actor
) -> list[str]:
    """Replace the recovery codes with ten new ones; the old ones stop working."""

    async def step(unit: Unit) -> list[str]:
        if not await totp.is_enrolled(unit.conn, principal_type=principal.kind, principal_id=principal.id):
            raise IdentityError("totp_not_enrolled")
        codes = await totp.issue_recovery_codes(
            unit.conn, lookup_key=lookup_key, principal_type=principal.kind, principal_id=principal.id
        )
        unit.audit(actor.event(FactorAction.RECOVERY_CODES_REGENERATE, target=(actor.type, actor.id)))
        return codes

    return await uow.run(step)


# --- passkeys ----------------------------------------------------------------------------------------------


async def passkey_registration_options(
    uow: UnitOfWork, *, principal: Principal, user_name: str, rp_id: str
) -> passkeys.Ceremony:
    """Options to create a passkey; answer within five minutes."""

    async def step(unit: Unit) -> passkeys.Ceremony:
        return await passkeys.registration_options(
            unit.conn,
            principal_type=principal.kind,
            principal_id=principal.id,
            user_name=user_name,
            display_name=user_name,
            rp_id=rp_id,
            now=unit.now,
        )

    return await uow.run(step)


async def register_passkey(
    uow: UnitOfWork,
    *,
    principal: Principal,
    challenge_id: UUID,
    credential: dict[str, Any],
    name: str | None,
    rp_id: str,
    origin: str,
    actor: Actor,
) -> passkeys.Passkey:
    """Store the passkey the authenticator created for the options' challenge (audited with it); a refusal
    is audited on its own with the credential's fingerprint."""
    try:
        return await passkeys.verify_registration(
            uow,
            principal_type=principal.kind,
            principal_id=principal.id,
            challenge_id=challenge_id,
            credential=credential,
            name=name,
            rp_id=rp_id,
            origin=origin,
            actor=actor,
        )
    except DomainError as error:
        detail = {"credential": passkeys.fingerprint(credential)}
        await audit.record(uow.pool, _refusal(actor, FactorAction.PASSKEY_REGISTER, detail)(error))
        raise


async def list_passkeys(conn: AsyncConnection[Any], *, principal: Principal) -> list[passkeys.Passkey]:
    """The principal's passkeys."""
    return await passkeys.list_passkeys(conn, principal_type=principal.kind, principal_id=principal.id)


async def remove_passkey(uow: UnitOfWork, *, principal: Principal, passkey_id: UUID, actor: Actor) -> None:
    """Remove one of the principal's own passkeys; any other id is a 404."""

    async def step(unit: Unit) -> None:
        key = await passkeys.delete_passkey(
            unit.conn, principal_type=principal.kind, principal_id=principal.id, passkey_id=passkey_id
        )
        detail = {"passkey_id": str(key.id), "name": key.name}
        unit.audit(actor.event(FactorAction.PASSKEY_REMOVE, target=(actor.type, actor.id), detail=detail))

    await uow.run(step)


async def passkey_login_options(
    uow: UnitOfWork, *, lookup_key: bytes, rp_id: str, phone: str | None
) -> passkeys.Ceremony:
    """Options to sign in with a passkey: any of this device's, or (``phone``) that customer's, with a decoy
    credential so that the answer does not tell whether the phone is registered."""
    from etcwallet.identity.customers import service as customers

    async def step(unit: Unit) -> passkeys.Ceremony:
        principal: tuple[str, UUID] | None = None
        decoys: list[bytes] = []
        if phone:
            customer_id = await customers.get_customer_id_by_phone(unit.conn, phone=phone)
            principal = ("customer", customer_id) if customer_id is not None else None
            decoys = [passkeys.decoy_credential_id(lookup_key, phone)]
        return await passkeys.authentication_options(
            unit.conn, purpose="login", rp_id=rp_id, principal=principal, decoy_ids=decoys, now=unit.now
        )

    return await uow.run(step)


async def passkey_login(
    uow: UnitOfWork,
    *,
    challenge_id: UUID,
    credential: dict[str, Any],
    rp_id: str,
    origin: str,
    client: Client,
) -> passkeys.PasskeyLogin:
    """Sign in with a passkey assertion; a refusal is audited on its own (by the customer, once known)."""
    detail = {"credential": passkeys.fingerprint(credential)}
    actor = actor_of(None, client)
    try:
        return await passkeys.login(
            uow,
            challenge_id=challenge_id,
            credential=credential,
            rp_id=rp_id,
            origin=origin,
            client=client,
        )
    except DomainError as error:
        await audit.record(uow.pool, _refusal(actor, FactorAction.CUSTOMER_LOGIN_PASSKEY, detail)(error))
        raise
    except passkeys.LoginRefused as refused:
        customer = Actor("customer", str(refused.customer_id), actor.ip, actor.user_agent)
        await audit.record(
            uow.pool, _refusal(customer, FactorAction.CUSTOMER_LOGIN_PASSKEY, detail)(refused.error)
        )
        raise refused.error from None
