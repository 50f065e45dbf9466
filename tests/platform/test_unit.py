"""The unit of work: a domain's rows, its transfers and its audit entries commit together or not at all."""

from __future__ import annotations

import asyncio
import random
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.ledger.errors import LedgerError
from etcwallet.ledger.service import Ledger
from etcwallet.ledger.types import TransferRequest
from etcwallet.platform import audit
from etcwallet.platform.unit import Unit, UnitOfWork
from tests.platform import toy_orders
from tests.platform.builders import audit_rows, balance, events_about, transfer_exists, wallet


def move(debit: UUID, credit: UUID, amount: int, transfer_id: UUID | None = None) -> TransferRequest:
    return TransferRequest(
        transfer_id or uuid4(),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency="CNY",
        code="test.move",
    )


async def test_a_step_commits_its_row_its_transfer_and_its_audit_entry_together(
    uow: UnitOfWork, ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)
    order_id = uuid4()
    order = await toy_orders.pay(uow, order_id=order_id, wallet_id=payer, merchant_id=merchant, amount=300)
    assert await toy_orders.get_order(pool, order_id) == order
    assert order.transfer_id is not None and await transfer_exists(pool, order.transfer_id)
    assert (await balance(ledger, payer), await balance(ledger, merchant)) == (700, 300)
    assert await audit_rows(pool, order_id) == [("toy.order_paid", "success", {"amount": 300})]
    assert await events_about(pool, order_id) == [("toy.order_paid", {"amount": 300, "currency": "CNY"})]


async def test_a_crash_before_commit_leaves_neither_rows_nor_transfers(
    uow: UnitOfWork, ledger: Ledger, pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)

    async def connection_lost(unit: Unit) -> None:
        await unit.conn.close()  # the process dies: the server sees the connection go mid-transaction
        raise psycopg.OperationalError("the connection is lost")

    monkeypatch.setattr(Unit, "commit", connection_lost)
    order_id = uuid4()
    with pytest.raises(psycopg.OperationalError):
        await toy_orders.pay(uow, order_id=order_id, wallet_id=payer, merchant_id=merchant, amount=300)
    monkeypatch.undo()
    assert await toy_orders.get_order(pool, order_id) is None
    assert not await transfer_exists(pool, toy_orders.transfer_id(order_id, "pay"))
    assert (await balance(ledger, payer), await balance(ledger, merchant)) == (1000, 0)
    assert await audit_rows(pool, order_id) == []
    assert await events_about(pool, order_id) == []
    # The restarted process pays the same order: once.
    await toy_orders.pay(uow, order_id=order_id, wallet_id=payer, merchant_id=merchant, amount=300)
    assert (await balance(ledger, payer), await balance(ledger, merchant)) == (700, 300)


