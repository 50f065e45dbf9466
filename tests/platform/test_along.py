"""The fast path: a domain's insert-only rows ride with a transfer in the gathered writer's shared commit."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.ledger.errors import LedgerError
from etcwallet.ledger.service import Ledger
from etcwallet.ledger.types import TransferRequest
from etcwallet.platform.audit import Actor
from etcwallet.platform.events import Event
from etcwallet.platform.unit import Along
from tests.platform import toy_orders
from tests.platform.builders import audit_rows, balance, events_about, wallet

ACTOR = Actor("customer", "c-1", "127.0.0.1", "tests")


def paid_order(order_id: UUID, payer: UUID, merchant: UUID, amount: int) -> tuple[TransferRequest, Along]:
    """A paid order as the fast path books it: the transfer, and the order row and audit entry with it."""
    transfer_id = toy_orders.transfer_id(order_id, "pay")
    row = (
        f"INSERT INTO {toy_orders.SCHEMA}.orders (id, wallet_id, merchant_id, amount, status, transfer_id) "
        "VALUES (%s, %s, %s, %s, 'paid', %s) ON CONFLICT (id) DO NOTHING",
        (order_id, payer, merchant, amount, transfer_id),
    )
    request = TransferRequest(
        transfer_id,
        debit_account_id=payer,
        credit_account_id=merchant,
        amount=amount,
        currency="CNY",
        code="toy.pay",
    )
    along = Along(
        statements=[row],
        audit=[ACTOR.event("toy.order_paid", target=("order", str(order_id)))],
        events=[Event("toy.order_paid", str(order_id), {"amount": amount})],
    )
    return request, along


async def test_rows_commit_with_their_transfer(
    ledger: Ledger, pool: AsyncConnectionPool, toy_schema: str
) -> None:
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)
    order_id = uuid4()
    request, along = paid_order(order_id, payer, merchant, 400)
    transfer = await ledger.create_transfer(request, along=along)
    order = await toy_orders.get_order(pool, order_id)
    assert order is not None and order.transfer_id == transfer.id
    assert await audit_rows(pool, order_id) == [("toy.order_paid", "success", {})]
    assert await events_about(pool, order_id) == [("toy.order_paid", {"amount": 400})]


async def test_a_refused_transfer_writes_none_of_its_rows(
    ledger: Ledger, pool: AsyncConnectionPool, toy_schema: str
) -> None:
    payer, merchant = await wallet(ledger, 100), await wallet(ledger)
    order_id = uuid4()
    request, along = paid_order(order_id, payer, merchant, 400)
    with pytest.raises(LedgerError):
        await ledger.create_transfer(request, along=along)
    assert await toy_orders.get_order(pool, order_id) is None
    assert await audit_rows(pool, order_id) == []
    assert await events_about(pool, order_id) == []


async def test_a_resend_writes_its_rows_once(
    ledger: Ledger, pool: AsyncConnectionPool, toy_schema: str
) -> None:
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)
    order_id = uuid4()
    for _ in range(3):
        request, along = paid_order(order_id, payer, merchant, 400)
        await ledger.create_transfer(request, along=along)
    assert len(await audit_rows(pool, order_id)) == len(await events_about(pool, order_id)) == 1
    assert await balance(ledger, payer) == 600


async def test_gathered_callers_get_their_own_rows_and_only_theirs(
    ledger: Ledger, pool: AsyncConnectionPool, toy_schema: str
) -> None:
    """64 callers at once share commits; the poor ones are refused and leave no row, the rest leave one each."""
    rich, poor, merchant = await wallet(ledger, 10**6), await wallet(ledger, 50), await wallet(ledger)
    orders = [(uuid4(), rich if i % 2 else poor) for i in range(64)]

    async def book(order_id: UUID, payer: UUID) -> bool:
        try:
            request, along = paid_order(order_id, payer, merchant, 100)
            await ledger.create_transfer(request, along=along)
        except LedgerError:
            return False
        return True

    booked = await asyncio.gather(*(book(o, p) for o, p in orders))
    for (order_id, payer), ok in zip(orders, booked, strict=True):
        assert ok == (payer == rich)
        assert (await toy_orders.get_order(pool, order_id) is not None) == ok
        assert len(await audit_rows(pool, order_id)) == len(await events_about(pool, order_id)) == ok
    assert await balance(ledger, merchant) == 100 * 32
