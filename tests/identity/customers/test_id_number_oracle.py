"""A customer cannot learn whether an ID number belongs to someone else without a fresh step-up."""

from __future__ import annotations

import httpx
from psycopg_pool import AsyncConnectionPool

from tests.identity.customer_helpers import (
    BASE,
    assert_problem,
    new_resident_id,
    register,
    scalar,
    send_own_code,
    step_up,
)


async def put_profile(
    client: httpx.AsyncClient, headers: dict[str, str], number: str, **more: str
) -> httpx.Response:
    body = {"name": "赵六", "id_type": "resident_id", "id_number": number} | more
    return await client.put(f"{BASE}/me/profile", json=body, headers=headers)


async def test_without_step_up_a_taken_number_answers_as_a_free_one(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    owner, prober = await register(client), await register(client)
    taken, free = new_resident_id(), new_resident_id()
    await step_up(client, owner)
    assert (await put_profile(client, owner.headers, taken)).status_code == 200

    # Not stepped up: the same refusal for someone else's number and for a free one.
    answers = [await put_profile(client, prober.headers, n) for n in (taken, free)]
    for r in answers:
        body = assert_problem(r, 403, "step_up_required")
        assert body["accepted_factors"] == ["sms"] and "field" not in body
    assert answers[0].json() == answers[1].json()
    assert await scalar(pool, "SELECT count(*) FROM customer_profiles WHERE customer_id = %s", prober.id) == 0

    # Stepped up, the answer is the truth.
    await step_up(client, prober)
    assert_problem(await put_profile(client, prober.headers, taken), 409, "id_number_registered", "id_number")
    assert (await put_profile(client, prober.headers, free)).status_code == 200


async def test_changing_a_profile_on_file_also_needs_the_step_up(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    owner, me = await register(client), await register(client)
    taken, mine = new_resident_id(), new_resident_id()
    for who, number in ((owner, taken), (me, mine)):
        await step_up(client, who)
        assert (await put_profile(client, who.headers, number)).status_code == 200
    async with pool.connection() as conn:  # the step-up has run out
        await conn.execute(
            "UPDATE sessions SET stepped_up_at = now() - interval '6 minutes' WHERE principal_id = %s",
            (me.id,),
        )
    # Saving what is on file reveals nothing and needs no step-up.
    assert (await put_profile(client, me.headers, mine)).status_code == 200
    code = await send_own_code(client, me.headers, me.phone, "profile_change")
    answers = [await put_profile(client, me.headers, n, sms_code=code) for n in (taken, new_resident_id())]
    assert answers[0].json() == answers[1].json()
    assert_problem(answers[0], 403, "step_up_required")
