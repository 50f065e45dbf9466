"""Machine clients' use cases: create, list and revoke clients; authenticate a machine's call; heartbeats.

The only module that writes the clients' tables. Successes are audited in the transaction of the change;
refusals in a transaction of their own, after the refused work (if any) rolled back, so a refusal leaves
an audit entry and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import Keys
from etcwallet.core.db import autocommit
from etcwallet.core.ids import new_id
from etcwallet.core.schemas import text_fault
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor
from etcwallet.platform.clients import signing, store
from etcwallet.platform.clients.errors import ClientError
from etcwallet.platform.clients.types import (
    KIND_AUTH,
    KIND_SCOPES,
    AuthStyle,
    ClientAction,
    ClientKind,
    Heartbeat,
    IssuedClient,
    MachineCall,
    MachineClient,
    MachinePrincipal,
    Scope,
)

log = logging.getLogger(__name__)

TARGET = "machine_client"
"""The audit target type of a client."""


def _secret_context(client_id: UUID) -> bytes:
    """The AES-GCM context of a client's sealed secret: the column and the client, so a sealed secret
    copied onto another client's row does not open."""
    return f"machine_clients.secret_sealed:{client_id}".encode()


def key_hash(lookup_key: bytes, key: str) -> bytes:
    """The stored form of a bearer key: HMAC-SHA256 under the look-up key, so a copy of the table gives
    nothing to present, and nothing to search without the key."""
    return hmac.new(lookup_key, b"machine_key:" + key.encode("utf-8"), hashlib.sha256).digest()


# --- administration ------------------------------------------------------------------------------------


async def create_client(
    pool: AsyncConnectionPool,
    keys: Keys,
    *,
    kind: ClientKind,
    scopes: frozenset[Scope],
    actor: Actor,
    name: str | None = None,
) -> IssuedClient:
    """Create a client of ``kind`` holding ``scopes`` and answer it with its secret, which no one can
    read again: an HMAC secret (kept sealed) or a bearer key (kept as a keyed hash), as the kind uses."""
    client_id = new_id()
    name = (name if name is not None else f"{kind.value}-{client_id.hex[-8:]}").strip()
    detail = {
        "kind": kind.value,
        "scopes": sorted(scopes),
        "name": name if text_fault(name) is None else None,
    }
    try:
        _check_new(kind, scopes, name)
    except ClientError as refused:
        await audit.record(pool, actor.refused(ClientAction.CREATE, refused.code, detail=detail))
        raise
    style = KIND_AUTH[kind]
    client = MachineClient(
        id=client_id,
        name=name,
        kind=kind,
        scopes=scopes,
        auth=style,
        created_at=datetime.now(UTC),
        created_by=str(actor.id),
    )
    if style is AuthStyle.HMAC:
        secret = signing.new_secret(signing.HMAC_SECRET_PREFIX)
        sealed, hashed = keys.cipher.encrypt(secret, context=_secret_context(client_id)), None
    else:
        secret = signing.new_secret(signing.BEARER_KEY_PREFIX)
        sealed, hashed = None, key_hash(keys.lookup_key, secret)
    async with pool.connection() as conn, conn.transaction():
        await store.insert(conn, client, secret_sealed=sealed, key_hash=hashed)
        await audit.append(
            conn,
            actor.event(
                ClientAction.CREATE, target=(TARGET, str(client_id)), detail={**detail, "auth": style}
            ),
        )
    return IssuedClient(client, secret)


def _check_new(kind: ClientKind, scopes: frozenset[Scope], name: str) -> None:
    if not scopes:
        raise ClientError("scope_required", allowed=sorted(KIND_SCOPES[kind]))
    if not scopes <= KIND_SCOPES[kind]:
        raise ClientError("scope_not_allowed", allowed=sorted(KIND_SCOPES[kind]))
    if not 1 <= len(name) <= 64 or text_fault(name) is not None or not name.isprintable():
        raise ClientError("name_invalid")


