"""TOTP, recovery codes and step-up over HTTP: enrollment, replay refusal, the factors step-up accepts,
SMS step-up through the development outbox, and the ``stepped_up`` dependency."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pyotp
from fastapi import Depends, FastAPI

from etcwallet.core.errors import install_handlers
from etcwallet.identity.authz import Principal
from etcwallet.identity.factors.stepup import stepped_up
from tests.idempotency_keys import keyed
from tests.identity.software_authenticator import make_customer, open_session

ME = "/api/v1/me/factors"


def code_at(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


async def latest_sms_code(client: httpx.AsyncClient, phone: str) -> str:
    r = await client.get("/api/v1/dev/sms-outbox", params={"phone": phone})
    assert r.status_code == 200, r.text
    match = re.search(r"\b(\d{6})\b", r.json()[0]["text"])
    assert match, r.json()
    return match.group(1)


async def sms_step_up(client: httpx.AsyncClient, headers: dict[str, str], phone: str) -> None:
    r = await client.post(f"{ME}/step-up/sms/send", headers=headers)
    assert r.status_code == 202, r.text
    r = await client.post(
        f"{ME}/step-up/sms/verify", json={"code": await latest_sms_code(client, phone)}, headers=headers
    )
    assert r.status_code == 200, r.text


async def enroll_totp(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, list[str]]:
    r = await client.post(f"{ME}/totp/enroll", headers=keyed(headers))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["otpauth_uri"].startswith("otpauth://totp/") and body["qr_svg"].startswith("<svg")
    assert body["qr_png_base64"]
    r = await client.post(
        f"{ME}/totp/confirm", json={"code": code_at(body["secret"])}, headers=keyed(headers)
    )
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    return body["secret"], codes


async def audit_actions(pool: Any, customer_id: Any) -> list[tuple[str, str, dict]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, outcome, detail FROM audit_log WHERE target_id = %s ORDER BY seq",
            (str(customer_id),),
        )
        return [(r[0], r[1], r[2]) for r in await cur.fetchall()]


async def test_step_up_required_offers_sms_only_when_nothing_is_enrolled(client, pool):
    customer_id, _ = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/recovery-codes/regenerate", headers=keyed(headers))
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "step_up_required"
    assert body["accepted_factors"] == ["sms"]
    assert body["max_age_seconds"] == 300
    assert [e["path"] for e in body["step_up"]["endpoints"]["sms"]] == [
        f"{ME}/step-up/sms/send",
        f"{ME}/step-up/sms/verify",
    ]
    r = await client.get(f"{ME}/step-up", headers=headers)
    assert r.json() == {
        "accepted_factors": ["sms"],
        "stepped_up": False,
        "stepped_up_at": None,
        "factor": None,
        "valid_until": None,
    }
    # Factors that are not enrolled are refused, not tried.
    r = await client.post(f"{ME}/step-up/totp", json={"code": "123456"}, headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "factor_not_accepted"
    r = await client.post(f"{ME}/step-up/passkey/options", headers=headers)
    assert r.status_code == 409
    r = await client.post(f"{ME}/step-up/recovery", json={"code": "12345-67890"}, headers=headers)
    assert r.status_code == 409
    # English on request.
    r = await client.post(
        f"{ME}/recovery-codes/regenerate", headers=keyed(headers | {"Accept-Language": "en"})
    )
    assert "second factor" in r.json()["title"]


async def test_sms_step_up_through_the_dev_outbox(client, pool):
    customer_id, phone = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/step-up/sms/send", headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["phone"] == phone[:3] + "****" + phone[-4:]
    code = await latest_sms_code(client, phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    r = await client.post(f"{ME}/step-up/sms/verify", json={"code": wrong}, headers=headers)
    assert r.status_code == 422 and r.json()["code"] == "sms_code_invalid"
    assert (await client.get(f"{ME}/step-up", headers=headers)).json()["stepped_up"] is False

    r = await client.post(f"{ME}/step-up/sms/verify", json={"code": code}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["stepped_up"] is True and r.json()["factor"] == "sms"
    # The code is spent: a replay in another session is refused.
    other, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/step-up/sms/verify", json={"code": code}, headers=other)
    assert r.status_code == 422 and r.json()["code"] == "sms_code_expired"
    assert (await client.get(f"{ME}/step-up", headers=other)).json()["stepped_up"] is False
    # Resending within a minute is refused.
    r = await client.post(f"{ME}/step-up/sms/send", headers=headers)
    assert r.status_code == 429
    actions = [(a, o) for a, o, _ in await audit_actions(pool, customer_id)]
    assert ("step_up.sms", "success") in actions and ("step_up.sms", "refused") in actions


async def test_totp_enroll_confirm_step_up_and_replay(client, pool):
    customer_id, phone = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id)
    # Adding a factor needs a step-up first (here by SMS, the only factor so far).
    r = await client.post(f"{ME}/totp/enroll", headers=keyed(headers))
    assert r.status_code == 403 and r.json()["accepted_factors"] == ["sms"]
    await sms_step_up(client, headers, phone)

    r = await client.post(f"{ME}/totp/confirm", json={"code": "123456"}, headers=keyed(headers))
    assert r.status_code == 409 and r.json()["code"] == "totp_not_pending"
    r = await client.post(f"{ME}/totp/enroll", headers=keyed(headers))
    secret = r.json()["secret"]
    bad = f"{(int(code_at(secret)) + 1) % 1_000_000:06d}"
    r = await client.post(f"{ME}/totp/confirm", json={"code": bad}, headers=keyed(headers))
    assert r.status_code == 422 and r.json()["code"] == "totp_invalid"
    secret, _ = await enroll_totp(client, headers)
    r = await client.post(f"{ME}/totp/enroll", headers=keyed(headers))
    assert r.status_code == 409 and r.json()["code"] == "totp_already_enrolled"

    # SMS no longer stands in for the stronger factor.
    fresh, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/recovery-codes/regenerate", headers=keyed(fresh))
    assert r.status_code == 403 and r.json()["accepted_factors"] == ["totp", "recovery_code"]
    r = await client.post(f"{ME}/step-up/sms/send", headers=fresh)
    assert r.status_code == 409 and r.json()["code"] == "factor_not_accepted"

    code = code_at(secret, 1)  # the confirm used the current step; the next one is still within drift
    r = await client.post(f"{ME}/step-up/totp", json={"code": code}, headers=fresh)
    assert r.status_code == 200, r.text
    assert r.json()["stepped_up"] is True and r.json()["factor"] == "totp"
    r = await client.post(f"{ME}/recovery-codes/regenerate", headers=keyed(fresh))
    assert r.status_code == 200 and len(r.json()["recovery_codes"]) == 10

    # The same code again (another session): refused as a replay, session not stepped up.
    replay, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/step-up/totp", json={"code": code}, headers=replay)
    assert r.status_code == 422 and r.json()["code"] == "totp_invalid"
    assert (await client.get(f"{ME}/step-up", headers=replay)).json()["stepped_up"] is False

    actions = await audit_actions(pool, customer_id)
    names = [(a, o) for a, o, _ in actions]
    for expected in (
        ("factor.totp.enroll_start", "success"),
        ("factor.totp.enroll", "success"),
        ("factor.totp.enroll", "refused"),
        ("step_up.totp", "success"),
        ("step_up.totp", "refused"),
        ("factor.recovery_codes.regenerate", "success"),
    ):
        assert expected in names, expected
    assert secret not in str(actions) and code not in str(actions)


async def test_recovery_code_works_once_and_regeneration_replaces_them(client, pool):
    customer_id, _ = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id, stepped_up=True)
    _, codes = await enroll_totp(client, headers)

    first, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/step-up/recovery", json={"code": codes[0]}, headers=first)
    assert r.status_code == 200, r.text
    assert r.json()["factor"] == "recovery_code"
    second, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/step-up/recovery", json={"code": codes[0]}, headers=second)
    assert r.status_code == 422 and r.json()["code"] == "recovery_code_invalid"
    r = await client.post(f"{ME}/step-up/recovery", json={"code": codes[1].replace("-", "")}, headers=second)
    assert r.status_code == 200

    r = await client.post(f"{ME}/recovery-codes/regenerate", headers=keyed(second))
    assert r.status_code == 200
    fresh = r.json()["recovery_codes"]
    third, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/step-up/recovery", json={"code": codes[2]}, headers=third)
    assert r.status_code == 422  # the old ones stopped working
    r = await client.post(f"{ME}/step-up/recovery", json={"code": fresh[0]}, headers=third)
    assert r.status_code == 200


async def test_turning_totp_off_needs_a_fresh_step_up(client, pool):
    customer_id, _ = await make_customer(pool)
    headers, session_id = await open_session(pool, customer_id, stepped_up=True)
    secret, _ = await enroll_totp(client, headers)
    # A step-up older than five minutes is not fresh.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE sessions SET stepped_up_at = now() - interval '6 minutes' WHERE id = %s", (session_id,)
        )
    r = await client.delete(f"{ME}/totp", headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "step_up_required"
    r = await client.post(f"{ME}/step-up/totp", json={"code": code_at(secret, 1)}, headers=headers)
    assert r.status_code == 200
    r = await client.delete(f"{ME}/totp", headers=headers)
    assert r.status_code == 204
    r = await client.get(f"{ME}/step-up", headers=headers)
    assert r.json()["accepted_factors"] == ["sms"]  # back to SMS, recovery codes gone with TOTP
    r = await client.delete(f"{ME}/totp", headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "totp_not_enrolled"
    assert ("factor.totp.remove", "success") in [(a, o) for a, o, _ in await audit_actions(pool, customer_id)]


async def test_step_up_attempts_are_rate_limited(client, pool):
    customer_id, _ = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id, stepped_up=True)
    secret, _ = await enroll_totp(client, headers)  # counts one attempt
    bad = f"{(int(code_at(secret, 1)) + 7) % 1_000_000:06d}"
    statuses = []
    for _ in range(25):  # 10 per fixed 5-minute window; a window boundary mid-test only delays the 429
        statuses.append(
            (await client.post(f"{ME}/step-up/totp", json={"code": bad}, headers=headers)).status_code
        )
        if statuses[-1] != 422:
            break
    assert statuses[-1] == 429 and len(statuses) >= 10 and set(statuses[:-1]) == {422}
    r = await client.post(f"{ME}/step-up/totp", json={"code": code_at(secret, 1)}, headers=headers)
    assert r.status_code == 429  # even the right code waits


async def test_factor_endpoints_need_a_customer(client, pool, make_staff):
    from etcwallet.identity.authz import Role

    staff_headers = await make_staff(Role.SUPPORT_AGENT)
    r = await client.get(f"{ME}/step-up", headers=staff_headers)
    assert r.status_code == 403
    r = await client.get(f"{ME}/step-up")
    assert r.status_code == 401
    customer_id, _ = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id)
    r = await client.post(f"{ME}/step-up/totp", json={"code": "1"}, headers=headers)
    assert r.status_code == 422 and r.json()["field"] == "code"


async def test_stepped_up_dependency(runtime, pool):
    app = FastAPI()
    app.state.runtime = runtime
    install_handlers(app)

    @app.post("/sensitive")
    async def sensitive(
        me: Annotated[Principal, Depends(stepped_up(timedelta(minutes=2)))],
    ) -> dict[str, str]:
        return {"id": str(me.id)}

    customer_id, _ = await make_customer(pool)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        headers, session_id = await open_session(pool, customer_id)
        r = await c.post("/sensitive", headers=headers)
        assert r.status_code == 403 and r.json()["max_age_seconds"] == 120
        assert r.json()["accepted_factors"] == ["sms"]
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE sessions SET stepped_up_at = now() - interval '90 seconds' WHERE id = %s",
                (session_id,),
            )
        r = await c.post("/sensitive", headers=headers)
        assert r.status_code == 200 and r.json() == {"id": str(customer_id)}
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE sessions SET stepped_up_at = now() - interval '3 minutes' WHERE id = %s",
                (session_id,),
            )
        assert (await c.post("/sensitive", headers=headers)).status_code == 403
        assert (await c.post("/sensitive")).status_code == 401
