"""Answers of the customer-accounts routes (``accounts_api.py``): a ledger account as its owner sees it."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel

from etcwallet.core.money import SignedMoney
from etcwallet.ledger.types import Account


class CustomerAccountOut(BaseModel):
    """One of a customer's ledger accounts: balances in minor units (fen) with their currency."""

    id: UUID
    purpose: str | None  # ledger.chart.AccountPurpose; None for an account not opened by purpose
    code: str
    currency: str
    frozen: bool
    balance: SignedMoney
    available: SignedMoney
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> CustomerAccountOut:
        purpose = account.metadata.get("purpose")
        return cls(
            id=account.id,
            purpose=purpose if isinstance(purpose, str) else None,
            code=account.code,
            currency=account.currency,
            frozen=account.frozen,
            balance=SignedMoney(amount=account.balance, currency=account.currency),
            available=SignedMoney(amount=account.available, currency=account.currency),
            created_at=account.created_at,
        )
