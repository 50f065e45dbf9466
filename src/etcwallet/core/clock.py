"""The one shape of a clock: a function answering the current time (UTC, aware).

The ledger (``Ledger.clock``), the unit of work (``UnitOfWork(pool, clock=...)``) and identity's time rules
(session expiry, lockout, rate-limit windows, SMS codes) take one, so tests move time instead of sleeping.
The running application has one clock (``Runtime.uow.clock``, the ledger's); routes ask for it with
``core.deps.ClockDep``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The machine's time, in UTC."""
    return datetime.now(UTC)
