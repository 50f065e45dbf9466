"""Step-up: a fresh second factor before a sensitive action, and the proofs that give one.

Endpoints for large payments, raising limits, binding a bank card, changing the phone number or closing
the account call :func:`require_step_up` (or depend on :func:`stepped_up`). Unless the caller's session
proved a second factor within ``max_age``, the answer is a 403 ``step_up_required`` problem naming the
factors this principal can use and where to prove each: TOTP (and its recovery codes) when enrolled, a
passkey when registered, and an SMS code to the customer's phone only when neither is set up (a code sent
to the phone must not stand in for a stronger factor the customer chose). Proving a factor marks the
session (``sessions.stepped_up_at``) and is audited in the same transaction (``step_up.<factor>``, by the
``actor`` the caller names); a refused proof is the caller's to audit.

403, not 401: the caller's token is good, and clients treat 401 as "sign in again".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from fastapi import Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import FieldCipher
from etcwallet.core.deps import get_pool
from etcwallet.identity import sms
from etcwallet.identity.authz import Principal, load_principal
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import passkeys, totp
from etcwallet.identity.ratelimit import Limit, hit
from etcwallet.identity.sessions import service as sessions
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor

STEP_UP_WINDOW = timedelta(minutes=5)
PROOF_LIMIT = Limit(10, timedelta(minutes=5))  # proof attempts per principal
BASE = "/api/v1/me/factors/step-up"

Factor = Literal["totp", "passkey", "recovery_code", "sms"]

# Where a customer proves each factor (method, path); staff step-up endpoints do not exist yet.
CUSTOMER_ENDPOINTS: dict[str, list[dict[str, str]]] = {
    "totp": [{"method": "POST", "path": f"{BASE}/totp"}],
    "passkey": [
        {"method": "POST", "path": f"{BASE}/passkey/options"},
        {"method": "POST", "path": f"{BASE}/passkey/verify"},
    ],
    "recovery_code": [{"method": "POST", "path": f"{BASE}/recovery"}],
    "sms": [{"method": "POST", "path": f"{BASE}/sms/send"}, {"method": "POST", "path": f"{BASE}/sms/verify"}],
}


@dataclass(frozen=True)
class StepUpStatus:
    """Which factors a principal can prove, and whether (and until when) the session is stepped up."""

    accepted_factors: list[str]
    stepped_up_at: datetime | None
    factor: str | None
    valid_until: datetime | None

    @property
    def stepped_up(self) -> bool:
        return self.valid_until is not None and self.valid_until > datetime.now(UTC)


async def accepted_factors(conn: AsyncConnection[Any], principal_type: str, principal_id: UUID) -> list[str]:
    """The factors the principal can prove: ``totp``/``passkey`` (+ ``recovery_code``), else ``sms``."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM totp_factors WHERE principal_type = %(t)s AND principal_id = %(i)s "
        "AND confirmed_at IS NOT NULL), "
        "EXISTS (SELECT 1 FROM passkeys WHERE principal_type = %(t)s AND principal_id = %(i)s), "
        "EXISTS (SELECT 1 FROM recovery_codes WHERE principal_type = %(t)s AND principal_id = %(i)s "
        "AND used_at IS NULL)",
        {"t": principal_type, "i": principal_id},
    )
    row = await cur.fetchone()
    assert row is not None
    has_totp, has_passkey, has_recovery = row
    factors: list[str] = []
    if has_totp:
        factors.append("totp")
    if has_passkey:
        factors.append("passkey")
    if has_totp and has_recovery:
        factors.append("recovery_code")
    if not factors and principal_type == "customer":
        factors.append("sms")
    return factors


def step_up_required(kind: str, factors: list[str], max_age: timedelta) -> IdentityError:
    """The refusal telling a principal of ``kind`` which factors it accepts and where to prove them."""
    endpoints = (
        {f: CUSTOMER_ENDPOINTS[f] for f in factors if f in CUSTOMER_ENDPOINTS} if kind == "customer" else {}
    )
    return IdentityError(
        "step_up_required",
        accepted_factors=factors,
        max_age_seconds=int(max_age.total_seconds()),
        step_up={"status": BASE if kind == "customer" else None, "endpoints": endpoints},
    )


async def require_step_up(
    request: Request, principal: Principal, *, max_age: timedelta = STEP_UP_WINDOW
) -> None:
    """Return if the caller's session proved a second factor within ``max_age``; else 403 step_up_required."""
    if principal.stepped_up_within(max_age):
        return
    async with get_pool(request).connection() as conn:
        factors = await accepted_factors(conn, principal.kind, principal.id)
    raise step_up_required(principal.kind, factors, max_age)


