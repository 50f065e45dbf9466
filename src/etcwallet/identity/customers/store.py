"""Every SQL statement on the customers' tables (``customers``, ``customer_profiles``,
``payment_passwords``, ``login_tickets``), as functions of a connection: the caller owns the transaction.

``get_x`` answers None when there is none, ``get_x_or_raise`` raises the refusal, ``lock_x`` takes the row
``FOR UPDATE``. Times come from the caller (the unit's clock), never from ``now()`` in SQL.

Of ``login_tickets`` only the customers' rows (``principal_type = 'customer'``); staff's store keeps its own.
Other sub-packages' tables are reached through their service functions (``factors.service.factor_counts``,
``sessions.service``), never named here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.identity.customers.errors import customer_not_found
from etcwallet.identity.customers.types import PIN_MAX_FAILURES, Customer, PinState

Conn = AsyncConnection[Any]

_COLUMNS = (
    "id, phone, status, frozen_reason, frozen_by, frozen_at, locked_until, created_at, "
    "password_hash IS NOT NULL"
)
_WIDTH = 9  # the columns a Customer is built from

# --- customers -------------------------------------------------------------------------------------------


async def get_customer(conn: Conn, customer_id: UUID) -> Customer | None:
    """A customer by id; None when there is none."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM customers WHERE id = %s", (customer_id,))
    row = await cur.fetchone()
    return None if row is None else Customer(*row)


async def get_customer_or_raise(conn: Conn, customer_id: UUID) -> Customer:
    """A customer by id; 404 ``customer_not_found`` when there is none."""
    customer = await get_customer(conn, customer_id)
    if customer is None:
        raise customer_not_found()
    return customer


async def lock_customer(conn: Conn, customer_id: UUID) -> Customer:
    """A customer by id, its row locked until the transaction ends (changes one at a time); 404 if none."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM customers WHERE id = %s FOR UPDATE", (customer_id,))
    row = await cur.fetchone()
    if row is None:
        raise customer_not_found()
    return Customer(*row)


async def share_lock_customer(conn: Conn, customer_id: UUID) -> Customer:
    """A customer by id, its row share-locked until the transaction ends: others may read and share-lock
    it, a change (a closure) waits; 404 if none."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM customers WHERE id = %s FOR SHARE", (customer_id,))
    row = await cur.fetchone()
    if row is None:
        raise customer_not_found()
    return Customer(*row)


async def get_by_phone(conn: Conn, phone: str) -> Customer | None:
    """The customer registered with this phone number; None when there is none."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM customers WHERE phone = %s", (phone,))
    row = await cur.fetchone()
    return None if row is None else Customer(*row)


async def lock_credentials_by_phone(conn: Conn, phone: str) -> tuple[Customer, str | None] | None:
    """The customer with this phone and their password hash (None while unclaimed), the row locked
    (sign-ins counted in turn)."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, password_hash FROM customers WHERE phone = %s FOR UPDATE", (phone,)
    )
    row = await cur.fetchone()
    return None if row is None else (Customer(*row[:_WIDTH]), row[_WIDTH])


