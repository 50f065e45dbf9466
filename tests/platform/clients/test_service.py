"""Machine clients' service: what a kind may hold, how secrets are kept, refusals of creation, and the
nonce sweep. The HTTP tests cover authentication."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import Keys
from etcwallet.platform.audit import Actor
from etcwallet.platform.clients import jobs, service, signing
from etcwallet.platform.clients.errors import CLIENT_ERRORS, ClientError
from etcwallet.platform.clients.types import KIND_AUTH, KIND_SCOPES, AuthStyle, ClientKind, MachineCall, Scope
from tests.platform.clients.builders import audit_rows, new_client, nonce_count


def test_every_kind_has_scopes_and_a_way_to_authenticate() -> None:
    assert set(KIND_SCOPES) == set(ClientKind) == set(KIND_AUTH)
    assert set().union(*KIND_SCOPES.values()) == set(Scope)  # no scope nobody may hold
    # Whoever sends bodies that claim money signs them.
    for kind, scopes in KIND_SCOPES.items():
        if scopes & {
            Scope.TOLLS_INGEST,
            Scope.MERCHANT_PAY,
            Scope.PAYMENTS_CALLBACK,
            Scope.CLEARING_EXCHANGE,
        }:
            assert KIND_AUTH[kind] is AuthStyle.HMAC, kind


def test_errors_are_fresh_per_raise() -> None:
    first, second = ClientError("signature_invalid"), ClientError("signature_invalid")
    assert first is not second and first.status == 401 and first.field == "X-Etcw-Signature"
    assert {status for status, *_ in CLIENT_ERRORS.values()} <= {401, 403, 404, 409, 422}


async def test_a_signing_clients_secret_is_sealed_to_its_row(pool: AsyncConnectionPool, keys: Keys) -> None:
    a = await new_client(pool, keys, ClientKind.GANTRY)
    b = await new_client(pool, keys, ClientKind.GANTRY)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, secret_sealed, key_hash FROM machine_clients WHERE id = ANY(%s)",
            ([a.client.id, b.client.id],),
        )
        rows = {r[0]: (bytes(r[1]), r[2]) for r in await cur.fetchall()}
    assert rows[a.client.id][1] is None
    assert keys.cipher.decrypt(rows[a.client.id][0], context=service._secret_context(a.client.id)) == a.secret
    with pytest.raises(Exception, match="authentication"):  # sealed for a, it does not open as b's
        keys.cipher.decrypt(rows[a.client.id][0], context=service._secret_context(b.client.id))


async def test_a_key_clients_key_is_kept_as_a_keyed_hash(pool: AsyncConnectionPool, keys: Keys) -> None:
    issued = await new_client(pool, keys, ClientKind.ROAD_OPERATOR)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT secret_sealed, key_hash FROM machine_clients WHERE id = %s", (issued.client.id,)
        )
        sealed, stored = await cur.fetchone()  # type: ignore[misc]
    assert sealed is None
    assert bytes(stored) == service.key_hash(keys.lookup_key, issued.secret)
    assert bytes(stored) != hashlib.sha256(issued.secret.encode()).digest()  # not an unkeyed hash


@pytest.mark.parametrize(
    ("kind", "scopes", "name", "code"),
    [
        (ClientKind.LANE, frozenset({Scope.MERCHANT_PAY}), None, "scope_not_allowed"),
        (ClientKind.PAYMENT_PROVIDER, frozenset({Scope.TOLLS_INGEST}), None, "scope_not_allowed"),
        (ClientKind.ROAD_OPERATOR, frozenset(), None, "scope_required"),
        (ClientKind.LANE, frozenset({Scope.TOLLS_INGEST}), "", "name_invalid"),
        (ClientKind.LANE, frozenset({Scope.TOLLS_INGEST}), "x" * 65, "name_invalid"),
        (ClientKind.LANE, frozenset({Scope.TOLLS_INGEST}), "lane\x00", "name_invalid"),
    ],
)
async def test_creation_refuses_what_the_kind_may_not_hold(
    kind: ClientKind,
    scopes: frozenset[Scope],
    name: str | None,
    code: str,
    pool: AsyncConnectionPool,
    keys: Keys,
) -> None:
    actor = Actor.system(f"test-{uuid4().hex}")
    with pytest.raises(ClientError) as refused:
        await service.create_client(pool, keys, kind=kind, scopes=scopes, name=name, actor=actor)
    assert refused.value.code == code
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT outcome, detail->>'reason' FROM audit_log WHERE actor_id = %s AND action = 'machine_client.create'",
            (actor.id,),
        )
        assert await cur.fetchall() == [("refused", code)]
        cur = await conn.execute("SELECT count(*) FROM machine_clients WHERE created_by = %s", (actor.id,))
        assert await cur.fetchone() == (0,)


async def test_creation_is_audited_without_the_secret(pool: AsyncConnectionPool, keys: Keys) -> None:
    issued = await new_client(pool, keys, ClientKind.MERCHANT_TERMINAL, frozenset({Scope.MERCHANT_PAY}))
    assert issued.client.auth is AuthStyle.HMAC and issued.client.created_by == "test"
    assert await audit_rows(pool, issued.client.id) == [
        ("system", "test", "machine_client.create", "success", None)
    ]
    assert issued.secret not in repr(issued)


async def test_spent_nonces_are_forgotten(pool: AsyncConnectionPool, keys: Keys) -> None:
    from etcwallet.platform.clients import store

    issued = await new_client(pool, keys, ClientKind.LANE)
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        assert await store.remember_nonce(
            conn, issued.client.id, "old-nonce-0000000", now - timedelta(minutes=5)
        )
        assert await store.remember_nonce(
            conn, issued.client.id, "live-nonce-000000", now + timedelta(minutes=4)
        )
        assert not await store.remember_nonce(conn, issued.client.id, "live-nonce-000000", now)
        await conn.commit()
    assert await jobs.forget_nonces(pool, now) >= 1
    assert await nonce_count(pool, issued.client.id) == 1


async def test_authenticate_without_any_credentials_is_not_audited(
    pool: AsyncConnectionPool, keys: Keys
) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT max(seq) FROM audit_log")
        (before,) = await cur.fetchone()  # type: ignore[misc]
    call = MachineCall("GET", "/api/v1/machine/whoami", b"", ip="10.1.2.3")
    with pytest.raises(ClientError) as refused:
        await service.authenticate(pool, keys, call, scope=None)
    assert refused.value.code == "machine_unauthenticated"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM audit_log WHERE seq > %s AND ip = '10.1.2.3'", (before or 0,)
        )
        assert (await cur.fetchone()) == (0,)
    assert signing.WINDOW_SECONDS == 300
