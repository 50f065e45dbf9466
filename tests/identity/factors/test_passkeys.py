"""Passkeys over HTTP, driven by a software authenticator: registration, password-less login, step-up,
and every forged or replayed answer refused with nothing changed."""

from __future__ import annotations

from typing import Any

from tests.idempotency_keys import keyed
from tests.identity.software_authenticator import (
    SoftwareAuthenticator,
    b64url,
    make_customer,
    open_session,
    random_phone,
    unb64url,
)

ORIGIN = "http://test"  # the test client's base URL: RP id "test"
ME = "/api/v1/me/factors"
LOGIN = "/api/v1/customers/auth/passkey"


async def register(
    client: Any, headers: dict[str, str], device: SoftwareAuthenticator, name: str = "我的手机"
) -> dict:
    r = await client.post(f"{ME}/passkeys/register/options", headers=headers)
    assert r.status_code == 200, r.text
    options = r.json()
    assert options["public_key"]["rp"]["id"] == "test"
    assert options["public_key"]["authenticatorSelection"]["userVerification"] == "required"
    credential = device.create(options, ORIGIN)
    r = await client.post(
        f"{ME}/passkeys/register/verify",
        json={"challenge_id": options["challenge_id"], "credential": credential, "name": name},
        headers=keyed(headers),
    )
    assert r.status_code == 201, r.text
    return r.json()


async def customer_with_passkey(client: Any, pool: Any) -> tuple[Any, str, SoftwareAuthenticator, dict]:
    customer_id, phone = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id, stepped_up=True)
    device = SoftwareAuthenticator()
    key = await register(client, headers, device)
    return customer_id, phone, device, key


async def login_options(client: Any, phone: str | None = None) -> dict:
    r = await client.post(f"{LOGIN}/options", json={"phone": phone} if phone else {})
    assert r.status_code == 200, r.text
    return r.json()


async def sign_count(pool: Any, passkey_id: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT sign_count FROM passkeys WHERE id = %s", (passkey_id,))
        row = await cur.fetchone()
    return int(row[0])


async def live_sessions(pool: Any, customer_id: Any) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM sessions WHERE principal_id = %s AND revoked_at IS NULL", (customer_id,)
        )
        row = await cur.fetchone()
    return int(row[0])


async def audit_actions(pool: Any, customer_id: Any) -> list[tuple[str, str]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, outcome FROM audit_log WHERE target_id = %s ORDER BY seq", (str(customer_id),)
        )
        return [(r[0], r[1]) for r in await cur.fetchall()]


async def test_register_then_password_less_login(client, pool):
    customer_id, phone, device, key = await customer_with_passkey(client, pool)
    assert key["name"] == "我的手机" and "internal" in key["transports"]

    # Discoverable: no phone, empty allow list, the authenticator picks the credential.
    options = await login_options(client)
    assert options["public_key"]["allowCredentials"] == []
    r = await client.post(
        f"{LOGIN}/verify",
        json={"challenge_id": options["challenge_id"], "credential": device.get(options, ORIGIN)},
    )
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert {"access_token", "refresh_token", "csrf_token", "expires_at", "absolute_expires_at"} <= set(tokens)
    me = {"Authorization": f"Bearer {tokens['access_token']}"}
    r = await client.get(f"{ME}/passkeys", headers=me)
    assert r.status_code == 200 and [k["id"] for k in r.json()] == [key["id"]]
    assert r.json()[0]["last_used_at"] is not None
    r = await client.get(f"{ME}/step-up", headers=me)
    assert r.json()["stepped_up"] is True and r.json()["factor"] == "passkey"
    assert await sign_count(pool, key["id"]) == 1

    # With a phone hint the options list that customer's credentials.
    options = await login_options(client, phone)
    allowed = [c["id"] for c in options["public_key"]["allowCredentials"]]
    assert allowed == [b64url(k) for k in device.credentials]
    r = await client.post(
        f"{LOGIN}/verify",
        json={"challenge_id": options["challenge_id"], "credential": device.get(options, ORIGIN)},
    )
    assert r.status_code == 200, r.text
    actions = await audit_actions(pool, customer_id)
    assert ("factor.passkey.register", "success") in actions
    assert actions.count(("customer.login.passkey", "success")) == 2


