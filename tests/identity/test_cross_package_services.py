"""The service functions other sub-packages call instead of naming factors' and sessions' tables."""

from __future__ import annotations

from uuid import uuid4

from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime
from etcwallet.core.deps import Client
from etcwallet.identity.factors import service as factors
from etcwallet.identity.factors import totp
from etcwallet.identity.factors.types import FactorCounts
from etcwallet.identity.sessions import service as sessions


async def test_factor_counts_and_forget_principal(pool: AsyncConnectionPool, runtime: Runtime) -> None:
    key = runtime.keys.lookup_key
    alice, bob = uuid4(), uuid4()
    async with pool.connection() as conn:
        for holder in (alice, bob):
            await totp.issue_recovery_codes(
                conn, lookup_key=key, principal_type="customer", principal_id=holder
            )
        counts = await factors.factor_counts(conn, principal_type="customer", principal_id=alice)
        assert counts == FactorCounts(totp=False, passkeys=0, unused_recovery_codes=totp.RECOVERY_CODES)
        await factors.forget_principal(conn, principal_type="customer", principal_id=alice)
        assert await factors.factor_counts(
            conn, principal_type="customer", principal_id=alice
        ) == FactorCounts(False, 0, 0)
        # Only that principal's.
        assert (
            await factors.factor_counts(conn, principal_type="customer", principal_id=bob)
        ).unused_recovery_codes == totp.RECOVERY_CODES
        assert (
            await factors.factor_counts(conn, principal_type="staff", principal_id=bob)
        ).unused_recovery_codes == 0


async def test_forget_devices_keeps_the_sessions_without_where_they_came_from(
    pool: AsyncConnectionPool,
) -> None:
    alice, bob = uuid4(), uuid4()
    client = Client("203.0.113.7", "Phone/1.0", "device-1")
    async with pool.connection() as conn:
        mine = await sessions.issue(conn, principal_type="customer", principal_id=alice, client=client)
        theirs = await sessions.issue(conn, principal_type="customer", principal_id=bob, client=client)
        await sessions.forget_devices(conn, principal_type="customer", principal_id=alice)
        kept = await sessions.get_session_or_raise(conn, session_id=mine.session_id)
        assert (kept.ip, kept.user_agent, kept.device_id) == (None, None, None)
        other = await sessions.get_session_or_raise(conn, session_id=theirs.session_id)
        assert (other.ip, other.user_agent, other.device_id) == ("203.0.113.7", "Phone/1.0", "device-1")
