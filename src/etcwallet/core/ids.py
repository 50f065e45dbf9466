"""Identifiers the platform makes: UUIDv7 (RFC 9562), ordered by the time they were made.

Random (v4) ids land all over a B-tree index, so every insert touches a different page; time-ordered ids
land at its right edge. The ids one process makes also strictly increase (RFC 9562 §6.2, method 3, as
PostgreSQL 18's ``uuidv7()`` does): the 12 bits after the millisecond hold the fraction of the
millisecond, and an id made in the same tick as the one before is that one plus one. So ids sort in
the order they were made even within a millisecond. Python 3.11's ``uuid`` module has no v7, hence this module.
"""

from __future__ import annotations

import os
import threading
import time
from uuid import UUID

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_B = (1 << 62) - 1
_NS_PER_MS = 1_000_000

_lock = threading.Lock()
_last_tick = 0


def new_id() -> UUID:
    """A fresh UUIDv7: Unix time in milliseconds (48 bits) and its 1/4096 fraction (12), then 62 random bits.

    Strictly greater than every id this process made before.
    """
    global _last_tick
    ns = time.time_ns()
    # The millisecond and its fraction in 1/4096ths: a 60-bit tick that orders ids.
    tick = (ns // _NS_PER_MS) << 12 | (ns % _NS_PER_MS) * 4096 // _NS_PER_MS
    with _lock:
        if tick <= _last_tick:
            tick = _last_tick + 1
        _last_tick = tick
    rand = int.from_bytes(os.urandom(8), "big") & _RAND_B
    # Layout (RFC 9562 §5.7): unix_ts_ms(48) | ver(4) | rand_a(12) | var(2) | rand_b(62).
    return UUID(int=(tick >> 12) << 80 | _VERSION | (tick & 0xFFF) << 64 | _VARIANT | rand)


def id_time_ms(value: UUID) -> int:
    """The millisecond timestamp inside a UUIDv7."""
    return value.int >> 80