async def test_phone_hint_does_not_reveal_registration(client, pool):
    _, phone = await make_customer(pool)  # registered, no passkey
    unknown = random_phone()
    for number in (phone, unknown):
        options = await login_options(client, number)
        allow = options["public_key"]["allowCredentials"]
        assert len(allow) == 1 and len(unb64url(allow[0]["id"])) == 32  # a decoy, same shape either way
    r = await client.post(f"{LOGIN}/options")  # no body at all: discoverable credentials
    assert r.status_code == 200 and r.json()["public_key"]["allowCredentials"] == []
    r = await client.post(f"{LOGIN}/options", json={"phone": "12345"})
    assert r.status_code == 422 and r.json()["field"] == "phone"


async def test_phone_bound_challenge_refuses_another_customers_passkey(client, pool):
    _, _, device_a, _ = await customer_with_passkey(client, pool)
    _, phone_b, _, _ = await customer_with_passkey(client, pool)
    options = await login_options(client, phone_b)
    options["public_key"]["allowCredentials"] = []  # a client ignoring the hint
    r = await client.post(
        f"{LOGIN}/verify",
        json={"challenge_id": options["challenge_id"], "credential": device_a.get(options, ORIGIN)},
    )
    assert r.status_code == 401 and r.json()["code"] == "passkey_invalid"


async def test_registration_needs_step_up_and_a_valid_attestation(client, pool):
    customer_id, _ = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/passkeys/register/options", headers=headers)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "step_up_required" and r.json()["accepted_factors"] == ["sms"]

    headers, _ = await open_session(pool, customer_id, stepped_up=True)
    device = SoftwareAuthenticator()
    options = (await client.post(f"{ME}/passkeys/register/options", headers=headers)).json()
    # Wrong origin: refused, nothing stored, and the challenge is spent.
    credential = device.create(options, "https://evil.example")
    body = {"challenge_id": options["challenge_id"], "credential": credential}
    r = await client.post(f"{ME}/passkeys/register/verify", json=body, headers=keyed(headers))
    assert r.status_code == 422 and r.json()["code"] == "passkey_registration_invalid", r.text
    body["credential"] = device.create(options, ORIGIN)
    r = await client.post(f"{ME}/passkeys/register/verify", json=body, headers=keyed(headers))
    assert r.status_code == 400 and r.json()["code"] == "webauthn_challenge_invalid"
    assert (await client.get(f"{ME}/passkeys", headers=headers)).json() == []
    # Garbage is a clean 4xx as well.
    options = (await client.post(f"{ME}/passkeys/register/options", headers=headers)).json()
    body = {"challenge_id": options["challenge_id"], "credential": {"id": "x", "rawId": "%%%"}}
    r = await client.post(f"{ME}/passkeys/register/verify", json=body, headers=keyed(headers))
    assert r.status_code == 422 and r.json()["code"] == "passkey_registration_invalid"
    # Another customer cannot answer my registration challenge.
    options = (await client.post(f"{ME}/passkeys/register/options", headers=headers)).json()
    other_id, _ = await make_customer(pool)
    other, _ = await open_session(pool, other_id, stepped_up=True)
    body = {"challenge_id": options["challenge_id"], "credential": device.create(options, ORIGIN)}
    r = await client.post(f"{ME}/passkeys/register/verify", json=body, headers=keyed(other))
    assert r.status_code == 400 and r.json()["code"] == "webauthn_challenge_invalid"
    assert ("factor.passkey.register", "refused") in await audit_actions(pool, customer_id)


async def test_same_credential_cannot_register_twice(client, pool):
    customer_id, _, device, _ = await customer_with_passkey(client, pool)
    headers, _ = await open_session(pool, customer_id, stepped_up=True)
    options = (await client.post(f"{ME}/passkeys/register/options", headers=headers)).json()
    assert [c["id"] for c in options["public_key"]["excludeCredentials"]] == [
        b64url(k) for k in device.credentials
    ]
    # A client ignoring excludeCredentials and presenting a known credential id is refused as a duplicate.
    known = next(iter(device.credentials))
    credential = SoftwareAuthenticator().create(options, ORIGIN, credential_id=known)
    body = {"challenge_id": options["challenge_id"], "credential": credential}
    r = await client.post(f"{ME}/passkeys/register/verify", json=body, headers=keyed(headers))
    assert r.status_code == 409 and r.json()["code"] == "passkey_exists", r.text
    assert len((await client.get(f"{ME}/passkeys", headers=headers)).json()) == 1


