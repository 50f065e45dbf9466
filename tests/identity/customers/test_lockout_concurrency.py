"""Customer lockout under concurrent sign-ins (issue 15, item 7).

Sixteen simultaneous logins for one phone used to be judged against a lock state read before any of them
had counted its failure: about twenty guesses fitted into a lock period instead of five, and the right
password among them was let in. Failures are now checked and counted under the customer's row lock (and
an unknown phone's lockout row), so concurrent attempts are judged one after another.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity import lockout
from tests.identity.customer_helpers import login, new_phone, register, scalar

WRONG = "Wrong-pass-123"
CONCURRENT = 16


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "unknown"])
async def test_concurrent_wrong_passwords_count_five_then_lock(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, registered: bool
) -> None:
    """Sixteen wrong passwords at once: four 401s, then the fifth locks, and the rest find it locked. A
    phone nobody holds answers exactly the same, so concurrency does not reveal which phones are taken."""
    phone = (await register(client)).phone if registered else new_phone()
    answers = await asyncio.gather(*(login(client, phone, WRONG) for _ in range(CONCURRENT)))
    seen = Counter((r.status_code, r.json()["code"]) for r in answers)
    assert seen == {
        (401, "invalid_credentials"): lockout.MAX_FAILURES - 1,
        (423, "account_locked"): CONCURRENT - lockout.MAX_FAILURES + 1,
    }, seen
    # One lock, not one per five failures that slipped past a stale read.
    table, where = ("customers", "phone") if registered else ("unknown_login_failures", "identity_hash")
    key: object = phone if registered else lockout._identity("customers", phone)
    assert await scalar(pool, f"SELECT lockouts FROM {table} WHERE {where} = %s", key) == 1
    assert (await login(client, phone)).status_code == 423  # the right password, after the lock


async def test_concurrent_logins_with_the_right_password_among_them(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    """The issue's case: 15 wrong and 1 right at once. Judged one after another, the right password is let
    in only if it came before the fifth failure (and then the count starts again); after the lock point it
    is a 423 like the rest. Either way at most five failures are counted per lock, and there is one lock."""
    me = await register(client)
    attempts = [login(client, me.phone, WRONG) for _ in range(CONCURRENT - 1)]
    attempts.append(login(client, me.phone))  # the right password, sent last
    *wrong, right = await asyncio.gather(*attempts)
    wrong_seen = Counter(r.status_code for r in wrong)
    assert set(wrong_seen) <= {401, 423}, wrong_seen
    if right.status_code == 423:
        assert wrong_seen == {401: lockout.MAX_FAILURES - 1, 423: CONCURRENT - lockout.MAX_FAILURES}
    else:  # judged before the fifth failure: it reset the count, and five more failures locked again
        assert right.status_code == 200, right.text
        assert wrong_seen[401] <= 2 * (lockout.MAX_FAILURES - 1), wrong_seen
    assert await scalar(pool, "SELECT lockouts FROM customers WHERE phone = %s", me.phone) == 1
    r = await login(client, me.phone)
    assert r.status_code == 423 and r.json()["code"] == "account_locked", r.text
