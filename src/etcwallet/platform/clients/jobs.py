"""Forgetting the nonces of signed requests once the replay window refuses those requests anyway.

Every accepted signed request leaves a nonce row; a request older than the window is refused for its
timestamp before its nonce is looked at, so the row can go. ``machine_clients.forget_nonces`` runs every
:data:`EVERY` seconds, once across all processes (the platform's job runner).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from etcwallet.core.db import autocommit
from etcwallet.platform.clients import store
from etcwallet.platform.jobs import Every, Job, JobContext

log = logging.getLogger(__name__)

FORGET_NONCES = "machine_clients.forget_nonces"
EVERY = 60.0
"""Seconds between sweeps: a busy lane network leaves many nonces a minute, each dead after ten."""
MARGIN = timedelta(minutes=1)
"""Kept a little past expiry, so clocks a moment apart between processes never drop a live nonce."""


async def forget_nonces(pool: AsyncConnectionPool, now: datetime | None = None) -> int:
    """Delete the nonces past the replay window; how many went."""
    before = (now or datetime.now(UTC)) - MARGIN
    async with autocommit(pool) as conn:
        return await store.forget_nonces(conn, before)


def jobs(interval: float = EVERY) -> list[Job]:
    """The machine clients' jobs."""

    async def sweep(ctx: JobContext) -> Mapping[str, Any]:
        forgotten = await forget_nonces(ctx.pool)
        if forgotten:
            log.info("machine nonces forgotten", extra={"count": forgotten})
        return {"forgotten": forgotten}

    return [Job(FORGET_NONCES, sweep, Every(interval), max_attempts=3)]
