"""Test fixtures: one real PostgreSQL server per run and a fresh database on it.

With ``ETCW_DATABASE_URL`` set, the tests create their own database on that server; otherwise they start
the embedded server in a temporary directory. Tests isolate themselves by creating their own accounts,
customers and staff (random ids and names), so no cleanup between tests is needed and the ledger's global
invariants keep holding. The code under test connects as the service's restricted role (``database_url``,
``pool``), as the service does; ``owner_url`` and ``owner_pool`` are the schema owner's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pyotp
import pytest
from fastapi import FastAPI
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

os.environ["ETCW_ENV"] = "test"  # cheap argon2 parameters; read before any settings are built

from etcwallet.app import Runtime, create_app
from etcwallet.core.config import Settings, get_settings
from etcwallet.core.crypto import Keys, load_keys
from etcwallet.core.db import (
    DatabaseServer,
    create_database,
    migrate,
    open_pool,
    prepare_database,
    start_embedded,
    with_database,
    with_user,
)
from etcwallet.core.privileges import SERVICE_ROLE, ensure_service_role
from etcwallet.identity.authz import OUTLET_ROLES, Role
from etcwallet.identity.staff import service as staff
from etcwallet.issuance.chip.keys import key_service_from
from etcwallet.issuance.context import issuance_context_from
from etcwallet.ledger.service import Ledger

get_settings.cache_clear()
STAFF_PASSWORD = "Staff-pass-2026!"


@pytest.fixture(scope="session")
def tmp_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="etcw-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def server_url(tmp_root: Path) -> Iterator[str]:
    """A superuser's URL on the run's server: the embedded one, or the one in ``ETCW_DATABASE_URL``."""
    external = os.environ.get("ETCW_DATABASE_URL")
    if external:
        yield external
        return
    server = start_embedded(tmp_root / "pg")
    yield server.owner_url
    server.stop()


@pytest.fixture(scope="session")
def owner_url(server_url: str) -> str:
    """The run's fresh database as its owner (migrations; tests that must act as the owner)."""
    return create_database(server_url, f"etcw_test_{os.getpid()}")


