"""Builders for the platform's tests: funded wallets and audit look-ups."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from psycopg_pool import AsyncConnectionPool

from etcwallet.ledger.service import AccountSpec, Ledger, wallet_spec
from etcwallet.ledger.types import TransferRequest


async def source_account(ledger: Ledger) -> UUID:
    """An account with no balance limit, to fund others from."""
    account = await ledger.create_account(AccountSpec(uuid4(), "CNY", "suspense", "test"))
    return account.id


async def wallet(ledger: Ledger, balance: int = 0) -> UUID:
    """A customer wallet (never below zero) holding ``balance``."""
    account = await ledger.create_account(wallet_spec(uuid4(), f"customer-{uuid4().hex[:8]}"))
    if balance:
        source = await source_account(ledger)
        await ledger.create_transfer(
            TransferRequest(
                uuid4(),
                debit_account_id=source,
                credit_account_id=account.id,
                amount=balance,
                currency="CNY",
                code="test.fund",
            )
        )
    return account.id


async def balance(ledger: Ledger, account_id: UUID) -> int:
    """Posted credits minus posted debits."""
    account = await ledger.get_account_or_raise(account_id)
    return account.credits_posted - account.debits_posted


async def audit_rows(pool: AsyncConnectionPool, target_id: UUID | str) -> list[tuple[Any, ...]]:
    """(action, outcome, detail) of the audit rows about ``target_id``, oldest first."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, outcome, detail FROM audit_log WHERE target_id = %s ORDER BY seq",
            (str(target_id),),
        )
        return [tuple(row) for row in await cur.fetchall()]


async def transfer_exists(pool: AsyncConnectionPool, transfer_id: UUID) -> bool:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT 1 FROM ledger_transfers WHERE id = %s", (transfer_id,))
        return await cur.fetchone() is not None


async def events_about(pool: AsyncConnectionPool, key: UUID | str) -> list[tuple[Any, ...]]:
    """(type, payload) of the outbox's events about ``key``, in commit-safe order."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT type, payload FROM event_outbox WHERE key = %s ORDER BY xid, seq", (str(key),)
        )
        return [tuple(row) for row in await cur.fetchall()]
