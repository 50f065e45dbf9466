"""Closing an account over HTTP: the customer's own (``POST /api/v1/me/close``) and, for staff who may
freeze customers (risk officers), a customer's on their request
(``POST /api/v1/customers/{customer_id}/close``). Routes carry their full paths, as ``accounts_api`` does.

The checks the closure runs are the application's (``Runtime.closure_checks``), which domains fill at
start-up; the rules are in :mod:`.closure`.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from etcwallet.core.deps import ClientDep, UnitOfWorkDep
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Permission, Principal, require, require_customer
from etcwallet.identity.customers import closure
from etcwallet.identity.customers import schemas as s
from etcwallet.identity.customers.closure_checks import ClosureChecksDep
from etcwallet.identity.customers.types import Closure
from etcwallet.platform.idempotency import idempotent

router = APIRouter(tags=["customers"])


Closer = Annotated[Principal, Depends(idempotent(require(Permission.CUSTOMERS_FREEZE)))]


def _closure_out(closed: Closure) -> s.ClosureOut:
    return s.ClosureOut(
        id=closed.customer_id,
        closed_at=closed.closed_at,
        sessions_ended=closed.sessions_ended,
        accounts_frozen=len(closed.accounts_frozen),
    )


@router.post("/api/v1/me/close", response_model=s.ClosureOut, responses=problems(403, 404, 409, 422, 423))
async def close_my_account(
    uow: UnitOfWorkDep,
    checks: ClosureChecksDep,
    client: ClientDep,
    me: Annotated[Principal, Depends(require_customer)],
    body: s.SelfCloseRequest | None = None,
) -> s.ClosureOut:
    """Close my account: needs a fresh step-up and my payment password (when one is set); refused while
    money is on any of my accounts, a payment or hold is pending, or another domain objects (a live ETC
    card). Every session ends; the account can no longer sign in."""
    closed = await closure.close_own_account(
        uow=uow,
        checks=checks,
        principal=me,
        pin=body.pin if body is not None else None,
        reason=body.reason if body is not None else None,
        client=client,
    )
    return _closure_out(closed)


@router.post(
    "/api/v1/customers/{customer_id}/close", response_model=s.ClosureOut, responses=problems(403, 404, 409)
)
async def close_customer_account(
    customer_id: UUID,
    body: s.StaffCloseRequest,
    uow: UnitOfWorkDep,
    checks: ClosureChecksDep,
    client: ClientDep,
    staff: Closer,
) -> s.ClosureOut:
    """Risk staff close a customer's account on the customer's request, with a reason, after their own
    fresh step-up; refused as the customer's own closure is."""
    closed = await closure.close_for_customer(
        uow=uow, checks=checks, staff=staff, customer_id=customer_id, reason=body.reason, client=client
    )
    return _closure_out(closed)
