"""Staff step-up (issue 17): a signed-in staff member proves a fresh TOTP before a sensitive action.

The same helper and the same answers as a customer's step-up: 403 ``step_up_required`` problem+json when
missing or stale, the same status shape. A code already spent (at sign-in) does not work again. The window
is checked against an injected clock (the unit of work's), never by sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import pyotp
from fastapi import Depends, FastAPI
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime
from etcwallet.core.deps import get_uow
from etcwallet.core.errors import install_handlers
from etcwallet.identity.authz import Permission, Principal, Role
from etcwallet.identity.factors.stepup import STEP_UP_WINDOW, require_staff_step_up
from etcwallet.platform.unit import UnitOfWork
from tests.conftest import STAFF_SECRETS, StaffFactory
from tests.identity.software_authenticator import make_customer, open_session
from tests.identity.staff_helpers import assert_problem, audit_rows, me

STEP_UP = "/api/v1/staff/me/step-up"


async def last_used_step(pool: AsyncConnectionPool, staff_id: str) -> int:
    """The TOTP time step the staff member last spent (at sign-in, or a step-up)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT last_used_step FROM totp_factors WHERE principal_type = 'staff' AND principal_id = %s",
            (staff_id,),
        )
        row = await cur.fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


async def signed_in(
    make_staff: StaffFactory, client: httpx.AsyncClient, role: Role
) -> tuple[dict[str, str], str, str]:
    """(headers, staff id, TOTP secret) of a freshly signed-in staff member."""
    headers = await make_staff(role)
    member = await me(client, headers)
    return headers, member["id"], STAFF_SECRETS[member["username"]]


def fresh_code(secret: str, spent_step: int) -> str:
    """A code of a later step than the one spent (within the server's one step of drift)."""
    now_step = int(datetime.now(UTC).timestamp()) // 30
    return pyotp.TOTP(secret).at(max(spent_step + 1, now_step) * 30)


def wrong_code(secret: str) -> str:
    """Six digits that are none of the codes the server accepts now."""
    now_step = int(datetime.now(UTC).timestamp()) // 30
    valid = {pyotp.TOTP(secret).at((now_step + d) * 30) for d in (-1, 0, 1, 2)}
    return next(c for c in (f"{n:06d}" for n in range(1_000_000)) if c not in valid)