async def list_clients(
    pool: AsyncConnectionPool,
    *,
    include_revoked: bool = False,
    limit: int | None = None,
    before: UUID | None = None,
) -> list[MachineClient]:
    """Clients newest first, up to ``limit`` (all when None) after the cursor ``before`` (an id);
    revoked ones too when asked."""
    async with autocommit(pool) as conn:
        return await store.list_page(conn, include_revoked=include_revoked, limit=limit, before=before)


async def revoke_client(pool: AsyncConnectionPool, *, client_id: UUID, actor: Actor) -> MachineClient:
    """Revoke a client: from the next call on, every process refuses it (each call reads the client)."""
    target = (TARGET, str(client_id))
    try:
        async with pool.connection() as conn, conn.transaction():
            client = await store.lock(conn, client_id)
            if client is None:
                raise ClientError("client_not_found")
            if not client.active:
                raise ClientError("client_already_revoked")
            revoked = await store.mark_revoked(conn, client_id, by=str(actor.id), at=datetime.now(UTC))
            await audit.append(conn, actor.event(ClientAction.REVOKE, target=target))
    except ClientError as refused:
        await audit.record(pool, actor.refused(ClientAction.REVOKE, refused.code, target=target))
        raise
    log.info("machine client revoked", extra={"client_id": str(client_id), "by": actor.id})
    return revoked


# --- a machine's call ----------------------------------------------------------------------------------


class _Refused(Exception):
    """A refusal inside :func:`authenticate`, with whom to name in its audit entry."""

    def __init__(
        self, code: str, *, verified: UUID | None = None, claimed: str | None = None, **extra: Any
    ) -> None:
        super().__init__(code)
        self.code, self.verified, self.claimed, self.extra = code, verified, claimed, extra


async def authenticate(
    pool: AsyncConnectionPool, keys: Keys, call: MachineCall, *, scope: Scope | None
) -> MachinePrincipal:
    """The machine behind ``call`` if its credentials hold and it holds ``scope`` (any machine when None).

    Refusals are 401 (no, malformed, unknown, revoked or wrong credentials; a stale timestamp; a replayed
    nonce) or 403 (``scope_missing``), each audited on its own and logged; a call with no machine
    credentials at all is refused without an audit entry, as a request without a session is.
    """
    if call.key is None and not call.signed:
        raise ClientError("machine_unauthenticated")
    try:
        if call.key is not None:
            principal = await _by_key(pool, keys, call, scope)
        else:
            principal = await _by_signature(pool, keys, call, scope)
    except _Refused as refused:
        await _record_refusal(pool, call, refused, scope)
        raise ClientError(refused.code, **refused.extra) from None
    log.info(
        "machine call",
        extra={
            "client_id": str(principal.id),
            "client_kind": principal.kind.value,
            "method": call.method,
            "path": call.target[:256],
        },
    )
    return principal


async def _record_refusal(
    pool: AsyncConnectionPool, call: MachineCall, refused: _Refused, scope: Scope | None
) -> None:
    actor = Actor("machine", str(refused.verified) if refused.verified else None, call.ip, call.user_agent)
    claimed = str(refused.verified) if refused.verified else (refused.claimed or "")[:64] or None
    detail = {"method": call.method, "path": call.target[:256], "scope": scope.value if scope else None}
    await audit.record(
        pool, actor.refused(ClientAction.CALL, refused.code, target=(TARGET, claimed), detail=detail)
    )
    log.warning(
        "machine call refused",
        extra={
            "reason": refused.code,
            "client_id": claimed,
            "method": call.method,
            "path": call.target[:256],
        },
    )


def _principal(client: MachineClient, call: MachineCall, scope: Scope | None) -> MachinePrincipal:
    """The principal of a client whose credentials held, once it is live and holds the scope."""
    if not client.active:
        raise _Refused("client_revoked", verified=client.id)
    if scope is not None and scope not in client.scopes:
        raise _Refused("scope_missing", verified=client.id, scope=scope.value)
    return MachinePrincipal(
        client.id, client.name, client.kind, client.scopes, client.auth, call.ip, call.user_agent
    )


