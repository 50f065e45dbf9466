"""Binding bank cards: sealed at rest, found by keyed hash, shown masked; one card one customer; one
default card per customer; every refusal names its field and writes nothing."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import Keys
from etcwallet.core.masking import mask_bank_card
from etcwallet.identity.errors import IdentityError
from etcwallet.payments import service as cards
from etcwallet.payments.bins import bin_table, luhn_check_digit
from etcwallet.payments.errors import PaymentsError
from etcwallet.payments.types import CARD_NUMBER_CONTEXT, CardAction, CardType
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import UnitOfWork
from tests.payments.builders import card_number, new_customer, teller


@pytest.fixture
def uow(pool: AsyncConnectionPool) -> UnitOfWork:
    return UnitOfWork(pool)


async def rows(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return list(await cur.fetchall())


async def bind(uow: UnitOfWork, keys: Keys, customer_id: UUID, number: str, **kw: Any) -> cards.BankCard:
    return await cards.bind_card(
        uow,
        keys=keys,
        customer_id=customer_id,
        card_number=number,
        confirm_number=kw.pop("confirm_number", number),
        actor=kw.pop("actor", Actor("customer", str(customer_id))),
        **kw,
    )


async def audit_of(pool: AsyncConnectionPool, actor_id: str) -> list[tuple[Any, ...]]:
    return await rows(
        pool,
        "SELECT action, outcome, target_id, detail FROM audit_log WHERE actor_id = %s ORDER BY seq",
        actor_id,
    )


# --- binding -------------------------------------------------------------------------------------------


async def test_a_bound_card_is_sealed_at_rest_and_answered_masked(
    uow: UnitOfWork, pool: AsyncConnectionPool, keys: Keys, bank_outlet: Any
) -> None:
    customer = await new_customer(pool)
    number = card_number("622139")
    actor = teller(bank_outlet.id)
    card = await bind(uow, keys, customer, number, actor=actor, bound_at_outlet=bank_outlet.id)

    assert card.masked == mask_bank_card(number) and number not in card.masked
    assert (card.bank.code, card.bank.zh, card.card_type) == ("lanzhou_bank", "兰州银行", CardType.DEBIT)
    assert card.is_default and card.live and card.bound_at_outlet == bank_outlet.id
    ((enc, digest, masked),) = await rows(
        pool, "SELECT number_enc, number_hash, masked FROM bank_cards WHERE customer_id = %s", customer
    )
    assert number.encode() not in bytes(enc) and number[-10:].encode() not in bytes(enc)
    assert keys.cipher.decrypt(bytes(enc), context=CARD_NUMBER_CONTEXT) == number
    assert bytes(digest) == cards.card_number_hash(number, keys.lookup_key) and masked == card.masked
    found = await rows(pool, "SELECT * FROM bank_cards WHERE customer_id = %s", customer)
    assert number not in repr(found)
    async with pool.connection() as conn:
        assert await cards.find_card_by_number(conn, keys=keys, card_number=number) == card
        assert (
            await cards.reveal_card_number(conn, keys=keys, customer_id=customer, card_id=card.id) == number
        )
        assert await cards.list_cards(conn, customer_id=customer) == [card]
    ((action, outcome, target, detail),) = await audit_of(pool, str(actor.id))
    assert (action, outcome, target) == (CardAction.BIND, "success", str(card.id))
    assert detail["masked"] == card.masked and detail["outlet_id"] == str(bank_outlet.id)


async def test_binding_the_same_card_again_answers_the_card_bound(
    uow: UnitOfWork, pool: AsyncConnectionPool, keys: Keys
) -> None:
    customer = await new_customer(pool)
    number = card_number("622848")
    actor = Actor("customer", str(customer))
    first = await bind(uow, keys, customer, number, actor=actor)
    again = await bind(uow, keys, customer, " ".join([number[:6], number[6:]]), actor=actor)
    assert again == first
    assert len(await rows(pool, "SELECT id FROM bank_cards WHERE customer_id = %s", customer)) == 1
    assert [a[0] for a in await audit_of(pool, str(customer))] == [CardAction.BIND]


async def test_a_card_live_for_another_customer_is_refused(
    uow: UnitOfWork, pool: AsyncConnectionPool, keys: Keys
) -> None:
    owner, other = await new_customer(pool), await new_customer(pool)
    number = card_number("621799")
    await bind(uow, keys, owner, number)
    with pytest.raises(PaymentsError) as caught:
        await bind(uow, keys, other, number)
    assert (caught.value.code, caught.value.status, caught.value.field) == (
        "card_bound_elsewhere",
        409,
        "card_number",
    )
    assert await rows(pool, "SELECT id FROM bank_cards WHERE customer_id = %s", other) == []
    ((action, outcome, target, detail),) = await audit_of(pool, str(other))
    assert (action, outcome, target) == (CardAction.BIND, "refused", str(other))
    assert detail == {"reason": "card_bound_elsewhere", "masked": mask_bank_card(number)}


@pytest.mark.parametrize(
    ("typed", "confirm", "code", "field"),
    [
        ("6222 0212 3456 7890 12a", None, "card_number_not_digits", "card_number"),
        ("622202123456", None, "card_number_length", "card_number"),
        ("6222021234567890129", None, "card_number_checksum", "card_number"),
        ("4111111111111111", None, "card_bin_unknown", "card_number"),
        ("622202123456789012", None, "card_length_for_bank", "card_number"),
        ("6222021234567890128", "6222021234567890136", "card_number_mismatch", "confirm_number"),
    ],
)
async def test_each_refusal_names_its_field_and_writes_nothing(
    typed: str,
    confirm: str | None,
    code: str,
    field: str,
    uow: UnitOfWork,
    pool: AsyncConnectionPool,
    keys: Keys,
) -> None:
    customer = await new_customer(pool)
    with pytest.raises(PaymentsError) as caught:
        await bind(uow, keys, customer, typed, confirm_number=confirm or typed)
    assert (caught.value.code, caught.value.status, caught.value.field) == (code, 422, field)
    assert await rows(pool, "SELECT id FROM bank_cards WHERE customer_id = %s", customer) == []
    assert await audit_of(pool, str(customer)) == []


async def test_a_closed_or_missing_customer_binds_nothing(
    uow: UnitOfWork, pool: AsyncConnectionPool, keys: Keys
) -> None:
    closed = await new_customer(pool)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE customers SET status = 'closed', closed_at = now() WHERE id = %s", (closed,)
        )
    with pytest.raises(IdentityError) as caught:
        await bind(uow, keys, closed, card_number("622700"))
    assert caught.value.code == "account_closed"
    with pytest.raises(IdentityError) as missing:
        await bind(uow, keys, uuid4(), card_number("622700"))
    assert missing.value.status == 404
    assert await rows(pool, "SELECT id FROM bank_cards WHERE customer_id = %s", closed) == []


async def test_no_card_number_in_clear_in_the_audit_log_or_the_logs(
    uow: UnitOfWork, pool: AsyncConnectionPool, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    customer, other = await new_customer(pool), await new_customer(pool)
    number = card_number("625330")
    caplog.set_level(logging.DEBUG)
    card = await bind(uow, keys, customer, number)
    with pytest.raises(PaymentsError):
        await bind(uow, keys, other, number)
    second = await bind(uow, keys, customer, card_number("622208"))
    await cards.set_default(
        uow, customer_id=customer, card_id=second.id, actor=Actor("customer", str(customer))
    )
    await cards.unbind_card(
        uow, customer_id=customer, card_id=card.id, actor=Actor("customer", str(customer))
    )
    entries = await rows(
        pool,
        "SELECT row_to_json(a)::text FROM audit_log a WHERE actor_id IN (%s, %s)",
        str(customer),
        str(other),
    )
    assert len(entries) == 5
    for (entry,) in entries:
        assert number not in entry and number[6:-4] not in entry
    assert number not in caplog.text and number[6:-4] not in caplog.text


# --- unbinding and the default card ----------------------------------------------------------------------


async def test_unbinding_the_default_passes_it_to_the_earliest_card_left(
    uow: UnitOfWork, pool: AsyncConnectionPool, keys: Keys
) -> None:
    customer, other = await new_customer(pool), await new_customer(pool)
    actor = Actor("customer", str(customer))
    numbers = [card_number("622202"), card_number("436728"), card_number("621226")]
    a, b, c = [await bind(uow, keys, customer, n) for n in numbers]
    assert (a.is_default, b.is_default, c.is_default) == (True, False, False)

    gone = await cards.unbind_card(uow, customer_id=customer, card_id=a.id, actor=actor)
    assert gone.unbound_at is not None and not gone.is_default
    assert await cards.unbind_card(uow, customer_id=customer, card_id=a.id, actor=actor) == gone
    async with pool.connection() as conn:
        listed = await cards.list_cards(conn, customer_id=customer)
        assert [(x.id, x.is_default) for x in listed] == [(b.id, True), (c.id, False)]
        assert await cards.get_card(conn, customer_id=customer, card_id=a.id) == gone
        assert await cards.get_card(conn, customer_id=other, card_id=b.id) is None
        with pytest.raises(PaymentsError) as caught:
            await cards.get_card_or_raise(conn, customer_id=other, card_id=b.id)
        assert (caught.value.status, caught.value.code) == (404, "card_not_found")

    # an unbound card may be bound again, by its holder or (passed on) by someone else, as a new row
    moved = await bind(uow, keys, other, numbers[0])
    assert moved.id != a.id and moved.is_default
    with pytest.raises(PaymentsError) as unbound:
        await cards.set_default(uow, customer_id=customer, card_id=a.id, actor=actor)
    assert (unbound.value.status, unbound.value.code) == (409, "card_unbound")
    with pytest.raises(PaymentsError) as foreign:
        await cards.unbind_card(uow, customer_id=other, card_id=b.id, actor=actor)
    assert foreign.value.status == 404


async def test_setting_the_default_moves_it(uow: UnitOfWork, pool: AsyncConnectionPool, keys: Keys) -> None:
    customer = await new_customer(pool)
    actor = Actor("customer", str(customer))
    a = await bind(uow, keys, customer, card_number("622845"))
    b = await bind(uow, keys, customer, card_number("622836"))
    moved = await cards.set_default(uow, customer_id=customer, card_id=b.id, actor=actor)
    assert moved.is_default and moved.id == b.id
    assert await cards.set_default(uow, customer_id=customer, card_id=b.id, actor=actor) == moved
    defaults = await rows(pool, "SELECT id FROM bank_cards WHERE customer_id = %s AND is_default", customer)
    assert defaults == [(b.id,)]
    actions = [row[0] for row in await audit_of(pool, str(customer))]
    assert actions == [CardAction.BIND, CardAction.BIND, CardAction.SET_DEFAULT]
    assert a.is_default


async def test_two_defaults_set_at_once_leave_exactly_one(
    uow: UnitOfWork, pool: AsyncConnectionPool, keys: Keys
) -> None:
    customer = await new_customer(pool)
    actor = Actor("customer", str(customer))
    a, b, c = [await bind(uow, keys, customer, card_number("622188")) for _ in range(3)]
    for _ in range(5):
        results = await asyncio.gather(
            cards.set_default(uow, customer_id=customer, card_id=b.id, actor=actor),
            cards.set_default(uow, customer_id=customer, card_id=c.id, actor=actor),
        )
        assert all(r.is_default for r in results)
        defaults = await rows(
            pool, "SELECT id FROM bank_cards WHERE customer_id = %s AND is_default", customer
        )
        assert len(defaults) == 1 and defaults[0][0] in {b.id, c.id}
        await cards.set_default(uow, customer_id=customer, card_id=a.id, actor=actor)


async def test_two_first_cards_bound_at_once_make_one_default(
    uow: UnitOfWork, pool: AsyncConnectionPool, keys: Keys
) -> None:
    customer = await new_customer(pool)
    first, second = await asyncio.gather(
        bind(uow, keys, customer, card_number("621098")), bind(uow, keys, customer, card_number("628258"))
    )
    assert first.is_default != second.is_default
    defaults = await rows(pool, "SELECT id FROM bank_cards WHERE customer_id = %s AND is_default", customer)
    assert len(defaults) == 1


async def test_the_same_card_bound_by_two_customers_at_once_goes_to_one(
    uow: UnitOfWork, pool: AsyncConnectionPool, keys: Keys
) -> None:
    one, two = await new_customer(pool), await new_customer(pool)
    number = card_number("621785")
    results = await asyncio.gather(
        bind(uow, keys, one, number), bind(uow, keys, two, number), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, PaymentsError)]
    assert len(refused) == 1 and refused[0].code == "card_bound_elsewhere"
    digest = cards.card_number_hash(number, keys.lookup_key)
    assert len(await rows(pool, "SELECT id FROM bank_cards WHERE number_hash = %s", digest)) == 1


async def test_the_database_refuses_a_second_default_and_a_second_live_holder(
    pool: AsyncConnectionPool, uow: UnitOfWork, keys: Keys
) -> None:
    """The invariants hold even for code that skips the service's locks."""
    customer = await new_customer(pool)
    a = await bind(uow, keys, customer, card_number("622769"))
    b = await bind(uow, keys, customer, card_number("621779"))
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            await conn.execute("UPDATE bank_cards SET is_default = true WHERE id = %s", (b.id,))
    async with pool.connection() as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            await conn.execute(
                "INSERT INTO bank_cards (id, customer_id, number_enc, number_hash, masked, bank_code, "
                "card_type, created_at) SELECT %s, customer_id, number_enc, number_hash, masked, bank_code, "
                "card_type, created_at FROM bank_cards WHERE id = %s",
                (uuid4(), a.id),
            )


