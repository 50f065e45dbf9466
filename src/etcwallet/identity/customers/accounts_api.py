"""A customer's ledger accounts over HTTP: the customer's own (``/api/v1/me/accounts``) and, for staff
who may read customers, anyone's (``/api/v1/customers/{customer_id}/accounts``).

Routes carry their full paths (the two live under different prefixes). Only accounts already opened are
listed: a domain opens an account when it first needs it (``accounts.account_for``).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from etcwallet.core.deps import ClientDep, LedgerDep, UnitOfWorkDep
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Permission, Principal, actor_of, require, require_customer
from etcwallet.identity.customers import accounts
from etcwallet.identity.customers.schemas import CustomerAccountOut

router = APIRouter(tags=["customers"])


@router.get("/api/v1/me/accounts", response_model=list[CustomerAccountOut])
async def my_accounts(
    ledger: LedgerDep, me: Annotated[Principal, Depends(require_customer)]
) -> list[CustomerAccountOut]:
    """My ledger accounts (wallet, card purses…) with their balances in fen, oldest first."""
    return [CustomerAccountOut.of(a) for a in await accounts.accounts_of(ledger, customer_id=me.id)]


@router.get(
    "/api/v1/customers/{customer_id}/accounts",
    response_model=list[CustomerAccountOut],
    responses=problems(404),
)
async def customer_accounts(
    customer_id: UUID,
    ledger: LedgerDep,
    uow: UnitOfWorkDep,
    client: ClientDep,
    staff: Annotated[Principal, Depends(require(Permission.CUSTOMERS_READ))],
) -> list[CustomerAccountOut]:
    """A customer's ledger accounts with their balances, for support and risk staff (the read is audited);
    a customer with no account opened has an empty list, an unknown customer is a 404."""
    found = await accounts.accounts_read_by_staff(
        uow=uow, ledger=ledger, customer_id=customer_id, actor=actor_of(staff, client)
    )
    return [CustomerAccountOut.of(a) for a in found]
