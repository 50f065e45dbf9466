"""Every SQL statement on ``bank_cards``, as functions of a connection: the caller owns the transaction.

``get_x`` answers None when there is none, ``get_x_or_raise`` raises the refusal, ``lock_x`` takes rows
``FOR UPDATE`` in id order. Times come from the caller (the unit's clock), never from ``now()`` in SQL.
The clear number never passes through here: only its ciphertext and its keyed hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.payments.bins import bank
from etcwallet.payments.errors import PaymentsError
from etcwallet.payments.types import BankCard, CardType

Conn = AsyncConnection[Any]

_COLUMNS = (
    "id, customer_id, masked, bank_code, card_type, is_default, bound_at_outlet, created_at, unbound_at"
)


def _card(row: Any) -> BankCard:
    return BankCard(
        id=row[0],
        customer_id=row[1],
        masked=row[2],
        bank=bank(row[3]),
        card_type=CardType(row[4]),
        is_default=row[5],
        bound_at_outlet=row[6],
        created_at=row[7],
        unbound_at=row[8],
    )


async def get_card(conn: Conn, card_id: UUID, *, customer_id: UUID) -> BankCard | None:
    """A customer's card by id, live or unbound; None when there is none (or it is another customer's)."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM bank_cards WHERE id = %s AND customer_id = %s", (card_id, customer_id)
    )
    row = await cur.fetchone()
    return None if row is None else _card(row)


async def get_card_or_raise(conn: Conn, card_id: UUID, *, customer_id: UUID) -> BankCard:
    """A customer's card by id; 404 ``card_not_found`` when there is none (or it is another customer's)."""
    card = await get_card(conn, card_id, customer_id=customer_id)
    if card is None:
        raise PaymentsError("card_not_found")
    return card


async def list_live(conn: Conn, customer_id: UUID) -> list[BankCard]:
    """A customer's live cards, the default first, then in the order they were bound."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM bank_cards WHERE customer_id = %s AND unbound_at IS NULL "
        "ORDER BY is_default DESC, created_at, id",
        (customer_id,),
    )
    return [_card(row) for row in await cur.fetchall()]


async def lock_live(conn: Conn, customer_id: UUID) -> list[BankCard]:
    """A customer's live cards, locked in id order (so every step on them takes the locks alike)."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM bank_cards WHERE customer_id = %s AND unbound_at IS NULL "
        "ORDER BY id FOR UPDATE",
        (customer_id,),
    )
    return [_card(row) for row in await cur.fetchall()]


async def find_live_by_hash(conn: Conn, number_hash: bytes) -> BankCard | None:
    """The live card with this number (by its keyed hash), whoever holds it; None when none."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM bank_cards WHERE number_hash = %s AND unbound_at IS NULL", (number_hash,)
    )
    row = await cur.fetchone()
    return None if row is None else _card(row)


async def get_number_enc(conn: Conn, card_id: UUID, *, customer_id: UUID) -> bytes | None:
    """A customer's card's sealed number; None when there is no such card."""
    cur = await conn.execute(
        "SELECT number_enc FROM bank_cards WHERE id = %s AND customer_id = %s", (card_id, customer_id)
    )
    row = await cur.fetchone()
    return None if row is None else bytes(row[0])


async def insert_card(conn: Conn, card: BankCard, *, number_enc: bytes, number_hash: bytes) -> None:
    """A newly bound card. A second live row for the same number, or a second default, is a unique
    violation (the unit of work runs the step again, which then finds the winner's row)."""
    await conn.execute(
        "INSERT INTO bank_cards (id, customer_id, number_enc, number_hash, masked, bank_code, card_type, "
        "is_default, bound_at_outlet, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            card.id,
            card.customer_id,
            number_enc,
            number_hash,
            card.masked,
            card.bank.code,
            card.card_type.value,
            card.is_default,
            card.bound_at_outlet,
            card.created_at,
        ),
    )


async def set_unbound(conn: Conn, card_id: UUID, *, now: datetime) -> None:
    """Unbind a card: it stays as history, no longer live and no longer the default."""
    await conn.execute(
        "UPDATE bank_cards SET unbound_at = %s, is_default = false WHERE id = %s", (now, card_id)
    )


async def move_default(conn: Conn, customer_id: UUID, card_id: UUID) -> None:
    """Make ``card_id`` the customer's only default card. The old default is cleared by a statement of
    its own first: PostgreSQL checks a unique index row by row, not at the end of a statement."""
    await conn.execute(
        "UPDATE bank_cards SET is_default = false WHERE customer_id = %s AND is_default AND id <> %s",
        (customer_id, card_id),
    )
    await conn.execute(
        "UPDATE bank_cards SET is_default = true WHERE id = %s AND customer_id = %s AND unbound_at IS NULL",
        (card_id, customer_id),
    )
