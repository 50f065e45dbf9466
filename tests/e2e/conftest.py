"""Fixtures for the HTTP tests: the application over the session's real PostgreSQL, and signed-in staff.

The application is built with the session's ``pool`` and ``ledger`` as its runtime, so its lifespan need
not run. Ledger routes admit staff whose role grants ``ledger.read`` / ``ledger.write``; the fixtures open
staff members and sessions directly in the database (the sign-in flow itself is the identity tests' job)
and hand out their bearer tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime, create_app, keys_from
from etcwallet.core.config import Settings
from etcwallet.core.deps import Client
from etcwallet.identity.authz import Role
from etcwallet.identity.sessions import service as sessions
from etcwallet.issuance.chip.keys import key_service_from
from etcwallet.issuance.context import issuance_context_from
from etcwallet.ledger.service import Ledger


async def staff_token(pool: AsyncConnectionPool, role: Role, outlet_id: UUID | None = None) -> str:
    """A live session's access token for a new staff member in ``role`` (placed at ``outlet_id``, which
    outlet roles need)."""
    staff_id = uuid4()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO staff (id, username, display_name, password_hash, role, outlet_id) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (
                staff_id,
                f"e2e-{role.value}-{staff_id.hex[:12]}",
                f"e2e {role.value}",
                "!unusable",
                role.value,
                outlet_id,
            ),
        )
        issued = await sessions.issue(
            conn, principal_type="staff", principal_id=staff_id, client=Client("127.0.0.1", "e2e")
        )
    return issued.access_token


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir: Path = tmp_path_factory.mktemp("etcw-e2e")
    return Settings(env="test", data_dir=data_dir, dev_outbox=True)  # tests read codes from it


@pytest.fixture(scope="session")
def app(settings: Settings, pool: AsyncConnectionPool, ledger: Ledger) -> FastAPI:
    chip_keys = key_service_from(settings)
    runtime = Runtime(
        pool=pool,
        ledger=ledger,
        keys=keys_from(settings),
        chip_keys=chip_keys,
        issuance=issuance_context_from(settings, chip_keys),
    )
    return create_app(settings, runtime=runtime)


@pytest.fixture(scope="session")
def make_token(pool: AsyncConnectionPool) -> Callable[[Role], Awaitable[str]]:
    """Open a new staff member in a role and a session for them; answers the bearer token."""

    async def make(role: Role) -> str:
        return await staff_token(pool, role)

    return make


@pytest.fixture(scope="session")
async def finance_token(pool: AsyncConnectionPool) -> str:
    return await staff_token(pool, Role.FINANCE)


@pytest.fixture(scope="session")
async def client(app: FastAPI, finance_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as finance staff (ledger read and write)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {finance_token}"},
    ) as c:
        yield c


@pytest.fixture(scope="session")
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no credentials."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c
