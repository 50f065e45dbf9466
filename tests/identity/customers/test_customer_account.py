"""Freezing (by the customer, by risk staff), unfreezing only by staff, and the staff look-up of a customer."""

from __future__ import annotations

from uuid import uuid4

import httpx
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.authz import Role
from tests.idempotency_keys import keyed
from tests.identity.customer_helpers import (
    BASE,
    EN,
    assert_problem,
    has_cjk,
    login,
    new_resident_id,
    outbox,
    register,
    send_code,
    sign_in,
    step_up,
)


async def test_risk_staff_freeze_and_unfreeze(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_staff: object
) -> None:
    risk = await make_staff(Role.RISK_OFFICER)  # type: ignore[operator]
    me = await register(client)
    other = await sign_in(client, me)
    reason = "疑似盗刷，请联系客服"
    r = await client.post(f"{BASE}/{me.id}/freeze", json={"reason": reason}, headers=keyed(risk))
    assert r.status_code == 200, r.text
    assert (
        r.json()["status"] == "frozen"
        and r.json()["sessions_ended"] == 2
        and r.json()["frozen_by"] == "staff"
    )
    for s in (me, other):
        assert (await client.get(f"{BASE}/me", headers=s.headers)).status_code == 401
    body = assert_problem(await login(client, me.phone), 403, "account_frozen")
    assert reason in body["title"] and body["frozen_reason"] == reason and body["frozen_by"] == "staff"
    en = assert_problem(await login(client, me.phone, headers=EN), 403, "account_frozen")
    assert "frozen" in en["title"] and not has_cjk(en["title"].replace(reason, ""))
    # A wrong password on a frozen account still says only "wrong credentials".
    assert_problem(await login(client, me.phone, "Wrong-pass-123"), 401, "invalid_credentials")
    # The customer cannot unfreeze themself: staff must.
    r = await client.post(f"{BASE}/unfreeze", json={"phone": me.phone, "password": me.password})
    assert_problem(r, 403, "unfreeze_needs_staff")
    assert r.json()["unfreeze_by"] == "staff"
    r = await client.post(f"{BASE}/unfreeze", json={"phone": me.phone, "password": "Wrong-pass-123"})
    assert_problem(r, 401, "invalid_credentials")
    # Freezing again changes nothing.
    r = await client.post(f"{BASE}/{me.id}/freeze", json={"reason": "again"}, headers=keyed(risk))
    assert r.status_code == 200 and r.json()["frozen_reason"] == reason
    r = await client.post(f"{BASE}/{me.id}/unfreeze", headers=keyed(risk))
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["frozen_reason"] is None
    assert (await login(client, me.phone)).status_code == 200
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, actor_type, outcome FROM audit_log WHERE target_id = %s AND action LIKE 'customer.%%freeze%%' "
            "ORDER BY seq",
            (me.id,),
        )
        rows = await cur.fetchall()
    assert [tuple(r) for r in rows] == [
        ("customer.freeze", "staff", "success"),
        ("customer.unfreeze.self", "customer", "refused"),
        ("customer.unfreeze.self", "anonymous", "refused"),
        ("customer.freeze", "staff", "unchanged"),
        ("customer.unfreeze", "staff", "success"),
    ]


async def test_customer_freezes_their_own_account(client: httpx.AsyncClient) -> None:
    me = await register(client)
    other = await sign_in(client, me)
    r = await client.post(f"{BASE}/me/freeze", headers=me.headers)
    assert r.status_code == 200, r.text
    assert (
        r.json()["status"] == "frozen"
        and r.json()["frozen_by"] == "customer"
        and r.json()["sessions_ended"] == 2
    )
    for s in (me, other):
        assert (await client.get(f"{BASE}/me", headers=s.headers)).status_code == 401
    body = assert_problem(await login(client, me.phone), 403, "account_frozen")
    assert body["frozen_by"] == "customer" and body["unfreeze_by"] == "customer_sms"
    unfreeze = {"phone": me.phone, "password": me.password}
    assert_problem(
        await client.post(f"{BASE}/unfreeze", json=unfreeze), 403, "unfreeze_needs_sms_code", "sms_code"
    )


