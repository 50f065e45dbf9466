"""The hand-packed binary COPY rows must store exactly what the engine decided, field for field.

A bulk batch (more than BULK_THRESHOLD transfers) is written through ``etcwallet.ledger.pgcopy``; every
stored row is read back through PostgreSQL and compared with the transfer the call returned.
"""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

from etcwallet.ledger.engine import BULK_THRESHOLD
from etcwallet.ledger.service import AccountSpec, Ledger
from etcwallet.ledger.types import Transfer, TransferKind, TransferRequest


async def test_bulk_rows_round_trip_through_postgres(ledger: Ledger) -> None:
    source = await ledger.create_account(AccountSpec(uuid4(), "CNY", "general", "copy-test"))
    wallet = await ledger.create_account(
        AccountSpec(uuid4(), "CNY", "customer_wallet", "copy-test", debits_must_not_exceed_credits=True)
    )
    await ledger.create_transfer(
        TransferRequest(
            uuid4(),
            debit_account_id=source.id,
            credit_account_id=wallet.id,
            amount=2**52,
            currency="CNY",
            code="fund",
        )
    )
    holds = [
        TransferRequest(
            uuid4(),
            kind=TransferKind.PENDING,
            debit_account_id=wallet.id,
            credit_account_id=source.id,
            amount=100 + i,
            currency="CNY",
            code="通行费",
            timeout_seconds=3600 if i % 2 else None,
            metadata={"plate": "甘A12345", "lane": i, "nested": {"ok": True, "tag": None}},
        )
        for i in range(20)
    ]
    await ledger.create_transfers(holds)
    requests = [
        TransferRequest(uuid4(), kind=TransferKind.POST_PENDING, pending_id=h.id, amount=50)
        if i % 2 == 0
        else TransferRequest(uuid4(), kind=TransferKind.VOID_PENDING, pending_id=h.id)
        for i, h in enumerate(holds)
    ]
    requests += [
        TransferRequest(
            uuid4(),
            debit_account_id=wallet.id,
            credit_account_id=source.id,
            amount=2**40 + i,
            currency="CNY",
            code="x" * (i % 40),
            metadata={} if i % 3 else {"i": i, "emoji": "🚗"},
        )
        for i in range(BULK_THRESHOLD + 50)
    ]
    more_holds = [
        replace(h, id=uuid4(), timeout_seconds=5 if i % 2 else None, metadata={}) for i, h in enumerate(holds)
    ]
    requests += more_holds
    assert len(requests) > BULK_THRESHOLD

    results = await ledger.create_transfers(requests)

    assert all(isinstance(r, Transfer) for r in results), [r for r in results if not isinstance(r, Transfer)]
    for result in results:
        assert isinstance(result, Transfer)
        stored = await ledger.get_transfer(result.id)
        assert stored is not None
        assert stored._replace(seq=None) == result, result.id
    # The holds written through COPY are live: their timeouts and accounts are what was asked.
    for h in more_holds:
        stored = await ledger.get_transfer(h.id)
        assert stored is not None and stored.kind is TransferKind.PENDING
        assert (stored.expires_at is None) == (h.timeout_seconds is None)
