"""Sessions carry the app's device id (``X-Device-Id``): stored, listed, audited as new or known, checked."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
import pyotp
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.authz import Role
from etcwallet.identity.staff import service as staff
from tests.conftest import STAFF_PASSWORD, bootstrap_enrollment_code
from tests.identity.customer_helpers import (
    BASE,
    assert_problem,
    login,
    new_phone,
    register,
    scalar,
    send_code,
)

HEADER = "X-Device-Id"


def device() -> str:
    return f"app-{uuid4().hex[:20]}"


async def login_details(pool: AsyncConnectionPool, customer_id: str, action: str) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT detail FROM audit_log WHERE actor_type = 'customer' AND actor_id = %s AND action = %s "
            "AND outcome = 'success' ORDER BY seq",
            (customer_id, action),
        )
        return [row[0] for row in await cur.fetchall()]


async def test_the_device_id_is_stored_listed_and_audited_as_new_or_known(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    phone_app, tablet = device(), device()
    phone = new_phone()
    code = await send_code(client, phone, "register")
    r = await client.post(
        f"{BASE}/register",
        json={"phone": phone, "password": "Correct-horse-42", "sms_code": code},
        headers={HEADER: phone_app},
    )
    assert r.status_code == 201, r.text
    customer_id = r.json()["customer"]["id"]
    first = r.json()["access_token"]

    for sent in (phone_app, tablet, None):
        r = await login(client, phone, "Correct-horse-42", headers={HEADER: sent} if sent else {})
        assert r.status_code == 200 and r.json()["status"] == "signed_in", r.text

    stored = await scalar(
        pool,
        "SELECT array_agg(device_id ORDER BY created_at) FROM sessions WHERE principal_id = %s",
        customer_id,
    )
    assert stored == [phone_app, phone_app, tablet, None]
    listed = (await client.get(f"{BASE}/me/sessions", headers={"Authorization": f"Bearer {first}"})).json()
    assert sorted(str(x["device_id"]) for x in listed) == sorted([phone_app, phone_app, tablet, "None"])

    assert (await login_details(pool, customer_id, "customer.register"))[0]["new_device"] is True
    logins = await login_details(pool, customer_id, "customer.login.password")
    assert [(x.get("device_id"), x.get("new_device")) for x in logins] == [
        (phone_app, False),  # the device it registered on
        (tablet, True),
        (None, None),  # no device id sent: nothing to tell
    ]


async def test_a_malformed_device_id_is_refused_naming_the_header_with_nothing_written(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(client)
    sessions_before = await scalar(pool, "SELECT count(*) FROM sessions WHERE principal_id = %s", me.id)
    audit_before = await scalar(pool, "SELECT max(seq) FROM audit_log")
    # "...\n": Python's "$" matches before a final newline, PostgreSQL's CHECK does not (it was a 500)
    for bad in ("short", "x" * 65, "has space 123", "semi;colon-123", "中文设备标识符号码", "abcdefgh\n"):
        r = await login(client, me.phone, me.password, headers=[(HEADER.encode(), bad.encode())])
        body = assert_problem(r, 400, "device_id_invalid", HEADER)
        assert body["field"] == HEADER
    assert (
        await scalar(pool, "SELECT count(*) FROM sessions WHERE principal_id = %s", me.id) == sessions_before
    )
    assert await scalar(pool, "SELECT failed_logins FROM customers WHERE id = %s", me.id) == 0
    assert await scalar(pool, "SELECT count(*) FROM audit_log WHERE seq > %s", audit_before) == 0

    # A registration refused for its header spends neither the code nor the phone.
    phone = new_phone()
    code = await send_code(client, phone, "register")
    body = {"phone": phone, "password": "Correct-horse-42", "sms_code": code}
    assert_problem(
        await client.post(f"{BASE}/register", json=body, headers={HEADER: "bad"}), 400, "device_id_invalid"
    )
    assert await scalar(pool, "SELECT count(*) FROM customers WHERE phone = %s", phone) == 0
    assert (await client.post(f"{BASE}/register", json=body)).status_code == 201


async def test_staff_sessions_store_the_device_id(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    username = f"devices.{uuid4().hex[:8]}"
    async with pool.connection() as conn:
        member = await staff.create_staff(
            conn,
            username=username,
            display_name=username,
            password=STAFF_PASSWORD,
            role=Role.FINANCE,
            outlet_id=None,
        )
    code = await bootstrap_enrollment_code(pool, username)
    step = await client.post(
        "/api/v1/staff/auth/login",
        json={"username": username, "password": STAFF_PASSWORD, "enrollment_code": code},
    )
    assert step.status_code == 200, step.text
    secret = step.json()["totp_enrollment"]["secret"]
    counter = device()
    done = await client.post(
        "/api/v1/staff/auth/totp",
        json={"ticket": step.json()["ticket"], "code": pyotp.TOTP(secret).now()},
        headers={HEADER: counter},
    )
    assert done.status_code == 200, done.text
    assert await scalar(pool, "SELECT device_id FROM sessions WHERE principal_id = %s", member.id) == counter
    detail = await scalar(
        pool,
        "SELECT detail FROM audit_log WHERE actor_id = %s AND action = 'staff.login.totp' AND outcome = 'success'",
        str(member.id),
    )
    assert detail["device_id"] == counter and detail["new_device"] is True


def test_the_header_is_documented_where_sessions_are_opened_only(app: FastAPI) -> None:
    paths = app.openapi()["paths"]

    def declares(path: str, method: str = "post") -> bool:
        parameters = paths[path][method].get("parameters", [])
        return any(p["in"] == "header" and p["name"] == HEADER for p in parameters)

    opening = [
        f"{BASE}/register",
        f"{BASE}/login",
        f"{BASE}/login/sms",
        f"{BASE}/login/totp",
        f"{BASE}/login/passkey",
        "/api/v1/customers/auth/passkey/verify",
        "/api/v1/staff/auth/totp",
    ]
    for path in opening:
        assert declares(path), path
        assert "400" in paths[path]["post"]["responses"], path
    assert not declares(f"{BASE}/auth/refresh")
    assert not declares(f"{BASE}/me", "get")