async def test_a_refusal_rolls_the_domain_row_back_and_is_audited_on_its_own(
    uow: UnitOfWork, ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    payer, merchant = await wallet(ledger, 100), await wallet(ledger)
    order_id = uuid4()
    with pytest.raises(LedgerError) as refused:
        await toy_orders.pay(uow, order_id=order_id, wallet_id=payer, merchant_id=merchant, amount=300)
    assert (refused.value.code, refused.value.status, refused.value.index) == ("exceeds_credits", 422, 0)
    assert await toy_orders.get_order(pool, order_id) is None
    assert not await transfer_exists(pool, toy_orders.transfer_id(order_id, "pay"))
    assert await audit_rows(pool, order_id) == [("toy.order_paid", "refused", {"reason": "exceeds_credits"})]
    assert await events_about(pool, order_id) == []
    assert (await balance(ledger, payer), await balance(ledger, merchant)) == (100, 0)


async def test_running_a_committed_step_again_moves_money_once(
    uow: UnitOfWork, ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)
    first_id = uuid4()

    async def step(unit: Unit) -> UUID:
        transfer = await unit.transfer(move(payer, merchant, 250, first_id))
        return transfer.id

    # The same transfer id in two separate units (a retry after a lost answer): stored once.
    assert await uow.run(step) == await uow.run(step) == first_id
    assert (await balance(ledger, payer), await balance(ledger, merchant)) == (750, 250)


async def test_a_second_transfer_in_a_unit_sees_the_first_and_a_refusal_undoes_both(
    uow: UnitOfWork, ledger: Ledger
) -> None:
    payer, merchant = await wallet(ledger, 100), await wallet(ledger)

    async def step(unit: Unit) -> None:
        await unit.transfer(move(payer, merchant, 60))
        await unit.transfer(move(payer, merchant, 60))  # 40 left after the first: refused

    with pytest.raises(LedgerError) as refused:
        await uow.run(step)
    assert refused.value.code == "exceeds_credits"
    assert (await balance(ledger, payer), await balance(ledger, merchant)) == (100, 0)


async def test_linked_transfers_in_a_unit_fail_together_with_the_failing_index(
    uow: UnitOfWork, ledger: Ledger
) -> None:
    payer, merchant, fees = await wallet(ledger, 100), await wallet(ledger), await wallet(ledger)

    async def step(unit: Unit) -> None:
        await unit.transfers([move(payer, merchant, 90), move(payer, fees, 20)], linked=True)

    with pytest.raises(LedgerError) as refused:
        await uow.run(step)
    assert (refused.value.code, refused.value.index) == ("exceeds_credits", 1)
    assert [await balance(ledger, a) for a in (payer, merchant, fees)] == [100, 0, 0]


async def test_a_deadlock_runs_the_whole_step_again(
    uow: UnitOfWork, ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    """Two steps lock two orders in opposite orders; PostgreSQL breaks the deadlock, the loser runs again."""
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)
    first, second = uuid4(), uuid4()
    for order_id in (first, second):
        await toy_orders.pay(uow, order_id=order_id, wallet_id=payer, merchant_id=merchant, amount=1)
    attempts = {"a": 0, "b": 0}
    locked = {"a": asyncio.Event(), "b": asyncio.Event()}

    def step(name: str, mine: UUID, theirs: UUID, other: str) -> object:
        async def run(unit: Unit) -> None:
            attempts[name] += 1
            await unit.conn.execute(
                f"SELECT 1 FROM {toy_orders.SCHEMA}.orders WHERE id = %s FOR UPDATE", (mine,)
            )
            if unit.retry.attempt == 0:
                locked[name].set()
                await locked[other].wait()
            await unit.conn.execute(
                f"SELECT 1 FROM {toy_orders.SCHEMA}.orders WHERE id = %s FOR UPDATE", (theirs,)
            )
            await unit.transfer(move(payer, merchant, 10))

        return run

    await asyncio.wait_for(
        asyncio.gather(
            uow.run(step("a", first, second, "b")),  # type: ignore[arg-type]
            uow.run(step("b", second, first, "a")),  # type: ignore[arg-type]
        ),
        timeout=30,
    )
    assert sorted(attempts.values()) == [1, 2]
    assert await balance(ledger, merchant) == 2 + 20


async def test_concurrent_units_and_gathered_transfers_on_hot_accounts_sum_exactly(
    uow: UnitOfWork, ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    """16 units and 16 gathered single transfers at once, on the same four wallets: no deadlock, no loss."""
    wallets = [await wallet(ledger, 100_000) for _ in range(4)]
    moved: dict[UUID, int] = {w: 0 for w in wallets}
    orders: list[UUID] = []

    async def by_unit(i: int) -> None:
        rng = random.Random(i)
        for _ in range(8):
            payer, merchant = rng.sample(wallets, 2)
            amount = rng.randint(1, 500)
            order_id = uuid4()
            await toy_orders.pay(uow, order_id=order_id, wallet_id=payer, merchant_id=merchant, amount=amount)
            orders.append(order_id)
            moved[payer] -= amount
            moved[merchant] += amount

    async def gathered(i: int) -> None:
        rng = random.Random(100 + i)
        for _ in range(8):
            payer, merchant = rng.sample(wallets, 2)
            amount = rng.randint(1, 500)
            await ledger.create_transfer(move(payer, merchant, amount))
            moved[payer] -= amount
            moved[merchant] += amount

    await asyncio.wait_for(
        asyncio.gather(*(by_unit(i) for i in range(16)), *(gathered(i) for i in range(16))), timeout=120
    )
    for w in wallets:
        assert await balance(ledger, w) == 100_000 + moved[w]
    assert len(orders) == 128
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT count(*) FROM {toy_orders.SCHEMA}.orders o JOIN ledger_transfers t ON t.id = o.transfer_id "
            "WHERE o.id = ANY(%s)",
            (orders,),
        )
        assert await cur.fetchone() == (128,)
        report = await audit.verify(conn)
    assert report.ok, report


# --- the worked example: across an outside call ----------------------------------------------------------


def order_of(payer: UUID, merchant: UUID, amount: int = 300) -> dict[str, object]:
    return {"order_id": uuid4(), "wallet_id": payer, "merchant_id": merchant, "amount": amount}


async def test_a_delivery_holds_then_posts(uow: UnitOfWork, ledger: Ledger) -> None:
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)
    courier = toy_orders.Courier()
    order = await toy_orders.deliver(uow, courier, **order_of(payer, merchant))
    assert order.status is toy_orders.OrderStatus.DELIVERED
    assert (await balance(ledger, payer), await balance(ledger, merchant)) == (700, 300)
    hold = await ledger.get_transfer(toy_orders.transfer_id(order.id, "hold"))
    assert hold is not None and hold.timeout_seconds is None


