"""Identity's scheduled work, run once across all processes by the platform's job runner.

``identity.housekeeping`` (every ``ETCW_HOUSEKEEPING_INTERVAL_SECONDS``) forgets spent counters, codes,
tickets and challenges and logs the audit log's head as an anchor (:mod:`etcwallet.identity.housekeeping`).
``identity.anonymize_closed`` (daily at 03:30 Asia/Shanghai) anonymizes customers closed longer than
``ETCW_CUSTOMER_RETENTION_DAYS`` (:mod:`etcwallet.identity.customers.closure`), on the ledger's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, time, timedelta
from typing import Any

from etcwallet.identity import housekeeping
from etcwallet.identity.customers import closure
from etcwallet.platform.jobs import Backoff, DailyAt, Every, Job, JobContext
from etcwallet.platform.unit import UnitOfWork, utcnow

HOUSEKEEPING = "identity.housekeeping"
ANONYMIZE_CLOSED = "identity.anonymize_closed"
DEFAULT_RETENTION_DAYS = 3653


async def _housekeeping(ctx: JobContext) -> Mapping[str, Any]:
    return await housekeeping.run_round(ctx.pool)


def anonymizer(retention_days: int, clock: Callable[[], datetime] = utcnow) -> Job:
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
    clock: Callable[[], datetime] = utcnow,
) -> list[Job]:
    """Identity's jobs (the anonymizer on ``clock``: the ledger's, in the application)."""
    backoff = Backoff(base=60.0, factor=2.0, cap=max(60.0, housekeeping_interval))
    housekeeping_job = Job(
        HOUSEKEEPING,
        _housekeeping,
        Every(housekeeping_interval),
        max_attempts=3,
        backoff=backoff,
        lease=300.0,
    )
    return [housekeeping_job, anonymizer(retention_days, clock)]
