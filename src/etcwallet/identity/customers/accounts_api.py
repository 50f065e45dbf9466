"""A customer's ledger accounts over HTTP: the customer's own (``/api/v1/me/accounts``) and, for staff
who may read customers, anyone's (``/api/v1/customers/{customer_id}/accounts``).

Routes carry their full paths (the two live under different prefixes). Only accounts already opened are
listed: a domain opens an account when it first needs it (``accounts.account_for``).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from etcwallet.core.deps import LedgerDep
from etcwallet.identity.authz import Permission, Principal, require, require_customer
from etcwallet.identity.customers import accounts
from etcwallet.identity.customers.accounts_schemas import CustomerAccountOut

router = APIRouter(tags=["customers"])


@router.get("/api/v1/me/accounts", response_model=list[CustomerAccountOut])
async def my_accounts(
    ledger: LedgerDep, me: Annotated[Principal, Depends(require_customer)]
) -> list[CustomerAccountOut]:
    """My ledger accounts (wallet, card purses…) with their balances in fen, oldest first."""
    return [CustomerAccountOut.of(a) for a in await accounts.accounts_of(ledger, customer_id=me.id)]


@router.get("/api/v1/customers/{customer_id}/accounts", response_model=list[CustomerAccountOut])
async def customer_accounts(
    customer_id: UUID,
    ledger: LedgerDep,
    staff: Annotated[Principal, Depends(require(Permission.CUSTOMERS_READ))],
) -> list[CustomerAccountOut]:
    """A customer's ledger accounts with their balances, for support and risk staff; a customer with no
    account opened (or no such customer) has an empty list."""
    return [CustomerAccountOut.of(a) for a in await accounts.accounts_of(ledger, customer_id=customer_id)]