async def test_tampered_wrong_origin_and_replayed_assertions_change_nothing(client, pool):
    customer_id, _, device, key = await customer_with_passkey(client, pool)
    sessions_before = await live_sessions(pool, customer_id)

    async def attempt(mutate: Any, origin: str = ORIGIN) -> Any:
        options = await login_options(client)
        credential = device.get(options, origin)
        mutate(credential)
        return await client.post(
            f"{LOGIN}/verify", json={"challenge_id": options["challenge_id"], "credential": credential}
        )

    def flip_signature(c: dict) -> None:
        sig = bytearray(unb64url(c["response"]["signature"]))
        sig[-1] ^= 0x01
        c["response"]["signature"] = b64url(bytes(sig))

    def raise_counter(c: dict) -> None:  # editing authenticatorData breaks the signature too
        data = bytearray(unb64url(c["response"]["authenticatorData"]))
        data[-1] = (data[-1] + 50) % 256
        c["response"]["authenticatorData"] = b64url(bytes(data))

    for mutate, origin in (
        (flip_signature, ORIGIN),
        (raise_counter, ORIGIN),
        (lambda c: None, "http://evil"),
    ):
        r = await attempt(mutate, origin)
        assert r.status_code == 401, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "passkey_invalid"
    assert await sign_count(pool, key["id"]) == 0
    assert await live_sessions(pool, customer_id) == sessions_before

    # The RP id is checked as well (an assertion made for another site).
    options = await login_options(client)
    device.credentials[next(iter(device.credentials))].rp_id = "evil"
    credential = device.get(options, ORIGIN, rp_id="evil")
    device.credentials[next(iter(device.credentials))].rp_id = "test"
    r = await client.post(
        f"{LOGIN}/verify", json={"challenge_id": options["challenge_id"], "credential": credential}
    )
    assert r.status_code == 401

    # Wrong challenge: an answer to challenge A sent with challenge B's id.
    a, b = await login_options(client), await login_options(client)
    r = await client.post(
        f"{LOGIN}/verify", json={"challenge_id": b["challenge_id"], "credential": device.get(a, ORIGIN)}
    )
    assert r.status_code == 401 and r.json()["code"] == "passkey_invalid"

    # Replay: a good answer works once; sent again, its challenge is spent.
    options = await login_options(client)
    body = {"challenge_id": options["challenge_id"], "credential": device.get(options, ORIGIN)}
    assert (await client.post(f"{LOGIN}/verify", json=body)).status_code == 200
    count = await sign_count(pool, key["id"])
    r = await client.post(f"{LOGIN}/verify", json=body)
    assert r.status_code == 400 and r.json()["code"] == "webauthn_challenge_invalid"
    assert await sign_count(pool, key["id"]) == count
    assert await live_sessions(pool, customer_id) == sessions_before + 1
    # A step-up challenge cannot be used to sign in.
    headers, _ = await open_session(pool, customer_id)
    step = (await client.post(f"{ME}/step-up/passkey/options", headers=headers)).json()
    r = await client.post(
        f"{LOGIN}/verify", json={"challenge_id": step["challenge_id"], "credential": device.get(step, ORIGIN)}
    )
    assert r.status_code == 400 and r.json()["code"] == "webauthn_challenge_invalid"
    # Unknown credential and malformed JSON: 4xx, not 500.
    options = await login_options(client)
    stranger = SoftwareAuthenticator()
    stranger.create({"rp": {"id": "test"}, "user": {"id": b64url(b"x")}, "challenge": "AA"}, ORIGIN)
    r = await client.post(
        f"{LOGIN}/verify",
        json={"challenge_id": options["challenge_id"], "credential": stranger.get(options, ORIGIN)},
    )
    assert r.status_code == 401
    options = await login_options(client)
    r = await client.post(f"{LOGIN}/verify", json={"challenge_id": options["challenge_id"], "credential": {}})
    assert r.status_code == 401
    r = await client.post(f"{LOGIN}/verify", json={"challenge_id": "nope", "credential": {}})
    assert r.status_code == 422
    refused = [a for a in await audit_actions(pool, customer_id) if a[1] == "refused"]
    assert refused == []  # refusals before the customer is known are audited as anonymous


async def test_cloned_authenticator_is_refused(client, pool):
    customer_id, _, device, key = await customer_with_passkey(client, pool)

    async def login_with(dev: SoftwareAuthenticator) -> Any:
        options = await login_options(client)
        return await client.post(
            f"{LOGIN}/verify",
            json={"challenge_id": options["challenge_id"], "credential": dev.get(options, ORIGIN)},
        )

    assert (await login_with(device)).status_code == 200  # counter 1
    clone = device.clone()
    assert (await login_with(device)).status_code == 200  # counter 2
    sessions_before = await live_sessions(pool, customer_id)
    r = await login_with(clone)  # presents 2 again
    assert r.status_code == 401 and r.json()["code"] == "passkey_counter_regressed", r.text
    assert await sign_count(pool, key["id"]) == 2
    assert await live_sessions(pool, customer_id) == sessions_before
    assert (await login_with(device)).status_code == 200  # the genuine one goes on


