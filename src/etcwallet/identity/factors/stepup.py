"""Step-up: a fresh second factor before a sensitive action, for customers and staff alike.

Endpoints for large payments, raising limits, binding a bank card, changing the phone number or closing
the account call :func:`require_step_up` (or depend on :func:`stepped_up`); a sensitive staff action (a
second load, a refund, a role change) depends on :func:`require_staff_step_up` or calls
:func:`~etcwallet.identity.factors.service.require_fresh`. Unless the caller's session proved a second
factor within ``max_age`` (by the unit of work's clock), the answer is a 403 ``step_up_required`` problem
naming the factors this principal can use and where to prove each: for a customer TOTP (and its recovery
codes) when enrolled, a passkey when registered, and an SMS code to the customer's phone only when neither
is set up (a code sent to the phone must not stand in for a stronger factor the customer chose); for staff
the TOTP they sign in with (``POST /api/v1/staff/me/step-up/totp``). Proving a factor marks the session
(``sessions.stepped_up_at``) and is audited in the same transaction (``step_up.<factor>``); see
:mod:`etcwallet.identity.factors.service`.

403, not 401: the caller's token is good, and clients treat 401 as "sign in again".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Request
from psycopg import AsyncConnection

from etcwallet.core.deps import PoolDep, UnitOfWorkDep, get_pool, get_uow
from etcwallet.identity.authz import Permission, Principal, load_principal, require
from etcwallet.identity.factors import service
from etcwallet.identity.factors.service import (
    CUSTOMER_BASE,
    CUSTOMER_ENDPOINTS,
    PROOF_LIMIT,
    STAFF_BASE,
    STAFF_ENDPOINTS,
    not_accepted,
    step_up_required,
)
from etcwallet.identity.factors.types import STEP_UP_WINDOW, Factor, StepUpStatus

BASE = CUSTOMER_BASE

__all__ = [
    "BASE",
    "CUSTOMER_ENDPOINTS",
    "PROOF_LIMIT",
    "STAFF_BASE",
    "STAFF_ENDPOINTS",
    "STEP_UP_WINDOW",
    "Factor",
    "StepUpStatus",
    "accepted_factors",
    "not_accepted",
    "require_staff_step_up",
    "require_step_up",
    "status",
    "step_up_required",
    "stepped_up",
]


async def accepted_factors(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID
) -> list[str]:
    """The factors the principal can prove: ``totp``/``passkey`` (+ ``recovery_code``), else ``sms``."""
    return await service.accepted_factors(conn, principal_type=principal_type, principal_id=principal_id)


async def require_step_up(
    request: Request, principal: Principal, *, max_age: timedelta = STEP_UP_WINDOW
) -> None:
    """Return if the caller's session proved a second factor within ``max_age``; else 403 step_up_required."""
    async with get_pool(request).connection() as conn:
        await service.require_fresh(conn, principal=principal, now=get_uow(request).clock(), max_age=max_age)


def stepped_up(max_age: timedelta = STEP_UP_WINDOW) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the signed-in principal, once their session is freshly stepped up."""

    async def dependency(request: Request) -> Principal:
        principal = await load_principal(request)
        await require_step_up(request, principal, max_age=max_age)
        return principal

    dependency.__name__ = f"stepped_up_{int(max_age.total_seconds())}s"
    return dependency


def require_staff_step_up(
    permission: Permission, *, max_age: timedelta = STEP_UP_WINDOW
) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency for a sensitive staff action: staff whose role grants ``permission`` (else 403
    ``forbidden``) and whose session proved its TOTP within ``max_age`` (else 403 ``step_up_required``,
    as a customer gets). It changes nothing; the time is the unit of work's clock."""

    async def dependency(principal: Principal, pool: PoolDep, uow: UnitOfWorkDep) -> Principal:
        async with pool.connection() as conn:
            await service.require_fresh(conn, principal=principal, now=uow.clock(), max_age=max_age)
        return principal

    # The gate is built here, so the annotation is an object (a string could not name ``permission``).
    dependency.__annotations__["principal"] = Annotated[Principal, Depends(require(permission))]
    dependency.__name__ = f"staff_stepped_up_{permission.value.replace('.', '_')}"
    return dependency


async def status(
    conn: AsyncConnection[Any],
    *,
    principal: Principal,
    now: datetime | None = None,
    max_age: timedelta = STEP_UP_WINDOW,
) -> StepUpStatus:
    """The session's step-up state and the principal's accepted factors (at ``now``, default the system's)."""
    return await service.step_up_status(
        conn, principal=principal, now=now or datetime.now(UTC), max_age=max_age
    )
