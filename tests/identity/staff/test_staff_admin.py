"""Administrators manage outlets and staff over HTTP; staff sign in with password + TOTP; every step is audited.

Covers outlet creation (self-operated and every bank), staff creation in every role with the placement
rules, list/read/patch (role changes, disabling), the two-step sign-in with TOTP enrollment, refresh,
logout, lockout without username enumeration, and the audit rows each of these leaves.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID, uuid4

import httpx
import pytest

from etcwallet.core.deps import Client
from etcwallet.identity import lockout
from etcwallet.identity.authz import OUTLET_ROLES, ROLE_NAMES, Role
from etcwallet.identity.ratelimit import Limit
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.staff import api as staff_api
from etcwallet.identity.staff import service as staff
from tests.conftest import (
    STAFF_PASSWORD,
    STAFF_SECRETS,
    bootstrap_enrollment_code,
    sign_in_staff,
)
from tests.idempotency_keys import keyed
from tests.identity.software_authenticator import make_customer
from tests.identity.staff_helpers import (
    ADMIN,
    AUTH,
    ME,
    PRIVILEGED,
    UA,
    assert_problem,
    audit_rows,
    bearer,
    count,
    create_staff_http,
    fresh_code,
    full_sign_in,
    me,
    new_staff,
    outlet_code,
    password_step,
    username,
)

BANK_NAMES_ZH = {"兰州银行", "甘肃银行", "工商银行", "农业银行", "农信联社", "建设银行", "邮储银行"}


@pytest.fixture
async def as_served(app) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sees what a real HTTP client would: a 500 answer rather than the app's exception
    (the error log is quieted: rendering each traceback costs seconds)."""
    errors = logging.getLogger("etcwallet.errors")
    level = errors.level
    errors.setLevel(logging.CRITICAL)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("192.0.2.99", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c
    finally:
        errors.setLevel(level)


# --- outlets -------------------------------------------------------------------------------------------


async def test_admin_creates_a_self_operated_outlet(client, pool, admin) -> None:
    headers, admin_id = admin
    code = outlet_code()
    r = await client.post(
        f"{ADMIN}/outlets",
        json={"code": code, "name": "兰州东自营网点", "kind": "self_operated"},
        headers=keyed(headers | UA),
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["code"] == code and made["name"] == "兰州东自营网点" and made["kind"] == "self_operated"
    assert made["bank"] is None and made["bank_name"] is None and made["active"] is True

    r = await client.get(f"{ADMIN}/outlets/{made['id']}", headers=headers)
    assert r.status_code == 200 and r.json() == made
    listed = (await client.get(f"{ADMIN}/outlets", headers=headers)).json()
    assert made in listed

    [row] = await audit_rows(pool, action="outlet.create", target_id=made["id"])
    assert (row["actor_type"], row["actor_id"], row["target_type"], row["outcome"]) == (
        "staff",
        admin_id,
        "outlet",
        "success",
    )
    assert row["detail"]["code"] == code and row["detail"]["kind"] == "self_operated"
    assert row["user_agent"] == UA["User-Agent"] and row["ip"]


def test_the_banks_are_the_seven_partner_banks() -> None:
    assert {zh for zh, _ in staff.BANKS.values()} == BANK_NAMES_ZH
    assert len(staff.BANKS) == 7


@pytest.mark.parametrize("bank", sorted(staff.BANKS))
async def test_admin_creates_a_bank_outlet_for_each_bank(client, pool, admin, bank: str) -> None:
    headers, admin_id = admin
    zh, en = staff.BANKS[bank]
    body = {"code": outlet_code(), "name": f"{zh}城关支行", "kind": "bank", "bank": bank}
    r = await client.post(f"{ADMIN}/outlets", json=body, headers=keyed(headers))
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["kind"] == "bank" and made["bank"] == bank and made["bank_name"] == f"{zh} / {en}"
    assert (await client.get(f"{ADMIN}/outlets/{made['id']}", headers=headers)).json() == made
    [row] = await audit_rows(pool, action="outlet.create", target_id=made["id"])
    assert row["actor_id"] == admin_id and row["outcome"] == "success" and row["detail"]["bank"] == bank


@pytest.mark.parametrize(
    ("change", "status", "field", "code"),
    [
        ({"kind": "self_operated", "bank": "icbc"}, 422, "bank", "outlet_bank_mismatch"),
        ({"kind": "bank"}, 422, "bank", "outlet_bank_mismatch"),
        ({"kind": "bank", "bank": None}, 422, "bank", "outlet_bank_mismatch"),
        ({"kind": "bank", "bank": "hsbc"}, 422, "bank", "validation_failed"),
        ({"kind": "bank", "bank": "兰州银行"}, 422, "bank", "validation_failed"),
        ({"kind": "franchise"}, 422, "kind", "validation_failed"),
        ({"code": "X" * 33}, 422, "code", "validation_failed"),
        ({"code": "有空格 x"}, 422, "code", "validation_failed"),
        ({"code": "X"}, 422, "code", "validation_failed"),
        ({"name": "网" * 65}, 422, "name", "validation_failed"),
        ({"name": ""}, 422, "name", "validation_failed"),
        ({"region": "gansu"}, 422, "region", "validation_failed"),
    ],
)
async def test_bad_outlets_are_refused_naming_the_field_and_nothing_is_created(
    client, pool, admin, change: dict[str, Any], status: int, field: str, code: str
) -> None:
    headers, admin_id = admin
    body: dict[str, Any] = {"code": outlet_code(), "name": "网点", "kind": "self_operated"} | change
    r = await client.post(f"{ADMIN}/outlets", json=body, headers=keyed(headers))
    assert_problem(r, status, field=field, code=code)
    assert await count(pool, "SELECT count(*) FROM outlets WHERE code = %s", str(body["code"])) == 0
    # A body the schema refuses never reaches the service; a refusal by the service is on the record.
    rows = await audit_rows(pool, action="outlet.create", actor_id=admin_id)
    expected = [] if code == "validation_failed" else [("refused", code, None)]
    assert [(x["outcome"], x["detail"]["reason"], x["target_id"]) for x in rows] == expected


async def test_duplicate_outlet_code_is_a_conflict(client, pool, admin) -> None:
    headers, admin_id = admin
    body = {"code": outlet_code(), "name": "网点", "kind": "bank", "bank": "ccb"}
    assert (await client.post(f"{ADMIN}/outlets", json=body, headers=keyed(headers))).status_code == 201
    again = body | {"name": "另一个网点", "kind": "self_operated", "bank": None}
    r = await client.post(f"{ADMIN}/outlets", json=again, headers=keyed(headers))
    assert_problem(r, 409, field="code", code="outlet_code_taken")
    assert await count(pool, "SELECT count(*) FROM outlets WHERE code = %s", body["code"]) == 1
    rows = await audit_rows(pool, action="outlet.create", actor_id=admin_id)
    assert [(x["outcome"], x["detail"].get("reason")) for x in rows] == [
        ("success", None),
        ("refused", "outlet_code_taken"),
    ]


async def test_unknown_outlet_is_404(client, admin) -> None:
    headers, _ = admin
    r = await client.get(f"{ADMIN}/outlets/{uuid4()}", headers=headers)
    assert_problem(r, 404, code="outlet_not_found")


# --- staff ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
async def test_admin_creates_staff_in_each_role_who_can_then_sign_in(
    client, pool, admin, second_admin, outlet, bank_outlet, role: Role
) -> None:
    """Any role; finance and administrator only with a second administrator's approval. The new member
    enrolls TOTP with a code issued by an administrator other than the one who set the password."""
    headers, admin_id = admin
    approver, approver_id = second_admin
    outlet_id = (
        (bank_outlet.id if role is Role.BANK_OPERATOR else outlet.id) if role in OUTLET_ROLES else None
    )
    name = username()
    made = await create_staff_http(client, headers, role, outlet_id, name=name, approver=approver)
    zh, en = ROLE_NAMES[role]
    assert made["username"] == name and made["role"] == role.value and made["role_name"] == f"{zh} / {en}"
    assert made["outlet_id"] == (str(outlet_id) if outlet_id else None)
    assert made["status"] == "active" and "password" not in made and "password_hash" not in made

    assert (await client.get(f"{ADMIN}/staff/{made['id']}", headers=headers)).json() == made
    assert made in (await client.get(f"{ADMIN}/staff", headers=headers)).json()

    privileged = role in PRIVILEGED
    [row] = await audit_rows(
        pool, action="staff.change.request" if privileged else "staff.create", target_id=made["id"]
    )
    assert (row["actor_type"], row["actor_id"], row["target_type"], row["outcome"]) == (
        "staff",
        admin_id,
        "staff",
        "success",
    )
    assert row["detail"]["username"] == name and row["detail"]["role"] == role.value
    assert "password" not in row["detail"] and STAFF_PASSWORD not in str(row["detail"])
    approvals = await audit_rows(pool, action="staff.change.approve", target_id=made["id"])
    assert [(x["actor_id"], x["detail"]["requested_by"], x["detail"]["role_to"]) for x in approvals] == (
        [(approver_id, admin_id, role.value)] if privileged else []
    )

    r = await client.post(f"{ADMIN}/staff/{made['id']}/enrollment-code", headers=keyed(approver))
    assert r.status_code == 201, r.text
    session = await full_sign_in(client, name, r.json()["enrollment_code"])
    assert session["staff"] == made
    assert await me(client, bearer(session["access_token"])) == made


@pytest.mark.parametrize(
    ("role", "where", "status", "code"),
    [
        (Role.OUTLET_OPERATOR, None, 422, "outlet_required"),
        (Role.OUTLET_SUPERVISOR, None, 422, "outlet_required"),
        (Role.BANK_OPERATOR, None, 422, "outlet_required"),
        (Role.BANK_OPERATOR, "self_operated", 422, "bank_outlet_required"),
        (Role.FINANCE, "self_operated", 422, "outlet_not_allowed"),
        (Role.RISK_OFFICER, "bank", 422, "outlet_not_allowed"),
        (Role.SUPPORT_AGENT, "self_operated", 422, "outlet_not_allowed"),
        (Role.ADMINISTRATOR, "self_operated", 422, "outlet_not_allowed"),
        (Role.OUTLET_OPERATOR, "unknown", 404, "outlet_not_found"),
        (Role.BANK_OPERATOR, "unknown", 404, "outlet_not_found"),
    ],
)
async def test_placement_rules(
    client, pool, admin, outlet, bank_outlet, role: Role, where: str | None, status: int, code: str
) -> None:
    headers, admin_id = admin
    outlet_id = {"self_operated": outlet.id, "bank": bank_outlet.id, "unknown": uuid4(), None: None}[where]
    name = username()
    body: dict[str, Any] = {
        "username": name,
        "display_name": "x",
        "password": STAFF_PASSWORD,
        "role": role.value,
    }
    if outlet_id is not None:
        body["outlet_id"] = str(outlet_id)
    r = await client.post(f"{ADMIN}/staff", json=body, headers=keyed(headers))
    assert_problem(r, status, field="outlet_id", code=code)
    assert await count(pool, "SELECT count(*) FROM staff WHERE username = %s", name) == 0
    rows = await audit_rows(pool, action="staff.create", actor_id=admin_id)
    assert [(x["outcome"], x["detail"]["reason"], x["detail"]["username"]) for x in rows] == [
        ("refused", code, name)
    ]
    assert "password" not in rows[0]["detail"]


@pytest.mark.parametrize("role", [Role.OUTLET_OPERATOR, Role.OUTLET_SUPERVISOR])
async def test_outlet_roles_may_work_at_a_bank_outlet(client, admin, bank_outlet, role: Role) -> None:
    """Only bank operators are restricted (to bank outlets); other outlet roles may work at either kind."""
    headers, _ = admin
    made = await create_staff_http(client, headers, role, bank_outlet.id)
    assert made["outlet_id"] == str(bank_outlet.id)


async def test_duplicate_username_is_a_conflict(client, pool, admin) -> None:
    headers, admin_id = admin
    name = username()
    await create_staff_http(client, headers, Role.RISK_OFFICER, name=name)
    body = {"username": name, "display_name": "另一个", "password": STAFF_PASSWORD, "role": "support_agent"}
    r = await client.post(f"{ADMIN}/staff", json=body, headers=keyed(headers))
    assert_problem(r, 409, field="username", code="username_taken")
    assert await count(pool, "SELECT count(*) FROM staff WHERE username = %s", name) == 1
    rows = await audit_rows(pool, action="staff.create", actor_id=admin_id)
    assert [(x["outcome"], x["detail"].get("reason")) for x in rows] == [
        ("success", None),
        ("refused", "username_taken"),
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "Upper.Case"}, "username"),
        ({"username": "ab"}, "username"),
        ({"username": "a" * 33}, "username"),
        ({"username": "1starts.with.digit"}, "username"),
        ({"username": "有中文"}, "username"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": "名" * 65}, "display_name"),
        ({"password": ""}, "password"),
        ({"password": "Aa1!" * 33}, "password"),
        ({"role": "superuser"}, "role"),
        ({"outlet_id": "not-a-uuid"}, "outlet_id"),
        ({"is_admin": True}, "is_admin"),
    ],
)
async def test_bad_staff_input_is_refused_naming_the_field(client, pool, admin, change, field) -> None:
    headers, admin_id = admin
    body = {
        "username": username(),
        "display_name": "x",
        "password": STAFF_PASSWORD,
        "role": "finance",
    } | change
    r = await client.post(f"{ADMIN}/staff", json=body, headers=keyed(headers))
    assert_problem(r, 422, field=field, code="validation_failed")
    assert not await audit_rows(pool, action="staff.create", actor_id=admin_id)


