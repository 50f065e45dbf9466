"""Identity's scheduled work, run once across all processes by the platform's job runner.

``identity.housekeeping`` (every ``ETCW_HOUSEKEEPING_INTERVAL_SECONDS``) forgets spent counters, codes,
tickets and challenges and logs the audit log's head as an anchor (:mod:`etcwallet.identity.housekeeping`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etcwallet.identity import housekeeping
from etcwallet.platform.jobs import Backoff, Every, Job, JobContext

HOUSEKEEPING = "identity.housekeeping"


async def _housekeeping(ctx: JobContext) -> Mapping[str, Any]:
    return await housekeeping.run_round(ctx.pool)


def jobs(housekeeping_interval: float) -> list[Job]:
    """Identity's jobs."""
    backoff = Backoff(base=60.0, factor=2.0, cap=max(60.0, housekeeping_interval))
    return [
        Job(HOUSEKEEPING, _housekeeping, Every(housekeeping_interval), max_attempts=3, backoff=backoff,
            lease=300.0)
    ]  # fmt: skip