async def lock_credentials(conn: Conn, customer_id: UUID) -> tuple[Customer, str | None]:
    """The customer and their password hash (None while unclaimed), the row locked; 404 when there is none."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, password_hash FROM customers WHERE id = %s FOR UPDATE", (customer_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise customer_not_found()
    return Customer(*row[:_WIDTH]), row[_WIDTH]


async def set_phone(conn: Conn, customer_id: UUID, phone: str) -> bool:
    """Give the customer a new phone number; False when another customer holds it (nothing changed)."""
    cur = await conn.execute(
        "UPDATE customers SET phone = %s WHERE id = %s "
        "AND NOT EXISTS (SELECT 1 FROM customers WHERE phone = %s AND id <> %s)",
        (phone, customer_id, phone, customer_id),
    )
    return cur.rowcount == 1


async def set_profile_name(conn: Conn, customer_id: UUID, *, name_enc: bytes, now: datetime) -> None:
    """Replace the name on the real-name profile (the ID document and its verification stay)."""
    await conn.execute(
        "UPDATE customer_profiles SET name_enc = %s, updated_at = %s WHERE customer_id = %s",
        (name_enc, now, customer_id),
    )


async def insert_customer(
    conn: Conn, *, customer_id: UUID, phone: str, password_hash: str, now: datetime
) -> Customer | None:
    """A new active customer; None when the phone is registered already (nothing written)."""
    cur = await conn.execute(
        "INSERT INTO customers (id, phone, password_hash, password_changed_at, created_at) "
        f"VALUES (%s, %s, %s, %s, %s) ON CONFLICT (phone) DO NOTHING RETURNING {_COLUMNS}",
        (customer_id, phone, password_hash, now, now),
    )
    row = await cur.fetchone()
    return None if row is None else Customer(*row)


async def insert_unclaimed_customer(
    conn: Conn, *, customer_id: UUID, phone: str, outlet_id: UUID, staff_id: UUID, now: datetime
) -> Customer | None:
    """A new active customer opened at an outlet, with no password yet (unclaimed); None when the phone is
    registered already (nothing written)."""
    cur = await conn.execute(
        "INSERT INTO customers (id, phone, password_hash, created_at_outlet, created_by_staff, "
        "password_changed_at, created_at) VALUES (%s, %s, NULL, %s, %s, %s, %s) "
        f"ON CONFLICT (phone) DO NOTHING RETURNING {_COLUMNS}",
        (customer_id, phone, outlet_id, staff_id, now, now),
    )
    row = await cur.fetchone()
    return None if row is None else Customer(*row)


async def claim_customer(conn: Conn, phone: str, *, password_hash: str, now: datetime) -> Customer | None:
    """Set the first password of the unclaimed account with this phone; None when there is no unclaimed
    one (no account, or one claimed already: nothing written)."""
    cur = await conn.execute(
        "UPDATE customers SET password_hash = %s, password_changed_at = %s, failed_logins = 0, "
        f"locked_until = NULL WHERE phone = %s AND password_hash IS NULL RETURNING {_COLUMNS}",
        (password_hash, now, phone),
    )
    row = await cur.fetchone()
    return None if row is None else Customer(*row)


async def set_password(
    conn: Conn, customer_id: UUID, *, password_hash: str, now: datetime, clear_lock: bool
) -> None:
    """A new password; the failed sign-ins are forgotten, and (``clear_lock``) any lockout lifted."""
    lock = ", locked_until = NULL" if clear_lock else ""
    await conn.execute(
        f"UPDATE customers SET password_hash = %s, password_changed_at = %s, failed_logins = 0{lock} "
        "WHERE id = %s",
        (password_hash, now, customer_id),
    )


async def set_frozen(conn: Conn, customer_id: UUID, *, reason: str, frozen_by: str, now: datetime) -> None:
    """Mark the account frozen, with why, by whom and since when."""
    await conn.execute(
        "UPDATE customers SET status = 'frozen', frozen_reason = %s, frozen_by = %s, frozen_at = %s "
        "WHERE id = %s",
        (reason, frozen_by, now, customer_id),
    )


async def set_active(conn: Conn, customer_id: UUID) -> None:
    """Lift a freeze and any sign-in lockout."""
    await conn.execute(
        "UPDATE customers SET status = 'active', frozen_reason = NULL, frozen_by = NULL, frozen_at = NULL, "
        "failed_logins = 0, locked_until = NULL WHERE id = %s",
        (customer_id,),
    )


async def get_phone_and_birth_date(conn: Conn, customer_id: UUID) -> tuple[str, date | None]:
    """The phone and (from the real-name profile) the birth date: what a payment password must not be."""
    cur = await conn.execute(
        "SELECT c.phone, p.birth_date FROM customers c LEFT JOIN customer_profiles p ON p.customer_id = c.id "
        "WHERE c.id = %s",
        (customer_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise customer_not_found()
    return row[0], row[1]


# --- real-name profiles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRow:
    """A stored profile: the name still encrypted, the ID number as its keyed hash and masked form."""

    name_enc: bytes
    id_type: str
    id_number_masked: str
    birth_date: date | None
    verified_at: datetime | None
    updated_at: datetime
    id_number_hash: bytes
    verified_by: str | None = None


_PROFILE_COLUMNS = (
    "name_enc, id_type, id_number_masked, birth_date, verified_at, updated_at, id_number_hash, verified_by"
)


def _profile_row(row: Any) -> ProfileRow:
    return ProfileRow(bytes(row[0]), row[1], row[2], row[3], row[4], row[5], bytes(row[6]), row[7])


async def get_profile(conn: Conn, customer_id: UUID, *, lock: bool = False) -> ProfileRow | None:
    """The stored real-name profile (``lock``: its row locked); None when none is on file."""
    suffix = " FOR UPDATE" if lock else ""
    cur = await conn.execute(
        f"SELECT {_PROFILE_COLUMNS} FROM customer_profiles WHERE customer_id = %s{suffix}", (customer_id,)
    )
    row = await cur.fetchone()
    return None if row is None else _profile_row(row)


async def get_sealed_holder(conn: Conn, customer_id: UUID) -> tuple[bytes, str, bytes] | None:
    """The profile's sealed name, ID type and sealed ID number (for a card's holder file); None when none."""
    cur = await conn.execute(
        "SELECT name_enc, id_type, id_number_enc FROM customer_profiles WHERE customer_id = %s",
        (customer_id,),
    )
    row = await cur.fetchone()
    return None if row is None else (bytes(row[0]), row[1], bytes(row[2]))


async def find_id_by_id_number(conn: Conn, *, id_type: str, id_number_hash: bytes) -> UUID | None:
    """The customer whose profile holds this ID number (its keyed hash): one indexed look-up."""
    cur = await conn.execute(
        "SELECT customer_id FROM customer_profiles WHERE id_type = %s AND id_number_hash = %s",
        (id_type, id_number_hash),
    )
    row = await cur.fetchone()
    return None if row is None else UUID(str(row[0]))


@dataclass(frozen=True)
class ProfileWrite:
    """What a recorded profile stores: the name and number encrypted, the number's keyed hash and mask."""

    name_enc: bytes
    id_type: str
    id_number_enc: bytes
    id_number_hash: bytes
    id_number_masked: str
    birth_date: date | None


