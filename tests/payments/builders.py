"""Builders of the payments tests: customers to bind cards to, and card numbers of the BIN table."""

from __future__ import annotations

import random
import secrets
from uuid import UUID, uuid4

from psycopg_pool import AsyncConnectionPool

from etcwallet.payments.bins import bin_table, luhn_check_digit
from etcwallet.payments.types import BinEntry
from etcwallet.platform.audit import Actor


async def new_customer(pool: AsyncConnectionPool) -> UUID:
    """A fresh active customer (the row alone: binding a card needs nothing more)."""
    customer_id = uuid4()
    phone = f"19{secrets.randbelow(10**9):09d}"
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO customers (id, phone, password_hash) VALUES (%s, %s, '!')", (customer_id, phone)
        )
    return customer_id


def entry(prefix: str) -> BinEntry:
    """The BIN table's entry for exactly this prefix."""
    return bin_table().entries[prefix]


def card_number(
    prefix: str = "622202", *, length: int | None = None, rng: random.Random | None = None
) -> str:
    """A fresh Luhn-valid number starting with ``prefix``, as long as its BIN entry says (or ``length``)."""
    size = length or entry(prefix).length
    draw = rng or random.SystemRandom()
    body = prefix + "".join(str(draw.randrange(10)) for _ in range(size - len(prefix) - 1))
    return body + luhn_check_digit(body)


def teller(outlet_id: UUID | None = None) -> Actor:
    """A bank operator acting at an outlet."""
    return Actor("staff", str(uuid4()), ip="192.0.2.40", user_agent="pytest", outlet_id=str(outlet_id or ""))
