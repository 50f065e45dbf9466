"""Separation of duties among administrators (issue 15, item 6).

An administrator used to be able to create a finance user, or give itself the finance role, and then move
money (both answered 201/200). Now granting or taking finance or administrator is a pending change that a
second, different active administrator approves; nobody changes their own role or disables themselves;
the last active administrator stays; and a new member enrolls TOTP with a one-time code that whoever set
the password cannot issue. The first-sign-in flow itself is in ``test_staff_admin.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime, create_app
from etcwallet.core.crypto import Keys
from etcwallet.core.db import open_pool
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError
from etcwallet.identity.authz import Role
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.staff import changes as staff_changes
from etcwallet.identity.staff import service as staff
from etcwallet.ledger.service import Ledger
from tests.conftest import STAFF_PASSWORD, StaffFactory
from tests.idempotency_keys import keyed
from tests.identity.staff_helpers import (
    ADMIN,
    UA,
    assert_problem,
    audit_rows,
    bearer,
    full_sign_in,
    me,
    new_staff,
    password_step,
    username,
)

CHANGES = f"{ADMIN}/staff-changes"


@pytest.fixture
async def admins(make_staff: StaffFactory, client: httpx.AsyncClient) -> list[tuple[dict[str, str], str]]:
    """Three signed-in administrators, stepped up (a role change asks for it): (headers, staff id) each."""
    made = []
    for _ in range(3):
        headers = await make_staff(Role.ADMINISTRATOR, step_up=True)
        made.append((headers, (await me(client, headers))["id"]))
    return made


def new_member(role: str, name: str | None = None) -> dict[str, Any]:
    return {
        "username": name or username(),
        "display_name": "新员工",
        "password": STAFF_PASSWORD,
        "role": role,
    }


async def role_of(client: httpx.AsyncClient, headers: dict[str, str], staff_id: str) -> tuple[str, str]:
    r = await client.get(f"{ADMIN}/staff/{staff_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["role"], r.json()["status"]


# --- creating a finance or administrator member --------------------------------------------------------


@pytest.mark.parametrize("role", ["finance", "administrator"])
async def test_an_administrator_alone_cannot_create_finance_or_administrator_staff(
    client, pool, admins, role: str
) -> None:
    (first, first_id), (second, second_id), _ = admins
    body = new_member(role)
    r = await client.post(f"{ADMIN}/staff", json=body, headers=keyed(first | UA))
    assert r.status_code == 202, r.text  # recorded, not done
    change = r.json()
    assert r.headers["location"] == f"{CHANGES}/{change['id']}"
    assert (change["kind"], change["status"], change["role_from"], change["role_to"]) == (
        "create",
        "pending",
        None,
        role,
    )
    assert change["requested_by"] == first_id and change["decided_by"] is None
    member_id = change["staff"]["id"]
    assert change["staff"]["status"] == "pending" and change["staff"]["username"] == body["username"]

    # Waiting: the member cannot sign in, cannot be switched on, gets no enrollment code.
    assert_problem(await password_step(client, body["username"]), 401, code="invalid_credentials")
    r = await client.patch(f"{ADMIN}/staff/{member_id}", json={"status": "active"}, headers=first)
    assert_problem(r, 409, field="staff_id", code="change_pending")
    r = await client.post(f"{ADMIN}/staff/{member_id}/enrollment-code", headers=keyed(second))
    assert_problem(r, 409, field="staff_id", code="staff_not_active")
    # The requester cannot approve their own request.
    r = await client.post(f"{CHANGES}/{change['id']}/approve", headers=keyed(first | UA))
    assert_problem(r, 409, field="change_id", code="self_approval")
    assert await role_of(client, first, member_id) == (role, "pending")

    r = await client.post(f"{CHANGES}/{change['id']}/approve", headers=keyed(second | UA))
    assert r.status_code == 200, r.text
    approved = r.json()
    assert approved["status"] == "approved" and approved["decided_by"] == second_id
    assert approved["staff"]["status"] == "active" and approved["staff"]["role"] == role
    r = await client.post(f"{CHANGES}/{change['id']}/approve", headers=keyed(second))
    assert_problem(r, 409, field="change_id", code="change_not_pending")
    r = await client.post(f"{CHANGES}/{change['id']}/reject", headers=keyed(second))
    assert_problem(r, 409, field="change_id", code="change_not_pending")

    # Who requested and who approved are on the record; so is the refused self-approval.
    rows = await audit_rows(pool, target_id=member_id, action="staff.change.request")
    assert [(x["actor_id"], x["detail"]["change_id"], x["detail"]["role_to"]) for x in rows] == [
        (first_id, change["id"], role)
    ]
    assert "password" not in rows[0]["detail"] and STAFF_PASSWORD not in str(rows[0]["detail"])
    rows = await audit_rows(pool, target_id=member_id, action="staff.change.approve")
    assert [(x["actor_id"], x["detail"]["requested_by"], x["outcome"]) for x in rows] == [
        (second_id, first_id, "success")
    ]
    refused = await audit_rows(pool, target_id=change["id"], target_type="staff_change")
    assert [(x["actor_id"], x["action"], x["detail"]["reason"]) for x in refused] == [
        (first_id, "staff.change.approve", "self_approval"),
        (second_id, "staff.change.approve", "change_not_pending"),
        (second_id, "staff.change.reject", "change_not_pending"),
    ]

    # Approved, the member enrolls with a code from an administrator who did not set the password.
    r = await client.post(f"{ADMIN}/staff/{member_id}/enrollment-code", headers=keyed(second))
    assert r.status_code == 201, r.text
    session = await full_sign_in(client, body["username"], r.json()["enrollment_code"])
    assert session["staff"]["role"] == role


async def test_a_finance_member_moves_money_only_after_the_second_approval(client, admins) -> None:
    """The issue's probe: create a finance user, sign in as it, move money. Now it takes two people."""
    (first, _), (second, _), _ = admins
    body = new_member("finance")
    r = await client.post(f"{ADMIN}/staff", json=body, headers=keyed(first))
    assert r.status_code == 202, r.text
    change = r.json()
    r = await client.post(f"{ADMIN}/staff/{change['staff']['id']}/enrollment-code", headers=keyed(second))
    assert_problem(r, 409, code="staff_not_active")
    assert_problem(await password_step(client, body["username"]), 401, code="invalid_credentials")
    assert (await client.post(f"{CHANGES}/{change['id']}/approve", headers=keyed(second))).status_code == 200
    r = await client.post(f"{ADMIN}/staff/{change['staff']['id']}/enrollment-code", headers=keyed(second))
    session = await full_sign_in(client, body["username"], r.json()["enrollment_code"])
    account = {"currency": "CNY", "code": "general", "owner": "sod"}
    r = await client.post("/api/v1/ledger/accounts", json=account, headers=bearer(session["access_token"]))
    assert r.status_code == 201, r.text


