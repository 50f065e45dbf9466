"""The SQL of closing an account and anonymizing it: :mod:`.store`'s slice for :mod:`.closure`, kept in
its own module so the closure's statements read together.

Anonymization reaches other sub-packages' rows (second factors, sessions' device facts) through their
service functions (``factors.service.forget_principal``, ``sessions.service.forget_devices``), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.identity.customers.errors import customer_not_found

Conn = AsyncConnection[Any]

ANONYMIZED_PASSWORD = "!anonymized"
"""What replaces an anonymized customer's password hash: no password verifies against it."""


def phone_placeholder(customer_id: UUID) -> str:
    """What replaces an anonymized customer's phone: unique (the column is), and no phone number."""
    return f"closed:{customer_id}"


@dataclass(frozen=True)
class ClosureState:
    """When the account was closed, by whom, and when its personal data was anonymized (None: not yet)."""

    closed_at: datetime | None
    closed_by: str | None
    anonymized_at: datetime | None


async def get_closure_state(conn: Conn, customer_id: UUID, *, lock: bool = False) -> ClosureState:
    """The customer's closure state (``lock``: the row locked); 404 when there is no such customer."""
    suffix = " FOR UPDATE" if lock else ""
    cur = await conn.execute(
        f"SELECT closed_at, closed_by, anonymized_at FROM customers WHERE id = %s{suffix}", (customer_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise customer_not_found()
    return ClosureState(row[0], row[1], row[2])


async def set_closed(conn: Conn, customer_id: UUID, *, closed_by: str, now: datetime) -> None:
    """Mark the account closed, by whom and since when (a freeze's fields are kept as they were)."""
    await conn.execute(
        "UPDATE customers SET status = 'closed', closed_at = %s, closed_by = %s WHERE id = %s",
        (now, closed_by, customer_id),
    )


async def closed_before(conn: Conn, *, before: datetime, limit: int) -> list[UUID]:
    """Up to ``limit`` customers closed before ``before`` and not yet anonymized, longest closed first."""
    cur = await conn.execute(
        "SELECT id FROM customers WHERE status = 'closed' AND anonymized_at IS NULL AND closed_at < %s "
        "ORDER BY closed_at, id LIMIT %s",
        (before, limit),
    )
    return [UUID(str(row[0])) for row in await cur.fetchall()]


async def anonymize_customer(conn: Conn, customer_id: UUID, *, now: datetime) -> None:
    """Replace the phone with its placeholder and the password with an unusable one, forget the free-text
    freeze reason, delete the real-name profile, payment password and login tickets, and mark the time."""
    await conn.execute(
        "UPDATE customers SET phone = %s, password_hash = %s, frozen_reason = NULL, anonymized_at = %s "
        "WHERE id = %s",
        (phone_placeholder(customer_id), ANONYMIZED_PASSWORD, now, customer_id),
    )
    await conn.execute("DELETE FROM customer_profiles WHERE customer_id = %s", (customer_id,))
    await conn.execute("DELETE FROM payment_passwords WHERE customer_id = %s", (customer_id,))
    await conn.execute(
        "DELETE FROM login_tickets WHERE principal_type = 'customer' AND principal_id = %s", (customer_id,)
    )
