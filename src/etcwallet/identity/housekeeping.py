"""Forgetting what identity no longer needs: spent counters, codes, tickets and challenges.

Rate-limit windows, SMS codes, sign-in tickets, passkey challenges and the lockout counters of
identifiers without an account are written on every attempt, by anyone, so without a sweep those tables
grow with every attacker's try. Old SMS code hashes are also worth deleting for their own sake: a hash
of six digits is quickly reversed. The audit log keeps the record of what happened (each round logs its
head as an anchor); sessions are kept as each customer's device history, but the refresh tokens an ended
session rotated out are forgotten.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.clock import Clock, system_clock
from etcwallet.identity import lockout, ratelimit
from etcwallet.identity.sessions import store as session_store
from etcwallet.platform import audit, idempotency

log = logging.getLogger(__name__)

RATE_WINDOWS_KEPT = timedelta(days=2)
"""The longest window is a day; a window older than two can no longer count against anyone."""
SPENT_KEPT = timedelta(days=1)
"""Codes, tickets and challenges are kept a day past their expiry, for support to see what happened."""


async def sweep(conn: AsyncConnection[Any], *, now: datetime | None = None) -> dict[str, int]:
    """Delete what no check can need any more; returns how many rows left each table."""
    now = now or system_clock()
    deleted = {"rate_limits": await ratelimit.sweep(conn, older_than=RATE_WINDOWS_KEPT, now=now)}
    spent = now - SPENT_KEPT
    for table in ("sms_codes", "login_tickets", "webauthn_challenges"):
        cur = await conn.execute(f"DELETE FROM {table} WHERE expires_at < %s", (spent,))
        deleted[table] = cur.rowcount
    # A row whose last failure and last lock are both older than the lockout's memory counts for
    # nothing any more: deleting it answers exactly as keeping it would.
    forgotten = now - lockout.MEMORY
    cur = await conn.execute(
        "DELETE FROM unknown_login_failures WHERE updated_at < %s "
        "AND coalesce(greatest(locked_until, last_lock_until), '-infinity') < %s",
        (forgotten, forgotten),
    )
    deleted["unknown_login_failures"] = cur.rowcount
    # A session that has ended can be neither refreshed nor ended by a reused token: its rotated-out
    # refresh tokens need not be remembered.
    deleted["session_refresh_history"] = await session_store.forget_ended_families(conn, ended_before=spent)
    # Not identity's, but this loop is the one that runs until the jobs runner takes housekeeping over.
    deleted["idempotency_keys"] = await idempotency.purge_expired(conn, now)
    return deleted


async def run_round(pool: AsyncConnectionPool, *, clock: Clock = system_clock) -> dict[str, int]:
    """One round of housekeeping (the ``identity.housekeeping`` job): sweep, then log the audit head.

    The head's line, shipped with the logs, is an anchor kept outside the database, against which
    ``etcwallet audit verify --anchor`` finds deleted tail rows.
    """
    async with pool.connection() as conn:
        deleted = await sweep(conn, now=clock())
        newest = await audit.head(conn)
    if any(deleted.values()):
        log.info("identity housekeeping", extra={"deleted": deleted})
    if newest is not None:
        log.info("audit chain head", extra={"anchor": f"{newest[0]}:{newest[1]}"})
    return deleted
