"""The CSRF check applies whenever the access token came from the session cookie, whatever else is sent."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.deps import Client
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.sessions.service import IssuedTokens

from .customer_helpers import BASE, assert_problem, new_phone


async def customer_session(pool: AsyncConnectionPool) -> IssuedTokens:
    customer_id = uuid4()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO customers (id, phone, password_hash) VALUES (%s, %s, %s)",
            (customer_id, new_phone(), "!unusable"),
        )
        return await sessions.issue(
            conn, principal_type="customer", principal_id=customer_id, client=Client("10.1.1.1", "csrf")
        )


@pytest.mark.parametrize(
    "other_headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},  # another scheme: the token still comes from the cookie
        {"Authorization": "Bearer "},  # an empty bearer: likewise
        {"Authorization": ""},
        {"X-CSRF-Token": "not-the-token"},
    ],
    ids=["nothing", "basic-auth", "empty-bearer", "empty-authorization", "wrong-token"],
)
async def test_a_cookie_token_without_its_csrf_token_is_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, other_headers: dict[str, str]
) -> None:
    issued = await customer_session(pool)
    client.cookies.set("etcw_session", issued.access_token)
    r = await client.post(f"{BASE}/auth/logout", headers=other_headers)
    assert_problem(r, 403, "csrf_failed", "X-CSRF-Token")
    # The session is still live: a safe request with the cookie works, and the right token is accepted.
    assert (await client.get(f"{BASE}/me", headers=other_headers)).status_code == 200
    ok = await client.post(f"{BASE}/auth/logout", headers=other_headers | {"X-CSRF-Token": issued.csrf_token})
    assert ok.status_code == 204, ok.text


async def test_a_bearer_token_needs_no_csrf_token(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    issued = await customer_session(pool)
    r = await client.post(f"{BASE}/auth/logout", headers={"Authorization": f"Bearer {issued.access_token}"})
    assert r.status_code == 204, r.text