async def test_rejected_creation_leaves_a_member_who_never_signs_in(client, pool, admins) -> None:
    (first, first_id), (second, second_id), _ = admins
    body = new_member("administrator")
    change = (await client.post(f"{ADMIN}/staff", json=body, headers=keyed(first))).json()
    r = await client.post(f"{CHANGES}/{change['id']}/reject", headers=keyed(second | UA))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "rejected" and r.json()["decided_by"] == second_id
    assert r.json()["staff"]["status"] == "rejected"
    member_id = change["staff"]["id"]
    assert_problem(await password_step(client, body["username"]), 401, code="invalid_credentials")
    for patch in ({"status": "active"}, {"role": "support_agent"}):
        r = await client.patch(f"{ADMIN}/staff/{member_id}", json=patch, headers=second)
        assert_problem(r, 409, field="staff_id", code="staff_rejected")
    r = await client.post(f"{ADMIN}/staff", json=body, headers=keyed(second))  # the username stays taken
    assert_problem(r, 409, field="username", code="username_taken")
    r = await client.post(f"{CHANGES}/{change['id']}/approve", headers=keyed(second))
    assert_problem(r, 409, code="change_not_pending")
    [row] = await audit_rows(pool, target_id=member_id, action="staff.change.reject")
    assert (row["actor_id"], row["detail"]["requested_by"]) == (second_id, first_id)


