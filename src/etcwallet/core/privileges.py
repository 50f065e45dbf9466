"""Least privilege: the service's database role may do what the code does, and nothing else.

Migrations run as the schema's owner (the embedded server's superuser, or ``ETCW_DATABASE_OWNER_URL``);
the service's pool connects as a role that owns nothing, is not a superuser, and holds only the table
privileges of :data:`SERVICE_PRIVILEGES`. So the service's own connections cannot switch off the
append-only triggers of ``audit_log``, ``ledger_transfers`` and ``ledger_refusals``
(``session_replication_role`` is a superuser's setting, ``ALTER TABLE … DISABLE TRIGGER`` an owner's
right), and they hold neither UPDATE nor DELETE nor TRUNCATE on those tables at all.

:func:`grant_service_privileges` runs after every migration and makes the role's privileges *exactly*
the map: it refuses to go on while a table exists that the map does not name (a new migration must decide
what the service may do with its table), and takes back anything beyond the map. See
``docs/architecture.md`` for why a map rather than GRANTs in each migration.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

SERVICE_ROLE = "etcwallet_app"
"""The login role the service uses on the embedded server (made and kept by :func:`ensure_service_role`)."""

_READ_WRITE = ("SELECT", "INSERT", "UPDATE")
_READ_WRITE_DELETE = ("SELECT", "INSERT", "UPDATE", "DELETE")
_APPEND_ONLY = ("SELECT", "INSERT")

SERVICE_PRIVILEGES: dict[str, tuple[str, ...]] = {
    # ledger: transfers and refusals are immutable records; accounts change only their totals and frozen
    # flag (and are never deleted); holds change state when posted, voided or expired.
    "ledger_accounts": _READ_WRITE,
    "ledger_transfers": _APPEND_ONLY,
    "ledger_refusals": _APPEND_ONLY,
    "ledger_pending": _READ_WRITE,
    "ledger_owners": _READ_WRITE,  # an owner's frozen state, upserted by a freeze and by an opening
    # identity
    "audit_log": _APPEND_ONLY,
    "sms_outbox": _APPEND_ONLY,
    "outlets": _APPEND_ONLY,
    "customers": _READ_WRITE,  # lockout counters, password, freeze, closure, anonymization
    # a closed customer's real-name data and payment password are deleted once the retention has passed
    "customer_profiles": _READ_WRITE_DELETE,
    "payment_passwords": _READ_WRITE_DELETE,
    "staff": _READ_WRITE,  # role, status, lockout counters
    "sessions": _READ_WRITE,  # rotation, revocation, step-up; kept as device history, never deleted
    "session_refresh_history": ("SELECT", "INSERT", "DELETE"),  # housekeeping forgets ended sessions'
    "staff_changes": _READ_WRITE,  # pending role changes, decided once by a second administrator
    "staff_enrollment_codes": _READ_WRITE,  # a code is marked used, or replaced by a newer one
    "totp_factors": _READ_WRITE_DELETE,  # a customer removes their authenticator
    "recovery_codes": _READ_WRITE_DELETE,  # replaced when new ones are issued
    "passkeys": _READ_WRITE_DELETE,  # a customer removes a passkey
    "webauthn_challenges": _READ_WRITE_DELETE,  # housekeeping deletes spent ones
    "login_tickets": _READ_WRITE_DELETE,  # housekeeping
    "sms_codes": _READ_WRITE_DELETE,  # housekeeping
    "rate_limits": _READ_WRITE_DELETE,  # housekeeping
    "unknown_login_failures": _READ_WRITE_DELETE,  # housekeeping
    # platform
    "idempotency_keys": _READ_WRITE_DELETE,  # claimed, answered, released after a failure, purged
    "jobs": _READ_WRITE_DELETE,  # claimed, leased and finished by runners; old finished one-offs pruned
    # machine clients (platform/clients): revoked and heartbeats recorded, never deleted (the audit log
    # names them); a signed request's nonce is forgotten once its timestamp leaves the replay window
    "machine_clients": _READ_WRITE,
    "machine_nonces": ("SELECT", "INSERT", "DELETE"),
    # events: the outbox is written once and pruned once every consumer has passed an event; offsets and
    # parked events change state
    "event_outbox": ("SELECT", "INSERT", "DELETE"),
    "event_consumers": _READ_WRITE,
    "event_parked": _READ_WRITE,
    # payments: a bank card is bound (insert), unbound or made the default (update); kept as history
    "bank_cards": _READ_WRITE,
    # issuance: chips change status through their life and applications and issuances move on; a
    # chip's history is append-only. Nothing of issuance is ever deleted.
    "issuance_stock_batches": _APPEND_ONLY,
    "issuance_applications": _READ_WRITE,
    "issuance_chips": _READ_WRITE,
    "issuance_chip_history": _APPEND_ONLY,
    "issuance_card_issuances": _READ_WRITE,
    "issuance_tag_issuances": _READ_WRITE,
    # issuance: detection (card activations persisted before the card is written)
    "issuance_card_activations": _READ_WRITE,
}
"""Every table of the schema and what the service may do to its rows. Nothing else is granted."""

OWNER_ONLY_TABLES = frozenset({"alembic_version"})
"""Tables the service never reads: the migration tool's own."""

_GRANT_LOCK = 0x6574_6377_6772_6E74  # "etcwgrnt": one granting process at a time (uvicorn workers)