@pytest.fixture(scope="session")
def database_url(owner_url: str) -> Iterator[str]:
    """The run's database as the service connects to it: migrated by the owner, then signed in as the
    service's restricted role, so a privilege the code needs and the map lacks fails a test.

    On the embedded server that is the service's own role; on a shared server a role of this run's own,
    with a password (dropped afterwards), so that concurrent runs do not meet.
    """
    shared = bool(os.environ.get("ETCW_DATABASE_URL"))
    role = f"etcw_test_app_{os.getpid()}" if shared else SERVICE_ROLE
    password = secrets.token_urlsafe(18) if shared else None
    ensure_service_role(owner_url, role, password)
    server = DatabaseServer(owner_url=owner_url, service_url=with_user(owner_url, role, password))
    prepare_database(server)
    yield server.service_url
    if shared:
        with psycopg.connect(owner_url, autocommit=True) as conn, contextlib.suppress(psycopg.Error):
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    p = await open_pool(database_url, 20)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def owner_pool(owner_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """Connections as the schema's owner: for tests of what the database itself refuses even its owner."""
    p = await open_pool(owner_url, 2)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def ledger(pool: AsyncConnectionPool) -> AsyncIterator[Ledger]:
    service = Ledger(pool, writers=2)
    await service.start()
    await service.ensure_chart()
    yield service
    await service.stop()


@pytest.fixture(scope="session")
def settings(tmp_root: Path) -> Settings:
    return Settings(env="test", data_dir=tmp_root / "data", dev_outbox=True)  # tests read codes from it


@pytest.fixture(scope="session")
def keys(settings: Settings) -> Keys:
    return load_keys(None, settings.data_dir, production=False)


@pytest.fixture(scope="session")
def runtime(pool: AsyncConnectionPool, ledger: Ledger, keys: Keys, settings: Settings) -> Runtime:
    chip_keys = key_service_from(settings)
    issuance = issuance_context_from(settings, chip_keys)  # emulated chips in the run's data directory
    return Runtime(pool=pool, ledger=ledger, keys=keys, chip_keys=chip_keys, issuance=issuance)


@pytest.fixture(scope="session")
def app(settings: Settings, runtime: Runtime) -> FastAPI:
    return create_app(settings, runtime=runtime)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the application (no network), with a distinct client IP per test."""
    transport = httpx.ASGITransport(
        app=app, client=(f"10.{os.getpid() % 250}.{uuid4().int % 250}.{uuid4().int % 250}", 50000)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


StaffFactory = Callable[..., Awaitable[dict[str, str]]]


@pytest.fixture
async def outlet(pool: AsyncConnectionPool) -> staff.Outlet:
    """A fresh self-operated outlet."""
    async with pool.connection() as conn:
        return await staff.create_outlet(
            conn, code=f"T-{uuid4().hex[:10]}", name="测试网点", kind="self_operated", bank=None
        )


@pytest.fixture
async def bank_outlet(pool: AsyncConnectionPool) -> staff.Outlet:
    """A fresh bank outlet (兰州银行)."""
    async with pool.connection() as conn:
        return await staff.create_outlet(
            conn, code=f"B-{uuid4().hex[:10]}", name="测试银行网点", kind="bank", bank="lanzhou_bank"
        )


async def bootstrap_enrollment_code(pool: AsyncConnectionPool, username: str) -> str:
    """A TOTP enrollment code issued through the service layer (the bootstrap path, as the command line)."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute("SELECT id FROM staff WHERE username = %s", (username,))
        row = await cur.fetchone()
        assert row is not None, f"no staff member {username}"
        return (await staff.issue_enrollment_code(conn, staff_id=row[0], issued_by=None)).code


def app_pool(client: httpx.AsyncClient) -> AsyncConnectionPool:
    """The pool of the application a test client talks to (its ASGI transport's app)."""
    app = client._transport.app  # type: ignore[attr-defined]
    pool: AsyncConnectionPool = app.state.runtime.pool
    return pool


async def sign_in_staff(
    client: httpx.AsyncClient,
    username: str,
    password: str = STAFF_PASSWORD,
    *,
    enrollment_code: str | None = None,
    step_up: bool = False,
) -> dict[str, str]:
    """Sign a staff member in over HTTP; returns Authorization headers.

    At first sign-in the member enrolls TOTP with a one-time enrollment code: the one given, or else one
    issued through the service layer on the application's database (the bootstrap path). With ``step_up``
    the new session also proves a fresh TOTP (a later time step than the sign-in's), as a role change asks.
    """
    if username not in STAFF_SECRETS and enrollment_code is None:
        enrollment_code = await bootstrap_enrollment_code(app_pool(client), username)
    login = {"username": username, "password": password}
    if username not in STAFF_SECRETS:
        login["enrollment_code"] = enrollment_code or ""
    step = await client.post("/api/v1/staff/auth/login", json=login)
    assert step.status_code == 200, step.text
    body = step.json()
    secret = body["totp_enrollment"]["secret"] if body["totp_enrollment"] else STAFF_SECRETS[username]
    STAFF_SECRETS[username] = secret
    signed_step = int(time.time()) // 30
    done = await client.post(
        "/api/v1/staff/auth/totp",
        json={"ticket": body["ticket"], "code": pyotp.TOTP(secret).at(signed_step * 30)},
    )
    assert done.status_code == 200, done.text
    headers = {"Authorization": f"Bearer {done.json()['access_token']}"}
    if step_up:
        later = max(signed_step + 1, int(time.time()) // 30)
        proved = await client.post(
            "/api/v1/staff/me/step-up/totp", json={"code": pyotp.TOTP(secret).at(later * 30)}, headers=headers
        )
        assert proved.status_code == 200, proved.text
    return headers


STAFF_SECRETS: dict[str, str] = {}


@pytest.fixture
async def make_staff(pool: AsyncConnectionPool, client: httpx.AsyncClient) -> StaffFactory:
    """Create a staff member with a role (and an outlet for outlet roles) and sign them in: their headers.

    The member is made through the service layer (the bootstrap path: active at once in any role, with an
    enrollment code issued by the system), not by an administrator, whose privileged grants need approval.
    """

    async def factory(role: Role, outlet_id: UUID | None = None, *, step_up: bool = False) -> dict[str, str]:
        if role in OUTLET_ROLES and outlet_id is None:
            async with pool.connection() as conn:
                kind, bank = ("bank", "icbc") if role is Role.BANK_OPERATOR else ("self_operated", None)
                made = await staff.create_outlet(
                    conn, code=f"F-{uuid4().hex[:10]}", name="网点", kind=kind, bank=bank
                )
                outlet_id = made.id
        username = f"{role.value[:8]}.{uuid4().hex[:8]}"
        async with pool.connection() as conn:
            await staff.create_staff(
                conn,
                username=username,
                display_name=username,
                password=STAFF_PASSWORD,
                role=role,
                outlet_id=outlet_id,
            )
        code = await bootstrap_enrollment_code(pool, username)
        return await sign_in_staff(client, username, enrollment_code=code, step_up=step_up)

    return factory


@pytest.fixture
async def finance_headers(make_staff: StaffFactory) -> dict[str, str]:
    return await make_staff(Role.FINANCE)


@pytest.fixture
def fresh_database(owner_url: str) -> Iterator[Callable[[], str]]:
    """Makes migrated databases of their own on the test server, as its owner (dropped afterwards): for
    tests that tamper with a database or decide who its first staff are."""
    server = with_database(owner_url, "postgres")
    made: list[str] = []

    def make() -> str:
        name = f"etcw_fresh_{os.getpid()}_{uuid4().hex[:10]}"
        made.append(name)
        url = create_database(server, name)
        migrate(url)
        return url

    yield make
    with psycopg.connect(server, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cli_database(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Any]:
    """A fresh database and data directory the ``etcwallet`` command is pointed at (settings re-read),
    and a runner for it: ``run(*args, input=None)`` answers the result, with ``.flat`` its output on one
    line (Rich wraps long lines); ``run.url`` and ``run.data_dir`` say where it pointed."""
    from typer.testing import CliRunner

    from etcwallet import cli

    url = fresh_database()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setenv("ETCW_DATABASE_URL", url)
    monkeypatch.setenv("ETCW_DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.setenv("ETCW_ENV", "test")
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Any:
        result = runner.invoke(cli.app, list(args), input=input, env={"COLUMNS": "250"})
        # The command pointed the log handler at the runner's stream, closed now: point it back.
        root.handlers[:] = handlers
        root.setLevel(level)
        result.flat = " ".join(result.output.split())
        return result

    run.url = url  # type: ignore[attr-defined]
    run.data_dir = tmp_path / "cli-data"  # type: ignore[attr-defined]
    yield run
    monkeypatch.undo()
    get_settings.cache_clear()
    root.handlers[:] = handlers
    root.setLevel(level)