# --- changing roles ------------------------------------------------------------------------------------


async def test_nobody_changes_their_own_role_or_disables_themselves(client, pool, admins) -> None:
    """The issue's other probe: an administrator giving itself the finance role (it got 200)."""
    (first, first_id), (second, second_id), (third, third_id) = admins
    for patch, field, code in [
        ({"role": "finance"}, "role", "own_role"),
        ({"role": "support_agent"}, "role", "own_role"),
        ({"status": "disabled"}, "status", "own_status"),
    ]:
        r = await client.patch(f"{ADMIN}/staff/{first_id}", json=patch, headers=first | UA)
        assert_problem(r, 409, field=field, code=code)
    assert await role_of(client, first, first_id) == ("administrator", "active")
    refused = await audit_rows(pool, target_id=first_id, action="staff.update", outcome="refused")
    assert [x["detail"]["reason"] for x in refused] == ["own_role", "own_role", "own_status"]
    # Re-sending its own role unchanged is no change at all.
    r = await client.patch(f"{ADMIN}/staff/{first_id}", json={"role": "administrator"}, headers=first)
    assert r.status_code == 200, r.text

    # Asked by another administrator, the member it concerns cannot approve it either: a third one can.
    r = await client.patch(f"{ADMIN}/staff/{first_id}", json={"role": "finance"}, headers=second)
    assert r.status_code == 202, r.text
    change_id = r.json()["id"]
    r = await client.post(f"{CHANGES}/{change_id}/approve", headers=keyed(first))
    assert_problem(r, 409, field="change_id", code="own_role")
    assert await role_of(client, second, first_id) == ("administrator", "active")
    assert (await client.get("/api/v1/staff/me", headers=first)).status_code == 200
    r = await client.post(f"{CHANGES}/{change_id}/approve", headers=keyed(third))
    assert r.status_code == 200 and r.json()["staff"]["role"] == "finance", r.text
    # The role change ended the member's sessions: they sign in again in the new role.
    assert_problem(await client.get("/api/v1/staff/me", headers=first), 401, code="unauthenticated")
    [row] = await audit_rows(pool, target_id=first_id, action="staff.change.approve")
    assert (row["actor_id"], row["detail"]["requested_by"], row["detail"]["role_from"]) == (
        third_id,
        second_id,
        "administrator",
    )


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (Role.SUPPORT_AGENT, "finance"),  # granting finance
        (Role.FINANCE, "risk_officer"),  # taking finance
        (Role.RISK_OFFICER, "administrator"),  # granting administrator
        (Role.FINANCE, "administrator"),  # from one privileged role to the other
    ],
)
async def test_granting_or_taking_finance_or_administrator_waits_for_approval(
    client, pool, admins, start: Role, to: str
) -> None:
    (first, first_id), (second, second_id), _ = admins
    member = await new_staff(pool, start)
    session = await full_sign_in(client, member.username)
    theirs = bearer(session["access_token"])
    r = await client.patch(f"{ADMIN}/staff/{member.id}", json={"role": to}, headers=first | UA)
    assert r.status_code == 202, r.text
    change = r.json()
    assert (change["kind"], change["role_from"], change["role_to"]) == ("role", start.value, to)
    assert change["staff"]["role"] == start.value  # nothing changed yet
    assert await role_of(client, first, str(member.id)) == (start.value, "active")
    assert (await client.get("/api/v1/staff/me", headers=theirs)).status_code == 200

    r = await client.post(f"{CHANGES}/{change['id']}/approve", headers=keyed(second | UA))
    assert r.status_code == 200, r.text
    assert r.json()["staff"]["role"] == to
    assert_problem(await client.get("/api/v1/staff/me", headers=theirs), 401, code="unauthenticated")
    [request] = await audit_rows(pool, target_id=str(member.id), action="staff.change.request")
    [approval] = await audit_rows(pool, target_id=str(member.id), action="staff.change.approve")
    assert (request["actor_id"], request["detail"]["asked"]) == (first_id, {"role": to})
    assert (approval["actor_id"], approval["detail"]["requested_by"]) == (second_id, first_id)
    assert not await audit_rows(pool, target_id=str(member.id), action="staff.update")


