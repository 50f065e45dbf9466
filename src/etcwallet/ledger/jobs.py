"""The ledger's scheduled work, run once across all processes by the platform's job runner.

``ledger.expire_holds`` releases holds whose timeout has passed (``Ledger.expire_due``) every
``ETCW_LEDGER_EXPIRY_INTERVAL_SECONDS``. Batches that lock an account release its expired holds anyway;
the sweep releases those on accounts nobody touches, so their pending totals do not linger.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from etcwallet.ledger.service import Ledger
from etcwallet.platform.jobs import Backoff, Every, Job, JobContext

log = logging.getLogger(__name__)

EXPIRE_HOLDS = "ledger.expire_holds"


def jobs(ledger: Ledger, expiry_interval: float) -> list[Job]:
    """The ledger's jobs, bound to the process's ledger service."""

    async def expire_holds(ctx: JobContext) -> Mapping[str, Any]:
        expired = await ledger.expire_due()
        if expired:
            log.info("ledger holds expired", extra={"count": expired})
        return {"expired": expired}

    # A failed sweep is retried one interval later, then two; after that the next period tries again.
    backoff = Backoff(base=expiry_interval, factor=2.0, cap=max(60.0, expiry_interval))
    return [Job(EXPIRE_HOLDS, expire_holds, Every(expiry_interval), max_attempts=3, backoff=backoff)]
