"""Forgetting the nonces of signed requests once the replay window refuses those requests anyway.

Every accepted signed request leaves a nonce row; a request older than the window is refused for its
timestamp before its nonce is looked at, so the row can go. Runs every :data:`EVERY` seconds in each
process until the platform's job runner (issue 16, item 4) schedules it once for all.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.db import autocommit
from etcwallet.platform.clients import store

log = logging.getLogger(__name__)

EVERY = 60.0
"""Seconds between sweeps: a busy lane network leaves many nonces a minute, each dead after ten."""
MARGIN = timedelta(minutes=1)
"""Kept a little past expiry, so clocks a moment apart between processes never drop a live nonce."""


async def forget_nonces(pool: AsyncConnectionPool, now: datetime | None = None) -> int:
    """Delete the nonces past the replay window; how many went."""
    before = (now or datetime.now(UTC)) - MARGIN
    async with autocommit(pool) as conn:
        return await store.forget_nonces(conn, before)


async def run(pool: AsyncConnectionPool, interval: float = EVERY) -> None:
    """Forget spent nonces every ``interval`` seconds until cancelled."""
    while True:
        try:
            forgotten = await forget_nonces(pool)
            if forgotten:
                log.info("machine nonces forgotten", extra={"count": forgotten})
        except (psycopg.Error, OSError):
            log.exception("forgetting machine nonces failed")
        await asyncio.sleep(interval)