async def test_other_changes_take_effect_at_once(client, pool, admins, outlet) -> None:
    (first, _), _, _ = admins
    member = await new_staff(pool, Role.SUPPORT_AGENT)
    url = f"{ADMIN}/staff/{member.id}"
    r = await client.patch(url, json={"role": "risk_officer"}, headers=first)
    assert r.status_code == 200 and r.json()["role"] == "risk_officer", r.text
    r = await client.patch(url, json={"role": "outlet_operator", "outlet_id": str(outlet.id)}, headers=first)
    assert r.status_code == 200 and r.json()["outlet_id"] == str(outlet.id), r.text
    # Disabling a finance member, and enabling them again, is not granting or taking the role.
    finance = await new_staff(pool, Role.FINANCE)
    for status in ("disabled", "active"):
        r = await client.patch(f"{ADMIN}/staff/{finance.id}", json={"status": status}, headers=first)
        assert r.status_code == 200 and r.json()["status"] == status, r.text


async def test_one_pending_change_per_member_and_the_role_change_alone(client, pool, admins) -> None:
    (first, first_id), (second, _), _ = admins
    member = await new_staff(pool, Role.SUPPORT_AGENT)
    url = f"{ADMIN}/staff/{member.id}"
    r = await client.patch(url, json={"role": "finance", "status": "disabled"}, headers=first)
    assert_problem(r, 422, field="status", code="change_with_status")
    r = await client.patch(url, json={"role": "finance"}, headers=first)
    assert r.status_code == 202, r.text
    change_id = r.json()["id"]
    for patch in ({"role": "administrator"}, {"role": "risk_officer"}):
        r = await client.patch(url, json=patch, headers=second)
        assert_problem(r, 409, field="staff_id", code="change_pending")
    # The status is not what waits: disabling meanwhile works, and the approval keeps it.
    r = await client.patch(url, json={"status": "disabled"}, headers=second)
    assert r.status_code == 200 and r.json()["status"] == "disabled", r.text
    # Listing and reading the changes.
    r = await client.get(CHANGES, headers=second)
    assert r.status_code == 200 and change_id in [c["id"] for c in r.json()], r.text
    assert all(c["status"] == "pending" for c in r.json())
    r = await client.get(f"{CHANGES}/{change_id}", headers=second)
    assert r.status_code == 200 and r.json()["requested_by"] == first_id, r.text
    assert_problem(await client.get(f"{CHANGES}/{uuid4()}", headers=second), 404, code="change_not_found")
    assert_problem(await client.get(CHANGES, params={"status": "done"}, headers=second), 422, field="status")
    # The requester may withdraw their own request.
    r = await client.post(f"{CHANGES}/{change_id}/reject", headers=keyed(first))
    assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
    assert await role_of(client, first, str(member.id)) == ("support_agent", "disabled")
    r = await client.get(CHANGES, params={"status": "rejected", "limit": 200}, headers=second)
    assert change_id in [c["id"] for c in r.json()]


async def test_a_change_gone_stale_is_refused(client, pool, admins) -> None:
    """A role change is approved against the role it was asked from."""
    (first, _), (second, _), _ = admins
    member = await new_staff(pool, Role.FINANCE)
    r = await client.patch(f"{ADMIN}/staff/{member.id}", json={"role": "support_agent"}, headers=first)
    change_id = r.json()["id"]
    async with pool.connection() as conn:  # the role changed meanwhile (by the bootstrap path)
        await staff.update_staff(conn, staff_id=member.id, role=Role.RISK_OFFICER)
    r = await client.post(f"{CHANGES}/{change_id}/approve", headers=keyed(second))
    assert_problem(r, 409, field="change_id", code="change_stale")