async def test_self_frozen_account_unfreezes_with_password_and_sms_code(client: httpx.AsyncClient) -> None:
    me = await register(client)
    assert (await client.post(f"{BASE}/me/freeze", headers=me.headers)).status_code == 200
    code = await send_code(client, me.phone, "unfreeze")
    wrong = "000000" if code != "000000" else "111111"
    r = await client.post(
        f"{BASE}/unfreeze", json={"phone": me.phone, "password": "Wrong-pass-2026", "sms_code": code}
    )
    assert_problem(r, 401, "invalid_credentials")
    r = await client.post(
        f"{BASE}/unfreeze", json={"phone": me.phone, "password": me.password, "sms_code": wrong}
    )
    assert_problem(r, 422, "sms_code_invalid", "sms_code")
    assert_problem(await login(client, me.phone), 403, "account_frozen")
    r = await client.post(
        f"{BASE}/unfreeze", json={"phone": me.phone, "password": me.password, "sms_code": code}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    assert (await login(client, me.phone)).status_code == 200
    r = await client.post(
        f"{BASE}/unfreeze", json={"phone": me.phone, "password": me.password, "sms_code": code}
    )
    assert_problem(r, 409, "account_not_frozen")


async def test_staff_frozen_account_cannot_be_unfrozen_by_sms(
    client: httpx.AsyncClient, make_staff: object
) -> None:
    me = await register(client)
    risk = await make_staff(Role.RISK_OFFICER)  # type: ignore[operator]
    r = await client.post(f"{BASE}/{me.id}/freeze", json={"reason": "可疑交易"}, headers=keyed(risk))
    assert r.status_code == 200, r.text
    body = assert_problem(await login(client, me.phone), 403, "account_frozen")
    assert body["frozen_by"] == "staff" and body["unfreeze_by"] == "staff"
    sent = await client.post(f"{BASE}/sms-codes", json={"phone": me.phone, "purpose": "unfreeze"})
    assert sent.status_code == 202  # the same answer as for a self-frozen account ...
    assert not any("账户解冻" in text for text in await outbox(client, me.phone))  # ... but nothing is sent
    r = await client.post(
        f"{BASE}/unfreeze", json={"phone": me.phone, "password": me.password, "sms_code": "123456"}
    )
    assert_problem(r, 403, "unfreeze_needs_staff")
    assert_problem(await login(client, me.phone), 403, "account_frozen")


async def test_freezing_needs_the_permission(client: httpx.AsyncClient, make_staff: object) -> None:
    me = await register(client)
    support = await make_staff(Role.SUPPORT_AGENT)  # type: ignore[operator]
    admin = await make_staff(Role.ADMINISTRATOR)  # type: ignore[operator]
    for headers in (support, admin, me.headers):
        r = await client.post(f"{BASE}/{me.id}/freeze", json={"reason": "x"}, headers=keyed(headers))
        assert_problem(r, 403, "forbidden")
        assert_problem(
            await client.post(f"{BASE}/{me.id}/unfreeze", headers=keyed(headers)), 403, "forbidden"
        )
    assert_problem(await client.post(f"{BASE}/{me.id}/freeze", json={"reason": "x"}), 401, "unauthenticated")
    risk = await make_staff(Role.RISK_OFFICER)  # type: ignore[operator]
    assert_problem(
        await client.post(f"{BASE}/{uuid4()}/freeze", json={"reason": "x"}, headers=keyed(risk)),
        404,
        "customer_not_found",
    )
    r = await client.post(f"{BASE}/{me.id}/freeze", json={"reason": "x" * 201}, headers=keyed(risk))
    assert_problem(r, 422, "string_too_long", "reason")
    assert (await client.get(f"{BASE}/me", headers=me.headers)).status_code == 200


async def test_staff_look_up_answers_masked_data_only(client: httpx.AsyncClient, make_staff: object) -> None:
    me = await register(client)
    await step_up(client, me)
    number = new_resident_id()
    r = await client.put(
        f"{BASE}/me/profile",
        json={"name": "欧阳娜娜", "id_type": "resident_id", "id_number": number},
        headers=me.headers,
    )
    assert r.status_code == 200
    support = await make_staff(Role.SUPPORT_AGENT)  # type: ignore[operator]
    r = await client.get(f"{BASE}/{me.id}", headers=support)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["phone_masked"] == me.phone[:3] + "****" + me.phone[-4:]
    assert body["profile"]["name_masked"] == "欧***" and body["profile"]["id_number_masked"].count("*") == 10
    assert body["live_sessions"] == 1 and body["payment_password"]["set"] is False
    for secret in (me.phone, number, "欧阳娜娜", number[6:14]):
        assert secret not in r.text
    finance = await make_staff(Role.FINANCE)  # type: ignore[operator]
    assert_problem(await client.get(f"{BASE}/{me.id}", headers=finance), 403, "forbidden")
    other = await register(client)
    assert_problem(await client.get(f"{BASE}/{me.id}", headers=other.headers), 403, "forbidden")
    assert_problem(await client.get(f"{BASE}/{uuid4()}", headers=support), 404, "customer_not_found")
    # A staff session has no /me of a customer.
    assert_problem(await client.get(f"{BASE}/me", headers=support), 403, "forbidden")


async def test_staff_take_over_a_freeze_the_owner_set_so_the_owner_cannot_lift_it(
    client: httpx.AsyncClient, make_staff: object
) -> None:
    """A customer froze their account (a lost phone, say); risk staff then freeze it too. The freeze is
    now staff's: the owner's password and SMS code no longer lift it."""
    risk = await make_staff(Role.RISK_OFFICER)  # type: ignore[operator]
    me = await register(client)
    assert (await client.post(f"{BASE}/me/freeze", headers=me.headers)).status_code == 200
    r = await client.post(f"{BASE}/{me.id}/freeze", json={"reason": "疑似盗用"}, headers=keyed(risk))
    assert r.status_code == 200, r.text
    assert r.json()["frozen_by"] == "staff" and r.json()["frozen_reason"] == "疑似盗用"
    code = await send_code(client, me.phone, "unfreeze")
    r = await client.post(
        f"{BASE}/unfreeze", json={"phone": me.phone, "password": me.password, "sms_code": code}
    )
    assert_problem(r, 403, "unfreeze_needs_staff")
