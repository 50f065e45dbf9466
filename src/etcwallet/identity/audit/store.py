"""The only module of the audit reader that names the audit log's table: the search, newest first.

Writing stays with the platform (``platform/audit.py``). A search builds its WHERE from the filters that
were given only, so each filter meets its index (migrations 0002 and 0016) and pages stop early. Paging
is by ``seq``, newest first: an entry's ``seq`` is taken under the chain's lock, which its transaction
holds to its commit, so entries become visible in ``seq`` order and a page after a cursor never misses
one committed later (those are newer than the first page) nor shows one twice.
"""

from __future__ import annotations

from typing import Any, LiteralString
from uuid import UUID

from psycopg import AsyncConnection, sql

from etcwallet.identity.audit.types import AuditEntry, AuditFilter

_COLUMNS = (
    "seq, at, actor_type, actor_id, action, outcome, target_type, target_id, detail->>'outlet_id', ip, "
    "user_agent, detail"
)


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern for values starting with ``prefix`` (its own ``%``, ``_`` and ``\\`` escaped)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _conditions(
    f: AuditFilter, outlet_id: UUID | None, before_seq: int | None
) -> tuple[list[sql.Composable], list[Any]]:
    clauses: list[sql.Composable] = []
    params: list[Any] = []

    def add(clause: LiteralString, *values: Any) -> None:
        clauses.append(sql.SQL(clause))
        params.extend(values)

    if f.actor_type is not None:
        add("actor_type = %s", f.actor_type)
    if f.actor_id is not None:
        add("actor_id = %s", f.actor_id)
    if f.target_type is not None:
        add("target_type = %s", f.target_type)
    if f.target_id is not None:
        add("target_id = %s", f.target_id)
    prefix = f.action_prefix
    if prefix is not None:
        add("action LIKE %s", _like_prefix(prefix))
    elif f.action is not None:
        add("action = %s", f.action)
    if outlet_id is not None:
        add("detail ? 'outlet_id' AND detail->>'outlet_id' = %s", str(outlet_id))
    if f.since is not None:
        add("at >= %s", f.since)
    if f.until is not None:
        add("at < %s", f.until)
    if before_seq is not None:
        add("seq < %s", before_seq)
    return clauses, params


async def search(
    conn: AsyncConnection[Any],
    f: AuditFilter,
    *,
    outlet_id: UUID | None,
    before_seq: int | None,
    limit: int,
) -> list[AuditEntry]:
    """Up to ``limit`` entries matching ``f`` (and naming ``outlet_id`` when given) with ``seq`` below
    ``before_seq``, newest first, as stored (unmasked: the service masks them)."""
    clauses, params = _conditions(f, outlet_id, before_seq)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    query = sql.SQL("SELECT {} FROM audit_log{} ORDER BY seq DESC LIMIT %s").format(sql.SQL(_COLUMNS), where)
    cur = await conn.execute(query, [*params, limit])
    return [AuditEntry(*row) for row in await cur.fetchall()]
