"""Fixtures of the platform's tests: a unit of work on the service's pool, and the toy domain's schema."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.privileges import session_role
from etcwallet.platform.unit import UnitOfWork
from tests.platform import toy_orders


@pytest.fixture(scope="session")
def toy_schema(owner_url: str, database_url: str) -> str:
    """The toy domain's table, in a schema of its own (the service's privilege map covers ``public``)."""
    role = sql.Identifier(session_role(database_url))
    schema = sql.Identifier(toy_orders.SCHEMA)
    with psycopg.connect(owner_url, autocommit=True) as owner:
        owner.execute(toy_orders.DDL)
        owner.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, role))
        owner.execute(
            sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {} TO {}").format(schema, role)
        )
    return toy_orders.SCHEMA


@pytest.fixture
def uow(pool: AsyncConnectionPool, toy_schema: str) -> UnitOfWork:
    return UnitOfWork(pool)
