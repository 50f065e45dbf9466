"""Login lockout shared by customers and staff: 5 failures lock for 15 minutes, doubling on repeats.

Both counts forget after a quiet day (:data:`MEMORY`): a failure more than a day after the previous one
starts the count again, and a lock doubles the previous one only if that one ended less than a day before.

An identifier with no account behind it (a phone nobody registered, a username nobody holds) is counted
and locked the same way, so the answers never tell a registered identifier from an unknown one.

Callers check the lock and count a failure while holding the row lock of the account (``SELECT … FOR
UPDATE``) or of the unknown identifier's row (:func:`unknown_lock_in_force` takes it), so concurrent
attempts are judged one after another: at most :data:`MAX_FAILURES` failures are counted before the lock,
and an attempt that arrives after the lock point is refused even with the right password. Wrong second
factor codes (TOTP, recovery codes, staff enrollment codes) count as failures too, for customers and staff.

Time is the caller's (``now``, a reading of the runtime's clock; the system clock when omitted), never SQL
``now()``, so locks are tested by moving a clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.core.clock import system_clock
from etcwallet.core.crypto import hash_token
from etcwallet.identity.errors import IdentityError

MAX_FAILURES = 5
BASE_LOCK = timedelta(minutes=15)
MAX_LOCK = timedelta(hours=24)
MEMORY = timedelta(days=1)
"""Failures and lock escalation older than this are forgotten: the count starts again."""

Table = Literal["customers", "staff"]


def lock_duration(previous_lockouts: int) -> timedelta:
    """15 minutes, then 30, 60, … up to a day."""
    lock: timedelta = BASE_LOCK * 2 ** min(previous_lockouts, 10)
    return min(lock, MAX_LOCK)


def locked_error(until: datetime) -> IdentityError:
    return IdentityError("account_locked", locked_until=until.astimezone(UTC).isoformat(timespec="seconds"))


def failed(key: str, locked_until: datetime | None) -> IdentityError:
    """The answer to a counted failure: the refusal ``key``, or the lock if this failure set one."""
    return IdentityError(key) if locked_until is None else locked_error(locked_until)


def lock_in_force(locked_until: datetime | None, *, now: datetime | None = None) -> IdentityError | None:
    """The refusal to give while an account is locked (at ``now``), or None when it is not."""
    if locked_until is not None and locked_until > (now or system_clock()):
        return locked_error(locked_until)
    return None


def _next_lock(lockouts: int, last_lock_until: datetime | None, now: datetime) -> tuple[int, datetime]:
    """The lock count after this lock, and when this lock ends: escalation continues only within a day."""
    recent = last_lock_until is not None and now - last_lock_until < MEMORY
    previous = lockouts if recent else 0
    return previous + 1, now + lock_duration(previous)


async def record_failure(
    conn: AsyncConnection[Any], *, table: Table, principal_id: UUID, now: datetime | None = None
) -> datetime | None:
    """Count a failed sign-in; returns the lock's end if this failure locked the account."""
    now = now or system_clock()
    cur = await conn.execute(
        f"UPDATE {table} SET failed_logins = CASE WHEN last_failed_at > %s THEN failed_logins + 1 ELSE 1 END, "
        "last_failed_at = %s WHERE id = %s RETURNING failed_logins, lockouts, last_lock_until",
        (now - MEMORY, now, principal_id),
    )
    row = await cur.fetchone()
    if row is None or row[0] < MAX_FAILURES:
        return None
    lockouts, until = _next_lock(row[1], row[2], now)
    await conn.execute(
        f"UPDATE {table} SET failed_logins = 0, lockouts = %s, locked_until = %s, last_lock_until = %s "
        "WHERE id = %s",
        (lockouts, until, until, principal_id),
    )
    return until


async def record_success(conn: AsyncConnection[Any], *, table: Table, principal_id: UUID) -> None:
    await conn.execute(
        f"UPDATE {table} SET failed_logins = 0, locked_until = NULL WHERE id = %s", (principal_id,)
    )


def _identity(table: Table, identifier: str) -> bytes:
    return hash_token(f"{table}:{identifier}")


async def unknown_lock_in_force(
    conn: AsyncConnection[Any], *, table: Table, identifier: str, now: datetime | None = None
) -> IdentityError | None:
    """The refusal to give while an identifier without an account is locked, or None.

    The identifier's row is created if need be and locked for the rest of the caller's transaction, so
    that concurrent attempts at one identifier are counted one after another, exactly as a real account's
    are under its row lock: otherwise they would all pass this check before any of them locked it, and
    the count of 401s before the first 423 would tell an unknown identifier from a registered one.
    """
    cur = await conn.execute(
        "INSERT INTO unknown_login_failures (identity_hash) VALUES (%s) ON CONFLICT (identity_hash) "
        "DO UPDATE SET identity_hash = excluded.identity_hash RETURNING locked_until",
        (_identity(table, identifier),),
    )
    row = await cur.fetchone()
    return lock_in_force(row[0], now=now) if row else None


async def record_unknown_failure(
    conn: AsyncConnection[Any], *, table: Table, identifier: str, now: datetime | None = None
) -> datetime | None:
    """Count a failed sign-in at an identifier without an account, exactly as :func:`record_failure` does."""
    key = _identity(table, identifier)
    now = now or system_clock()
    cur = await conn.execute(
        "INSERT INTO unknown_login_failures (identity_hash, failed_logins, last_failed_at, updated_at) "
        "VALUES (%s, 1, %s, %s) "
        "ON CONFLICT (identity_hash) DO UPDATE SET failed_logins = CASE "
        "WHEN unknown_login_failures.last_failed_at > %s THEN unknown_login_failures.failed_logins + 1 ELSE 1 END, "
        "last_failed_at = excluded.last_failed_at, updated_at = excluded.updated_at "
        "RETURNING failed_logins, lockouts, last_lock_until",
        (key, now, now, now - MEMORY),
    )
    row = await cur.fetchone()
    if row is None or row[0] < MAX_FAILURES:
        return None
    lockouts, until = _next_lock(row[1], row[2], now)
    await conn.execute(
        "UPDATE unknown_login_failures SET failed_logins = 0, lockouts = %s, locked_until = %s, "
        "last_lock_until = %s WHERE identity_hash = %s",
        (lockouts, until, until, key),
    )
    return until
