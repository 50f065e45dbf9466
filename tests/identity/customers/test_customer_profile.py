"""The real-name profile (encrypted, keyed-hash look-up, masked) and the payment password over HTTP."""

from __future__ import annotations

from uuid import UUID

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime
from etcwallet.core.crypto import keyed_hash
from etcwallet.core.masking import mask_id_number
from etcwallet.identity.customers.service import (
    ID_NUMBER_CONTEXT,
    NAME_CONTEXT,
    find_customer_by_id_number,
    verify_payment_password,
)
from tests.idempotency_keys import keyed
from tests.identity.customer_helpers import (
    BASE,
    EN,
    assert_problem,
    has_cjk,
    new_resident_id,
    register,
    scalar,
    send_own_code,
    skip_cooldown,
    step_up,
    with_wrong_check,
)

NAME = "张三丰"


async def put_profile(client: httpx.AsyncClient, headers: dict[str, str], **body: str) -> httpx.Response:
    return await client.put(f"{BASE}/me/profile", json=body, headers=headers)


async def profile_rows(pool: AsyncConnectionPool, customer_id: str) -> int:
    return int(
        await scalar(pool, "SELECT count(*) FROM customer_profiles WHERE customer_id = %s", customer_id)
    )


# --- real-name profile -----------------------------------------------------------------------------------


async def test_profile_is_stored_encrypted_and_answered_masked(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, runtime: Runtime
) -> None:
    me = await register(client)
    await step_up(client, me)  # recording a real-name profile needs a fresh step-up
    number = new_resident_id()
    assert (await client.get(f"{BASE}/me/profile", headers=me.headers)).status_code == 404
    r = await put_profile(client, me.headers, name=NAME, id_type="resident_id", id_number=number.lower())
    assert r.status_code == 200, r.text
    for answer in (r, await client.get(f"{BASE}/me/profile", headers=me.headers)):
        body = answer.json()
        assert body["name_masked"] == "张**"
        assert body["id_number_masked"] == mask_id_number(number) == number[:4] + "*" * 10 + number[-4:]
        assert number not in answer.text and NAME not in answer.text and number[6:14] not in answer.text
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT name_enc, id_number_enc, id_number_hash, id_number_masked, birth_date "
            "FROM customer_profiles WHERE customer_id = %s",
            (me.id,),
        )
        row = await cur.fetchone()
    assert row is not None
    name_enc, number_enc, digest, masked, birth = bytes(row[0]), bytes(row[1]), bytes(row[2]), row[3], row[4]
    assert NAME.encode() not in name_enc and number.encode() not in number_enc
    assert runtime.keys.cipher.decrypt(name_enc, context=NAME_CONTEXT) == NAME
    assert runtime.keys.cipher.decrypt(number_enc, context=ID_NUMBER_CONTEXT) == number
    assert digest == keyed_hash(number, runtime.keys.lookup_key)
    assert masked == mask_id_number(number) and birth.strftime("%Y%m%d") == number[6:14]
    # Saving the same data again is a no-op; changing it needs an SMS code.
    assert (
        await put_profile(client, me.headers, name=NAME, id_type="resident_id", id_number=number)
    ).status_code == 200
    other = new_resident_id()
    r = await put_profile(client, me.headers, name=NAME, id_type="resident_id", id_number=other)
    assert_problem(r, 422, "sms_code_required", "sms_code")
    code = await send_own_code(client, me.headers, me.phone, "profile_change")
    r = await put_profile(
        client, me.headers, name="李四", id_type="resident_id", id_number=other, sms_code=code
    )
    assert r.status_code == 200 and r.json()["name_masked"] == "李*", r.text
    async with pool.connection() as conn:
        assert (
            await find_customer_by_id_number(
                conn, lookup_key=runtime.keys.lookup_key, id_type="resident_id", number=number
            )
            is None
        )
        assert await find_customer_by_id_number(
            conn, lookup_key=runtime.keys.lookup_key, id_type="resident_id", number=other
        ) == UUID(me.id)


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"id_number": "WRONG_CHECK"}, "id_number", "id_check_digit"),
        ({"id_number": "11010119900230123X"}, "id_number", "id_birth_date"),
        ({"id_number": "1101011990"}, "id_number", "id_length"),
        ({"id_number": "1" * 33}, "id_number", "string_too_long"),
        ({"name": "张" * 65}, "name", "string_too_long"),
        ({"name": "张3"}, "name", "name_format"),
        ({"id_type": "driving_licence"}, "id_type", "literal_error"),
        ({"id_type": "passport", "id_number": "E12"}, "id_number", "id_format"),
        ({"id_type": "hk_macao_permit", "id_number": "X12345678"}, "id_number", "id_format"),
    ],
)
async def test_bad_profile_input_is_a_422_naming_the_field_and_changes_nothing(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, change: dict[str, str], field: str, code: str
) -> None:
    me = await register(client)
    number = new_resident_id()
    body = {"name": NAME, "id_type": "resident_id", "id_number": number} | change
    if body["id_number"] == "WRONG_CHECK":
        body["id_number"] = with_wrong_check(number)
    zh = assert_problem(await put_profile(client, me.headers, **body), 422, code, field)
    assert has_cjk(zh["errors"][0]["message"])
    en = assert_problem(await put_profile(client, {**me.headers, **EN}, **body), 422, code, field)
    assert not has_cjk(en["errors"][0]["message"])
    assert await profile_rows(pool, me.id) == 0


