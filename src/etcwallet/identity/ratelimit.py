"""Rate limits shared by every worker process: fixed-window counters in PostgreSQL.

Each authentication endpoint counts attempts per IP and per phone/username; past the limit the answer
is 429 with ``Retry-After`` and nothing else happens. Windows are cut from the caller's ``now`` (a
reading of the runtime's clock; the system clock when omitted), so tests move a clock past a window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.clock import Clock, system_clock
from etcwallet.core.deps import ClockDep, PoolDep
from etcwallet.identity.errors import IdentityError


@dataclass(frozen=True)
class Limit:
    """At most ``count`` hits per ``window``."""

    count: int
    window: timedelta


def _window_start(now: datetime, window: timedelta) -> datetime:
    seconds = int(window.total_seconds())
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def too_many(retry_after: int) -> IdentityError:
    return IdentityError("rate_limited", retry_after=retry_after)


async def hit(conn: AsyncConnection[Any], *, key: str, limit: Limit, now: datetime | None = None) -> None:
    """Count one attempt against ``key``; raise a 429 problem once the window's limit is passed."""
    now = now or system_clock()
    start = _window_start(now, limit.window)
    cur = await conn.execute(
        "INSERT INTO rate_limits (key, window_start, count) VALUES (%s, %s, 1) "
        "ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limits.count + 1 RETURNING count",
        (key, start),
    )
    row = await cur.fetchone()
    assert row is not None
    if row[0] > limit.count:
        retry_after = max(1, math.ceil((start + limit.window - now).total_seconds()))
        raise too_many(retry_after)


async def sweep(
    conn: AsyncConnection[Any], *, older_than: timedelta = timedelta(days=2), now: datetime | None = None
) -> int:
    """Forget windows that can no longer matter."""
    cur = await conn.execute(
        "DELETE FROM rate_limits WHERE window_start < %s", ((now or system_clock()) - older_than,)
    )
    return cur.rowcount


@dataclass(frozen=True)
class Limiter:
    """A route's rate limits: :meth:`count` one attempt against each of its keys, by the runtime's clock."""

    pool: AsyncConnectionPool
    clock: Clock

    async def count(self, *checks: tuple[str, Limit]) -> None:
        """Count this attempt against each ``(key, limit)``, each in a transaction of its own so that an
        attempt counts even when a later key refuses it; 429 with ``Retry-After`` past a limit."""
        now = self.clock()
        async with self.pool.connection() as conn:
            for key, limit in checks:
                async with conn.transaction():
                    await hit(conn, key=key, limit=limit, now=now)


def get_limiter(pool: PoolDep, clock: ClockDep) -> Limiter:
    """The request's :class:`Limiter`, on the application's pool and clock."""
    return Limiter(pool, clock)


LimiterDep = Annotated[Limiter, Depends(get_limiter)]