async def test_authenticator_without_counter_keeps_working(client, pool):
    customer_id, _ = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id, stepped_up=True)
    device = SoftwareAuthenticator(counter_step=0)
    key = await register(client, headers, device)
    for _ in range(2):
        options = await login_options(client)
        r = await client.post(
            f"{LOGIN}/verify",
            json={"challenge_id": options["challenge_id"], "credential": device.get(options, ORIGIN)},
        )
        assert r.status_code == 200, r.text
    assert await sign_count(pool, key["id"]) == 0


async def test_user_verification_is_required(client, pool):
    _, _, device, _ = await customer_with_passkey(client, pool)
    device.user_verified = False
    options = await login_options(client)
    r = await client.post(
        f"{LOGIN}/verify",
        json={"challenge_id": options["challenge_id"], "credential": device.get(options, ORIGIN)},
    )
    assert r.status_code == 401


async def test_frozen_customer_cannot_sign_in_with_a_passkey(client, pool):
    customer_id, _, device, key = await customer_with_passkey(client, pool)
    async with pool.connection() as conn:
        await conn.execute("UPDATE customers SET status = 'frozen' WHERE id = %s", (customer_id,))
    sessions_before = await live_sessions(pool, customer_id)
    options = await login_options(client)
    r = await client.post(
        f"{LOGIN}/verify",
        json={"challenge_id": options["challenge_id"], "credential": device.get(options, ORIGIN)},
    )
    assert r.status_code == 403 and r.json()["code"] == "account_frozen", r.text
    assert await live_sessions(pool, customer_id) == sessions_before
    assert await sign_count(pool, key["id"]) == 0
    assert ("customer.login.passkey", "refused") in await audit_actions(pool, customer_id)


