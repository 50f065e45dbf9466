"""Reuse of ANY refresh token a session has rotated out (not only the last) ends the session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity import housekeeping
from tests.identity.customer_helpers import BASE, assert_problem, bearer, register, scalar, sign_in


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(f"{BASE}/auth/refresh", json={"refresh_token": token})


@pytest.mark.parametrize("generations_back", [1, 2, 4])
async def test_reuse_of_any_earlier_refresh_token_ends_the_session(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, generations_back: int
) -> None:
    me = await register(client)
    other = await sign_in(client, me)
    family = [me.refresh]
    access = me.access
    for _ in range(4):
        r = await refresh(client, family[-1])
        assert r.status_code == 200, r.text
        family.append(r.json()["refresh_token"])
        access = r.json()["access_token"]
    assert (await client.get(f"{BASE}/me", headers=bearer(access))).status_code == 200

    stolen = family[-1 - generations_back]
    assert_problem(await refresh(client, stolen), 401, "refresh_token_reused")
    # The session has ended for the holder of the newest tokens too; the other device is untouched.
    assert (await client.get(f"{BASE}/me", headers=bearer(access))).status_code == 401
    assert_problem(await refresh(client, family[-1]), 401, "unauthenticated")
    assert (await client.get(f"{BASE}/me", headers=other.headers)).status_code == 200
    reasons = await scalar(
        pool,
        "SELECT array_agg(revoked_reason) FROM sessions WHERE principal_id = %s AND revoked_at IS NOT NULL",
        me.id,
    )
    assert reasons == ["refresh_token_reused"]


async def test_housekeeping_forgets_the_family_of_an_ended_session_only(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    ended, live = await register(client), await register(client)
    for who in (ended, live):
        assert (await refresh(client, who.refresh)).status_code == 200
    assert (await client.post(f"{BASE}/auth/logout", headers=ended.headers)).status_code == 401  # rotated out
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE sessions SET revoked_at = now() - interval '2 days', revoked_reason = 'logout' "
            "WHERE principal_id = %s",
            (ended.id,),
        )
        deleted = await housekeeping.sweep(conn, now=datetime.now(UTC) + timedelta(seconds=1))
    assert deleted["session_refresh_history"] >= 1
    count = (
        "SELECT count(*) FROM session_refresh_history h JOIN sessions s ON s.id = h.session_id "
        "WHERE s.principal_id = %s"
    )
    assert await scalar(pool, count, ended.id) == 0
    assert await scalar(pool, count, live.id) == 1
    assert_problem(await refresh(client, live.refresh), 401, "refresh_token_reused")