async def _by_key(
    pool: AsyncConnectionPool, keys: Keys, call: MachineCall, scope: Scope | None
) -> MachinePrincipal:
    assert call.key is not None
    hashed = key_hash(keys.lookup_key, call.key)
    async with autocommit(pool) as conn:
        found = await store.by_key_hash(conn, hashed)
    if found is None or not hmac.compare_digest(found[1], hashed):
        raise _Refused("client_unknown", field="Authorization")
    return _principal(found[0], call, scope)


def _parse_signed(call: MachineCall) -> tuple[UUID, int, str, str]:
    """The four signing headers, each present and well-formed, or a refusal naming the first that is not."""
    checks = (
        (signing.HEADER_CLIENT, call.client, None),
        (signing.HEADER_TIMESTAMP, call.timestamp, signing.TIMESTAMP_PATTERN),
        (signing.HEADER_NONCE, call.nonce, signing.NONCE_PATTERN),
        (signing.HEADER_SIGNATURE, call.signature, signing.SIGNATURE_PATTERN),
    )
    for header, value, pattern in checks:
        if value is None or (pattern is not None and not pattern.fullmatch(value)):
            raise _Refused("machine_credentials_malformed", claimed=call.client, field=header)
    assert call.client and call.timestamp and call.nonce and call.signature
    try:
        client_id = UUID(call.client)
    except ValueError:
        raise _Refused(
            "machine_credentials_malformed", claimed=call.client, field=signing.HEADER_CLIENT
        ) from None
    return client_id, int(call.timestamp), call.nonce, call.signature


async def _by_signature(
    pool: AsyncConnectionPool, keys: Keys, call: MachineCall, scope: Scope | None
) -> MachinePrincipal:
    client_id, timestamp, nonce, sent = _parse_signed(call)
    now = time.time()
    if abs(now - timestamp) > signing.WINDOW_SECONDS:
        raise _Refused("timestamp_out_of_window", claimed=call.client, server_time=int(now))
    async with autocommit(pool) as conn:
        found = await store.with_secret(conn, client_id)
        if found is None:
            raise _Refused("client_unknown", claimed=call.client)
        client, sealed = found
        secret = keys.cipher.decrypt(sealed, context=_secret_context(client_id))
        expected = signing.signature(secret, call.method, call.target, call.timestamp or "", nonce, call.body)
        if not signing.signature_matches(expected, sent):
            raise _Refused("signature_invalid", claimed=call.client)
        principal = _principal(client, call, scope)
        expires = datetime.fromtimestamp(timestamp + signing.WINDOW_SECONDS, UTC)
        if not await store.remember_nonce(conn, client_id, nonce, expires):
            raise _Refused("request_replayed", verified=client_id)
    return principal


# --- what machines do here -----------------------------------------------------------------------------


async def whoami(pool: AsyncConnectionPool, principal: MachinePrincipal) -> MachinePrincipal:
    """A machine checking its credentials: audited, so a device's first contact is on record."""
    await audit.record(pool, principal.actor.event(ClientAction.WHOAMI, target=(TARGET, str(principal.id))))
    return principal


async def heartbeat(
    pool: AsyncConnectionPool,
    principal: MachinePrincipal,
    *,
    device_time: datetime,
    status: str,
    software: str | None,
) -> Heartbeat:
    """Record a field device's heartbeat (administrators see the last one) and tell it its clock skew,
    which must stay well inside the replay window for its signed requests to be accepted."""
    now = datetime.now(UTC)
    skew = round((device_time - now).total_seconds(), 3)
    detail = {"status": status, "software": software, "clock_skew_seconds": skew}
    target = (TARGET, str(principal.id))
    async with pool.connection() as conn, conn.transaction():
        live = await store.record_heartbeat(conn, principal.id, at=now, detail=detail)
        if live:
            await audit.append(
                conn, principal.actor.event(ClientAction.HEARTBEAT, target=target, detail=detail)
            )
    if not live:  # revoked between the gate and here
        await audit.record(
            pool, principal.actor.refused(ClientAction.HEARTBEAT, "client_revoked", target=target)
        )
        raise ClientError("client_revoked")
    if abs(skew) > signing.WINDOW_SECONDS / 2:
        log.warning("device clock skew", extra={"client_id": str(principal.id), "skew_seconds": skew})
    return Heartbeat(now, skew)