async def put_profile(conn: Conn, customer_id: UUID, profile: ProfileWrite, *, now: datetime) -> None:
    """Record or replace the real-name profile; a replaced one is no longer verified."""
    await conn.execute(
        "INSERT INTO customer_profiles (customer_id, name_enc, id_type, id_number_enc, id_number_hash, "
        "id_number_masked, birth_date, verified_at, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, NULL, %s) ON CONFLICT (customer_id) DO UPDATE SET "
        "name_enc = EXCLUDED.name_enc, id_type = EXCLUDED.id_type, id_number_enc = EXCLUDED.id_number_enc, "
        "id_number_hash = EXCLUDED.id_number_hash, id_number_masked = EXCLUDED.id_number_masked, "
        "birth_date = EXCLUDED.birth_date, verified_at = NULL, verified_by = NULL, "
        "updated_at = EXCLUDED.updated_at",
        (
            customer_id,
            profile.name_enc,
            profile.id_type,
            profile.id_number_enc,
            profile.id_number_hash,
            profile.id_number_masked,
            profile.birth_date,
            now,
        ),
    )


async def set_verified(conn: Conn, customer_id: UUID, *, method: str, now: datetime) -> bool:
    """Mark the profile verified by ``method`` since ``now``; False when no profile is on file."""
    cur = await conn.execute(
        "UPDATE customer_profiles SET verified_at = %s, verified_by = %s WHERE customer_id = %s",
        (now, method, customer_id),
    )
    return cur.rowcount == 1


async def get_verification(conn: Conn, customer_id: UUID) -> tuple[datetime, str] | None:
    """When and how the customer's profile was verified; None when unverified or no profile is on file."""
    cur = await conn.execute(
        "SELECT verified_at, verified_by FROM customer_profiles WHERE customer_id = %s "
        "AND verified_at IS NOT NULL",
        (customer_id,),
    )
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1])


# --- payment passwords -----------------------------------------------------------------------------------


async def get_pin_state(conn: Conn, customer_id: UUID) -> PinState:
    """Whether a payment password is set, locked, and how many wrong tries it has seen."""
    cur = await conn.execute(
        "SELECT failed_attempts, locked_at FROM payment_passwords WHERE customer_id = %s", (customer_id,)
    )
    row = await cur.fetchone()
    if row is None:
        return PinState(False, False, 0)
    return PinState(True, row[1] is not None, row[0])


async def lock_pin(conn: Conn, customer_id: UUID) -> tuple[str, PinState] | None:
    """The payment password's hash and state, its row locked; None when none is set."""
    cur = await conn.execute(
        "SELECT password_hash, failed_attempts, locked_at FROM payment_passwords WHERE customer_id = %s "
        "FOR UPDATE",
        (customer_id,),
    )
    row = await cur.fetchone()
    return None if row is None else (row[0], PinState(True, row[2] is not None, row[1]))


