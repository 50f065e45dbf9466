"""A customer's ledger accounts (``identity/customers/accounts.py``): opened lazily for the customer,
listed for them and for staff, and frozen with them in the caller's unit of work."""

from __future__ import annotations

from uuid import UUID, uuid4

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.authz import Role
from etcwallet.identity.customers import accounts
from etcwallet.ledger.chart import AccountPurpose, owned_account_id
from etcwallet.ledger.service import Ledger
from etcwallet.ledger.types import Account
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork
from tests.conftest import StaffFactory
from tests.idempotency_keys import keyed
from tests.identity.customer_helpers import BASE, assert_problem, register, send_code
from tests.identity.staff_helpers import audit_rows
from tests.ledger.builders import hold, move, open_account, post, refused

STAFF = Actor("staff", str(uuid4()))


async def funded_wallet(ledger: Ledger, customer_id: UUID, amount: int) -> tuple[Account, UUID]:
    wallet = await accounts.account_for(
        ledger, customer_id=customer_id, purpose=AccountPurpose.WALLET, frozen=False
    )
    source = await open_account(ledger)
    await ledger.create_transfer(move(source.id, wallet.id, amount))
    return wallet, source.id


async def freeze(pool: AsyncConnectionPool, customer_id: UUID, frozen: bool) -> list[UUID]:
    async def step(unit: Unit) -> list[UUID]:
        return await accounts.freeze_accounts(unit, customer_id=customer_id, frozen=frozen, actor=STAFF)

    return await UnitOfWork(pool).run(step)


def test_a_customers_accounts_belong_to_customer_colon_id() -> None:
    customer_id = UUID("2f6f1c1e-0000-4000-8000-000000000001")
    assert accounts.owner_of(customer_id) == "customer:2f6f1c1e-0000-4000-8000-000000000001"


async def test_an_account_opens_lazily_under_the_customers_derived_id(ledger: Ledger) -> None:
    customer_id = uuid4()
    assert await accounts.accounts_of(ledger, customer_id=customer_id) == []
    purse = await accounts.account_for(
        ledger, customer_id=customer_id, purpose=AccountPurpose.CARD_PURSE, frozen=False
    )
    assert purse.id == owned_account_id(
        owner=f"customer:{customer_id}", purpose=AccountPurpose.CARD_PURSE, currency="CNY"
    )
    again = await accounts.account_for(
        ledger, customer_id=customer_id, purpose=AccountPurpose.CARD_PURSE, frozen=False
    )
    assert again == purse
    assert await accounts.accounts_of(ledger, customer_id=customer_id) == [purse]


async def test_an_account_opened_while_the_customer_is_frozen_opens_frozen(ledger: Ledger) -> None:
    wallet = await accounts.account_for(
        ledger, customer_id=uuid4(), purpose=AccountPurpose.WALLET, currency="HKD", frozen=True
    )
    assert wallet.frozen and wallet.currency == "HKD"