async def status(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get(STEP_UP, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_a_staff_member_steps_up_with_a_fresh_totp_code(
    make_staff: StaffFactory, client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    headers, staff_id, secret = await signed_in(make_staff, client, Role.FINANCE)
    before = await status(client, headers)
    assert before == {
        "accepted_factors": ["totp"],
        "stepped_up": False,
        "stepped_up_at": None,
        "factor": None,
        "valid_until": None,
    }
    spent = await last_used_step(pool, staff_id)
    r = await client.post(f"{STEP_UP}/totp", json={"code": fresh_code(secret, spent)}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stepped_up"] is True and body["factor"] == "totp"
    at = datetime.fromisoformat(body["stepped_up_at"])
    assert datetime.fromisoformat(body["valid_until"]) == at + STEP_UP_WINDOW
    assert await status(client, headers) == body
    rows = await audit_rows(pool, action="step_up.totp", actor_id=staff_id)
    assert [(r["actor_type"], r["target_id"], r["outcome"]) for r in rows] == [("staff", staff_id, "success")]


async def test_the_code_spent_at_sign_in_does_not_step_up(
    make_staff: StaffFactory, client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    headers, staff_id, secret = await signed_in(make_staff, client, Role.ADMINISTRATOR)
    replayed = pyotp.TOTP(secret).at(await last_used_step(pool, staff_id) * 30)
    r = await client.post(f"{STEP_UP}/totp", json={"code": replayed}, headers=headers)
    assert_problem(r, 422, field="code", code="totp_invalid")
    assert (await status(client, headers))["stepped_up"] is False
    refused = await audit_rows(pool, action="step_up.totp", actor_id=staff_id)
    assert [(r["outcome"], r["detail"]["reason"]) for r in refused] == [("refused", "totp_invalid")]


async def test_a_wrong_code_is_refused_and_changes_nothing(
    make_staff: StaffFactory, client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    headers, staff_id, secret = await signed_in(make_staff, client, Role.OUTLET_SUPERVISOR)
    spent = await last_used_step(pool, staff_id)
    r = await client.post(f"{STEP_UP}/totp", json={"code": wrong_code(secret)}, headers=headers)
    assert_problem(r, 422, field="code", code="totp_invalid")
    # Arabic-Indic digits are digits to Python, but no TOTP code (comparing them was a 500)
    r = await client.post(f"{STEP_UP}/totp", json={"code": "١٢٣٤٥٦"}, headers=headers)
    assert_problem(r, 422, field="code", code="totp_invalid")
    assert (await status(client, headers))["stepped_up"] is False
    assert await last_used_step(pool, staff_id) == spent
    # the right code still works afterwards
    r = await client.post(f"{STEP_UP}/totp", json={"code": fresh_code(secret, spent)}, headers=headers)
    assert r.status_code == 200 and r.json()["stepped_up"] is True, r.text


async def test_a_customer_token_is_refused(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    customer_id, _ = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id)
    r = await client.post(f"{STEP_UP}/totp", json={"code": "123456"}, headers=headers)
    assert_problem(r, 403, code="forbidden")
    assert_problem(await client.get(STEP_UP, headers=headers), 403, code="forbidden")
    assert_problem(await client.get(STEP_UP), 401, code="unauthenticated")


def gated_app(runtime: Runtime, clock: Callable[[], datetime]) -> FastAPI:
    """An application with one sensitive staff action behind the step-up gate, on an injected clock."""
    app = FastAPI()
    app.state.runtime = runtime
    install_handlers(app)
    app.dependency_overrides[get_uow] = lambda: UnitOfWork(runtime.pool, clock=clock)

    @app.post("/sensitive")
    async def sensitive(
        me: Annotated[Principal, Depends(require_staff_step_up(Permission.STAFF_MANAGE))],
    ) -> dict[str, str]:
        return {"id": str(me.id)}

    return app


async def test_the_gate_refuses_a_missing_or_stale_step_up_by_the_injected_clock(
    make_staff: StaffFactory, client: httpx.AsyncClient, pool: AsyncConnectionPool, runtime: Runtime
) -> None:
    headers, staff_id, secret = await signed_in(make_staff, client, Role.ADMINISTRATOR)
    shift = timedelta()
    app = gated_app(runtime, lambda: datetime.now(UTC) + shift)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as gated:
        # not stepped up: the customer's refusal, naming the staff route to prove TOTP at
        body = assert_problem(await gated.post("/sensitive", headers=headers), 403, code="step_up_required")
        assert body["accepted_factors"] == ["totp"]
        assert body["max_age_seconds"] == int(STEP_UP_WINDOW.total_seconds())
        assert body["step_up"] == {
            "status": STEP_UP,
            "endpoints": {"totp": [{"method": "POST", "path": f"{STEP_UP}/totp"}]},
        }

        spent = await last_used_step(pool, staff_id)
        r = await client.post(f"{STEP_UP}/totp", json={"code": fresh_code(secret, spent)}, headers=headers)
        assert r.status_code == 200, r.text
        r = await gated.post("/sensitive", headers=headers)
        assert r.status_code == 200 and r.json() == {"id": staff_id}, r.text

        shift = STEP_UP_WINDOW - timedelta(seconds=5)  # just inside the window
        assert (await gated.post("/sensitive", headers=headers)).status_code == 200

        shift = STEP_UP_WINDOW + timedelta(seconds=5)  # past it: stale
        assert_problem(await gated.post("/sensitive", headers=headers), 403, code="step_up_required")

    # the staff member's status answers by the application's clock too
    client_app = client._transport.app  # type: ignore[attr-defined]
    client_app.dependency_overrides[get_uow] = lambda: UnitOfWork(
        pool, clock=lambda: datetime.now(UTC) + shift
    )
    try:
        assert (await status(client, headers))["stepped_up"] is False
    finally:
        client_app.dependency_overrides.pop(get_uow)


async def test_the_gate_refuses_a_role_without_the_permission(
    make_staff: StaffFactory, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers, _, _ = await signed_in(make_staff, client, Role.FINANCE)
    app = gated_app(runtime, lambda: datetime.now(UTC))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as gated:
        assert_problem(await gated.post("/sensitive", headers=headers), 403, code="forbidden")
