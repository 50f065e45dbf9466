"""The service's database role can do what the code does and nothing more (issue 15, item 5).

``pool`` and ``database_url`` connect as that role, as the service does, so every other test also checks
that the role has what the code needs. These tests check what it must not have.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg import sql

from etcwallet.core.privileges import (
    SERVICE_PRIVILEGES,
    PrivilegeError,
    grant_service_privileges,
    session_role,
)

ALL_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


@pytest.fixture
def service(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def refused(conn: psycopg.Connection, statement: str) -> pg_errors.Error:
    """Run ``statement`` in a transaction that is rolled back whatever happens; the error it raised."""
    with pytest.raises(psycopg.Error) as info, conn.transaction():
        conn.execute(statement)
        raise AssertionError(f"the service's role was allowed: {statement}")
    assert isinstance(info.value, pg_errors.Error)
    return info.value


def test_the_service_role_is_an_ordinary_role(service: psycopg.Connection, owner_url: str) -> None:
    row = service.execute(
        "SELECT session_user, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls "
        "FROM pg_roles r WHERE r.rolname = session_user"
    ).fetchone()
    assert row is not None
    role, *powers = row
    assert role != session_role(owner_url)
    assert powers == [False] * 5
    owned = service.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND pg_has_role(session_user, c.relowner, 'USAGE')"
    ).fetchone()
    assert owned == (0,)


@pytest.mark.parametrize("table", ["ledger_transfers", "ledger_refusals", "audit_log"])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET {column} = {column}",
        "DELETE FROM {table}",
        "TRUNCATE {table}",
        "ALTER TABLE {table} DISABLE TRIGGER USER",
        "ALTER TABLE {table} DISABLE TRIGGER ALL",
        "DROP TABLE {table}",
    ],
)
def test_the_service_role_cannot_rewrite_the_records(
    service: psycopg.Connection, table: str, statement: str
) -> None:
    column = {"ledger_transfers": "amount", "ledger_refusals": "id", "audit_log": "outcome"}[table]
    error = refused(service, statement.format(table=table, column=column))
    assert isinstance(error, pg_errors.InsufficientPrivilege), error


@pytest.mark.parametrize(
    "statement",
    [
        "SET session_replication_role = replica",
        "SET LOCAL session_replication_role = replica",
        "SELECT set_config('session_replication_role', 'replica', false)",
        "SET log_min_error_statement = error",  # the role's default keeps statements out of the log
        "CREATE TABLE service_made (id int)",
        "CREATE FUNCTION service_made() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "SELECT setval('ledger_transfers_seq_seq', 1)",
        "ALTER ROLE CURRENT_USER SET session_replication_role = replica",
        "CREATE ROLE service_made",
    ],
)
def test_the_service_role_cannot_lift_the_guards(service: psycopg.Connection, statement: str) -> None:
    error = refused(service, statement)
    assert isinstance(error, pg_errors.InsufficientPrivilege), error


def test_failed_statements_stay_out_of_the_server_log(service: psycopg.Connection) -> None:
    """An idempotent retry's duplicate key must not put the batch's literal SQL into the log."""
    assert service.execute("SHOW log_min_error_statement").fetchone() == ("panic",)


def test_the_privileges_are_exactly_the_map(service: psycopg.Connection) -> None:
    held = {
        (str(table), str(privilege))
        for table, privilege in service.execute(
            "SELECT c.relname, p.privilege FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "CROSS JOIN unnest(%s::text[]) AS p(privilege) "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "AND has_table_privilege(session_user, c.oid, p.privilege)",
            (list(ALL_PRIVILEGES),),
        ).fetchall()
    }
    assert held == {(table, p) for table, privileges in SERVICE_PRIVILEGES.items() for p in privileges}
    for table in ("ledger_transfers", "ledger_refusals", "audit_log", "sms_outbox"):
        assert SERVICE_PRIVILEGES[table] == ("SELECT", "INSERT")


def test_granting_takes_back_what_is_not_in_the_map(owner_url: str, database_url: str) -> None:
    role = session_role(database_url)
    with psycopg.connect(owner_url, autocommit=True) as owner:
        owner.execute(sql.SQL("GRANT UPDATE, DELETE ON audit_log TO {}").format(sql.Identifier(role)))
        try:
            grant_service_privileges(owner_url, role)
        finally:
            held = owner.execute(
                "SELECT has_table_privilege(%s, 'audit_log', 'UPDATE') "
                "OR has_table_privilege(%s, 'audit_log', 'DELETE')",
                (role, role),
            ).fetchone()
            owner.execute(sql.SQL("REVOKE UPDATE, DELETE ON audit_log FROM {}").format(sql.Identifier(role)))
    assert held == (False,)


def test_a_table_missing_from_the_map_stops_the_grants(owner_url: str, database_url: str) -> None:
    """A migration that adds a table must say what the service may do with it."""
    table = f"unmapped_{uuid4().hex[:8]}"
    with psycopg.connect(owner_url, autocommit=True) as owner:
        owner.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(table)))
        try:
            with pytest.raises(PrivilegeError, match=table):
                grant_service_privileges(owner_url, session_role(database_url))
        finally:
            owner.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def test_granting_refuses_a_superuser_as_the_service(owner_url: str) -> None:
    with pytest.raises(PrivilegeError, match="ordinary role"):
        grant_service_privileges(owner_url, session_role(owner_url))