# --- the enrollment code -------------------------------------------------------------------------------


async def test_enrollment_codes_work_once_expire_and_are_replaced(client, pool, admins) -> None:
    (first, _), (second, _), _ = admins
    member = await new_staff(pool)  # the bootstrap path: nobody recorded as having set the password
    url = f"{ADMIN}/staff/{member.id}/enrollment-code"
    old = (await client.post(url, headers=keyed(first))).json()["enrollment_code"]
    new = (await client.post(url, headers=keyed(second))).json()["enrollment_code"]
    assert old != new
    r = await password_step(client, member.username, code=old)  # replaced by the newer one
    assert_problem(r, 401, field="enrollment_code", code="enrollment_code_invalid")
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE staff_enrollment_codes SET expires_at = now() - interval '1 second' WHERE staff_id = %s",
            (member.id,),
        )
    r = await password_step(client, member.username, code=new)
    assert_problem(r, 401, field="enrollment_code", code="enrollment_code_invalid")
    fresh = (await client.post(url, headers=keyed(first))).json()["enrollment_code"]
    await full_sign_in(client, member.username, fresh)
    r = await client.post(url, headers=keyed(first))
    assert_problem(r, 409, field="staff_id", code="totp_already_enrolled")
    assert_problem(await client.post(f"{ADMIN}/staff/{uuid4()}/enrollment-code", headers=keyed(first)), 404)


async def test_wrong_enrollment_codes_count_toward_the_lockout(client, pool) -> None:
    member = await new_staff(pool)
    answers = [(await password_step(client, member.username, code="x" * 43)).status_code for _ in range(5)]
    assert answers == [401] * 4 + [423]


# --- the last administrator, and two administrators at once (a database of their own) ------------------


@pytest.fixture
async def lone(fresh_database: Callable[[], str], keys: Keys, settings) -> AsyncIterator[tuple[Any, FastAPI]]:
    pool = await open_pool(fresh_database(), 6)
    try:
        yield pool, create_app(settings, runtime=Runtime(pool=pool, ledger=Ledger(pool), keys=keys))
    finally:
        await pool.close()


async def made(pool: AsyncConnectionPool, role: Role) -> tuple[UUID, dict[str, str]]:
    """A member made by the bootstrap path, and a live session's headers."""
    async with pool.connection() as conn:
        member = await staff.create_staff(
            conn, username=username(), display_name="x", password=STAFF_PASSWORD, role=role, outlet_id=None
        )
        issued = await sessions.issue(
            conn, principal_type="staff", principal_id=member.id, client=Client(None, None)
        )
    return member.id, bearer(issued.access_token)


async def test_the_last_active_administrator_is_neither_disabled_nor_demoted(lone) -> None:
    pool, _ = lone
    only, _ = await made(pool, Role.ADMINISTRATOR)
    other, _ = await made(pool, Role.SUPPORT_AGENT)  # whoever asks: here, not even an administrator
    for kwargs, field in (({"status": "disabled"}, "status"), ({"role": Role.FINANCE}, "role")):
        with pytest.raises(DomainError) as refused:
            async with pool.connection() as conn, conn.transaction():
                await staff_changes.update_staff(conn, staff_id=only, actor=other, **kwargs)
        assert (refused.value.code, refused.value.status, refused.value.field) == (
            "last_administrator",
            409,
            field,
        )
    async with pool.connection() as conn:
        assert (await staff.get_staff(conn, only)).status == "active"


async def test_two_administrators_disabling_each_other_at_once_leave_one(lone) -> None:
    """Each sees the other as not the last; judged in turn, the second finds itself the last one."""
    pool, app = lone
    a, a_headers = await made(pool, Role.ADMINISTRATOR)
    b, b_headers = await made(pool, Role.ADMINISTRATOR)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.77", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        answers = await asyncio.gather(
            c.patch(f"{ADMIN}/staff/{b}", json={"status": "disabled"}, headers=a_headers),
            c.patch(f"{ADMIN}/staff/{a}", json={"status": "disabled"}, headers=b_headers),
        )
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 409)
    assert refused.json()["code"] == "last_administrator" and refused.json()["field"] == "status"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM staff WHERE role = 'administrator' AND status = 'active'"
        )
        assert await cur.fetchone() == (1,)


