"""Free-text reasons (the freeze reason) carry phone and ID numbers masked: stored, audited and answered."""

from __future__ import annotations

import httpx
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.authz import Role
from tests.idempotency_keys import keyed

from .customer_helpers import BASE, assert_problem, login, new_phone, new_resident_id, register, scalar


async def test_freeze_reason_is_masked_in_answers_audit_and_storage(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_staff: object
) -> None:
    risk = await make_staff(Role.RISK_OFFICER)  # type: ignore[operator]
    me = await register(client)
    caller, number = new_phone(), new_resident_id()
    reason = f"冒用者来电{caller}，自称身份证 {number}，疑似盗刷"
    masked = (
        f"冒用者来电{caller[:3]}****{caller[-4:]}，自称身份证 {number[:4]}{'*' * 10}{number[-4:]}，疑似盗刷"
    )
    secrets = (caller, number, caller[3:7], number[6:14])

    r = await client.post(f"{BASE}/{me.id}/freeze", json={"reason": reason}, headers=keyed(risk))
    assert r.status_code == 200, r.text
    answers = [
        r,
        assert_problem_response(await login(client, me.phone), 403, "account_frozen"),
        await client.get(f"{BASE}/{me.id}", headers=risk),
    ]
    for answer in answers:
        assert answer.json()["frozen_reason"] == masked, answer.text
        for secret in secrets:
            assert secret not in answer.text
    assert await scalar(pool, "SELECT frozen_reason FROM customers WHERE id = %s", me.id) == masked
    detail = await scalar(
        pool,
        "SELECT detail::text FROM audit_log WHERE target_id = %s AND action = 'customer.freeze' "
        "ORDER BY seq DESC LIMIT 1",
        me.id,
    )
    assert masked in detail and not any(secret in detail for secret in secrets)


async def test_a_reason_stored_before_masking_is_answered_masked(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_staff: object
) -> None:
    risk = await make_staff(Role.RISK_OFFICER)  # type: ignore[operator]
    me = await register(client)
    caller = new_phone()
    r = await client.post(f"{BASE}/{me.id}/freeze", json={"reason": "可疑交易"}, headers=keyed(risk))
    assert r.status_code == 200, r.text
    async with pool.connection() as conn:  # as an older version stored it: unmasked
        await conn.execute(
            "UPDATE customers SET frozen_reason = %s WHERE id = %s", (f"来电 {caller} 申请", me.id)
        )
    for answer in (
        await login(client, me.phone),
        await client.get(f"{BASE}/{me.id}", headers=risk),
        await client.post(f"{BASE}/{me.id}/unfreeze", headers=keyed(risk)),
    ):
        assert caller not in answer.text, answer.text
    detail = await scalar(
        pool,
        "SELECT detail::text FROM audit_log WHERE target_id = %s AND action = 'customer.unfreeze' "
        "ORDER BY seq DESC LIMIT 1",
        me.id,
    )
    assert f"{caller[:3]}****{caller[-4:]}" in detail and caller not in detail


def assert_problem_response(r: httpx.Response, status: int, code: str) -> httpx.Response:
    assert_problem(r, status, code)
    return r
