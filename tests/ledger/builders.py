"""Builders of the ledger's tests (and of other domains' tests that move money): accounts, transfer
requests, a clock moved by hand, and small readers of the ledger's rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from etcwallet.ledger.errors import LedgerError
from etcwallet.ledger.service import AccountSpec, Ledger
from etcwallet.ledger.types import Account, TransferKind, TransferRequest


class FakeClock:
    """A clock the test moves by hand; starts at the real time so stored times stay plausible."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


async def open_account(
    ledger: Ledger,
    *,
    currency: str = "CNY",
    debits_must_not_exceed_credits: bool = False,
    credits_must_not_exceed_debits: bool = False,
    code: str = "general",
    owner: str = "test",
) -> Account:
    return await ledger.create_account(
        AccountSpec(
            uuid4(),
            currency,
            code,
            owner,
            debits_must_not_exceed_credits=debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=credits_must_not_exceed_debits,
        )
    )


def move(
    debit: UUID,
    credit: UUID,
    amount: int,
    *,
    currency: str = "CNY",
    code: str = "test",
    id: UUID | None = None,
    metadata: dict[str, Any] | None = None,
) -> TransferRequest:
    return TransferRequest(
        id or uuid4(),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency=currency,
        code=code,
        metadata=metadata or {},
    )


def hold(
    debit: UUID,
    credit: UUID,
    amount: int,
    *,
    currency: str = "CNY",
    timeout: int | None = None,
    id: UUID | None = None,
    code: str = "hold",
) -> TransferRequest:
    return TransferRequest(
        id or uuid4(),
        kind=TransferKind.PENDING,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency=currency,
        code=code,
        timeout_seconds=timeout,
    )


def post(pending_id: UUID, amount: int | None = None, *, id: UUID | None = None) -> TransferRequest:
    return TransferRequest(
        id or uuid4(), kind=TransferKind.POST_PENDING, pending_id=pending_id, amount=amount
    )


def void(pending_id: UUID, *, id: UUID | None = None) -> TransferRequest:
    return TransferRequest(id or uuid4(), kind=TransferKind.VOID_PENDING, pending_id=pending_id)


async def refused(coro: Any, code: str) -> LedgerError:
    """Await ``coro``, which must raise a LedgerError with ``code``; return the error."""
    with pytest.raises(LedgerError) as info:
        await coro
    assert info.value.code == code, f"expected {code}, got {info.value.code}"
    return info.value


def totals(a: Account) -> tuple[int, int, int, int]:
    """(debits_posted, credits_posted, debits_pending, credits_pending)."""
    return (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)


async def pending_row(pool: Any, pending_id: UUID) -> tuple[str, UUID | None] | None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT state, resolved_by FROM ledger_pending WHERE id = %s", (pending_id,))
        return await cur.fetchone()


async def rows_for_pending(pool: Any, pending_id: UUID) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM ledger_transfers WHERE pending_id = %s", (pending_id,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])