async def test_one_id_number_belongs_to_one_customer(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    a, b = await register(client), await register(client)
    for who in (a, b):
        await step_up(client, who)
    number = new_resident_id()
    assert (
        await put_profile(client, a.headers, name=NAME, id_type="resident_id", id_number=number)
    ).status_code == 200
    spaced = f"{number[:6]} {number[6:14]} {number[14:]}"
    r = await put_profile(client, b.headers, name="王五", id_type="resident_id", id_number=spaced)
    assert_problem(r, 409, "id_number_registered", "id_number")
    assert await profile_rows(pool, b.id) == 0


async def test_find_customer_by_id_number_uses_the_keyed_hash(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, runtime: Runtime
) -> None:
    me = await register(client)
    await step_up(client, me)
    number = new_resident_id()
    passport = f"E{int(number[-9:-1]):08d}"
    assert (
        await put_profile(client, me.headers, name=NAME, id_type="resident_id", id_number=number)
    ).status_code == 200
    key = runtime.keys.lookup_key
    async with pool.connection() as conn:
        assert await find_customer_by_id_number(
            conn, lookup_key=key, id_type="resident_id", number=number
        ) == UUID(me.id)
        assert await find_customer_by_id_number(
            conn, lookup_key=key, id_type="resident_id", number=f" {number.lower()} "
        ) == UUID(me.id)
        assert (
            await find_customer_by_id_number(conn, lookup_key=key, id_type="passport", number=number) is None
        )
        assert (
            await find_customer_by_id_number(
                conn, lookup_key=key, id_type="resident_id", number=with_wrong_check(number)
            )
            is None
        )
        # Only the hash is compared: a row whose ciphertext is garbage is still found by its hash.
        other = await register(client)
        await conn.execute(
            "INSERT INTO customer_profiles (customer_id, name_enc, id_type, id_number_enc, id_number_hash, "
            "id_number_masked) VALUES (%s, '\\x00', 'passport', '\\x00', %s, 'E*******1')",
            (other.id, keyed_hash(passport, key)),
        )
        assert await find_customer_by_id_number(
            conn, lookup_key=key, id_type="passport", number=passport.lower()
        ) == UUID(other.id)


# --- payment password ------------------------------------------------------------------------------------


async def test_payment_password_set_verify_lock_and_reset(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(client)
    url = f"{BASE}/me/payment-password"
    code = await send_own_code(client, me.headers, me.phone, "reset_payment_password")
    assert_problem(
        await client.put(url, json={"pin": "123456", "sms_code": code}, headers=me.headers),
        422,
        "pin_sequential",
        "pin",
    )
    assert_problem(
        await client.put(url, json={"pin": "12a456", "sms_code": code}, headers=me.headers),
        422,
        "pin_format",
        "pin",
    )
    tail = me.phone[-6:]
    if (
        len(set(tail)) > 1
        and tail not in "01234567890"
        and tail not in "09876543210"
        and tail[:2] * 3 != tail
        and tail[:3] * 2 != tail
    ):
        assert_problem(
            await client.put(url, json={"pin": tail, "sms_code": code}, headers=me.headers),
            422,
            "pin_phone",
            "pin",
        )
    assert await scalar(pool, "SELECT count(*) FROM payment_passwords WHERE customer_id = %s", me.id) == 0
    r = await client.put(url, json={"pin": "258147", "sms_code": code}, headers=me.headers)
    assert r.status_code == 200 and r.json()["set"] and r.json()["remaining_attempts"] == 5, r.text
    assert (
        await scalar(pool, "SELECT password_hash FROM payment_passwords WHERE customer_id = %s", me.id)
    ).startswith("$argon2id$")
    await skip_cooldown(pool, me.phone)
    code = await send_own_code(client, me.headers, me.phone, "reset_payment_password")
    r = await client.put(url, json={"pin": "369258", "sms_code": code}, headers=me.headers)
    assert_problem(r, 409, "payment_password_exists", "pin")

    verify = f"{url}/verify"
    assert (await client.post(verify, json={"pin": "258147"}, headers=me.headers)).status_code == 200
    for left in (4, 3, 2, 1):
        body = assert_problem(
            await client.post(verify, json={"pin": "147258"}, headers=me.headers),
            403,
            "payment_password_wrong",
            "pin",
        )
        assert body["remaining_attempts"] == left and str(left) in body["title"]
    assert_problem(
        await client.post(verify, json={"pin": "147258"}, headers=me.headers),
        423,
        "payment_password_locked",
        "pin",
    )
    assert_problem(
        await client.post(verify, json={"pin": "258147"}, headers=me.headers), 423, "payment_password_locked"
    )
    state = (await client.get(url, headers=me.headers)).json()
    assert state == {"set": True, "locked": True, "failed_attempts": 5, "remaining_attempts": 0}

    reset = f"{url}/reset"
    number = new_resident_id()
    # Resetting needs the real-name profile on file...
    r = await client.post(
        reset, json={"sms_code": code, "id_number": number, "new_pin": "369258"}, headers=keyed(me.headers)
    )
    assert_problem(r, 409, "profile_required")
    await step_up(client, me)
    assert (
        await put_profile(client, me.headers, name=NAME, id_type="resident_id", id_number=number)
    ).status_code == 200
    # ...and its ID number: a wrong one spends the code and changes nothing else.
    r = await client.post(
        reset,
        json={"sms_code": code, "id_number": new_resident_id(), "new_pin": "369258"},
        headers=keyed(me.headers),
    )
    assert_problem(r, 422, "id_number_mismatch", "id_number")
    r = await client.post(
        reset, json={"sms_code": code, "id_number": number, "new_pin": "369258"}, headers=keyed(me.headers)
    )
    assert_problem(r, 422, "sms_code_expired", "sms_code")
    assert (await client.get(url, headers=me.headers)).json()["locked"] is True
    await skip_cooldown(pool, me.phone)
    code = await send_own_code(client, me.headers, me.phone, "reset_payment_password")
    birthday_pin = number[8:14]  # MMDD of the birth date inside
    r = await client.post(
        reset,
        json={"sms_code": code, "id_number": number, "new_pin": birthday_pin},
        headers=keyed(me.headers),
    )
    # Refused as a birth date (or, for some dates, as a repeat or a run first); the code is not spent.
    body = assert_problem(r, 422, r.json()["code"], "new_pin")
    assert body["code"] in {"pin_birth_date", "pin_repeated", "pin_sequential", "pin_pattern"}
    r = await client.post(
        reset,
        json={"sms_code": code, "id_number": number.lower(), "new_pin": "369258"},
        headers=keyed(me.headers),
    )
    assert r.status_code == 200 and r.json()["locked"] is False and r.json()["remaining_attempts"] == 5, (
        r.text
    )
    assert (await client.post(verify, json={"pin": "369258"}, headers=me.headers)).status_code == 200
    assert_problem(
        await client.post(verify, json={"pin": "258147"}, headers=me.headers), 403, "payment_password_wrong"
    )


async def test_verify_payment_password_service(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    me = await register(client)
    cid = UUID(me.id)
    async with pool.connection() as conn:
        refusal = await verify_payment_password(conn, customer_id=cid, pin="258147")
        assert refusal is not None and refusal.code == "payment_password_not_set"
    code = await send_own_code(client, me.headers, me.phone, "reset_payment_password")
    r = await client.put(
        f"{BASE}/me/payment-password", json={"pin": "258147", "sms_code": code}, headers=me.headers
    )
    assert r.status_code == 200
    async with pool.connection() as conn:
        assert await verify_payment_password(conn, customer_id=cid, pin="258147") is None
        refusal = await verify_payment_password(conn, customer_id=cid, pin="000001")
        assert refusal is not None and refusal.code == "payment_password_wrong"
        assert refusal.extra["remaining_attempts"] == 4 and refusal.status == 403
    # The pool's context committed the counted try.
    assert (
        await scalar(pool, "SELECT failed_attempts FROM payment_passwords WHERE customer_id = %s", me.id) == 1
    )
    async with pool.connection() as conn:
        assert await verify_payment_password(conn, customer_id=cid, pin="258147") is None
    assert (
        await scalar(pool, "SELECT failed_attempts FROM payment_passwords WHERE customer_id = %s", me.id) == 0
    )


async def test_payment_password_needs_a_code_for_its_own_purpose(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(client)
    code = await send_own_code(client, me.headers, me.phone, "profile_change")
    r = await client.put(
        f"{BASE}/me/payment-password", json={"pin": "258147", "sms_code": code}, headers=me.headers
    )
    assert_problem(r, 422, "sms_code_expired", "sms_code")
    assert await scalar(pool, "SELECT count(*) FROM payment_passwords WHERE customer_id = %s", me.id) == 0
    assert (
        await client.put(f"{BASE}/me/payment-password", json={"pin": "258147", "sms_code": code})
    ).status_code == 401


async def test_audit_never_holds_the_id_number_or_pin(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(client)
    await step_up(client, me)
    number = new_resident_id()
    await put_profile(client, me.headers, name=NAME, id_type="resident_id", id_number=number)
    code = await send_own_code(client, me.headers, me.phone, "reset_payment_password")
    await client.put(
        f"{BASE}/me/payment-password", json={"pin": "258147", "sms_code": code}, headers=me.headers
    )
    await client.post(f"{BASE}/me/payment-password/verify", json={"pin": "147258"}, headers=me.headers)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT action, detail::text FROM audit_log WHERE target_id = %s", (me.id,))
        rows = await cur.fetchall()
    actions = {r[0] for r in rows}
    assert {
        "customer.profile.set",
        "customer.payment_password.set",
        "customer.payment_password.verify",
    } <= actions
    text = " ".join(r[1] for r in rows)
    for secret in (number, number[6:14], NAME, "258147", "147258", code, me.phone):
        assert secret not in text
    assert mask_id_number(number) in text
