"""Recovery codes are stored as a keyed hash bound to their principal; legacy unsalted ones are rekeyed."""

from __future__ import annotations

import hashlib
import os
from uuid import uuid4

from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime
from etcwallet.identity.factors import totp


async def stored_hashes(pool: AsyncConnectionPool, principal_id: object) -> set[bytes]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT code_hash FROM recovery_codes WHERE principal_type = 'customer' AND principal_id = %s",
            (principal_id,),
        )
        return {bytes(r[0]) for r in await cur.fetchall()}


async def test_codes_are_stored_keyed_and_bound_to_their_principal(
    pool: AsyncConnectionPool, runtime: Runtime
) -> None:
    key = runtime.keys.lookup_key
    alice, bob = uuid4(), uuid4()
    async with pool.connection() as conn:
        codes = await totp.issue_recovery_codes(
            conn, lookup_key=key, principal_type="customer", principal_id=alice
        )
    digits = [c.replace("-", "") for c in codes]
    stored = await stored_hashes(pool, alice)
    assert len(stored) == totp.RECOVERY_CODES
    # Not the unsalted SHA-256 of ten digits (which a copy of the table gives up in minutes) ...
    assert not stored & {hashlib.sha256(d.encode()).digest() for d in digits}
    # ... but the keyed hash, which differs per principal and per key.
    assert stored == {totp.recovery_code_hash(key, "customer", alice, d) for d in digits}
    assert not stored & {totp.recovery_code_hash(key, "customer", bob, d) for d in digits}
    assert not stored & {totp.recovery_code_hash(os.urandom(32), "customer", alice, d) for d in digits}
    async with pool.connection() as conn:
        assert not await totp.use_recovery_code(
            conn, lookup_key=os.urandom(32), principal_type="customer", principal_id=alice, code=codes[0]
        )
        assert not await totp.use_recovery_code(
            conn, lookup_key=key, principal_type="customer", principal_id=bob, code=codes[0]
        )
        assert await totp.use_recovery_code(
            conn, lookup_key=key, principal_type="customer", principal_id=alice, code=codes[0]
        )
        assert not await totp.use_recovery_code(
            conn, lookup_key=key, principal_type="customer", principal_id=alice, code=codes[0]
        )  # spent


async def test_legacy_unsalted_codes_are_rekeyed_and_keep_working(
    pool: AsyncConnectionPool, runtime: Runtime
) -> None:
    key = runtime.keys.lookup_key
    holder = uuid4()
    legacy = ["0123456789", "9876543210"]
    async with pool.connection() as conn:  # as the code before issue 15 stored them
        for digits in legacy:
            await conn.execute(
                "INSERT INTO recovery_codes (principal_type, principal_id, code_hash) VALUES ('customer', %s, %s)",
                (holder, hashlib.sha256(digits.encode()).digest()),
            )
        assert await totp.rekey_legacy_recovery_codes(conn, lookup_key=key) >= 2
        assert await totp.rekey_legacy_recovery_codes(conn, lookup_key=key) == 0  # nothing unkeyed is left
    assert await stored_hashes(pool, holder) == {
        totp.recovery_code_hash(key, "customer", holder, d) for d in legacy
    }
    async with pool.connection() as conn:
        assert await totp.use_recovery_code(
            conn, lookup_key=key, principal_type="customer", principal_id=holder, code="01234-56789"
        )
        assert await totp.use_recovery_code(
            conn, lookup_key=key, principal_type="customer", principal_id=holder, code="98765 43210"
        )