async def test_passkey_step_up(client, pool):
    customer_id, _, device, _ = await customer_with_passkey(client, pool)
    headers, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/recovery-codes/regenerate", headers=keyed(headers))
    assert r.status_code == 403
    assert r.json()["accepted_factors"] == ["passkey"]
    assert set(r.json()["step_up"]["endpoints"]) == {"passkey"}
    r = await client.post(f"{ME}/step-up/sms/send", headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "factor_not_accepted"

    options = (await client.post(f"{ME}/step-up/passkey/options", headers=headers)).json()
    assert [c["id"] for c in options["public_key"]["allowCredentials"]] == [
        b64url(k) for k in device.credentials
    ]
    # Tampered: refused, not stepped up.
    bad = device.get(options, ORIGIN)
    bad["response"]["signature"] = b64url(unb64url(bad["response"]["signature"])[:-1] + b"\x00")
    r = await client.post(
        f"{ME}/step-up/passkey/verify",
        json={"challenge_id": options["challenge_id"], "credential": bad},
        headers=headers,
    )
    assert r.status_code == 422 and r.json()["code"] == "passkey_invalid"
    assert (await client.get(f"{ME}/step-up", headers=headers)).json()["stepped_up"] is False

    options = (await client.post(f"{ME}/step-up/passkey/options", headers=headers)).json()
    r = await client.post(
        f"{ME}/step-up/passkey/verify",
        json={"challenge_id": options["challenge_id"], "credential": device.get(options, ORIGIN)},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["stepped_up"] is True and r.json()["factor"] == "passkey"
    assert ("step_up.passkey", "success") in await audit_actions(pool, customer_id)
    assert ("step_up.passkey", "refused") in await audit_actions(pool, customer_id)

    # Another customer's passkey cannot step up my session, nor answer my challenge from their session.
    _, _, other_device, _ = await customer_with_passkey(client, pool)
    headers2, _ = await open_session(pool, customer_id)
    options = (await client.post(f"{ME}/step-up/passkey/options", headers=headers2)).json()
    options["public_key"]["allowCredentials"] = []
    r = await client.post(
        f"{ME}/step-up/passkey/verify",
        json={"challenge_id": options["challenge_id"], "credential": other_device.get(options, ORIGIN)},
        headers=headers2,
    )
    assert r.status_code == 422
    assert (await client.get(f"{ME}/step-up", headers=headers2)).json()["stepped_up"] is False


async def test_list_and_delete_only_own_passkeys(client, pool):
    customer_a, _, _, key_a = await customer_with_passkey(client, pool)
    customer_b, _, _, key_b = await customer_with_passkey(client, pool)
    a, _ = await open_session(pool, customer_a, stepped_up=True)
    b, _ = await open_session(pool, customer_b, stepped_up=True)
    assert [k["id"] for k in (await client.get(f"{ME}/passkeys", headers=a)).json()] == [key_a["id"]]

    r = await client.delete(f"{ME}/passkeys/{key_b['id']}", headers=a)
    assert r.status_code == 404 and r.json()["code"] == "passkey_not_found"
    r = await client.delete(f"{ME}/passkeys/00000000-0000-0000-0000-000000000000", headers=a)
    assert r.status_code == 404
    assert [k["id"] for k in (await client.get(f"{ME}/passkeys", headers=b)).json()] == [key_b["id"]]

    not_fresh, _ = await open_session(pool, customer_a)
    r = await client.delete(f"{ME}/passkeys/{key_a['id']}", headers=not_fresh)
    assert r.status_code == 403 and r.json()["code"] == "step_up_required"
    r = await client.delete(f"{ME}/passkeys/{key_a['id']}", headers=a)
    assert r.status_code == 204
    assert (await client.get(f"{ME}/passkeys", headers=a)).json() == []
    assert ("factor.passkey.remove", "success") in await audit_actions(pool, customer_a)
    # Staff are not customers here.
    r = await client.get(f"{ME}/passkeys")
    assert r.status_code == 401


# --- a passkey as the second step of a password sign-in --------------------------------------------------

SECOND = "/api/v1/customers/login/passkey"


async def password_ticket(client: Any, phone: str) -> dict:
    r = await client.post("/api/v1/customers/login", json={"phone": phone, "password": "Pass-word-2026"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] != "signed_in" and "passkey" in body["factors"], body
    return body


async def test_password_then_passkey_signs_in(client, pool):
    customer_id, phone, device, key = await customer_with_passkey(client, pool)
    step = await password_ticket(client, phone)
    r = await client.post(f"{SECOND}/options", json={"ticket": step["ticket"]})
    assert r.status_code == 200, r.text
    options = r.json()
    assert [c["id"] for c in options["public_key"]["allowCredentials"]] == [
        b64url(k) for k in device.credentials
    ]
    before = await live_sessions(pool, customer_id)
    answer = {
        "ticket": step["ticket"],
        "challenge_id": options["challenge_id"],
        "credential": device.get(options, ORIGIN),
    }
    r = await client.post(SECOND, json=answer)
    assert r.status_code == 200, r.text
    me = {"Authorization": f"Bearer {r.json()['access_token']}"}
    step_up = (await client.get(f"{ME}/step-up", headers=me)).json()
    assert step_up["stepped_up"] is True and step_up["factor"] == "passkey"
    assert await live_sessions(pool, customer_id) == before + 1
    assert await sign_count(pool, key["id"]) == 1
    assert ("customer.login.second_factor", "success") in await audit_actions(pool, customer_id)

    # The ticket and the challenge are spent: replaying the same answer opens nothing.
    r = await client.post(SECOND, json=answer)
    assert r.status_code in (401, 422) and r.headers["content-type"].startswith("application/problem+json")
    assert await live_sessions(pool, customer_id) == before + 1


async def test_second_step_refuses_another_customers_passkey(client, pool):
    _, phone, _, _ = await customer_with_passkey(client, pool)
    other_id, _, other_device, other_key = await customer_with_passkey(client, pool)
    step = await password_ticket(client, phone)
    options = (await client.post(f"{SECOND}/options", json={"ticket": step["ticket"]})).json()
    # The other customer's authenticator answers a challenge bound to the first customer.
    forged = other_device.get(
        {**options, "public_key": {**options["public_key"], "allowCredentials": []}}, ORIGIN
    )
    r = await client.post(
        SECOND, json={"ticket": step["ticket"], "challenge_id": options["challenge_id"], "credential": forged}
    )
    assert r.status_code == 401, r.text
    assert await sign_count(pool, other_key["id"]) == 0
    assert await live_sessions(pool, other_id) == 1  # only the session that registered the key


async def test_second_step_with_a_bad_ticket_is_refused(client):
    r = await client.post(f"{SECOND}/options", json={"ticket": "not-a-real-ticket-000"})
    assert r.status_code == 401 and r.json()["code"] == "login_ticket_invalid", r.text
    r = await client.post(f"{SECOND}/options", json={"ticket": "short"})
    assert r.status_code == 422 and r.json()["field"] == "ticket"
