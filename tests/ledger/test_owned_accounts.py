"""Accounts held for an owner: derived ids, lazy idempotent opening, listing by owner, and freezing an
owner's accounts in a unit of work (``ledger/owners.py``)."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from etcwallet.ledger.chart import OWNED_ACCOUNTS, AccountCode, AccountPurpose, owned_account_id
from etcwallet.ledger.owners import set_owner_frozen
from etcwallet.ledger.service import AccountSpec, Ledger
from etcwallet.ledger.types import Account
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork
from tests.ledger.builders import hold, move, open_account, post, refused, void

ACTOR = Actor("staff", str(uuid4()))


def new_owner() -> str:
    return f"customer:{uuid4()}"


async def wallet(ledger: Ledger, owner: str, *, frozen: bool = False) -> Account:
    return await ledger.open_owned_account(
        owner=owner, purpose=AccountPurpose.WALLET, currency="CNY", actor=ACTOR, frozen=frozen
    )


async def fund(ledger: Ledger, account: Account, amount: int) -> UUID:
    """Move ``amount`` into ``account`` from a fresh unconstrained account; answers that account."""
    source = await open_account(ledger)
    await ledger.create_transfer(move(source.id, account.id, amount))
    return source.id


async def set_frozen(pool: AsyncConnectionPool, owner: str, frozen: bool) -> list[UUID]:
    async def step(unit: Unit) -> list[UUID]:
        return await set_owner_frozen(unit, owner=owner, frozen=frozen, actor=ACTOR)

    return await UnitOfWork(pool).run(step)


async def audit_of(pool: AsyncConnectionPool, target_id: str) -> list[tuple[object, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, actor_type, actor_id, detail FROM audit_log WHERE target_id = %s ORDER BY seq",
            (target_id,),
        )
        return [tuple(row) for row in await cur.fetchall()]


# --- ids -------------------------------------------------------------------------------------------


def test_the_id_is_a_pure_function_of_owner_purpose_and_currency() -> None:
    owner = "customer:2f6f1c1e-0000-4000-8000-000000000001"
    first = owned_account_id(owner=owner, purpose=AccountPurpose.WALLET, currency="CNY")
    assert owned_account_id(owner=owner, purpose="wallet", currency="CNY") == first
    # Stored ids depend on it: the namespace and the name's spelling must never change.
    assert first == UUID("de622de0-bc25-5fd3-b91b-93a34cdd18fd")
    others = {
        owned_account_id(owner=owner, purpose=AccountPurpose.CARD_PURSE, currency="CNY"),
        owned_account_id(owner=owner, purpose=AccountPurpose.WALLET, currency="HKD"),
        owned_account_id(owner=owner + "x", purpose=AccountPurpose.WALLET, currency="CNY"),
    }
    assert first not in others and len(others) == 3


OWNERS = st.text(min_size=0, max_size=40)
CURRENCIES = st.sampled_from(["CNY", "HKD", "USD", "JPY"])
PURPOSES = st.sampled_from(list(AccountPurpose))


@given(a=st.tuples(OWNERS, PURPOSES, CURRENCIES), b=st.tuples(OWNERS, PURPOSES, CURRENCIES))
def test_different_inputs_never_share_an_id(
    a: tuple[str, AccountPurpose, str], b: tuple[str, AccountPurpose, str]
) -> None:
    """Owners may hold ``:``; the name puts them last, so no two inputs spell one name."""
    id_a = owned_account_id(owner=a[0], purpose=a[1], currency=a[2])
    id_b = owned_account_id(owner=b[0], purpose=b[1], currency=b[2])
    assert (id_a == id_b) == (a == b)


INSTANCES = st.one_of(st.none(), st.text(alphabet="0123456789/abc", min_size=1, max_size=24))


@given(
    a=st.tuples(OWNERS, PURPOSES, CURRENCIES, INSTANCES), b=st.tuples(OWNERS, PURPOSES, CURRENCIES, INSTANCES)
)
def test_an_instance_names_a_separate_account_and_none_keeps_the_old_id(
    a: tuple[str, AccountPurpose, str, str | None], b: tuple[str, AccountPurpose, str, str | None]
) -> None:
    """A card purse per card: instances never collide with each other nor with the instance-less id."""
    id_a = owned_account_id(owner=a[0], purpose=a[1], currency=a[2], instance=a[3])
    id_b = owned_account_id(owner=b[0], purpose=b[1], currency=b[2], instance=b[3])
    assert (id_a == id_b) == (a == b)
    plain = owned_account_id(owner=a[0], purpose=a[1], currency=a[2])
    assert (id_a == plain) == (a[3] is None)


def test_an_instance_holding_a_colon_or_empty_is_refused() -> None:
    for bad in ("", "a:b"):
        with pytest.raises(ValueError):
            owned_account_id(owner="o", purpose=AccountPurpose.CARD_PURSE, currency="CNY", instance=bad)


async def test_two_cards_of_one_customer_have_two_purses(ledger: Ledger, pool: AsyncConnectionPool) -> None:
    owner = new_owner()
    first, second = [
        await ledger.open_owned_account(
            owner=owner, purpose=AccountPurpose.CARD_PURSE, currency="CNY", actor=ACTOR, instance=number
        )
        for number in ("62010000000000000001", "62010000000000000002")
    ]
    assert first.id != second.id and first.owner == second.owner == owner
    assert first.metadata == {"purpose": "card_purse", "instance": "62010000000000000001"}
    again = await ledger.open_owned_account(
        owner=owner, purpose=AccountPurpose.CARD_PURSE, currency="CNY", instance="62010000000000000001"
    )
    assert again == first
    assert [a.id for a in await ledger.list_accounts(owner=owner)] == [first.id, second.id]
    (opened,) = await audit_of(pool, str(first.id))
    assert opened[3]["instance"] == "62010000000000000001"


def test_every_purpose_has_a_kind_and_a_wallet_cannot_be_overdrawn() -> None:
    assert set(OWNED_ACCOUNTS) == set(AccountPurpose)
    for purpose, kind in OWNED_ACCOUNTS.items():
        assert kind.purpose is purpose and kind.zh and kind.en
        assert not (kind.debits_must_not_exceed_credits and kind.credits_must_not_exceed_debits)
    wallet = OWNED_ACCOUNTS[AccountPurpose.WALLET]
    assert wallet.code is AccountCode.CUSTOMER_WALLET and wallet.debits_must_not_exceed_credits
    assert OWNED_ACCOUNTS[AccountPurpose.CARD_PURSE].debits_must_not_exceed_credits


# --- opening ---------------------------------------------------------------------------------------


async def test_an_owned_account_opens_under_its_derived_id_once(
    ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    owner = new_owner()
    first = await wallet(ledger, owner)
    assert first.id == owned_account_id(owner=owner, purpose=AccountPurpose.WALLET, currency="CNY")
    assert (first.owner, first.code, first.currency) == (owner, "customer_wallet", "CNY")
    assert first.debits_must_not_exceed_credits and not first.frozen
    assert first.metadata == {"purpose": "wallet"}
    assert await wallet(ledger, owner) == first
    opened = await audit_of(pool, str(first.id))
    assert [(a, t, i) for a, t, i, _ in opened] == [("ledger.account_opened", "staff", ACTOR.id)]
    assert opened[0][3] == {"owner": owner, "purpose": "wallet", "currency": "CNY", "frozen": False}


async def test_sixteen_concurrent_lazy_openings_open_one_account(
    ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    owner = new_owner()
    opened = await asyncio.gather(*(wallet(ledger, owner) for _ in range(16)))
    assert len({a.id for a in opened}) == 1 and len({a.created_at for a in opened}) == 1
    assert len(await ledger.list_accounts(owner=owner)) == 1
    assert len(await audit_of(pool, str(opened[0].id))) == 1


async def test_an_account_under_the_id_with_other_fields_is_a_conflict(ledger: Ledger) -> None:
    owner = new_owner()
    account_id = owned_account_id(owner=owner, purpose=AccountPurpose.WALLET, currency="CNY")
    await ledger.create_account(AccountSpec(account_id, "CNY", "general", owner))  # opened by hand
    await refused(wallet(ledger, owner), "account_id_conflict")


async def test_an_unknown_currency_is_refused_before_anything_is_written(ledger: Ledger) -> None:
    owner = new_owner()
    with pytest.raises(Exception) as info:
        await ledger.open_owned_account(owner=owner, purpose=AccountPurpose.WALLET, currency="XXX")
    assert getattr(info.value, "code", None) == "unknown_currency"
    assert await ledger.list_accounts(owner=owner) == []


async def test_accounts_are_listed_by_owner(ledger: Ledger) -> None:
    owner, other = new_owner(), new_owner()
    mine = [
        await wallet(ledger, owner),
        await ledger.open_owned_account(owner=owner, purpose=AccountPurpose.CARD_PURSE, currency="CNY"),
        await ledger.open_owned_account(
            owner=owner, purpose=AccountPurpose.ACCOUNT_CARD_RECEIVABLE, currency="CNY"
        ),
        await ledger.open_owned_account(owner=owner, purpose=AccountPurpose.WALLET, currency="HKD"),
    ]
    await wallet(ledger, other)
    listed = await ledger.list_accounts(owner=owner)
    assert {a.id for a in listed} == {a.id for a in mine} and len(listed) == 4
    receivable = next(a for a in listed if a.metadata["purpose"] == "account_card_receivable")
    assert receivable.credits_must_not_exceed_debits and receivable.code == "account_card"
    assert await ledger.list_accounts(owner=new_owner()) == []


# --- frozen owners ---------------------------------------------------------------------------------


async def test_an_account_opened_for_a_frozen_owner_opens_frozen(ledger: Ledger) -> None:
    """The caller says so (the ledger has not heard of the owner yet)…"""
    owner = new_owner()
    account = await wallet(ledger, owner, frozen=True)
    assert account.frozen
    source = await fund(ledger, account, 100)  # credits still arrive
    await refused(ledger.create_transfer(move(account.id, source, 10)), "account_frozen")


async def test_the_ledgers_record_of_a_frozen_owner_wins_over_a_stale_caller(
    ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    """…and once the ledger froze the owner, an opening by a caller who read the owner as active (a
    race with the freeze) still opens frozen; after the release, a stale ``frozen=True`` does not."""
    owner = new_owner()
    await set_frozen(pool, owner, True)
    assert (await wallet(ledger, owner, frozen=False)).frozen
    await set_frozen(pool, owner, False)
    purse = await ledger.open_owned_account(
        owner=owner, purpose=AccountPurpose.CARD_PURSE, currency="CNY", frozen=True
    )
    assert not purse.frozen


async def test_freezing_an_owner_refuses_debits_but_lets_earlier_holds_and_credits_through(
    ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    owner = new_owner()
    account = await wallet(ledger, owner)
    purse = await ledger.open_owned_account(owner=owner, purpose=AccountPurpose.CARD_PURSE, currency="CNY")
    source = await fund(ledger, account, 1000)
    to_post = await ledger.create_transfer(hold(account.id, source, 100))
    to_void = await ledger.create_transfer(hold(account.id, source, 50))

    changed = await set_frozen(pool, owner, True)
    assert changed == sorted([account.id, purse.id])
    assert all(a.frozen for a in await ledger.list_accounts(owner=owner))
    await refused(ledger.create_transfer(move(account.id, source, 10)), "account_frozen")
    await refused(ledger.create_transfer(hold(account.id, source, 10)), "account_frozen")
    await ledger.create_transfer(post(to_post.id))  # holds taken before the freeze still post…
    await ledger.create_transfer(void(to_void.id))  # …or void
    await ledger.create_transfer(move(source, account.id, 5))  # credits still arrive
    assert (await ledger.get_account_or_raise(account.id)).balance == 1000 - 100 + 5

    assert await set_frozen(pool, owner, True) == []  # again: nothing changes
    assert await set_frozen(pool, owner, False) == sorted([account.id, purse.id])
    await ledger.create_transfer(move(account.id, source, 10))
    assert (await ledger.get_account_or_raise(account.id)).balance == 895


async def test_a_freeze_is_audited_once_in_the_callers_unit(
    ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    owner = new_owner()
    account = await wallet(ledger, owner)
    await set_frozen(pool, owner, True)
    await set_frozen(pool, owner, False)
    rows = await audit_of(pool, owner)
    assert [(a, t, i) for a, t, i, _ in rows] == [
        ("ledger.owner_frozen", "staff", ACTOR.id),
        ("ledger.owner_unfrozen", "staff", ACTOR.id),
    ]
    assert rows[0][3] == {"accounts": [str(account.id)]}


async def test_a_freeze_rolls_back_with_its_unit(ledger: Ledger, pool: AsyncConnectionPool) -> None:
    owner = new_owner()
    account = await wallet(ledger, owner)
    source = await fund(ledger, account, 100)

    class CallerFailed(Exception):
        pass

    async def step(unit: Unit) -> None:
        assert await set_owner_frozen(unit, owner=owner, frozen=True, actor=ACTOR) == [account.id]
        raise CallerFailed  # the caller's own change fails after the freeze

    with pytest.raises(CallerFailed):
        await UnitOfWork(pool).run(step)
    assert not (await ledger.get_account_or_raise(account.id)).frozen
    assert await audit_of(pool, owner) == []
    later = await ledger.open_owned_account(owner=owner, purpose=AccountPurpose.CARD_PURSE, currency="CNY")
    assert not later.frozen  # the owner's record rolled back too
    await ledger.create_transfer(move(account.id, source, 10))


async def test_a_freeze_waits_for_a_transfer_in_flight_and_does_not_deadlock(
    ledger: Ledger, pool: AsyncConnectionPool
) -> None:
    """Freezes and transfers on the same accounts at once: every transfer is either applied or refused
    as frozen, and the money adds up."""
    owner = new_owner()
    accounts = [
        await wallet(ledger, owner),
        await ledger.open_owned_account(owner=owner, purpose=AccountPurpose.CARD_PURSE, currency="CNY"),
    ]
    sources = [await fund(ledger, a, 10_000) for a in accounts]

    async def spend(i: int) -> str:
        try:
            await ledger.create_transfer(move(accounts[i % 2].id, sources[i % 2], 1))
        except Exception as error:
            return str(getattr(error, "code", error))
        return "ok"

    async def toggle(i: int) -> None:
        await set_frozen(pool, owner, i % 2 == 0)

    outcomes = await asyncio.gather(*(spend(i) for i in range(40)), *(toggle(i) for i in range(8)))
    answers = [o for o in outcomes if o is not None]
    assert set(answers) <= {"ok", "account_frozen"}
    spent = sum(1 for a in answers if a == "ok")
    balances = [(await ledger.get_account_or_raise(a.id)).balance for a in accounts]
    assert sum(balances) == 20_000 - spent