async def test_administrative_changes_are_judged_one_after_another(lone) -> None:
    """The interleaving a race needs, made on purpose: while one administrator's change is uncommitted,
    the other's waits for it (the advisory lock), then finds itself the last administrator. Without the
    lock both would see the other still active, and both would commit."""
    pool, _ = lone
    a, _ = await made(pool, Role.ADMINISTRATOR)
    b, _ = await made(pool, Role.ADMINISTRATOR)
    async with pool.connection() as first, pool.connection() as second:
        async with first.transaction():
            await staff_changes.update_staff(first, staff_id=b, actor=a, status="disabled")

            async def other_way() -> None:
                async with second.transaction():
                    await staff_changes.update_staff(second, staff_id=a, actor=b, status="disabled")

            waiting = asyncio.create_task(other_way())
            await asyncio.sleep(0.3)
            assert not waiting.done(), "the second change did not wait for the first"
        with pytest.raises(DomainError) as refused:
            await waiting
    assert refused.value.code == "last_administrator"
    async with pool.connection() as conn:
        assert (await staff.get_staff(conn, a)).status == "active"
        assert (await staff.get_staff(conn, b)).status == "disabled"


def test_privileged_roles_are_finance_and_administrator() -> None:
    assert {Role.FINANCE, Role.ADMINISTRATOR} == staff_changes.PRIVILEGED_ROLES
    assert staff_changes.needs_approval(None, Role.FINANCE)
    assert staff_changes.needs_approval(Role.ADMINISTRATOR, Role.SUPPORT_AGENT)
    assert not staff_changes.needs_approval(Role.FINANCE, Role.FINANCE)
    assert not staff_changes.needs_approval(Role.SUPPORT_AGENT, Role.RISK_OFFICER)
    assert timedelta(days=1) < staff.ENROLLMENT_CODE_LIFETIME <= timedelta(days=7)


async def test_demo_staff_get_enrollment_codes_in_the_start_log(
    lone, caplog: pytest.LogCaptureFixture
) -> None:
    """`make run` users sign in with the demo password and the code logged at start; a later start issues
    codes only to members who have not enrolled yet."""
    from etcwallet.demo import DEMO_STAFF, DEMO_STAFF_PASSWORD, load_demo_data

    _, app = lone
    runtime: Runtime = app.state.runtime
    await runtime.ledger.start()
    try:
        await runtime.ledger.ensure_chart()
        caplog.set_level(logging.INFO, logger="etcwallet.demo")
        await load_demo_data(runtime)
        codes = next(r for r in caplog.records if r.getMessage() == "demo staff").enrollment_codes
        assert set(codes) == {username for username, *_ in DEMO_STAFF}
        transport = httpx.ASGITransport(app=app, client=("192.0.2.78", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.post(
                "/api/v1/staff/auth/login",
                json={
                    "username": "admin",
                    "password": DEMO_STAFF_PASSWORD,
                    "enrollment_code": codes["admin"],
                },
            )
            assert r.status_code == 200 and r.json()["totp_enrollment"], r.text
            secret = r.json()["totp_enrollment"]["secret"]
            r = await c.post(
                "/api/v1/staff/auth/totp",
                json={"ticket": r.json()["ticket"], "code": pyotp.TOTP(secret).now()},
            )
            assert r.status_code == 200, r.text
        caplog.clear()
        await load_demo_data(runtime)
        again = next(r for r in caplog.records if r.getMessage() == "demo staff").enrollment_codes
        assert set(again) == set(codes) - {"admin"} and again["finance"] != codes["finance"]
    finally:
        await runtime.ledger.stop()
