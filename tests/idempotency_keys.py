"""Test helper: headers carrying a fresh ``Idempotency-Key``, for the routes that require one."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import uuid4


def keyed(headers: Mapping[str, str] | None = None, key: str | None = None) -> dict[str, str]:
    """``headers`` plus an ``Idempotency-Key``: ``key``, or a new one (a new request, not a retry)."""
    return {**(headers or {}), "Idempotency-Key": key or str(uuid4())}