def stepped_up(max_age: timedelta = STEP_UP_WINDOW) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the signed-in principal, once their session is freshly stepped up."""

    async def dependency(request: Request) -> Principal:
        principal = await load_principal(request)
        await require_step_up(request, principal, max_age=max_age)
        return principal

    dependency.__name__ = f"stepped_up_{int(max_age.total_seconds())}s"
    return dependency


async def status(
    conn: AsyncConnection[Any], principal: Principal, *, max_age: timedelta = STEP_UP_WINDOW
) -> StepUpStatus:
    """The session's step-up state and the principal's accepted factors."""
    factors = await accepted_factors(conn, principal.kind, principal.id)
    session = await sessions.get_session(conn, session_id=principal.session_id)
    at, factor = (session.stepped_up_at, session.step_up_factor) if session else (None, None)
    return StepUpStatus(factors, at, factor, at + max_age if at else None)


# --- proofs ----------------------------------------------------------------------------------------------


def not_accepted(factor: str, factors: list[str]) -> IdentityError:
    """A factor this principal cannot use for step-up now (not enrolled, or SMS while stronger ones exist)."""
    return IdentityError("factor_not_accepted", text={"factor": factor}, accepted_factors=factors)


async def _admit(conn: AsyncConnection[Any], principal: Principal, factor: Factor) -> None:
    """Count a proof attempt and check the factor is one this principal may use."""
    await hit(conn, f"step-up:{principal.kind}:{principal.id}", PROOF_LIMIT)
    factors = await accepted_factors(conn, principal.kind, principal.id)
    if factor not in factors:
        raise not_accepted(factor, factors)


async def _limit_and_admit(pool: AsyncConnectionPool, principal: Principal, factor: Factor) -> None:
    async with pool.connection() as conn:  # its own transaction: the attempt counts even if refused
        await _admit(conn, principal, factor)


async def _stepped_up(
    conn: AsyncConnection[Any],
    principal: Principal,
    factor: Factor,
    actor: Actor,
    detail: dict[str, Any] | None = None,
) -> None:
    """Mark the session stepped up and audit it, last in the proof's transaction."""
    await sessions.mark_stepped_up(conn, principal.session_id, factor)
    target = (principal.kind, str(principal.id))
    await audit.append(conn, actor.event(f"step_up.{factor}", target=target, detail=detail))


async def prove_totp(
    pool: AsyncConnectionPool, cipher: FieldCipher, principal: Principal, code: str, *, actor: Actor
) -> None:
    """Step up with a TOTP code (each code works once)."""
    await _limit_and_admit(pool, principal, "totp")
    async with pool.connection() as conn, conn.transaction():
        if not await totp.verify(conn, cipher, principal.kind, principal.id, code):
            raise IdentityError("totp_invalid@step_up")
        await _stepped_up(conn, principal, "totp", actor)


async def prove_recovery_code(
    pool: AsyncConnectionPool, lookup_key: bytes, principal: Principal, code: str, *, actor: Actor
) -> None:
    """Step up with a one-time recovery code (spent by this)."""
    await _limit_and_admit(pool, principal, "recovery_code")
    async with pool.connection() as conn, conn.transaction():
        if not await totp.use_recovery_code(conn, lookup_key, principal.kind, principal.id, code):
            raise IdentityError("recovery_code_invalid")
        await _stepped_up(conn, principal, "recovery_code", actor)


async def passkey_options(conn: AsyncConnection[Any], principal: Principal, rp_id: str) -> passkeys.Ceremony:
    """Options for a step-up assertion with one of the principal's own passkeys."""
    factors = await accepted_factors(conn, principal.kind, principal.id)
    if "passkey" not in factors:
        raise not_accepted("passkey", factors)
    return await passkeys.authentication_options(
        conn, purpose="step_up", rp_id=rp_id, principal=(principal.kind, principal.id)
    )


async def prove_passkey(
    pool: AsyncConnectionPool,
    principal: Principal,
    *,
    challenge_id: UUID,
    credential: dict[str, Any],
    rp_id: str,
    origin: str,
    actor: Actor,
) -> passkeys.Assertion:
    """Step up with an assertion answering this principal's step-up challenge."""
    await _limit_and_admit(pool, principal, "passkey")
    ref = (principal.kind, principal.id)
    challenge, _ = await passkeys.take_challenge(pool, challenge_id, "step_up", ref)
    async with pool.connection() as conn, conn.transaction():
        assertion = await passkeys.verify_assertion(
            conn, challenge=challenge, credential=credential, rp_id=rp_id, origin=origin, principal=ref,
            refusal_status=422,
        )  # fmt: skip
        await _stepped_up(conn, principal, "passkey", actor, {"passkey_id": str(assertion.passkey_id)})
    return assertion


async def _customer_phone(conn: AsyncConnection[Any], principal: Principal) -> str:
    if principal.kind != "customer":
        raise not_accepted("sms", [])
    cur = await conn.execute("SELECT phone FROM customers WHERE id = %s", (principal.id,))
    row = await cur.fetchone()
    assert row is not None  # the session's customer exists (load_principal joined it)
    return str(row[0])


async def send_sms(
    pool: AsyncConnectionPool,
    gateway: sms.SmsGateway,
    lookup_key: bytes,
    principal: Principal,
    *,
    actor: Actor,
) -> sms.SentCode:
    """Send a step-up code to the customer's phone (only when no TOTP or passkey is enrolled)."""
    async with pool.connection() as conn, conn.transaction():
        factors = await accepted_factors(conn, principal.kind, principal.id)
        if "sms" not in factors:
            raise not_accepted("sms", factors)
        phone = await _customer_phone(conn, principal)
        sent = await sms.send_code(
            conn, gateway, lookup_key, phone=phone, purpose=sms.Purpose.STEP_UP, ip=actor.ip
        )
        target = (principal.kind, str(principal.id))
        await audit.append(conn, actor.event("step_up.sms.send", target=target))
        return sent


async def prove_sms(
    pool: AsyncConnectionPool, lookup_key: bytes, principal: Principal, code: str, *, actor: Actor
) -> None:
    """Step up with the SMS code just sent; a wrong code counts as one of the code's five tries."""
    await _limit_and_admit(pool, principal, "sms")
    async with pool.connection() as conn:
        async with conn.transaction():  # commits the tried count even when the code is wrong
            phone = await _customer_phone(conn, principal)
            refusal = await sms.check_code(
                conn, lookup_key, phone=phone, purpose=sms.Purpose.STEP_UP, code=code
            )
            if refusal is None:
                await _stepped_up(conn, principal, "sms", actor)
        if refusal is not None:
            raise IdentityError(refusal.code, field="code")