class PrivilegeError(RuntimeError):
    """The database and the privilege map disagree, or the service's role is more than a service role."""


def ensure_service_role(owner_url: str, role: str = SERVICE_ROLE, password: str | None = None) -> None:
    """Create the service's login role if it is missing and keep it unprivileged (embedded server, tests).

    Needs a superuser (or CREATEROLE). Also sets the role's ``log_min_error_statement`` to ``panic``:
    a failed statement (an idempotent retry's duplicate key) would otherwise be written to the server's
    log with its literal SQL, transfer metadata included; the setting is a superuser's, so the role's
    default is where it can be set for the service's connections.
    """
    ident = sql.Identifier(role)
    attributes = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT")
    with psycopg.connect(owner_url, autocommit=True) as conn:
        current = conn.execute(
            "SELECT rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls "
            "OR NOT rolcanlogin FROM pg_roles WHERE rolname = %s",
            (role,),
        ).fetchone()
        if current is None:
            try:
                conn.execute(sql.SQL("CREATE ROLE {} ").format(ident) + attributes)
            except psycopg.errors.DuplicateObject:
                pass  # made by a process starting at the same moment
            except psycopg.errors.UniqueViolation:
                pass
        if current is None or current[0]:
            conn.execute(sql.SQL("ALTER ROLE {} ").format(ident) + attributes)
        if password is not None:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(password)))
        set_quiet_errors(conn, role)


def set_quiet_errors(conn: psycopg.Connection[Any], role: str) -> bool:
    """``ALTER ROLE role SET log_min_error_statement = 'panic'`` unless already so; False if not allowed."""
    setting = conn.execute(
        "SELECT 1 FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
        "WHERE r.rolname = %s AND s.setdatabase = 0 AND 'log_min_error_statement=panic' = ANY(s.setconfig)",
        (role,),
    ).fetchone()
    if setting is not None:
        return True
    try:
        conn.execute(
            sql.SQL("ALTER ROLE {} SET log_min_error_statement = 'panic'").format(sql.Identifier(role))
        )
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def session_role(url: str) -> str:
    """The role a URL signs in as (libpq may take it from the URL, PGUSER or the system user)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT session_user").fetchone()
    assert row is not None
    return str(row[0])


def grant_service_privileges(owner_url: str, role: str) -> None:
    """Make ``role``'s privileges on the schema exactly :data:`SERVICE_PRIVILEGES`; run as the owner.

    Refuses (:class:`PrivilegeError`) when a table is missing from the map or the map names a table that
    is not there, and when ``role`` is a superuser, can bypass row security, or owns a table: the
    separation would be a fiction.
    """
    ident = sql.Identifier(role)
    with psycopg.connect(owner_url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_GRANT_LOCK,))
        _check_role(conn, role)
        tables = {
            str(name)
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            ).fetchall()
        } - OWNER_ONLY_TABLES
        unmapped, missing = (
            sorted(tables - SERVICE_PRIVILEGES.keys()),
            sorted(SERVICE_PRIVILEGES.keys() - tables),
        )
        if unmapped or missing:
            raise PrivilegeError(
                "the service's privilege map (etcwallet.core.privileges.SERVICE_PRIVILEGES) does not match "
                f"the schema: tables not in the map {unmapped}, in the map but not in the schema {missing}"
            )
        schema = _schema(conn)
        conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(schema, ident))
        conn.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(schema, ident))
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM {}").format(schema, ident))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, ident))
        for table, privileges in sorted(SERVICE_PRIVILEGES.items()):
            conn.execute(
                sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                    sql.SQL(", ").join(sql.SQL(p) for p in privileges), sql.Identifier(table), ident
                )
            )
        creates = conn.execute(
            "SELECT has_schema_privilege(%s, current_schema(), 'CREATE')", (role,)
        ).fetchone()
        if creates is not None and creates[0]:
            log.warning(
                "the service's role may create objects in the schema (through PUBLIC or another role); "
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                extra={"role": role},
            )


def _schema(conn: psycopg.Connection[Any]) -> sql.Identifier:
    row = conn.execute("SELECT current_schema()").fetchone()
    assert row is not None
    return sql.Identifier(str(row[0]))


def _check_role(conn: psycopg.Connection[Any], role: str) -> None:
    row = conn.execute(
        "SELECT r.rolsuper, r.rolbypassrls, "
        "EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "        WHERE n.nspname = current_schema() AND pg_has_role(%s, c.relowner, 'USAGE')), "
        "pg_has_role(%s, current_user, 'USAGE') "
        "FROM pg_roles r WHERE r.rolname = %s",
        (role, role, role),
    ).fetchone()
    if row is None:
        raise PrivilegeError(f"the service's role {role!r} does not exist")
    superuser, bypass_rls, owns_tables, acts_as_owner = row
    if superuser or bypass_rls or owns_tables or acts_as_owner:
        raise PrivilegeError(
            f"the service's role {role!r} must be an ordinary role: superuser={superuser}, "
            f"bypassrls={bypass_rls}, owns or may act as the owner of the schema's tables="
            f"{owns_tables or acts_as_owner}; connect the service as a separate role "
            "(ETCW_DATABASE_URL) and migrations as the owner (ETCW_DATABASE_OWNER_URL)"
        )