@pytest.mark.parametrize(
    ("password", "code"),
    [("Ab1!", "password_too_short"), ("abcdefghijkl", "password_classes"), ("password00", "password_common")],
)
async def test_weak_staff_password_is_a_422_naming_the_password(
    as_served, pool, admin, password, code
) -> None:
    headers, _ = admin
    name = username()
    body = {"username": name, "display_name": "x", "password": password, "role": "finance"}
    r = await as_served.post(f"{ADMIN}/staff", json=body, headers=keyed(headers))
    assert await count(pool, "SELECT count(*) FROM staff WHERE username = %s", name) == 0
    assert_problem(r, 422, field="password", code=code)


async def test_refused_administrative_actions_are_audited(client, pool, admin) -> None:
    headers, admin_id = admin
    body = {"username": username(), "display_name": "x", "password": STAFF_PASSWORD, "role": "risk_officer"}
    assert (await client.post(f"{ADMIN}/staff", json=body, headers=keyed(headers))).status_code == 201
    assert (await client.post(f"{ADMIN}/staff", json=body, headers=keyed(headers))).status_code == 409
    rows = await audit_rows(pool, action="staff.create", actor_id=admin_id)
    assert [x["outcome"] for x in rows] == ["success", "refused"]


async def test_get_and_list_staff(client, admin, outlet) -> None:
    headers, admin_id = admin
    made = await create_staff_http(client, headers, Role.OUTLET_OPERATOR, outlet.id)
    listed = (await client.get(f"{ADMIN}/staff", headers=headers)).json()
    assert made in listed and admin_id in {m["id"] for m in listed}
    assert [m["username"] for m in listed] == sorted(m["username"] for m in listed)
    assert (await client.get(f"{ADMIN}/staff/{made['id']}", headers=headers)).json() == made
    assert_problem(await client.get(f"{ADMIN}/staff/{uuid4()}", headers=headers), 404, code="staff_not_found")
    assert_problem(await client.get(f"{ADMIN}/staff/nope", headers=headers), 422, field="staff_id")