async def test_a_crash_after_the_courier_delivered_is_recovered_by_posting(
    uow: UnitOfWork, ledger: Ledger
) -> None:
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)
    courier = toy_orders.Courier()
    order = order_of(payer, merchant)
    reserved = await toy_orders.reserve(uow, **order)  # type: ignore[arg-type]
    assert await courier.deliver(reserved.id)  # ... and the process dies before settling
    account = await ledger.get_account_or_raise(payer)
    assert (account.debits_pending, await balance(ledger, payer)) == (300, 1000)

    assert await toy_orders.recover(uow, courier) >= 1
    settled = await toy_orders.get_order(uow.pool, reserved.id)
    assert settled is not None and settled.status is toy_orders.OrderStatus.DELIVERED
    assert (await balance(ledger, payer), await balance(ledger, merchant)) == (700, 300)


async def test_a_crash_before_the_call_is_recovered_by_voiding(uow: UnitOfWork, ledger: Ledger) -> None:
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)
    courier = toy_orders.Courier()
    reserved = await toy_orders.reserve(uow, **order_of(payer, merchant))  # type: ignore[arg-type]
    # The process dies before calling the courier, who therefore never delivered.
    await toy_orders.recover(uow, courier)
    settled = await toy_orders.get_order(uow.pool, reserved.id)
    assert settled is not None and settled.status is toy_orders.OrderStatus.CANCELLED
    account = await ledger.get_account_or_raise(payer)
    assert (account.debits_pending, await balance(ledger, payer), await balance(ledger, merchant)) == (
        0,
        1000,
        0,
    )


async def test_recovery_racing_a_late_settle_and_itself_moves_the_money_once(
    uow: UnitOfWork, ledger: Ledger
) -> None:
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)
    courier = toy_orders.Courier()
    reserved = await toy_orders.reserve(uow, **order_of(payer, merchant))  # type: ignore[arg-type]
    await courier.deliver(reserved.id)
    await asyncio.gather(
        toy_orders.recover(uow, courier),
        toy_orders.recover(uow, courier),
        toy_orders.settle(uow, order_id=reserved.id, delivered=True),
    )
    assert (await balance(ledger, payer), await balance(ledger, merchant)) == (700, 300)
    account = await ledger.get_account_or_raise(payer)
    assert account.debits_pending == 0


async def test_a_crash_inside_the_settling_unit_is_rerun_with_the_same_ids(
    uow: UnitOfWork, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    payer, merchant = await wallet(ledger, 1000), await wallet(ledger)
    courier = toy_orders.Courier()
    reserved = await toy_orders.reserve(uow, **order_of(payer, merchant))  # type: ignore[arg-type]
    await courier.deliver(reserved.id)

    async def connection_lost(unit: Unit) -> None:
        await unit.conn.close()
        raise psycopg.OperationalError("the connection is lost")

    monkeypatch.setattr(Unit, "commit", connection_lost)
    with pytest.raises(psycopg.OperationalError):
        await toy_orders.settle(uow, order_id=reserved.id, delivered=True)
    monkeypatch.undo()
    assert await balance(ledger, merchant) == 0
    await toy_orders.recover(uow, courier)
    await toy_orders.recover(uow, courier)
    assert (await balance(ledger, payer), await balance(ledger, merchant)) == (700, 300)
