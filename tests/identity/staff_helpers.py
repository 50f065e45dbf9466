"""Helpers for the staff identity tests: HTTP steps of staff sign-in and administration, audit look-ups."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID, uuid4

import httpx
import pyotp
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.authz import Role
from etcwallet.identity.staff import service as staff
from tests.conftest import STAFF_PASSWORD, STAFF_SECRETS, app_pool, bootstrap_enrollment_code
from tests.idempotency_keys import keyed

ADMIN = "/api/v1/admin"
AUTH = "/api/v1/staff/auth"
ME = "/api/v1/staff/me"
UA = {"User-Agent": "etcw-admin-test/1.0"}
PROBLEM = "application/problem+json"


def assert_problem(
    r: httpx.Response, status: int, *, field: str | None = None, code: str | None = None
) -> dict:
    """A problem+json refusal with the given status (naming ``field`` and carrying ``code`` when given)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["title"]
    if field is not None:
        assert body["field"] == field, body
        assert any(e["field"] == field for e in body.get("errors", [])), body
    if code is not None:
        assert body["code"] == code, body
    return body


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get(ME, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def audit_rows(pool: AsyncConnectionPool, **where: Any) -> list[dict[str, Any]]:
    """Audit rows matching every ``column=value`` given (``detail_<key>`` matches a detail key), by seq."""
    clauses, params = [], []
    for key, value in where.items():
        if key.startswith("detail_"):
            clauses.append("detail ->> %s = %s")
            params += [key.removeprefix("detail_"), value]
        else:
            clauses.append(f"{key} = %s")
            params.append(value)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT seq, at, actor_type, actor_id, action, target_type, target_id, outcome, ip, user_agent, "
            f"detail FROM audit_log WHERE {' AND '.join(clauses)} ORDER BY seq",
            params,
        )
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


async def count(pool: AsyncConnectionPool, sql: str, *params: Any) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


def username() -> str:
    return f"t.{uuid4().hex[:12]}"


def outlet_code() -> str:
    return f"O-{uuid4().hex[:12]}"


PRIVILEGED = frozenset({Role.FINANCE, Role.ADMINISTRATOR})


async def create_staff_http(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    role: Role,
    outlet_id: UUID | None = None,
    *,
    name: str | None = None,
    approver: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Create a member over HTTP; a finance or administrator member is approved by ``approver`` (202, then
    the approval). Answers the member as created (active)."""
    body: dict[str, Any] = {
        "username": name or username(),
        "display_name": "测试员工",
        "password": STAFF_PASSWORD,
        "role": role.value,
    }
    if outlet_id is not None:
        body["outlet_id"] = str(outlet_id)
    r = await client.post(f"{ADMIN}/staff", json=body, headers=keyed(admin_headers | UA))
    if role not in PRIVILEGED:
        assert r.status_code == 201, r.text
        return r.json()
    assert r.status_code == 202, r.text
    assert approver is not None, "a finance or administrator member needs a second administrator's approval"
    r = await client.post(f"{ADMIN}/staff-changes/{r.json()['id']}/approve", headers=keyed(approver | UA))
    assert r.status_code == 200, r.text
    made: dict[str, Any] = r.json()["staff"]
    return made


async def password_step(
    client: httpx.AsyncClient, name: str, password: str = STAFF_PASSWORD, *, code: str | None = None
) -> httpx.Response:
    body = {"username": name, "password": password} | ({"enrollment_code": code} if code else {})
    return await client.post(f"{AUTH}/login", json=body, headers=UA)


async def full_sign_in(client: httpx.AsyncClient, name: str, code: str | None = None) -> dict[str, Any]:
    """Both steps; at first sign-in, enrolling with the enrollment code (given, or else issued through the
    service layer: the bootstrap path). The whole session answer."""
    if name not in STAFF_SECRETS and code is None:
        code = await bootstrap_enrollment_code(app_pool(client), name)
    step = await password_step(client, name, code=code if name not in STAFF_SECRETS else None)
    assert step.status_code == 200, step.text
    body = step.json()
    if body["totp_enrollment"]:
        STAFF_SECRETS[name] = body["totp_enrollment"]["secret"]
    totp_code = fresh_code(STAFF_SECRETS[name])
    done = await client.post(f"{AUTH}/totp", json={"ticket": body["ticket"], "code": totp_code}, headers=UA)
    assert done.status_code == 200, done.text
    return done.json()


_LAST_STEP: dict[str, int] = {}


def fresh_code(secret: str) -> str:
    """A code for a time step not used yet for this secret (TOTP codes are accepted once per step)."""
    step = max(int(time.time()) // 30, _LAST_STEP.get(secret, -10) + 1)
    _LAST_STEP[secret] = step
    return pyotp.TOTP(secret).at(step * 30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_staff(pool: AsyncConnectionPool, role: Role = Role.SUPPORT_AGENT) -> staff.StaffMember:
    """A staff member made through the service (no administrator needed), not signed in yet."""
    async with pool.connection() as conn:
        return await staff.create_staff(
            conn, username=username(), display_name="x", password=STAFF_PASSWORD, role=role, outlet_id=None
        )
