"""Identity's scheduled work, run once across all processes by the platform's job runner.

``identity.housekeeping`` (every ``ETCW_HOUSEKEEPING_INTERVAL_SECONDS``) forgets spent counters, codes,
tickets and challenges and logs the audit log's head as an anchor (:mod:`etcwallet.identity.housekeeping`),
by the clock it is given: the runtime's (the unit of work's), so "expired" means what it means to the
checks that wrote the rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etcwallet.core.clock import Clock, system_clock
from etcwallet.identity import housekeeping
from etcwallet.platform.jobs import Backoff, Every, Job, JobContext

HOUSEKEEPING = "identity.housekeeping"


def jobs(housekeeping_interval: float, *, clock: Clock = system_clock) -> list[Job]:
    """Identity's jobs, on ``clock`` (the runtime's)."""

    async def run_housekeeping(ctx: JobContext) -> Mapping[str, Any]:
        return await housekeeping.run_round(ctx.pool, clock=clock)

    backoff = Backoff(base=60.0, factor=2.0, cap=max(60.0, housekeeping_interval))
    schedule = Every(housekeeping_interval)
    return [Job(HOUSEKEEPING, run_housekeeping, schedule, max_attempts=3, backoff=backoff, lease=300.0)]
