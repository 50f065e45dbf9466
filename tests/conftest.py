"""Test fixtures: one real PostgreSQL server per run and a fresh database on it.

With ``ETCW_DATABASE_URL`` set, the tests create their own database on that server; otherwise they start
the embedded server in a temporary directory. Tests isolate themselves by opening their own accounts
(random ids), so no cleanup between tests is needed and the ledger's global invariants keep holding.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.db import create_database, migrate, open_pool, start_embedded
from etcwallet.ledger.service import Ledger


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    server_url = os.environ.get("ETCW_DATABASE_URL")
    server = None
    tmp: Path | None = None
    if not server_url:
        tmp = Path(tempfile.mkdtemp(prefix="etcw-test-"))
        server = start_embedded(tmp / "pg")
        server_url = server.url
    url = create_database(server_url, f"etcw_test_{os.getpid()}")
    migrate(url)
    yield url
    if server is not None:
        server.stop()
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    p = await open_pool(database_url, 20)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def ledger(pool: AsyncConnectionPool) -> AsyncIterator[Ledger]:
    service = Ledger(pool, writers=2)
    await service.start()
    await service.ensure_chart()
    yield service
    await service.stop()
