"""Identity's scheduled work, run once across all processes by the platform's job runner.

``identity.housekeeping`` (every ``ETCW_HOUSEKEEPING_INTERVAL_SECONDS``) forgets spent counters, codes,
tickets and challenges and logs the audit log's head as an anchor (:mod:`etcwallet.identity.housekeeping`).
``identity.anonymize_closed`` (daily at 03:30 Asia/Shanghai) anonymizes customers closed longer than
``ETCW_CUSTOMER_RETENTION_DAYS`` (:mod:`etcwallet.identity.customers.closure`). Both run by the clock they
are given: the runtime's (the unit of work's), so "expired" means what it means to the checks that wrote
the rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time, timedelta
from typing import Any

from etcwallet.core.clock import Clock, system_clock
from etcwallet.identity import housekeeping
from etcwallet.identity.customers import closure
from etcwallet.platform.jobs import Backoff, DailyAt, Every, Job, JobContext
from etcwallet.platform.unit import UnitOfWork

HOUSEKEEPING = "identity.housekeeping"
ANONYMIZE_CLOSED = "identity.anonymize_closed"
DEFAULT_RETENTION_DAYS = 3653


def anonymizer(retention_days: int, clock: Clock = system_clock) -> Job:
    """The job anonymizing customers closed more than ``retention_days`` ago, by ``clock``."""
    retention = timedelta(days=retention_days)

    async def anonymize_closed(ctx: JobContext) -> Mapping[str, Any]:
        uow = UnitOfWork(ctx.pool, clock=clock)
        return {"anonymized": await closure.anonymize_closed(uow=uow, retention=retention, actor=ctx.actor)}

    return Job(ANONYMIZE_CLOSED, anonymize_closed, DailyAt(time(3, 30)), max_attempts=3, lease=300.0)


def jobs(
    housekeeping_interval: float,
    *,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    clock: Clock = system_clock,
) -> list[Job]:
    """Identity's jobs, on ``clock`` (the runtime's)."""

    async def run_housekeeping(ctx: JobContext) -> Mapping[str, Any]:
        return await housekeeping.run_round(ctx.pool, clock=clock)

    backoff = Backoff(base=60.0, factor=2.0, cap=max(60.0, housekeeping_interval))
    housekeeping_job = Job(
        HOUSEKEEPING,
        run_housekeeping,
        Every(housekeeping_interval),
        max_attempts=3,
        backoff=backoff,
        lease=300.0,
    )
    return [housekeeping_job, anonymizer(retention_days, clock)]
