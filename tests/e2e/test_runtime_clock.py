"""One clock over HTTP: an application built on a fake clock ends staff sessions and lifts customers' locks
when that clock moves, without sleeping (issue 17: time comes from the unit of work's clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from uuid import uuid4

import httpx
import pyotp
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime, create_app
from etcwallet.core.clock import system_clock
from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.identity import jobs as identity_jobs
from etcwallet.identity import lockout
from etcwallet.identity.authz import Role
from etcwallet.identity.customers.api import REFRESH_PER_IP
from etcwallet.identity.factors.types import STEP_UP_WINDOW
from etcwallet.identity.sessions.types import IDLE
from etcwallet.identity.staff import service as staff
from etcwallet.ledger.service import Ledger
from etcwallet.platform.jobs import JobContext
from tests.conftest import STAFF_PASSWORD, bootstrap_enrollment_code
from tests.identity.customer_helpers import (
    BASE,
    assert_problem,
    login,
    new_resident_id,
    register,
    sign_in,
    step_up,
)

REFRESH = f"{BASE}/auth/refresh"


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock(system_clock())


@pytest.fixture
async def timed_client(
    pool: AsyncConnectionPool, keys: Keys, settings: Settings, clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an application whose runtime (ledger, unit of work) runs on ``clock``."""
    ledger = Ledger(pool, clock=clock)
    await ledger.start()
    app = create_app(settings, runtime=Runtime(pool=pool, ledger=ledger, keys=keys))
    transport = httpx.ASGITransport(app=app, client=(f"10.77.{uuid4().int % 250}.{uuid4().int % 250}", 50000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        await ledger.stop()


async def test_a_staff_session_ends_when_the_runtime_clock_passes_its_idle_end(
    pool: AsyncConnectionPool, timed_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Sign-in, TOTP and the session's idle end all read the runtime's clock, here two hours behind."""
    username = f"clock.{uuid4().hex[:8]}"
    async with pool.connection() as conn:
        await staff.create_staff(
            conn,
            username=username,
            display_name=username,
            password=STAFF_PASSWORD,
            role=Role.FINANCE,
            outlet_id=None,
        )
    code = await bootstrap_enrollment_code(pool, username)
    clock.advance(-timedelta(hours=2))
    credentials = {"username": username, "password": STAFF_PASSWORD, "enrollment_code": code}
    step = await timed_client.post("/api/v1/staff/auth/login", json=credentials)
    assert step.status_code == 200, step.text
    secret = step.json()["totp_enrollment"]["secret"]
    done = await timed_client.post(
        "/api/v1/staff/auth/totp",
        json={"ticket": step.json()["ticket"], "code": pyotp.TOTP(secret).at(clock())},
    )
    assert done.status_code == 200, done.text
    assert datetime.fromisoformat(done.json()["expires_at"]) == clock() + IDLE
    headers = {"Authorization": f"Bearer {done.json()['access_token']}"}
    assert (await timed_client.get("/api/v1/staff/me", headers=headers)).status_code == 200
    clock.advance(IDLE + timedelta(seconds=1))  # idle since sign-in, by the runtime's clock
    assert (await timed_client.get("/api/v1/staff/me", headers=headers)).status_code == 401


async def test_a_customer_lock_lifts_when_the_runtime_clock_passes_its_end(
    timed_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    me = await register(timed_client)
    for _ in range(lockout.MAX_FAILURES - 1):
        assert_problem(await login(timed_client, me.phone, "Wrong-pass-123"), 401, "invalid_credentials")
    body = assert_problem(await login(timed_client, me.phone, "Wrong-pass-123"), 423, "account_locked")
    # The lock's end is the runtime clock's time plus the base lock, to the second.
    assert datetime.fromisoformat(body["locked_until"]) == (clock() + lockout.BASE_LOCK).replace(
        microsecond=0
    )
    clock.advance(lockout.BASE_LOCK - timedelta(seconds=5))
    assert_problem(await login(timed_client, me.phone), 423, "account_locked")
    clock.advance(timedelta(seconds=10))
    signed = await login(timed_client, me.phone)
    assert signed.status_code == 200, signed.text


async def test_the_housekeeping_job_sweeps_by_the_clock_it_is_given(
    pool: AsyncConnectionPool, clock: FakeClock
) -> None:
    """A ticket still live by the wall clock is swept once the runtime's clock is two days on."""
    ticket = uuid4().bytes + uuid4().bytes
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO login_tickets (ticket_hash, principal_type, principal_id, expires_at) "
            "VALUES (%s, 'customer', %s, %s)",
            (ticket, uuid4(), clock() + timedelta(minutes=5)),
        )
    clock.advance(timedelta(days=2))
    (job,) = [j for j in identity_jobs.jobs(60.0, clock=clock) if j.name == identity_jobs.HOUSEKEEPING]
    await job.handler(JobContext(pool=pool, job_id=0, name=job.name, payload={}, attempt=1))
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT 1 FROM login_tickets WHERE ticket_hash = %s", (ticket,))
        assert await cur.fetchone() is None


async def test_a_customer_rate_limit_window_follows_the_runtime_clock(
    timed_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Route rate limits count in windows of the runtime's clock: past the window, the next attempt is
    counted afresh, without sleeping."""
    refresh = {"refresh_token": "x" * 43}
    for _ in range(REFRESH_PER_IP.count):
        assert_problem(await timed_client.post(REFRESH, json=refresh), 401, "unauthenticated")
    assert_problem(await timed_client.post(REFRESH, json=refresh), 429, "rate_limited")
    clock.advance(REFRESH_PER_IP.window)
    assert_problem(await timed_client.post(REFRESH, json=refresh), 401, "unauthenticated")


async def test_a_customer_step_up_goes_stale_by_the_runtime_clock(
    timed_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The real-name profile asks for a fresh step-up, judged by the runtime's clock like the step-up's own
    time (it was compared with the wall clock)."""
    me = await register(timed_client)
    await step_up(timed_client, me)
    clock.advance(STEP_UP_WINDOW + timedelta(seconds=1))
    profile = {"name": "张三", "id_type": "resident_id", "id_number": new_resident_id()}
    r = await timed_client.put("/api/v1/customers/me/profile", json=profile, headers=me.headers)
    assert_problem(r, 403, "step_up_required")
    await step_up(timed_client, me)
    r = await timed_client.put("/api/v1/customers/me/profile", json=profile, headers=me.headers)
    assert r.status_code == 200, r.text


async def test_the_device_list_shows_the_sessions_live_by_the_runtime_clock(
    timed_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    me = await register(timed_client)
    other = await sign_in(timed_client, me)
    clock.advance(IDLE - timedelta(minutes=1))
    listed = await timed_client.get(f"{BASE}/me/sessions", headers=me.headers)  # touches this session
    assert listed.status_code == 200 and len(listed.json()) == 2, listed.text
    clock.advance(timedelta(minutes=2))  # the other one has been idle too long by now
    listed = await timed_client.get(f"{BASE}/me/sessions", headers=me.headers)
    assert listed.status_code == 200, listed.text
    assert [x["current"] for x in listed.json()] == [True]
    assert (await timed_client.get(f"{BASE}/me", headers=other.headers)).status_code == 401
