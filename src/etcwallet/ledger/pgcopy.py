"""Transfers encoded as rows of PostgreSQL's binary COPY format, for bulk batches.

psycopg's ``write_row`` dumps each value through a Python-level dumper; a bulk batch of 8,000 transfers
spends more time there than in checking the transfers. A transfer row has a fixed shape, so it is packed
here with a few precompiled structs, and the rows are handed to ``Copy.write`` in large chunks.

Binary COPY stream (PostgreSQL "COPY … FORMAT BINARY"):

* header: the 11-byte signature ``PGCOPY\\n\\377\\r\\n\\0``, int32 flags (0), int32 extension length (0);
* each row: int16 column count, then per column int32 byte length (-1 for NULL) and the value's bytes
  in the type's binary send format: ``uuid`` 16 bytes, ``int8`` / ``int4`` big-endian, ``text`` UTF-8,
  ``timestamptz`` int64 microseconds since 2000-01-01 UTC, ``jsonb`` a version byte (1) then JSON text;
* trailer: int16 -1.

The column order is :data:`COLUMNS`; :func:`encode` must follow it exactly.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta

from etcwallet.ledger.types import Transfer

COLUMNS = (
    "id, kind, debit_account_id, credit_account_id, amount, currency, code, pending_id, timeout_seconds, "
    "expires_at, metadata, created_at, debit_debits_after, debit_credits_after, credit_debits_after, "
    "credit_credits_after"
)
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NULL = struct.pack(">i", -1)
# column count, then id (uuid)
_START = struct.Struct(">hi16s")
# debit and credit account (uuid), amount (int8)
_ACCOUNTS_AMOUNT = struct.Struct(">i16si16siq")
_UUID = struct.Struct(">i16s")
_INT4 = struct.Struct(">ii")
_INT8 = struct.Struct(">iq")
# the four running totals (int8 each)
_TOTALS = struct.Struct(">iqiqiqiq")
_EMPTY_JSONB = struct.pack(">ib", 3, 1) + b"{}"


def timestamptz(value: datetime) -> bytes:
    """A ``timestamptz`` column (length and value) in binary COPY format."""
    return _INT8.pack(8, (value - _PG_EPOCH) // _MICROSECOND)


class RowEncoder:
    """Encodes the transfers of one batch; caches the short texts that repeat from row to row."""

    def __init__(self, created_at: datetime) -> None:
        self._created = created_at
        self._created_at = timestamptz(created_at)
        self._texts: dict[str, bytes] = {}
        self._plain: dict[tuple[str, str, str], tuple[struct.Struct, bytes, bytes]] = {}

    def _text(self, value: str) -> bytes:
        encoded = self._texts.get(value)
        if encoded is None:
            raw = value.encode()
            encoded = self._texts[value] = struct.pack(">i", len(raw)) + raw
        return encoded

    def _plain_shape(self, key: tuple[str, str, str]) -> tuple[struct.Struct, bytes, bytes]:
        """One struct for a plain row of this kind, currency and code: the constant columns baked in."""
        kind = self._text(key[0])
        middle = self._text(key[1]) + self._text(key[2]) + _NULL * 3 + _EMPTY_JSONB + self._created_at
        shape = struct.Struct(f">hi16s{len(kind)}si16si16siq{len(middle)}siqiqiqiq"), kind, middle
        self._plain[key] = shape
        return shape

    def encode(self, t: Transfer) -> bytes:
        """One row: the transfer's columns in :data:`COLUMNS` order."""
        if (
            t.pending_id is None
            and t.timeout_seconds is None
            and t.expires_at is None
            and not t.metadata
            and t.created_at is self._created
        ):
            # The common bulk row (a plain transfer): one pack call, the constant columns prebuilt.
            key = (t.kind.value, t.currency, t.code)
            packer, kind, middle = self._plain.get(key) or self._plain_shape(key)
            return packer.pack(
                16, 16, t.id.bytes, kind, 16, t.debit_account_id.bytes, 16, t.credit_account_id.bytes,
                8, t.amount, middle, 8, t.debit_debits_after, 8, t.debit_credits_after,
                8, t.credit_debits_after, 8, t.credit_credits_after,
            )  # fmt: skip
        text = self._text
        if t.metadata:
            raw = json.dumps(t.metadata, ensure_ascii=False).encode()
            metadata = struct.pack(">ib", len(raw) + 1, 1) + raw
        else:
            metadata = _EMPTY_JSONB
        return b"".join(
            (
                _START.pack(16, 16, t.id.bytes),
                text(t.kind.value),
                _ACCOUNTS_AMOUNT.pack(16, t.debit_account_id.bytes, 16, t.credit_account_id.bytes, 8, t.amount),
                text(t.currency),
                text(t.code),
                _NULL if t.pending_id is None else _UUID.pack(16, t.pending_id.bytes),
                _NULL if t.timeout_seconds is None else _INT4.pack(4, t.timeout_seconds),
                _NULL if t.expires_at is None else timestamptz(t.expires_at),
                metadata,
                self._created_at if t.created_at is self._created else timestamptz(t.created_at),
                _TOTALS.pack(
                    8, t.debit_debits_after, 8, t.debit_credits_after, 8, t.credit_debits_after,
                    8, t.credit_credits_after,
                ),
            )
        )  # fmt: skip