# --- any valid number round-trips ---------------------------------------------------------------------


ENTRIES = sorted(bin_table().entries.values(), key=lambda e: e.prefix)


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, Any]:
    entry = draw(st.sampled_from(ENTRIES))
    size = entry.length - len(entry.prefix) - 1
    body = entry.prefix + draw(st.text(alphabet="0123456789", min_size=size, max_size=size))
    number = body + luhn_check_digit(body)
    return number, bin_table().lookup(number)  # a longer prefix may claim it: the table's answer wins


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(valid=valid_numbers())
async def test_any_valid_number_with_a_known_bin_round_trips_masked(
    valid: tuple[str, Any], pool: AsyncConnectionPool, keys: Keys
) -> None:
    number, entry = valid
    if entry.length != len(number):
        return  # a longer prefix of another length claims it: refused as card_length_for_bank, tested above
    customer = await new_customer(pool)
    uow = UnitOfWork(pool)
    card = await bind(uow, keys, customer, number)
    async with pool.connection() as conn:
        (listed,) = await cards.list_cards(conn, customer_id=customer)
        clear = await cards.reveal_card_number(conn, keys=keys, customer_id=customer, card_id=card.id)
    assert listed == card and clear == number
    assert listed.masked == mask_bank_card(number)
    assert listed.masked[:4] == number[:4] and listed.masked[-4:] == number[-4:]
    assert (listed.bank, listed.card_type) == (entry.bank, entry.card_type)
    await cards.unbind_card(uow, customer_id=customer, card_id=card.id, actor=Actor.system("test"))
