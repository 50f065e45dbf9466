"""Builders for the machine-client tests: clients made through the service, and signed requests."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import httpx
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import Keys
from etcwallet.platform.audit import Actor
from etcwallet.platform.clients import service, signing
from etcwallet.platform.clients.types import KIND_SCOPES, ClientKind, IssuedClient, Scope

WHOAMI = "/api/v1/machine/whoami"
HEARTBEAT = "/api/v1/machine/heartbeat"
ADMIN = "/api/v1/admin/machine-clients"


async def new_client(
    pool: AsyncConnectionPool,
    keys: Keys,
    kind: ClientKind = ClientKind.LANE,
    scopes: frozenset[Scope] | None = None,
    name: str | None = None,
) -> IssuedClient:
    """A new client made as the command line makes it (all its kind's scopes unless told)."""
    return await service.create_client(
        pool,
        keys,
        kind=kind,
        scopes=KIND_SCOPES[kind] if scopes is None else scopes,
        name=name,
        actor=Actor.system("test"),
    )


def body_bytes(body: Any) -> bytes:
    return json.dumps(body).encode() if body is not None else b""


def signed(
    issued: IssuedClient,
    method: str,
    url: str,
    body: bytes = b"",
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers of a request signed by ``issued`` (or with another ``secret``), target as httpx sends it."""
    target = httpx.URL("http://test" + url).raw_path.decode()
    headers = signing.sign(
        issued.client.id, secret or issued.secret, method, target, body, timestamp=timestamp, nonce=nonce
    )
    return headers | ({"Content-Type": "application/json"} if body else {})


def credentials(issued: IssuedClient, method: str, url: str, body: bytes = b"") -> dict[str, str]:
    """Whatever the client's kind presents: signed headers, or its bearer key."""
    if issued.secret.startswith(signing.BEARER_KEY_PREFIX):
        return {"Authorization": f"Bearer {issued.secret}"} | (
            {"Content-Type": "application/json"} if body else {}
        )
    return signed(issued, method, url, body)


async def audit_rows(pool: AsyncConnectionPool, client_id: UUID | str) -> list[tuple[Any, ...]]:
    """(actor_type, actor_id, action, outcome, reason) of every audit entry about the client, in order."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT actor_type, actor_id, action, outcome, detail->>'reason' FROM audit_log "
            "WHERE target_type = 'machine_client' AND target_id = %s ORDER BY seq",
            (str(client_id),),
        )
        return list(await cur.fetchall())


async def nonce_count(pool: AsyncConnectionPool, client_id: UUID) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM machine_nonces WHERE client_id = %s", (client_id,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])
