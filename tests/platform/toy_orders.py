"""A toy domain that books orders against the ledger: the worked example of DESIGN's "How a domain moves
money" (docs/architecture.md walks through it).

An order is paid from a customer's wallet to a merchant. Paying is one unit of work: the order row, the
transfer, the audit entry and the event (``toy.order_paid``) commit together. Delivering is an outside call (a courier here;
a chip or a payment provider in the real domains), so it runs in two units around the call:

1. ``reserve``: the order row with its hold's id, and the hold (a pending transfer without timeout), in
   one unit; committed before the call, so a crash after it leaves an intent a recovery can find;
2. the call to the courier, with no transaction open;
3. ``settle``: lock the order, re-read it, and post or void the hold with ids derived from the order.

``recover`` re-drives orders left reserved by asking the courier what happened, and settles them with
the same ids, so running it twice, or beside a late ``settle``, moves the money once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from etcwallet.ledger.types import TransferKind, TransferRequest
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

SCHEMA = "toy"
DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.orders (
    id uuid PRIMARY KEY,
    wallet_id uuid NOT NULL,
    merchant_id uuid NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    status text NOT NULL,
    hold_id uuid,
    transfer_id uuid
);
"""

ACTOR = Actor.system("toy-orders")


class OrderStatus(StrEnum):
    PAID = "paid"
    RESERVED = "reserved"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Order:
    id: UUID
    wallet_id: UUID
    merchant_id: UUID
    amount: int
    status: OrderStatus
    hold_id: UUID | None
    transfer_id: UUID | None


def transfer_id(order_id: UUID, purpose: str) -> UUID:
    """The id of an order's transfer for ``purpose``: derived, so every retry and recovery uses the same."""
    return uuid.uuid5(order_id, purpose)


_COLUMNS = "id, wallet_id, merchant_id, amount, status, hold_id, transfer_id"


def _order(row: Any) -> Order:
    return Order(row[0], row[1], row[2], row[3], OrderStatus(row[4]), row[5], row[6])


async def get_order(pool: AsyncConnectionPool, order_id: UUID) -> Order | None:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM {SCHEMA}.orders WHERE id = %s", (order_id,))
        row = await cur.fetchone()
    return _order(row) if row else None


async def _lock(unit: Unit, order_id: UUID) -> Order | None:
    cur = await unit.conn.execute(
        f"SELECT {_COLUMNS} FROM {SCHEMA}.orders WHERE id = %s FOR UPDATE", (order_id,)
    )
    row = await cur.fetchone()
    return _order(row) if row else None


async def pay(uow: UnitOfWork, *, order_id: UUID, wallet_id: UUID, merchant_id: UUID, amount: int) -> Order:
    """Book a paid order: its row and the wallet-to-merchant transfer in one unit of work."""

    async def step(unit: Unit) -> Order:
        existing = await _lock(unit, order_id)
        if existing is not None:
            return existing  # a retry of a committed step: nothing more to do
        paid = transfer_id(order_id, "pay")
        await unit.conn.execute(
            f"INSERT INTO {SCHEMA}.orders ({_COLUMNS}) VALUES (%s, %s, %s, %s, 'paid', NULL, %s)",
            (order_id, wallet_id, merchant_id, amount, paid),
        )
        await unit.transfer(
            TransferRequest(
                paid,
                debit_account_id=wallet_id,
                credit_account_id=merchant_id,
                amount=amount,
                currency="CNY",
                code="toy.pay",
            )
        )
        unit.audit(ACTOR.event("toy.order_paid", target=("order", str(order_id)), detail={"amount": amount}))
        unit.emit("toy.order_paid", str(order_id), {"amount": amount, "currency": "CNY"})
        return Order(order_id, wallet_id, merchant_id, amount, OrderStatus.PAID, None, paid)

    return await uow.run(
        step,
        refusal=lambda e: ACTOR.refused("toy.order_paid", e.code, target=("order", str(order_id))),
    )


async def reserve(
    uow: UnitOfWork, *, order_id: UUID, wallet_id: UUID, merchant_id: UUID, amount: int
) -> Order:
    """First unit of a delivery: the order row and a hold on the wallet, committed before any call out."""

    async def step(unit: Unit) -> Order:
        existing = await _lock(unit, order_id)
        if existing is not None:
            return existing
        hold = transfer_id(order_id, "hold")
        await unit.conn.execute(
            f"INSERT INTO {SCHEMA}.orders ({_COLUMNS}) VALUES (%s, %s, %s, %s, 'reserved', %s, NULL)",
            (order_id, wallet_id, merchant_id, amount, hold),
        )
        # No timeout: a hold that waits on an outside party must not expire under it.
        await unit.transfer(
            TransferRequest(hold, TransferKind.PENDING, wallet_id, merchant_id, amount, "CNY", "toy.hold")
        )
        unit.audit(ACTOR.event("toy.order_reserved", target=("order", str(order_id))))
        return Order(order_id, wallet_id, merchant_id, amount, OrderStatus.RESERVED, hold, None)

    return await uow.run(step)


async def settle(uow: UnitOfWork, *, order_id: UUID, delivered: bool) -> Order:
    """Second unit: record the courier's answer, posting or voiding the hold with the order's ids."""

    async def step(unit: Unit) -> Order:
        order = await _lock(unit, order_id)
        if order is None or order.hold_id is None:
            raise LookupError(order_id)
        if order.status is not OrderStatus.RESERVED:
            return order  # settled already (by recovery, or by an earlier try)
        kind, purpose, status = (
            (TransferKind.POST_PENDING, "post", OrderStatus.DELIVERED)
            if delivered
            else (TransferKind.VOID_PENDING, "void", OrderStatus.CANCELLED)
        )
        done = await unit.transfer(
            TransferRequest(transfer_id(order_id, purpose), kind, pending_id=order.hold_id)
        )
        await unit.conn.execute(
            f"UPDATE {SCHEMA}.orders SET status = %s, transfer_id = %s WHERE id = %s",
            (status, done.id, order_id),
        )
        unit.audit(ACTOR.event(f"toy.order_{status}", target=("order", str(order_id))))
        return Order(
            order.id, order.wallet_id, order.merchant_id, order.amount, status, order.hold_id, done.id
        )

    return await uow.run(step)


class Courier:
    """The outside party: delivers, remembers what it delivered, and can fail in between."""

    def __init__(self) -> None:
        self.delivered: set[UUID] = set()
        self.calls = 0

    async def deliver(self, order_id: UUID) -> bool:
        self.calls += 1
        self.delivered.add(order_id)
        return True

    async def status(self, order_id: UUID) -> bool:
        return order_id in self.delivered


async def deliver(uow: UnitOfWork, courier: Courier, **order: Any) -> Order:
    """The whole delivery: reserve, call the courier with no transaction open, settle."""
    reserved = await reserve(uow, **order)
    delivered = await courier.deliver(reserved.id)
    return await settle(uow, order_id=reserved.id, delivered=delivered)


async def recover(uow: UnitOfWork, courier: Courier) -> int:
    """Settle every order left reserved, from the courier's own record; returns how many it settled."""
    async with uow.pool.connection() as conn:
        cur = await conn.execute(f"SELECT id FROM {SCHEMA}.orders WHERE status = 'reserved' ORDER BY id")
        stuck = [row[0] for row in await cur.fetchall()]
    settled = 0
    for order_id in stuck:
        before = await get_order(uow.pool, order_id)
        after = await settle(uow, order_id=order_id, delivered=await courier.status(order_id))
        settled += (
            before is not None and before.status is OrderStatus.RESERVED and after.status is not before.status
        )
    return settled