async def test_freezing_a_customer_refuses_debits_and_still_posts_an_earlier_hold(
    ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    customer_id = uuid4()
    wallet, source = await funded_wallet(ledger, customer_id, 1000)
    held = await ledger.create_transfer(hold(wallet.id, source, 300))

    assert await freeze(pool, customer_id, True) == [wallet.id]
    await refused(ledger.create_transfer(move(wallet.id, source, 10)), "account_frozen")
    await ledger.create_transfer(post(held.id))  # the hold was taken before the freeze
    await ledger.create_transfer(move(source, wallet.id, 1))  # credits still arrive
    purse = await accounts.account_for(  # opened later, by a caller who read the customer as active
        ledger, customer_id=customer_id, purpose=AccountPurpose.CARD_PURSE, frozen=False
    )
    assert purse.frozen

    assert sorted(await freeze(pool, customer_id, False)) == sorted([wallet.id, purse.id])
    await ledger.create_transfer(move(wallet.id, source, 10))
    assert (await ledger.get_account_or_raise(wallet.id)).balance == 1000 - 300 + 1 - 10


async def test_a_customer_freeze_that_fails_leaves_the_accounts_as_they_were(
    ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    customer_id = uuid4()
    wallet, source = await funded_wallet(ledger, customer_id, 100)

    async def step(unit: Unit) -> None:
        await accounts.freeze_accounts(unit, customer_id=customer_id, frozen=True)
        raise RuntimeError("the customer's own update failed")

    with pytest.raises(RuntimeError):
        await UnitOfWork(pool).run(step)
    assert not (await ledger.get_account_or_raise(wallet.id)).frozen
    await ledger.create_transfer(move(wallet.id, source, 10))


# --- HTTP ------------------------------------------------------------------------------------------


async def test_a_customer_lists_their_own_accounts_with_balances_in_fen(
    client: httpx.AsyncClient, ledger: Ledger
) -> None:
    me, other = await register(client), await register(client)
    r = await client.get("/api/v1/me/accounts", headers=me.headers)
    assert r.status_code == 200, r.text
    assert r.json() == []
    wallet, source = await funded_wallet(ledger, UUID(me.id), 12345)
    await ledger.create_transfer(hold(wallet.id, source, 45))
    await funded_wallet(ledger, UUID(other.id), 1)

    r = await client.get("/api/v1/me/accounts", headers=me.headers)
    assert r.status_code == 200, r.text
    (item,) = r.json()
    assert item["id"] == str(wallet.id) and item["purpose"] == "wallet" and item["code"] == "customer_wallet"
    assert item["balance"] == {"amount": 12345, "currency": "CNY"}
    assert item["available"] == {"amount": 12300, "currency": "CNY"}
    assert item["currency"] == "CNY" and item["frozen"] is False


async def test_staff_who_read_customers_list_a_customers_accounts(
    client: httpx.AsyncClient, ledger: Ledger, make_staff: StaffFactory, pool: AsyncConnectionPool
) -> None:
    me = await register(client)
    wallet, _ = await funded_wallet(ledger, UUID(me.id), 500)
    support = await make_staff(Role.SUPPORT_AGENT)
    r = await client.get(f"{BASE}/{me.id}/accounts", headers=support)
    assert r.status_code == 200, r.text
    assert [(a["id"], a["balance"]["amount"]) for a in r.json()] == [(str(wallet.id), 500)]
    assert_problem(await client.get(f"{BASE}/{uuid4()}/accounts", headers=support), 404, "customer_not_found")
    reads = await audit_rows(pool, target_id=me.id, action="customer.accounts.read")
    assert [(x["actor_type"], x["outcome"]) for x in reads] == [("staff", "success")]

    finance = await make_staff(Role.FINANCE)  # moves money, but does not read customers
    assert_problem(await client.get(f"{BASE}/{me.id}/accounts", headers=finance), 403, "forbidden")
    assert_problem(await client.get(f"{BASE}/{me.id}/accounts", headers=me.headers), 403, "forbidden")


async def test_a_staff_freeze_of_a_customer_reaches_their_ledger_accounts(
    client: httpx.AsyncClient, ledger: Ledger, make_staff: StaffFactory, pool: AsyncConnectionPool
) -> None:
    """Freezing the customer (issue 17) refuses debits on their accounts while a hold taken before still
    posts; lifting the freeze releases them, and both steps are audited with the customer's."""
    risk = await make_staff(Role.RISK_OFFICER)
    me = await register(client)
    wallet, source = await funded_wallet(ledger, UUID(me.id), 1000)
    held = await ledger.create_transfer(hold(wallet.id, source, 200))

    r = await client.post(f"{BASE}/{me.id}/freeze", json={"reason": "风控"}, headers=keyed(risk))
    assert r.status_code == 200, r.text
    assert (await ledger.get_account_or_raise(wallet.id)).frozen
    await refused(ledger.create_transfer(move(wallet.id, source, 10)), "account_frozen")
    await ledger.create_transfer(post(held.id))
    r = await client.post(f"{BASE}/{me.id}/freeze", json={"reason": "again"}, headers=keyed(risk))
    assert r.status_code == 200  # already frozen: nothing changes, the ledger is not asked again

    r = await client.post(f"{BASE}/{me.id}/unfreeze", headers=keyed(risk))
    assert r.status_code == 200, r.text
    await ledger.create_transfer(move(wallet.id, source, 10))
    assert (await ledger.get_account_or_raise(wallet.id)).balance == 1000 - 200 - 10
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, actor_type FROM audit_log WHERE target_id = %s ORDER BY seq",
            (accounts.owner_of(UUID(me.id)),),
        )
        owner_entries = await cur.fetchall()
    assert owner_entries == [("ledger.owner_frozen", "staff"), ("ledger.owner_unfrozen", "staff")]


async def test_a_customer_who_froze_themselves_frees_their_accounts_with_the_sms_unfreeze(
    client: httpx.AsyncClient, ledger: Ledger
) -> None:
    me = await register(client)
    wallet, source = await funded_wallet(ledger, UUID(me.id), 100)
    assert (await client.post(f"{BASE}/me/freeze", headers=me.headers)).status_code == 200
    await refused(ledger.create_transfer(move(wallet.id, source, 1)), "account_frozen")
    code = await send_code(client, me.phone, "unfreeze")
    unfreeze = {"phone": me.phone, "password": me.password, "sms_code": code}
    assert (await client.post(f"{BASE}/unfreeze", json=unfreeze)).status_code == 200
    await ledger.create_transfer(move(wallet.id, source, 1))