async def test_patch_changes_role_and_placement(client, pool, admin, outlet, bank_outlet) -> None:
    headers, admin_id = admin
    made = await create_staff_http(client, headers, Role.OUTLET_OPERATOR, outlet.id)
    url = f"{ADMIN}/staff/{made['id']}"

    r = await client.patch(url, json={"role": "outlet_supervisor"}, headers=headers | UA)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "outlet_supervisor" and r.json()["outlet_id"] == str(outlet.id)

    # a central role leaves the outlet
    r = await client.patch(url, json={"role": "risk_officer"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "risk_officer" and r.json()["outlet_id"] is None

    # back to an outlet role: it needs an outlet, and a bank operator a bank outlet
    assert_problem(
        await client.patch(url, json={"role": "outlet_operator"}, headers=headers),
        422,
        field="outlet_id",
        code="outlet_required",
    )
    r = await client.patch(url, json={"role": "bank_operator", "outlet_id": str(outlet.id)}, headers=headers)
    assert_problem(r, 422, field="outlet_id", code="bank_outlet_required")
    r = await client.patch(url, json={"role": "bank_operator", "outlet_id": str(uuid4())}, headers=headers)
    assert_problem(r, 404, field="outlet_id", code="outlet_not_found")
    r = await client.patch(url, json={"outlet_id": str(outlet.id)}, headers=headers)
    assert_problem(r, 422, field="outlet_id", code="outlet_not_allowed")
    r = await client.patch(
        url, json={"role": "bank_operator", "outlet_id": str(bank_outlet.id)}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "bank_operator" and r.json()["outlet_id"] == str(bank_outlet.id)
    assert (await client.get(url, headers=headers)).json() == r.json()

    for bad, field in [
        ({"status": "deleted"}, "status"),
        ({"role": "root"}, "role"),
        ({"username": "x"}, "username"),
    ]:
        assert_problem(await client.patch(url, json=bad, headers=headers), 422, field=field)
    assert_problem(
        await client.patch(f"{ADMIN}/staff/{uuid4()}", json={"role": "finance"}, headers=headers),
        404,
        code="staff_not_found",
    )

    updates = await audit_rows(pool, action="staff.update", target_id=made["id"], outcome="success")
    assert [(u["detail"]["before"]["role"], u["detail"]["after"]["role"]) for u in updates] == [
        ("outlet_operator", "outlet_supervisor"),
        ("outlet_supervisor", "risk_officer"),
        ("risk_officer", "bank_operator"),
    ]
    assert all(u["actor_id"] == admin_id and u["outcome"] == "success" for u in updates)
    assert updates[1]["detail"]["after"]["outlet_id"] is None
    assert updates[2]["detail"]["after"]["outlet_id"] == str(bank_outlet.id)
    assert updates[0]["user_agent"] == UA["User-Agent"]


async def test_role_change_ends_the_staff_members_sessions(client, admin) -> None:
    headers, _ = admin
    made = await create_staff_http(client, headers, Role.SUPPORT_AGENT)
    theirs = bearer((await full_sign_in(client, made["username"]))["access_token"])
    assert (await client.get(ME, headers=theirs)).status_code == 200
    r = await client.patch(f"{ADMIN}/staff/{made['id']}", json={"role": "risk_officer"}, headers=headers)
    assert r.status_code == 200, r.text
    assert_problem(await client.get(ME, headers=theirs), 401, code="unauthenticated")
    again = bearer((await full_sign_in(client, made["username"]))["access_token"])
    assert (await me(client, again))["role"] == "risk_officer"


async def test_disabling_ends_sessions_and_refuses_sign_in_until_enabled(
    client, pool, admin, second_admin
) -> None:
    headers, admin_id = admin
    made = await create_staff_http(client, headers, Role.FINANCE, approver=second_admin[0])
    name = made["username"]
    session = await full_sign_in(client, name)
    theirs = bearer(session["access_token"])
    assert (await client.get("/api/v1/ledger/accounts/" + str(uuid4()), headers=theirs)).status_code == 404

    r = await client.patch(f"{ADMIN}/staff/{made['id']}", json={"status": "disabled"}, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "disabled", r.text
    assert_problem(await client.get(ME, headers=theirs), 401, code="unauthenticated")
    assert_problem(
        await client.post(f"{AUTH}/refresh", json={"refresh_token": session["refresh_token"]}), 401
    )
    assert (
        await count(
            pool,
            "SELECT count(*) FROM sessions WHERE principal_id = %s AND revoked_at IS NULL",
            UUID(made["id"]),
        )
        == 0
    )

    # the right password is refused exactly as a wrong one would be
    refused = await password_step(client, name)
    wrong = await password_step(client, name, "Wrong-pass-2026!")
    assert_problem(refused, 401, field="password", code="invalid_credentials")
    assert refused.json() == wrong.json()

    r = await client.patch(f"{ADMIN}/staff/{made['id']}", json={"status": "active"}, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    step = await password_step(client, name)
    assert step.status_code == 200 and step.json()["status"] == "totp_required", step.text

    [off, on] = await audit_rows(pool, action="staff.update", target_id=made["id"])
    assert (off["detail"]["before"]["status"], off["detail"]["after"]["status"]) == ("active", "disabled")
    assert (on["detail"]["before"]["status"], on["detail"]["after"]["status"]) == ("disabled", "active")
    assert off["actor_id"] == on["actor_id"] == admin_id
    logins = await audit_rows(pool, action="staff.login.password", target_id=made["id"])
    assert [(x["outcome"], x["detail"].get("reason")) for x in logins] == [
        ("success", None),
        ("refused", "invalid_credentials"),
        ("refused", "invalid_credentials"),
        ("success", None),
    ]


async def test_disabling_between_password_and_totp_refuses_the_second_step(
    client, admin, second_admin
) -> None:
    headers, _ = admin
    made = await create_staff_http(client, headers, Role.FINANCE, approver=second_admin[0])
    await full_sign_in(client, made["username"])  # enrolled
    step = (await password_step(client, made["username"])).json()
    r = await client.patch(f"{ADMIN}/staff/{made['id']}", json={"status": "disabled"}, headers=headers)
    assert r.status_code == 200
    code = fresh_code(STAFF_SECRETS[made["username"]])
    r = await client.post(f"{AUTH}/totp", json={"ticket": step["ticket"], "code": code})
    assert r.status_code == 401, r.text


# --- sign-in -------------------------------------------------------------------------------------------


async def test_first_sign_in_enrolls_totp(client, pool, admin, second_admin) -> None:
    """The new member enrolls TOTP themselves: the secret is shown only to someone presenting the password
    together with the one-time enrollment code, which the administrator who set the password cannot issue."""
    headers, admin_id = admin
    made = await create_staff_http(client, headers, Role.SUPPORT_AGENT)
    name = made["username"]

    # the password alone (all that the administrator who set it knows) gets no ticket and no secret
    r = await password_step(client, name)
    assert_problem(r, 401, field="enrollment_code", code="enrollment_code_required")
    assert "secret" not in r.text and "ticket" not in r.json()
    r = await client.post(f"{ADMIN}/staff/{made['id']}/enrollment-code", headers=keyed(headers | UA))
    assert_problem(r, 409, field="staff_id", code="enrollment_code_by_password_setter")
    r = await client.post(f"{ADMIN}/staff/{made['id']}/enrollment-code", headers=keyed(second_admin[0] | UA))
    assert r.status_code == 201, r.text
    issued = r.json()
    enrollment_code = issued["enrollment_code"]
    assert issued["staff_id"] == made["id"] and len(enrollment_code) >= 40
    lifetime = datetime.fromisoformat(issued["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=3) - timedelta(minutes=1) < lifetime <= timedelta(days=3)
    stored = await count(
        pool,
        "SELECT count(*) FROM staff_enrollment_codes WHERE code_hash = sha256(%s)",
        enrollment_code.encode(),
    )
    assert stored == 1  # kept as its hash only
    r = await password_step(client, name, code=enrollment_code[:-2] + "xx")
    assert_problem(r, 401, field="enrollment_code", code="enrollment_code_invalid")

    step = await password_step(client, name, code=enrollment_code)
    assert step.status_code == 200, step.text
    # the code works once: presenting it again (say, by whoever else saw it) shows no secret
    again = await password_step(client, name, code=enrollment_code)
    assert_problem(again, 401, field="enrollment_code", code="enrollment_code_invalid")
    body = step.json()
    assert body["status"] == "totp_enrollment_required" and len(body["ticket"]) >= 20
    expires = datetime.fromisoformat(body["expires_at"])
    assert timedelta(minutes=4) < expires - datetime.now(UTC) <= timedelta(minutes=5)
    enrollment = body["totp_enrollment"]
    uri = urlsplit(enrollment["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert unquote(uri.path) == f"/etcwallet:staff:{name}"
    query = parse_qs(uri.query)
    assert query["secret"] == [enrollment["secret"]] and query["issuer"] == ["etcwallet"]
    assert enrollment["qr_svg"].lstrip().startswith("<svg") and "</svg>" in enrollment["qr_svg"]
    assert base64.b64decode(enrollment["qr_png_base64"]).startswith(b"\x89PNG\r\n\x1a\n")
    secret = enrollment["secret"]

    # a wrong code is refused and the enrollment stays unconfirmed
    right = fresh_code(secret)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    r = await client.post(f"{AUTH}/totp", json={"ticket": body["ticket"], "code": wrong}, headers=UA)
    assert_problem(r, 401, field="code", code="totp_invalid")
    r = await client.post(f"{AUTH}/totp", json={"ticket": body["ticket"], "code": right}, headers=UA)
    assert r.status_code == 200, r.text
    session = r.json()
    assert session["token_type"] == "Bearer"
    assert session["access_token"] and session["refresh_token"] and session["csrf_token"]
    assert session["access_token"] != session["refresh_token"]
    assert session["staff"] == made
    codes = session["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert datetime.fromisoformat(session["absolute_expires_at"]) - datetime.now(UTC) > timedelta(hours=11)
    assert await me(client, bearer(session["access_token"])) == made

    # the ticket is spent; the next sign-in asks for a code without enrolling again
    r = await client.post(f"{AUTH}/totp", json={"ticket": body["ticket"], "code": fresh_code(secret)})
    assert_problem(r, 401, field="ticket", code="login_ticket_invalid")
    step2 = (await password_step(client, name)).json()
    assert step2["status"] == "totp_required" and step2["totp_enrollment"] is None
    # the code just used is not accepted twice
    r = await client.post(f"{AUTH}/totp", json={"ticket": step2["ticket"], "code": right})
    assert_problem(r, 401, code="totp_invalid")
    # a recovery code works, once
    r = await client.post(f"{AUTH}/totp", json={"ticket": step2["ticket"], "code": codes[0]})
    assert r.status_code == 200 and r.json()["recovery_codes"] is None, r.text
    step3 = (await password_step(client, name)).json()
    r = await client.post(f"{AUTH}/totp", json={"ticket": step3["ticket"], "code": codes[0]})
    assert_problem(r, 401, code="totp_invalid")

    staff_id = made["id"]
    rows = await audit_rows(pool, target_type="staff", target_id=staff_id)
    issuing = [(x["action"], x["actor_id"], x["outcome"], x["detail"].get("reason")) for x in rows[:7]]
    assert issuing == [
        ("staff.create", admin_id, "success", None),
        ("staff.login.password", staff_id, "refused", "enrollment_code_required"),
        ("staff.enrollment_code.issue", admin_id, "refused", "enrollment_code_by_password_setter"),
        ("staff.enrollment_code.issue", second_admin[1], "success", None),
        ("staff.login.password", staff_id, "refused", "enrollment_code_invalid"),
        ("staff.login.password", staff_id, "success", None),
        ("staff.login.password", staff_id, "refused", "enrollment_code_invalid"),
    ]
    assert enrollment_code not in str([x["detail"] for x in rows])
    assert rows[5]["detail"] == {"username": name, "totp_enrollment": "started"}
    rows = [rows[0], *rows[5:6], *rows[7:]]
    assert [(x["action"], x["outcome"]) for x in rows] == [
        ("staff.create", "success"),
        ("staff.login.password", "success"),
        ("staff.login.totp", "refused"),
        ("staff.login.totp", "success"),
        ("staff.login.password", "success"),
        ("staff.login.totp", "refused"),  # replayed code
        ("staff.login.totp", "success"),  # recovery code
        ("staff.login.password", "success"),
        ("staff.login.totp", "refused"),  # spent recovery code
    ]
    assert rows[2]["detail"] == {"reason": "totp_invalid"} and rows[2]["actor_id"] == staff_id
    assert rows[3]["detail"] == {"enrolled_now": True} and rows[6]["detail"] == {"enrolled_now": False}
    assert rows[5]["detail"] == {"reason": "totp_invalid"}
    assert all(x["user_agent"] == UA["User-Agent"] for x in rows[1:4])


async def test_a_ticket_takes_five_wrong_codes_then_expires(client, pool) -> None:
    member = await new_staff(pool)
    code = await bootstrap_enrollment_code(pool, member.username)
    body = (await password_step(client, member.username, code=code)).json()
    secret = body["totp_enrollment"]["secret"]
    for _ in range(staff.TICKET_ATTEMPTS - 1):
        r = await client.post(f"{AUTH}/totp", json={"ticket": body["ticket"], "code": "000000"})
        assert_problem(r, 401, code="totp_invalid")
    # the fifth wrong code is also the fifth failure of the staff member: it locks them
    r = await client.post(f"{AUTH}/totp", json={"ticket": body["ticket"], "code": "000000"})
    assert_problem(r, 423, code="account_locked")
    r = await client.post(f"{AUTH}/totp", json={"ticket": body["ticket"], "code": fresh_code(secret)})
    assert_problem(r, 401, field="ticket", code="login_ticket_invalid")
    r = await client.post(f"{AUTH}/totp", json={"ticket": "x" * 43, "code": fresh_code(secret)})
    assert_problem(r, 401, field="ticket", code="login_ticket_invalid")
    ip = (await audit_rows(pool, target_id=str(member.id)))[0]["ip"]
    rows = await audit_rows(pool, action="staff.login.totp", target_id=str(member.id))
    assert [x["detail"]["reason"] for x in rows] == ["totp_invalid"] * 4 + ["account_locked"]
    spent = await audit_rows(pool, action="staff.login.totp", detail_reason="login_ticket_invalid", ip=ip)
    assert len(spent) == 2
    assert all(
        x["actor_type"] == "anonymous" and x["actor_id"] is None and x["target_id"] is None for x in spent
    )


async def test_me_answers_the_signed_in_staff_member(client, pool, outlet) -> None:
    async with pool.connection() as conn:
        member = await staff.create_staff(
            conn,
            username=username(),
            display_name="王 主管",
            password=STAFF_PASSWORD,
            role=Role.OUTLET_SUPERVISOR,
            outlet_id=outlet.id,
        )
    headers = await sign_in_staff(client, member.username)
    body = await me(client, headers)
    assert body["id"] == str(member.id) and body["display_name"] == "王 主管"
    assert body["role"] == "outlet_supervisor" and body["outlet_id"] == str(outlet.id)
    assert_problem(await client.get(ME), 401, code="unauthenticated")
    assert_problem(await client.get(ME, headers=bearer("not-a-token")), 401, code="unauthenticated")


async def test_refresh_rotates_both_tokens(client, pool) -> None:
    member = await new_staff(pool)
    session = await full_sign_in(client, member.username)
    r = await client.post(f"{AUTH}/refresh", json={"refresh_token": session["refresh_token"]}, headers=UA)
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["access_token"] != session["access_token"] and new["refresh_token"] != session["refresh_token"]
    assert new["absolute_expires_at"] == session["absolute_expires_at"]  # refreshing never extends it
    assert (await me(client, bearer(new["access_token"])))["id"] == str(member.id)
    # the old access token stops working
    assert_problem(await client.get(ME, headers=bearer(session["access_token"])), 401, code="unauthenticated")
    # the new refresh token works
    r = await client.post(f"{AUTH}/refresh", json={"refresh_token": new["refresh_token"]})
    assert r.status_code == 200, r.text
    assert (await me(client, bearer(r.json()["access_token"])))["id"] == str(member.id)
    assert_problem(
        await client.post(f"{AUTH}/refresh", json={"refresh_token": "short"}), 422, field="refresh_token"
    )


async def test_a_replayed_refresh_token_ends_the_session(client, pool) -> None:
    member = await new_staff(pool)
    session = await full_sign_in(client, member.username)
    other = await full_sign_in(client, member.username)
    r = await client.post(f"{AUTH}/refresh", json={"refresh_token": session["refresh_token"]})
    assert r.status_code == 200, r.text
    rotated = r.json()
    replay = await client.post(
        f"{AUTH}/refresh", json={"refresh_token": session["refresh_token"]}, headers=UA
    )
    assert_problem(replay, 401, code="refresh_token_reused", field="refresh_token")
    # both holders lose the session; the member's other session stays
    assert_problem(await client.get(ME, headers=bearer(rotated["access_token"])), 401, code="unauthenticated")
    r = await client.post(f"{AUTH}/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert_problem(r, 401, code="unauthenticated")
    assert (await me(client, bearer(other["access_token"])))["id"] == str(member.id)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id::text FROM sessions WHERE principal_id = %s AND revoked_reason = 'refresh_token_reused'",
            (member.id,),
        )
        (ended,) = await cur.fetchall()
        cur = await conn.execute(
            "SELECT outcome, target_id, detail->>'reason', detail->>'staff_id' FROM audit_log "
            "WHERE action = 'staff.session.refresh' AND user_agent = %s ORDER BY seq DESC LIMIT 1",
            (UA["User-Agent"],),
        )
        assert await cur.fetchone() == ("refused", ended[0], "refresh_token_reused", str(member.id))


async def test_logout_ends_the_session(client, pool) -> None:
    member = await new_staff(pool)
    session = await full_sign_in(client, member.username)
    other = await full_sign_in(client, member.username)
    headers = bearer(session["access_token"])
    r = await client.post(f"{AUTH}/logout", headers=headers)
    assert r.status_code == 204, r.text
    assert_problem(await client.get(ME, headers=headers), 401, code="unauthenticated")
    assert_problem(await client.post(f"{AUTH}/logout", headers=headers), 401)
    r = await client.post(f"{AUTH}/refresh", json={"refresh_token": session["refresh_token"]})
    assert_problem(r, 401, code="unauthenticated")
    # only that session ends
    assert (await client.get(ME, headers=bearer(other["access_token"]))).status_code == 200


async def test_refresh_and_logout_are_audited(client, pool) -> None:
    member = await new_staff(pool)
    session = await full_sign_in(client, member.username)
    r = await client.post(f"{AUTH}/refresh", json={"refresh_token": session["refresh_token"]}, headers=UA)
    assert r.status_code == 200
    access = r.json()["access_token"]
    r = await client.post(f"{AUTH}/refresh", json={"refresh_token": secrets.token_urlsafe(32)}, headers=UA)
    assert r.status_code == 401
    r = await client.post(f"{AUTH}/logout", headers=bearer(access) | UA)
    assert r.status_code == 204
    mine = await audit_rows(pool, actor_id=str(member.id))
    tail = [(x["action"], x["outcome"], x["target_type"]) for x in mine][-2:]
    assert tail == [("staff.session.refresh", "success", "session"), ("staff.logout", "success", "session")]
    refresh_row, logout_row = mine[-2:]
    assert refresh_row["target_id"] == logout_row["target_id"]  # the same session, refreshed then ended
    assert all(x["user_agent"] == UA["User-Agent"] and x["ip"] for x in (refresh_row, logout_row))
    refused = await audit_rows(
        pool, action="staff.session.refresh", outcome="refused", ip=refresh_row["ip"], actor_type="anonymous"
    )
    assert len(refused) == 1 and refused[0]["target_id"] is None


async def test_staff_refresh_refuses_a_customer_refresh_token(client, pool) -> None:
    """A customer's refresh token does nothing at the staff endpoint (and still works at the customers')."""
    customer_id, _ = await make_customer(pool)
    async with pool.connection() as conn:
        tokens = await sessions.issue(
            conn, principal_type="customer", principal_id=customer_id, client=Client(None, None)
        )
    r = await client.post(f"{AUTH}/refresh", json={"refresh_token": tokens.refresh_token})
    assert_problem(r, 401, code="unauthenticated")
    r = await client.post("/api/v1/customers/auth/refresh", json={"refresh_token": tokens.refresh_token})
    assert r.status_code == 200, r.text


# --- lockout and enumeration ---------------------------------------------------------------------------


async def test_repeated_wrong_passwords_lock_the_account_and_say_until_when(client, pool) -> None:
    member = await new_staff(pool)
    for _ in range(lockout.MAX_FAILURES - 1):
        assert_problem(
            await password_step(client, member.username, "Wrong-pass-2026!"),
            401,
            field="password",
            code="invalid_credentials",
        )
    before = datetime.now(UTC)
    r = await password_step(client, member.username, "Wrong-pass-2026!")
    body = assert_problem(r, 423, code="account_locked")
    until = datetime.fromisoformat(body["locked_until"])
    assert before + lockout.BASE_LOCK - timedelta(seconds=2) <= until <= datetime.now(UTC) + lockout.BASE_LOCK
    assert body["locked_until"] in body["title"]
    r_en = await client.post(
        f"{AUTH}/login",
        json={"username": member.username, "password": STAFF_PASSWORD},
        headers={"Accept-Language": "en"},
    )
    body_en = assert_problem(r_en, 423, code="account_locked")
    assert body_en["locked_until"] == body["locked_until"] and "locked until" in body_en["title"]

    rows = await audit_rows(pool, action="staff.login.password", target_id=str(member.id))
    assert [x["detail"].get("reason") for x in rows] == ["invalid_credentials"] * 4 + ["account_locked"] * 2
    assert {x["outcome"] for x in rows} == {"refused"}
    assert all(x["actor_type"] == "staff" and x["actor_id"] == str(member.id) for x in rows)


async def test_wrong_totp_codes_count_toward_the_lockout(client, pool, monkeypatch) -> None:
    """A new password sign-in gives a new ticket, so wrong codes must count toward the staff member's lockout
    (they used to use up only the ticket: 20 wrong codes across fresh tickets, then the right one got in)."""
    monkeypatch.setattr(staff_api, "LOGIN_PER_USER", Limit(100, timedelta(minutes=5)))
    member = await new_staff(pool)
    name = member.username
    await full_sign_in(client, name)  # enrolled
    spare = (await password_step(client, name)).json()["ticket"]  # taken before any wrong code
    steps, answers = [], []
    for _ in range(20):
        step = await password_step(client, name)
        steps.append(step.status_code)
        if step.status_code == 200:
            r = await client.post(f"{AUTH}/totp", json={"ticket": step.json()["ticket"], "code": "000000"})
            answers.append((r.status_code, r.json()["code"]))
    assert answers == [(401, "totp_invalid")] * 4 + [(423, "account_locked")], answers
    assert steps == [200] * 5 + [423] * 15, steps
    # The right code on a ticket taken before the lock, and the right password afresh: both locked.
    r = await client.post(f"{AUTH}/totp", json={"ticket": spare, "code": fresh_code(STAFF_SECRETS[name])})
    assert_problem(r, 423, code="account_locked")
    assert_problem(await password_step(client, name), 423, code="account_locked")
    rows = await audit_rows(pool, action="staff.login.totp", target_id=str(member.id), outcome="refused")
    assert [x["detail"]["reason"] for x in rows] == ["totp_invalid"] * 4 + ["account_locked"] * 2


async def test_an_unknown_username_locks_exactly_like_a_real_one(client, pool) -> None:
    """Five failures lock a username nobody holds too, so a 423 does not reveal that an account exists."""
    member, ghost = await new_staff(pool), username()

    async def attempts(name: str) -> list[tuple[int, str]]:
        answers = [await password_step(client, name, "Wrong-pass-2026!") for _ in range(6)]
        answers.append(await password_step(client, name))
        return [(r.status_code, r.json()["code"]) for r in answers]

    seen = await attempts(member.username)
    assert seen == [(401, "invalid_credentials")] * 4 + [(423, "account_locked")] * 3
    assert await attempts(ghost) == seen
    rows = await audit_rows(pool, action="staff.login.password", detail_username=ghost)
    assert [x["detail"]["reason"] for x in rows] == ["invalid_credentials"] * 4 + ["account_locked"] * 3


async def test_unknown_username_answers_like_a_wrong_password(client, pool) -> None:
    member = await new_staff(pool)
    ghost = username()
    wrong = await password_step(client, member.username, "Wrong-pass-2026!")
    unknown = await password_step(client, ghost, "Wrong-pass-2026!")
    unknown_right_pw = await password_step(client, ghost, STAFF_PASSWORD)
    assert_problem(wrong, 401, field="password", code="invalid_credentials")
    assert wrong.status_code == unknown.status_code == unknown_right_pw.status_code
    assert wrong.json() == unknown.json() == unknown_right_pw.json()
    assert wrong.headers["content-type"] == unknown.headers["content-type"]
    for lang in ("en", "zh-CN"):
        a = await client.post(
            f"{AUTH}/login",
            json={"username": member.username, "password": "x"},
            headers={"Accept-Language": lang},
        )
        b = await client.post(
            f"{AUTH}/login", json={"username": ghost, "password": "x"}, headers={"Accept-Language": lang}
        )
        assert a.json() == b.json()
    rows = await audit_rows(pool, action="staff.login.password", detail_username=ghost)
    assert len(rows) == 4
    assert all(
        x["actor_type"] == "anonymous" and x["target_id"] is None and x["outcome"] == "refused" for x in rows
    )
    assert all(x["detail"] == {"username": ghost, "reason": "invalid_credentials"} for x in rows)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (f"{AUTH}/login", {"username": "adm\u0000in", "password": "Wrong-pass-2026!"}, "username"),
        (f"{ADMIN}/outlets", {"code": "NUL-1", "name": "网\u0000点", "kind": "self_operated"}, "name"),
        (
            f"{ADMIN}/staff",
            {
                "username": "nul.staff",
                "display_name": "王\u0000五",
                "password": STAFF_PASSWORD,
                "role": "finance",
            },
            "display_name",
        ),
    ],
)
async def test_a_nul_character_is_a_422_naming_the_field(
    as_served, pool, plain_admin, path, body, field
) -> None:
    """PostgreSQL text cannot hold NUL: it is refused up front (it used to reach the database: a 500)."""
    headers, admin_id = plain_admin
    r = await as_served.post(path, json=body, headers=keyed(headers))
    problem = assert_problem(r, 422, field=field, code="validation_failed")
    assert problem["errors"][0]["code"] == "nul_character"
    assert [x["action"] for x in await audit_rows(pool, actor_id=admin_id)] == [
        "staff.login.password",
        "staff.login.totp",
    ]  # the administrator's own sign-in, nothing else


async def test_a_role_change_without_a_fresh_step_up_is_refused_and_changes_nothing(
    client, pool, plain_admin
) -> None:
    """A role change is a sensitive staff action (issue 17): without a TOTP step-up in the last five
    minutes it is a 403 ``step_up_required`` naming where to step up; the member keeps their role and the
    refusal alone is audited. A status change needs none."""
    headers, _ = plain_admin
    made = {"id": str((await new_staff(pool, Role.SUPPORT_AGENT)).id)}
    url = f"{ADMIN}/staff/{made['id']}"
    r = await client.patch(url, json={"role": "risk_officer"}, headers=headers)
    problem = assert_problem(r, 403, code="step_up_required")
    assert problem["step_up"]["endpoints"]["totp"] == [
        {"method": "POST", "path": "/api/v1/staff/me/step-up/totp"}
    ]
    assert (await client.get(url, headers=headers)).json()["role"] == "support_agent"
    updates = await audit_rows(pool, target_id=made["id"], action="staff.update")
    assert [(x["outcome"], x["detail"]["reason"]) for x in updates] == [("refused", "step_up_required")]
    r = await client.patch(url, json={"status": "disabled"}, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "disabled", r.text


async def test_giving_a_role_by_creating_or_approving_needs_a_fresh_step_up(
    client, pool, admin, plain_admin
) -> None:
    """Creating a member (a first role) and approving a privileged change (the act that gives the role) are
    role changes too: without a step-up, 403 ``step_up_required`` and nothing changes."""
    stepped, _ = admin
    unstepped, _ = plain_admin
    name = username()
    body = {"username": name, "display_name": "新员工", "password": STAFF_PASSWORD, "role": "support_agent"}
    r = await client.post(f"{ADMIN}/staff", json=body, headers=keyed(unstepped))
    assert_problem(r, 403, code="step_up_required")
    async with pool.connection() as conn:
        assert await staff.get_staff_id(conn, name) is None

    body |= {"username": username(), "role": "finance"}
    asked = await client.post(f"{ADMIN}/staff", json=body, headers=keyed(stepped))
    assert asked.status_code == 202, asked.text
    approve = f"{ADMIN}/staff-changes/{asked.json()['id']}/approve"
    assert_problem(await client.post(approve, headers=keyed(unstepped)), 403, code="step_up_required")
    change = await client.get(f"{ADMIN}/staff-changes/{asked.json()['id']}", headers=stepped)
    assert change.json()["status"] == "pending", change.text
