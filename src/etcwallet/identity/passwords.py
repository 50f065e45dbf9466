"""Password and PIN hashing with argon2id; verification never says more than yes or no."""

from __future__ import annotations

import asyncio
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from etcwallet.core.config import get_settings


@lru_cache(maxsize=2)
def _hasher(fast: bool) -> PasswordHasher:
    if fast:
        # Tests only (ETCW_ENV=test): the same algorithm with a small cost, so suites stay quick.
        return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile


def hasher() -> PasswordHasher:
    return _hasher(get_settings().env == "test")


def hash_secret(secret: str) -> str:
    """An argon2id hash (salt and parameters inside) of a password or payment PIN."""
    return hasher().hash(secret)


def verify_secret(stored_hash: str, candidate: str) -> bool:
    """Whether ``candidate`` matches; malformed hashes count as a mismatch."""
    try:
        return hasher().verify(stored_hash, candidate)
    except (VerificationError, InvalidHashError):
        return False


def dummy_hash() -> str:
    """A hash with the same cost as real ones: verifying against it for an unknown user takes as long."""
    return _dummy(get_settings().env == "test")


@lru_cache(maxsize=2)
def _dummy(fast: bool) -> str:
    return _hasher(fast).hash(secrets.token_urlsafe(16))


async def hash_secret_async(secret: str) -> str:
    """:func:`hash_secret` off the event loop (argon2id takes ~100 ms by design)."""
    return await asyncio.to_thread(hash_secret, secret)


async def verify_secret_async(stored_hash: str, candidate: str) -> bool:
    """:func:`verify_secret` off the event loop."""
    return await asyncio.to_thread(verify_secret, stored_hash, candidate)
