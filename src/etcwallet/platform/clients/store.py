"""The only module that names the machine clients' tables: rows to types, reads, locks and writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from etcwallet.platform.clients.errors import ClientError
from etcwallet.platform.clients.types import AuthStyle, ClientKind, MachineClient, Scope

_COLUMNS = (
    "id, name, kind, scopes, auth, created_at, created_by, revoked_at, revoked_by, last_heartbeat_at, "
    "last_heartbeat"
)


def _client(row: tuple[Any, ...]) -> MachineClient:
    return MachineClient(
        id=row[0],
        name=row[1],
        kind=ClientKind(row[2]),
        scopes=frozenset(Scope(s) for s in row[3]),
        auth=AuthStyle(row[4]),
        created_at=row[5],
        created_by=row[6],
        revoked_at=row[7],
        revoked_by=row[8],
        last_heartbeat_at=row[9],
        last_heartbeat=dict(row[10] or {}),
    )


async def insert(
    conn: AsyncConnection[Any],
    client: MachineClient,
    *,
    secret_sealed: bytes | None,
    key_hash: bytes | None,
) -> None:
    """Store a new client with its sealed HMAC secret or its bearer key's hash (exactly one of them)."""
    await conn.execute(
        "INSERT INTO machine_clients (id, name, kind, scopes, auth, secret_sealed, key_hash, created_at, "
        "created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            client.id,
            client.name,
            client.kind.value,
            sorted(s.value for s in client.scopes),
            client.auth.value,
            secret_sealed,
            key_hash,
            client.created_at,
            client.created_by,
        ),
    )


async def get(conn: AsyncConnection[Any], client_id: UUID) -> MachineClient | None:
    """The client, or None when there is none with that id."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM machine_clients WHERE id = %s", (client_id,))
    row = await cur.fetchone()
    return _client(row) if row else None


async def get_or_raise(conn: AsyncConnection[Any], client_id: UUID) -> MachineClient:
    """The client; 404 ``client_not_found`` when there is none."""
    client = await get(conn, client_id)
    if client is None:
        raise ClientError("client_not_found")
    return client


async def lock(conn: AsyncConnection[Any], client_id: UUID) -> MachineClient | None:
    """The client, locked for the rest of the caller's transaction (None when absent)."""
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM machine_clients WHERE id = %s FOR UPDATE", (client_id,))
    row = await cur.fetchone()
    return _client(row) if row else None


async def with_secret(conn: AsyncConnection[Any], client_id: UUID) -> tuple[MachineClient, bytes] | None:
    """A signing client and its sealed secret, for checking a signature (None when absent or not HMAC)."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, secret_sealed FROM machine_clients WHERE id = %s AND auth = 'hmac'",
        (client_id,),
    )
    row = await cur.fetchone()
    return (_client(row[:11]), bytes(row[11])) if row else None


async def by_key_hash(conn: AsyncConnection[Any], key_hash: bytes) -> tuple[MachineClient, bytes] | None:
    """The bearer client whose key hashes to ``key_hash``, with the stored hash (None when none does)."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, key_hash FROM machine_clients WHERE key_hash = %s", (key_hash,)
    )
    row = await cur.fetchone()
    return (_client(row[:11]), bytes(row[11])) if row else None


async def list_page(
    conn: AsyncConnection[Any], *, include_revoked: bool, limit: int | None, before: UUID | None
) -> list[MachineClient]:
    """Clients newest first (ids are time-ordered), after the cursor ``before``; revoked ones when asked."""
    where = ["id < %(before)s" if before else "true", "true" if include_revoked else "revoked_at IS NULL"]
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM machine_clients WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %(limit)s",
        {"before": before, "limit": limit},
    )
    return [_client(r) for r in await cur.fetchall()]


async def mark_revoked(
    conn: AsyncConnection[Any], client_id: UUID, *, by: str, at: datetime
) -> MachineClient:
    """Record the revocation (the caller holds the client's lock and has checked it is active)."""
    cur = await conn.execute(
        f"UPDATE machine_clients SET revoked_at = %s, revoked_by = %s WHERE id = %s RETURNING {_COLUMNS}",
        (at, by, client_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return _client(row)


async def record_heartbeat(
    conn: AsyncConnection[Any], client_id: UUID, *, at: datetime, detail: dict[str, Any]
) -> bool:
    """Store a device's latest heartbeat; False when the client was revoked meanwhile."""
    cur = await conn.execute(
        "UPDATE machine_clients SET last_heartbeat_at = %s, last_heartbeat = %s "
        "WHERE id = %s AND revoked_at IS NULL",
        (at, Jsonb(detail), client_id),
    )
    return cur.rowcount == 1


async def remember_nonce(
    conn: AsyncConnection[Any], client_id: UUID, nonce: str, expires_at: datetime
) -> bool:
    """Remember a signed request's nonce; False when the client already used it (a replay)."""
    cur = await conn.execute(
        "INSERT INTO machine_nonces (client_id, nonce, expires_at) VALUES (%s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        (client_id, nonce, expires_at),
    )
    return cur.rowcount == 1


async def forget_nonces(conn: AsyncConnection[Any], before: datetime) -> int:
    """Delete the nonces whose requests the replay window refuses anyway; how many went."""
    cur = await conn.execute("DELETE FROM machine_nonces WHERE expires_at < %s", (before,))
    return cur.rowcount
