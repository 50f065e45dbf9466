"""Customer sign-up and sign-in over HTTP: SMS codes, register, login, lockout, rate limits, sessions, passwords."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
import pyotp
import pytest
from argon2 import extract_parameters
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime
from etcwallet.identity import lockout, passwords
from etcwallet.identity.customers import api as customer_api
from etcwallet.identity.factors import totp
from etcwallet.identity.passwords import hash_secret
from etcwallet.identity.ratelimit import Limit
from tests.idempotency_keys import keyed
from tests.identity.customer_helpers import (
    BASE,
    EN,
    PASSWORD,
    assert_problem,
    bearer,
    codes,
    has_cjk,
    login,
    new_phone,
    outbox,
    register,
    scalar,
    send_code,
    sign_in,
    skip_cooldown,
)

# --- registration --------------------------------------------------------------------------------------


async def test_register_then_use_the_session_then_log_out(client: httpx.AsyncClient) -> None:
    me = await register(client)
    r = await client.get(f"{BASE}/me", headers=me.headers)
    assert r.status_code == 200, r.text
    assert r.json()["phone_masked"] == me.phone[:3] + "****" + me.phone[-4:]
    assert me.phone not in r.text
    other = await sign_in(client, me)
    r = await client.post(f"{BASE}/auth/logout", headers=other.headers)
    assert r.status_code == 204
    assert (await client.get(f"{BASE}/me", headers=other.headers)).status_code == 401
    assert (await client.get(f"{BASE}/me", headers=me.headers)).status_code == 200


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Ab1!", "password_too_short"),
        ("abcdefghij", "password_classes"),
        ("x{phone}Y", "password_contains_phone"),
        ("password1", "password_common"),
    ],
)
async def test_register_password_policy_names_the_rule(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, password: str, rule: str
) -> None:
    phone = new_phone()
    code = await send_code(client, phone, "register")
    body = {"phone": phone, "password": password.format(phone=phone), "sms_code": code}
    r = await client.post(f"{BASE}/register", json=body)
    zh = assert_problem(r, 422, rule, "password")
    assert has_cjk(zh["title"])
    en = assert_problem(await client.post(f"{BASE}/register", json=body, headers=EN), 422, rule, "password")
    assert not has_cjk(en["title"])
    assert await scalar(pool, "SELECT count(*) FROM customers WHERE phone = %s", phone) == 0
    # The code was not spent nor tried: it still works with a good password.
    assert await scalar(pool, "SELECT attempts FROM sms_codes WHERE phone = %s", phone) == 0
    body["password"] = PASSWORD
    assert (await client.post(f"{BASE}/register", json=body)).status_code == 201


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"phone": "1234"}, "phone", "mobile_format"),
        ({"phone": "12812345678"}, "phone", "mobile_prefix"),
        ({"phone": "139" + "1" * 30}, "phone", "string_too_long"),
        ({"password": "Aa1!" * 40}, "password", "string_too_long"),
        ({"sms_code": "12ab56"}, "sms_code", "sms_code_format"),
        ({"sms_code": "1" * 40}, "sms_code", "string_too_long"),
        ({"extra": "x"}, "extra", "extra_forbidden"),
    ],
)
async def test_register_bad_input_is_a_422_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, change: dict[str, str], field: str, code: str
) -> None:
    phone = new_phone()
    body = {"phone": phone, "password": PASSWORD, "sms_code": "123456"} | change
    r = await client.post(f"{BASE}/register", json=body)
    zh = assert_problem(r, 422, code, field)
    assert has_cjk(zh["errors"][0]["message"])
    en = assert_problem(await client.post(f"{BASE}/register", json=body, headers=EN), 422, code, field)
    assert not has_cjk(en["errors"][0]["message"])
    assert await scalar(pool, "SELECT count(*) FROM customers WHERE phone = %s", phone) == 0
    assert await scalar(pool, "SELECT count(*) FROM sms_codes WHERE phone = %s", phone) == 0


# --- SMS codes -----------------------------------------------------------------------------------------


async def test_wrong_codes_count_tries_and_five_exhaust_the_code(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    phone = new_phone()
    code = await send_code(client, phone, "register")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    body = {"phone": phone, "password": PASSWORD, "sms_code": wrong}
    for attempt in range(1, 6):
        r = await client.post(f"{BASE}/register", json=body, headers=EN if attempt == 5 else {})
        problem = assert_problem(r, 422, "sms_code_invalid", "sms_code")
        assert has_cjk(problem["title"]) == (attempt != 5)
        assert await scalar(pool, "SELECT attempts FROM sms_codes WHERE phone = %s", phone) == attempt
    r = await client.post(f"{BASE}/register", json=body | {"sms_code": code})
    assert_problem(r, 422, "sms_code_expired", "sms_code")
    assert await scalar(pool, "SELECT count(*) FROM customers WHERE phone = %s", phone) == 0


async def test_expired_code_is_refused(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    phone = new_phone()
    code = await send_code(client, phone, "register")
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE sms_codes SET expires_at = now() - interval '1 second' WHERE phone = %s", (phone,)
        )
    r = await client.post(f"{BASE}/register", json={"phone": phone, "password": PASSWORD, "sms_code": code})
    assert_problem(r, 422, "sms_code_expired", "sms_code")
    assert await scalar(pool, "SELECT count(*) FROM customers WHERE phone = %s", phone) == 0


async def test_replayed_code_is_refused(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    me = await register(client)
    code = await send_code(client, me.phone, "reset_password")
    body = {"phone": me.phone, "sms_code": code, "new_password": "Another-pass-77"}
    assert (await client.post(f"{BASE}/password/forgot", json=body)).status_code == 200
    r = await client.post(f"{BASE}/password/forgot", json=body | {"new_password": "Third-pass-88"})
    assert_problem(r, 422, "sms_code_expired", "sms_code")
    assert (await login(client, me.phone, "Another-pass-77")).status_code == 200


async def test_code_for_another_purpose_is_refused(client: httpx.AsyncClient) -> None:
    me = await register(client)
    code = await send_code(client, me.phone, "login")
    body = {"phone": me.phone, "sms_code": code, "new_password": "Another-pass-77"}
    assert_problem(
        await client.post(f"{BASE}/password/forgot", json=body), 422, "sms_code_expired", "sms_code"
    )
    # ...and it still works for what it was sent for.
    r = await client.post(f"{BASE}/login/sms", json={"phone": me.phone, "sms_code": code})
    assert r.status_code == 200 and r.json()["status"] == "signed_in", r.text


async def test_cooldown_then_a_new_code_replaces_the_old(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    phone = new_phone()
    first = await send_code(client, phone, "register")
    r = await client.post(f"{BASE}/sms-codes", json={"phone": phone, "purpose": "register"})
    problem = assert_problem(r, 429, "sms_cooldown", "phone")
    assert 1 <= int(r.headers["Retry-After"]) <= 61 and problem["retry_after"] >= 1
    assert len(await outbox(client, phone)) == 1
    await skip_cooldown(pool, phone)
    second = await send_code(client, phone, "register")
    assert await codes(client, phone) == [second, first]
    body = {"phone": phone, "password": PASSWORD, "sms_code": first}
    if first != second:
        assert_problem(await client.post(f"{BASE}/register", json=body), 422, "sms_code_invalid", "sms_code")
    assert (await client.post(f"{BASE}/register", json=body | {"sms_code": second})).status_code == 201


async def test_sms_answers_never_reveal_whether_a_phone_is_registered(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    known, unknown = (await register(client)).phone, new_phone()
    for purpose in ("login", "reset_password"):
        answers = []
        for phone in (known, unknown):
            r = await client.post(f"{BASE}/sms-codes", json={"phone": phone, "purpose": purpose})
            assert r.status_code == 202, r.text
            answers.append(r.json())
        assert set(answers[0]) == set(answers[1]) == {"phone_masked", "purpose", "expires_at", "resend_after"}
        # The cooldown applies the same to both, so asking twice reveals nothing either.
        for phone in (known, unknown):
            r = await client.post(f"{BASE}/sms-codes", json={"phone": phone, "purpose": purpose})
            assert_problem(r, 429, "sms_cooldown", "phone")
    assert await outbox(client, unknown) == []  # nothing was sent to the unregistered number
    n = len(await outbox(client, known))
    await skip_cooldown(pool, known)  # the code it registered with
    r = await client.post(f"{BASE}/sms-codes", json={"phone": known, "purpose": "register"})
    assert r.status_code == 202
    assert len(await outbox(client, known)) == n  # registering a registered number sends nothing


async def test_sms_endpoint_is_rate_limited_per_ip(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(customer_api, "SMS_PER_IP", Limit(2, timedelta(minutes=10)))
    for _ in range(2):
        r = await client.post(f"{BASE}/sms-codes", json={"phone": new_phone(), "purpose": "register"})
        assert r.status_code == 202
    r = await client.post(f"{BASE}/sms-codes", json={"phone": new_phone(), "purpose": "register"})
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1


# --- login ---------------------------------------------------------------------------------------------


async def test_unknown_phone_gets_the_same_answer_as_a_wrong_password(client: httpx.AsyncClient) -> None:
    known = await register(client)
    unknown = new_phone()
    for headers in ({}, EN):
        a = await login(client, known.phone, "Wrong-pass-123", headers=headers)
        b = await login(client, unknown, "Wrong-pass-123", headers=headers)
        assert a.status_code == b.status_code == 401
        assert a.json() == b.json()
        assert a.json()["code"] == "invalid_credentials"


async def test_forgot_password_on_an_unknown_phone_reveals_nothing(client: httpx.AsyncClient) -> None:
    known, unknown = (await register(client)).phone, new_phone()
    real = await send_code(client, known, "reset_password")
    r = await client.post(f"{BASE}/sms-codes", json={"phone": unknown, "purpose": "reset_password"})
    assert r.status_code == 202
    wrong = "000000" if real != "000000" else "111111"
    for headers in ({}, EN):
        a, b = [
            await client.post(
                f"{BASE}/password/forgot",
                json={"phone": phone, "sms_code": wrong, "new_password": "Another-pass-77"},
                headers=headers,
            )
            for phone in (known, unknown)
        ]
        assert a.status_code == b.status_code == 422
        assert a.json() == b.json()
        assert a.json()["code"] == "sms_code_invalid"
    # Without a code asked for, both answer that there is no live code.
    other_unknown = new_phone()
    fresh = (await register(client)).phone
    a, b = [
        await client.post(
            f"{BASE}/password/forgot", json={"phone": p, "sms_code": wrong, "new_password": "Another-pass-77"}
        )
        for p in (fresh, other_unknown)
    ]
    assert a.status_code == b.status_code == 422 and a.json() == b.json()


async def test_lockout_after_five_failures_growing_on_repeat(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(client)

    async def fail_five() -> datetime:
        for _ in range(4):
            assert_problem(await login(client, me.phone, "Wrong-pass-123"), 401, "invalid_credentials")
        r = await login(client, me.phone, "Wrong-pass-123", headers=EN)
        body = assert_problem(r, 423, "account_locked")
        assert "locked until" in body["title"]
        return datetime.fromisoformat(body["locked_until"])

    first = await fail_five()
    assert timedelta(minutes=14) < first - datetime.now(UTC) <= timedelta(minutes=15)
    r = await login(client, me.phone)  # even the right password is refused while locked
    assert_problem(r, 423, "account_locked")
    assert "locked_until" in r.json()
    async with pool.connection() as conn:  # time passes
        await conn.execute(
            "UPDATE customers SET locked_until = now() - interval '1 second' WHERE id = %s", (me.id,)
        )
    second = await fail_five()
    assert timedelta(minutes=29) < second - datetime.now(UTC) <= timedelta(minutes=30)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE customers SET locked_until = now() - interval '1 second' WHERE id = %s", (me.id,)
        )
    assert (await login(client, me.phone)).status_code == 200
    assert await scalar(pool, "SELECT failed_logins FROM customers WHERE id = %s", me.id) == 0


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "unknown"])
async def test_failures_and_escalation_are_forgotten_after_a_quiet_day(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, registered: bool
) -> None:
    """Old failures do not count toward a lock, and a lock long ago does not lengthen today's; a phone
    nobody holds forgets on the same schedule, so the answers still do not reveal registration."""
    phone = (await register(client)).phone if registered else new_phone()
    table, where = (
        ("customers", "phone = %s") if registered else ("unknown_login_failures", "identity_hash = %s")
    )
    key: object = phone if registered else lockout._identity("customers", phone)

    async def age(sql: str) -> None:
        async with pool.connection() as conn:
            await conn.execute(f"UPDATE {table} SET {sql} WHERE {where}", (key,))

    async def fail(times: int) -> list[int]:
        return [(await login(client, phone, "Wrong-pass-123")).status_code for _ in range(times)]

    assert await fail(4) == [401] * 4
    await age("last_failed_at = now() - interval '25 hours'")  # a day and more of quiet
    assert await fail(4) == [401] * 4  # the count started again: four, not eight
    r = await login(client, phone, "Wrong-pass-123")
    first = datetime.fromisoformat(assert_problem(r, 423, "account_locked")["locked_until"])
    assert timedelta(minutes=14) < first - datetime.now(UTC) <= timedelta(minutes=15)

    # Within a day of that lock's end, the next lock doubles.
    await age("locked_until = now() - interval '1 second'")
    assert await fail(4) == [401] * 4
    second = datetime.fromisoformat(
        assert_problem(await login(client, phone, "Wrong-pass-123"), 423, "account_locked")["locked_until"]
    )
    assert timedelta(minutes=29) < second - datetime.now(UTC) <= timedelta(minutes=30)

    # More than a day after the last lock ended, a new lock is the first again.
    await age("locked_until = now() - interval '25 hours', last_lock_until = now() - interval '25 hours'")
    assert await fail(4) == [401] * 4
    third = datetime.fromisoformat(
        assert_problem(await login(client, phone, "Wrong-pass-123"), 423, "account_locked")["locked_until"]
    )
    assert timedelta(minutes=14) < third - datetime.now(UTC) <= timedelta(minutes=15)


async def test_an_unknown_phone_locks_exactly_like_a_registered_one(client: httpx.AsyncClient) -> None:
    """The lockout must not reveal registration: a phone nobody holds is counted and locked the same way."""
    registered, unknown = (await register(client)).phone, new_phone()

    async def attempts(phone: str) -> list[tuple[int, str]]:
        answers = [await login(client, phone, "Wrong-pass-123") for _ in range(6)]
        answers.append(await login(client, phone))  # the right password (for the registered one) too
        return [(r.status_code, r.json()["code"]) for r in answers]

    seen = await attempts(registered)
    assert seen == [(401, "invalid_credentials")] * 4 + [(423, "account_locked")] * 3
    assert await attempts(unknown) == seen
    a, b = (await login(client, registered)).json(), (await login(client, unknown)).json()
    assert set(a) == set(b) and a["title"].split("至")[0] == b["title"].split("至")[0]


async def test_login_rate_limits_per_ip_and_per_phone(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(customer_api, "AUTH_PER_PHONE", Limit(3, timedelta(minutes=15)))
    me = await register(client)  # registering counts against the phone too: two sign-ins are left
    for _ in range(2):
        assert (await login(client, me.phone)).status_code == 200
    r = await login(client, me.phone)
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1
    # Another phone from the same address is still served: that limit was the phone's.
    assert (await login(client, new_phone())).status_code == 401
    monkeypatch.setattr(customer_api, "AUTH_PER_PHONE", Limit(100, timedelta(minutes=15)))
    monkeypatch.setattr(customer_api, "AUTH_PER_IP", Limit(2, timedelta(minutes=5)))
    transport = httpx.ASGITransport(app=app, client=(f"10.251.{os.getpid() % 250}.{time.time_ns() % 250}", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as fresh:
        for _ in range(2):
            assert (await login(fresh, new_phone())).status_code == 401
        r = await login(fresh, new_phone())
        assert_problem(r, 429, "rate_limited")
        assert "Retry-After" in r.headers


async def test_sms_login(client: httpx.AsyncClient) -> None:
    me = await register(client)
    code = await send_code(client, me.phone, "login")
    r = await client.post(f"{BASE}/login/sms", json={"phone": me.phone, "sms_code": code})
    assert r.status_code == 200 and r.json()["status"] == "signed_in", r.text
    r = await client.post(f"{BASE}/login/sms", json={"phone": me.phone, "sms_code": code})
    assert_problem(r, 422, "sms_code_expired", "sms_code")


# --- second factor -------------------------------------------------------------------------------------


async def test_totp_and_recovery_codes_finish_a_login(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, runtime: Runtime
) -> None:
    me = await register(client)
    cid = UUID(me.id)
    async with pool.connection() as conn:
        enrollment = await totp.enroll(
            conn,
            cipher=runtime.keys.cipher,
            principal_type="customer",
            principal_id=cid,
            account_name=me.phone,
        )
        otp = pyotp.TOTP(enrollment.secret)
        assert await totp.verify(
            conn,
            cipher=runtime.keys.cipher,
            principal_type="customer",
            principal_id=cid,
            code=otp.now(),
            confirming=True,
        )
        recovery = await totp.issue_recovery_codes(
            conn, lookup_key=runtime.keys.lookup_key, principal_type="customer", principal_id=cid
        )

    r = await login(client, me.phone)
    assert r.status_code == 200, r.text
    step = r.json()
    assert step["status"] == "second_factor_required" and step["access_token"] is None
    assert step["factors"] == ["totp", "recovery_code"]
    ticket = step["ticket"]
    now = time.time()
    live = {otp.at(now + d) for d in (-60, -30, 0, 30, 60)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c not in live)
    r = await client.post(f"{BASE}/login/totp", json={"ticket": ticket, "code": wrong})
    assert_problem(r, 401, "second_factor_invalid", "code")
    next_code = otp.at(time.time() + 30)  # the confirming code used this step: the next one is fresh
    r = await client.post(f"{BASE}/login/totp", json={"ticket": ticket, "code": next_code})
    assert r.status_code == 200 and r.json()["status"] == "signed_in", r.text
    assert (await client.get(f"{BASE}/me", headers=bearer(r.json()["access_token"]))).status_code == 200
    # The ticket is spent, and the same TOTP code cannot be replayed on a new one.
    r = await client.post(f"{BASE}/login/totp", json={"ticket": ticket, "code": next_code})
    assert_problem(r, 401, "login_ticket_invalid", "ticket")
    ticket = (await login(client, me.phone)).json()["ticket"]
    assert_problem(
        await client.post(f"{BASE}/login/totp", json={"ticket": ticket, "code": next_code}),
        401,
        "second_factor_invalid",
    )
    r = await client.post(f"{BASE}/login/totp", json={"ticket": ticket, "code": recovery[0]})
    assert r.status_code == 200, r.text
    ticket = (await login(client, me.phone)).json()["ticket"]
    r = await client.post(f"{BASE}/login/totp", json={"ticket": ticket, "code": recovery[0]})
    assert_problem(r, 401, "second_factor_invalid")
    assert (await client.get(f"{BASE}/me", headers=me.headers)).json()["two_factor"][
        "recovery_codes_left"
    ] == 9

    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO passkeys (id, principal_type, principal_id, credential_id, public_key) "
            "VALUES (gen_random_uuid(), 'customer', %s, decode(md5(random()::text), 'hex'), '\\x00')",
            (me.id,),
        )
    assert (await login(client, me.phone)).json()["factors"] == ["totp", "recovery_code", "passkey"]


# --- sessions ------------------------------------------------------------------------------------------


async def test_idle_expiry_refresh_rotation_and_revocation(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(client)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE sessions SET idle_expires_at = now() - interval '1 second' WHERE principal_id = %s",
            (me.id,),
        )
    assert_problem(await client.get(f"{BASE}/me", headers=me.headers), 401, "unauthenticated")
    assert_problem(
        await client.post(f"{BASE}/auth/refresh", json={"refresh_token": me.refresh}), 401, "unauthenticated"
    )

    live = await sign_in(client, me)
    r = await client.post(f"{BASE}/auth/refresh", json={"refresh_token": live.refresh})
    assert r.status_code == 200, r.text
    new_access, new_refresh = r.json()["access_token"], r.json()["refresh_token"]
    assert new_access != live.access and new_refresh != live.refresh
    assert (await client.get(f"{BASE}/me", headers=live.headers)).status_code == 401
    assert (await client.get(f"{BASE}/me", headers=bearer(new_access))).status_code == 200
    assert (await client.post(f"{BASE}/auth/logout", headers=bearer(new_access))).status_code == 204
    assert (await client.get(f"{BASE}/me", headers=bearer(new_access))).status_code == 401
    assert (await client.post(f"{BASE}/auth/refresh", json={"refresh_token": new_refresh})).status_code == 401


async def test_a_replayed_refresh_token_ends_the_session(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(client)
    other = await sign_in(client, me)
    r = await client.post(f"{BASE}/auth/refresh", json={"refresh_token": me.refresh})
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert (await client.get(f"{BASE}/me", headers=bearer(rotated["access_token"]))).status_code == 200

    # Someone presents the replaced refresh token: a second holder of this session's tokens.
    replay = await client.post(f"{BASE}/auth/refresh", json={"refresh_token": me.refresh})
    assert_problem(replay, 401, "refresh_token_reused")
    assert "重新登录" in replay.json()["title"]
    # The session has ended for both holders; the customer's other device is untouched.
    assert (await client.get(f"{BASE}/me", headers=bearer(rotated["access_token"]))).status_code == 401
    assert_problem(
        await client.post(f"{BASE}/auth/refresh", json={"refresh_token": rotated["refresh_token"]}),
        401,
        "unauthenticated",
    )
    assert (await client.get(f"{BASE}/me", headers=other.headers)).status_code == 200
    # Presenting it again finds no live session: a plain 401, nothing else ends.
    assert_problem(
        await client.post(f"{BASE}/auth/refresh", json={"refresh_token": me.refresh}), 401, "unauthenticated"
    )
    assert (await client.get(f"{BASE}/me", headers=other.headers)).status_code == 200
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT revoked_reason FROM sessions WHERE principal_id = %s AND revoked_at IS NOT NULL", (me.id,)
        )
        assert [row[0] for row in await cur.fetchall()] == ["refresh_token_reused"]
        cur = await conn.execute(
            "SELECT outcome, detail->>'reason' FROM audit_log WHERE action = 'customer.session.refresh' "
            "AND target_id = %s ORDER BY seq",
            (str(me.id),),
        )
        assert await cur.fetchall() == [
            ("success", None),
            ("refused", "refresh_token_reused"),
            ("refused", "unauthenticated"),
        ]


async def test_devices_list_and_end_only_your_own(client: httpx.AsyncClient) -> None:
    a = await register(client)
    a2 = await sign_in(client, a)
    b = await register(client)
    r = await client.get(f"{BASE}/me/sessions", headers={**a.headers, "User-Agent": "phone-app/1.0"})
    assert r.status_code == 200, r.text
    listed = r.json()
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    assert all(s["ip"] and s["user_agent"] and s["created_at"] and s["last_seen_at"] for s in listed)
    other = next(s["id"] for s in listed if not s["current"])
    # B can neither see nor end A's session: 404, and A's session lives on.
    r = await client.delete(f"{BASE}/me/sessions/{other}", headers=b.headers)
    assert_problem(r, 404, "session_not_found", "session_id")
    assert (await client.get(f"{BASE}/me", headers=a2.headers)).status_code == 200
    assert all(s["id"] != other for s in (await client.get(f"{BASE}/me/sessions", headers=b.headers)).json())
    assert (await client.delete(f"{BASE}/me/sessions/{other}", headers=a.headers)).status_code == 204
    assert (await client.get(f"{BASE}/me", headers=a2.headers)).status_code == 401
    assert (await client.delete(f"{BASE}/me/sessions/{other}", headers=a.headers)).status_code == 404
    assert (await client.get(f"{BASE}/me/sessions", headers=a.headers)).status_code == 200
    assert (await client.get(f"{BASE}/me/sessions")).status_code == 401


# --- passwords -----------------------------------------------------------------------------------------


async def test_changing_the_password_ends_every_other_session(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(client)
    other = await sign_in(client, me)
    before = await scalar(pool, "SELECT password_hash FROM customers WHERE id = %s", me.id)
    r = await client.post(
        f"{BASE}/me/password",
        json={"old_password": "Wrong-pass-1", "new_password": "Brand-new-99"},
        headers=keyed(me.headers),
    )
    assert_problem(r, 403, "old_password_wrong", "old_password")
    r = await client.post(
        f"{BASE}/me/password",
        json={"old_password": PASSWORD, "new_password": "short"},
        headers=keyed(me.headers),
    )
    assert_problem(r, 422, "password_too_short", "new_password")
    assert await scalar(pool, "SELECT password_hash FROM customers WHERE id = %s", me.id) == before
    assert (await client.get(f"{BASE}/me", headers=other.headers)).status_code == 200

    r = await client.post(
        f"{BASE}/me/password",
        json={"old_password": PASSWORD, "new_password": "Brand-new-99"},
        headers=keyed(me.headers),
    )
    assert r.status_code == 200 and r.json()["sessions_ended"] == 1, r.text
    assert (await client.get(f"{BASE}/me", headers=me.headers)).status_code == 200
    assert (await client.get(f"{BASE}/me", headers=other.headers)).status_code == 401
    assert (await login(client, me.phone)).status_code == 401
    assert (await login(client, me.phone, "Brand-new-99")).status_code == 200


async def test_forgot_password_ends_every_session_and_lifts_the_lock(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(client)
    other = await sign_in(client, me)
    for _ in range(5):
        await login(client, me.phone, "Wrong-pass-123")
    assert_problem(await login(client, me.phone), 423, "account_locked")
    code = await send_code(client, me.phone, "reset_password")
    body = {"phone": me.phone, "sms_code": code, "new_password": f"x{me.phone}Y"}
    assert_problem(
        await client.post(f"{BASE}/password/forgot", json=body),
        422,
        "password_contains_phone",
        "new_password",
    )
    r = await client.post(f"{BASE}/password/forgot", json=body | {"new_password": "Brand-new-99"})
    assert r.status_code == 200 and r.json()["sessions_ended"] == 2, r.text
    for s in (me, other):
        assert (await client.get(f"{BASE}/me", headers=s.headers)).status_code == 401
    assert (await login(client, me.phone, "Brand-new-99")).status_code == 200


# --- audit ---------------------------------------------------------------------------------------------


async def test_audit_records_authentication_events_without_secrets(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(client)
    await login(client, me.phone, "Wrong-pass-123")
    await login(client, me.phone)
    sent = await codes(client, me.phone)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, outcome, detail::text, ip FROM audit_log WHERE target_id = %s ORDER BY seq",
            (me.id,),
        )
        rows = await cur.fetchall()
    actions = [(r[0], r[1]) for r in rows]
    assert ("customer.register", "success") in actions
    assert ("customer.login.password", "refused") in actions
    assert ("customer.login.password", "success") in actions
    text = " ".join(r[2] for r in rows)
    for secret in (PASSWORD, "Wrong-pass-123", me.phone, *sent):
        assert secret not in text
    assert all(r[3] for r in rows)


async def test_register_race_on_a_registered_phone_is_a_409(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    phone = new_phone()
    code = await send_code(client, phone, "register")
    async with pool.connection() as conn:  # someone else registered it in between
        await conn.execute(
            "INSERT INTO customers (id, phone, password_hash) VALUES (gen_random_uuid(), %s, '!')", (phone,)
        )
    r = await client.post(f"{BASE}/register", json={"phone": phone, "password": PASSWORD, "sms_code": code})
    assert_problem(r, 409, "phone_registered", "phone")
    assert await scalar(pool, "SELECT count(*) FROM customers WHERE phone = %s", phone) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sms-codes", {"purpose": "login"}),
        ("/login", {"password": PASSWORD}),
        ("/login/sms", {"sms_code": "123456"}),
        ("/password/forgot", {"sms_code": "123456", "new_password": "Brand-new-99"}),
        ("/unfreeze", {"password": PASSWORD}),
    ],
)
async def test_malformed_phones_are_refused_before_anything_happens(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, path: str, body: dict[str, str]
) -> None:
    totals = (
        "SELECT (SELECT count(*) FROM sms_codes) + (SELECT count(*) FROM rate_limits) "
        "+ (SELECT count(*) FROM audit_log)"
    )
    before = await scalar(pool, totals)
    for phone, code in (
        ("1391234567", "mobile_format"),
        ("+86 11912345678", "mobile_prefix"),
        ("１３９ａ", "mobile_format"),
    ):
        r = await client.post(f"{BASE}{path}", json=body | {"phone": phone})
        zh = assert_problem(r, 422, code, "phone")
        assert has_cjk(zh["detail"])
        en = assert_problem(
            await client.post(f"{BASE}{path}", json=body | {"phone": phone}, headers=EN), 422, code, "phone"
        )
        assert not has_cjk(en["detail"])
    # No code, no rate-limit count, no audit row: nothing happened.
    assert await scalar(pool, totals) == before


async def test_sms_purpose_must_be_a_public_one(client: httpx.AsyncClient) -> None:
    r = await client.post(
        f"{BASE}/sms-codes", json={"phone": new_phone(), "purpose": "reset_payment_password"}
    )
    assert_problem(r, 422, "literal_error", "purpose")


def test_the_dummy_hash_costs_as_much_as_a_real_one() -> None:
    # Verifying an unknown phone's password must take as long as a known one's.
    assert extract_parameters(passwords.dummy_hash()) == extract_parameters(hash_secret("Any-pass-2026"))