async def clear_pin_failures(conn: Conn, customer_id: UUID) -> None:
    """Forget the wrong tries after a right one."""
    await conn.execute(
        "UPDATE payment_passwords SET failed_attempts = 0 WHERE customer_id = %s", (customer_id,)
    )


async def count_pin_failure(conn: Conn, customer_id: UUID, *, now: datetime) -> int:
    """Count a wrong try, locking the payment password at the last one allowed; the tries counted so far."""
    cur = await conn.execute(
        "UPDATE payment_passwords SET failed_attempts = failed_attempts + 1, "
        "locked_at = CASE WHEN failed_attempts + 1 >= %s THEN %s::timestamptz END WHERE customer_id = %s "
        "RETURNING failed_attempts",
        (PIN_MAX_FAILURES, now, customer_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def insert_pin(conn: Conn, customer_id: UUID, *, password_hash: str) -> bool:
    """Set the first payment password; False when one is set already (nothing written)."""
    cur = await conn.execute(
        "INSERT INTO payment_passwords (customer_id, password_hash) VALUES (%s, %s) "
        "ON CONFLICT (customer_id) DO NOTHING",
        (customer_id, password_hash),
    )
    return cur.rowcount == 1


async def put_pin(conn: Conn, customer_id: UUID, *, password_hash: str, now: datetime) -> None:
    """Set or replace the payment password, unlocked and with no wrong tries."""
    await conn.execute(
        "INSERT INTO payment_passwords (customer_id, password_hash) VALUES (%s, %s) "
        "ON CONFLICT (customer_id) DO UPDATE SET password_hash = EXCLUDED.password_hash, "
        "failed_attempts = 0, locked_at = NULL, updated_at = %s",
        (customer_id, password_hash, now),
    )


# --- login tickets (a correct password, a second factor owed) --------------------------------------------


async def insert_ticket(conn: Conn, *, ticket_hash: bytes, customer_id: UUID, expires_at: datetime) -> None:
    """Keep a login ticket (by its hash) until it expires."""
    await conn.execute(
        "INSERT INTO login_tickets (ticket_hash, principal_type, principal_id, expires_at) "
        "VALUES (%s, 'customer', %s, %s)",
        (ticket_hash, customer_id, expires_at),
    )


async def get_live_ticket(
    conn: Conn, ticket_hash: bytes, *, now: datetime, attempts: int, lock: bool = False
) -> UUID | None:
    """The customer of a live ticket (unused, unexpired, tries left; ``lock``: row locked); None if none."""
    suffix = " FOR UPDATE" if lock else ""
    cur = await conn.execute(
        "SELECT principal_id FROM login_tickets WHERE ticket_hash = %s AND principal_type = 'customer' "
        f"AND used_at IS NULL AND expires_at > %s AND attempts < %s{suffix}",
        (ticket_hash, now, attempts),
    )
    row = await cur.fetchone()
    return None if row is None else UUID(str(row[0]))


async def spend_ticket(conn: Conn, ticket_hash: bytes, *, now: datetime) -> None:
    """Mark a ticket used: it finished a sign-in."""
    await conn.execute("UPDATE login_tickets SET used_at = %s WHERE ticket_hash = %s", (now, ticket_hash))


async def count_ticket_attempt(conn: Conn, ticket_hash: bytes) -> None:
    """Count a wrong second factor against the ticket."""
    await conn.execute(
        "UPDATE login_tickets SET attempts = attempts + 1 WHERE ticket_hash = %s", (ticket_hash,)
    )


# --- closing and anonymizing (closure.py) -----------------------------------------------------------------


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


async def closed_before(
    conn: Conn, *, before: datetime, limit: int, after: tuple[datetime, UUID] | None = None
) -> list[tuple[datetime, UUID]]:
    """Up to ``limit`` customers closed before ``before`` and not yet anonymized, longest closed first, as
    ``(closed_at, id)``; ``after`` continues past the last one of a previous page."""
    after_at, after_id = after if after is not None else (None, None)
    cur = await conn.execute(
        "SELECT closed_at, id FROM customers WHERE status = 'closed' AND anonymized_at IS NULL "
        "AND closed_at < %(before)s "
        "AND (%(after_at)s::timestamptz IS NULL OR (closed_at, id) > (%(after_at)s, %(after_id)s::uuid)) "
        "ORDER BY closed_at, id LIMIT %(limit)s",
        {"before": before, "after_at": after_at, "after_id": after_id, "limit": limit},
    )
    return [(row[0], UUID(str(row[1]))) for row in await cur.fetchall()]


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
