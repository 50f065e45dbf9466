"""``etcwallet clients create|list|revoke``: the secret is printed once and works; revocation takes hold."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from etcwallet.core.crypto import load_keys
from etcwallet.core.db import open_pool
from etcwallet.platform.clients import service, signing
from etcwallet.platform.clients.errors import ClientError
from etcwallet.platform.clients.types import MachineCall, MachinePrincipal, Scope


def authenticate(run: Any, call: MachineCall, scope: Scope | None) -> MachinePrincipal:
    """What the server makes of ``call``, with the database and keys the command used."""

    async def go() -> MachinePrincipal:
        pool = await open_pool(run.url, 2)
        try:
            return await service.authenticate(pool, load_keys(None, run.data_dir, False), call, scope=scope)
        finally:
            await pool.close()

    return asyncio.run(go())


def signed_call(client_id: str, secret: str) -> MachineCall:
    body = b'{"device_time": "2026-12-03T10:00:00+08:00"}'
    headers = signing.sign(client_id, secret, "POST", "/api/v1/machine/heartbeat", body)
    return MachineCall(
        "POST",
        "/api/v1/machine/heartbeat",
        body,
        client=headers[signing.HEADER_CLIENT],
        timestamp=headers[signing.HEADER_TIMESTAMP],
        nonce=headers[signing.HEADER_NONCE],
        signature=headers[signing.HEADER_SIGNATURE],
    )


def test_create_prints_the_id_and_secret_once_and_they_work(cli_database: Any) -> None:
    run = cli_database
    made = run(
        "clients",
        "create",
        "--kind",
        "lane",
        "--scope",
        "tolls.ingest",
        "--scope",
        "devices.heartbeat",
        "--name",
        "G0601 K12 出口 3 号车道",
    )
    assert made.exit_code == 0, made.output
    client_id, secret = made.stdout.split()[-2:]
    assert secret.startswith(signing.HMAC_SECRET_PREFIX)
    assert made.output.count(secret) == 1  # printed once, on standard output alone
    assert "只显示这一次" in made.flat and "shown this once" in made.flat
    assert "收费车道 / toll lane" in made.flat and "devices.heartbeat, tolls.ingest" in made.flat
    me = authenticate(run, signed_call(client_id, secret), Scope.DEVICES_HEARTBEAT)
    assert (str(me.id), me.kind, me.name) == (client_id, "lane", "G0601 K12 出口 3 号车道")
    with psycopg.connect(run.url) as conn:
        stored = conn.execute("SELECT m::text FROM machine_clients m WHERE id = %s", (client_id,)).fetchone()
        entries = conn.execute(
            "SELECT actor_type, actor_id, action, outcome FROM audit_log WHERE target_id = %s ORDER BY seq",
            (client_id,),
        ).fetchall()
    assert stored is not None and secret[6:] not in stored[0]
    assert entries == [("system", "cli", "machine_client.create", "success")]

    key = run("clients", "create", "--kind", "road_operator", "--scope", "settlement.download")
    assert key.exit_code == 0, key.output
    key_id, bearer = key.stdout.split()[-2:]
    assert bearer.startswith(signing.BEARER_KEY_PREFIX) and "Authorization: Bearer" in key.flat
    call = MachineCall("GET", "/api/v1/machine/whoami", b"", key=bearer)
    assert str(authenticate(run, call, Scope.SETTLEMENT_DOWNLOAD).id) == key_id


def test_create_refuses_a_scope_the_kind_may_not_hold(cli_database: Any) -> None:
    refused = cli_database("clients", "create", "--kind", "payment_provider", "--scope", "tolls.ingest")
    assert refused.exit_code == 1, refused.output
    assert "此类客户端不能持有该权限范围" in refused.flat and "may not hold that scope" in refused.flat
    assert "payments.callback" in refused.flat  # names what the kind may hold
    assert refused.stdout.strip() == ""  # no id, no secret
    bad = cli_database("clients", "create", "--kind", "lane", "--scope", "no.such")
    assert bad.exit_code == 2, bad.output


def test_list_and_revoke(cli_database: Any) -> None:
    run = cli_database
    made = run("clients", "create", "--kind", "gantry", "--scope", "tolls.ingest", "--name", "G30 门架 0042")
    client_id, secret = made.stdout.split()[-2:]
    listed = run("clients", "list")
    assert listed.exit_code == 0, listed.output
    assert client_id in listed.flat and "G30 门架 0042" in listed.flat and "有效 · active" in listed.flat
    assert secret not in listed.output and secret[6:] not in listed.output

    revoked = run("clients", "revoke", client_id)
    assert revoked.exit_code == 0, revoked.output
    assert "已吊销 · revoked" in revoked.flat and client_id in revoked.flat
    assert client_id not in run("clients", "list").flat
    everything = run("clients", "list", "--all")
    assert client_id in everything.flat and "已吊销 · revoked" in everything.flat
    with pytest.raises(ClientError) as refused:
        authenticate(run, signed_call(client_id, secret), Scope.TOLLS_INGEST)
    assert refused.value.code == "client_revoked"

    again = run("clients", "revoke", client_id)
    assert again.exit_code == 1 and "already revoked" in again.flat, again.output
    unknown = run("clients", "revoke", "0195f3a2-7c1e-7000-8000-000000000000")
    assert unknown.exit_code == 1 and "not found" in unknown.flat, unknown.output
    with psycopg.connect(run.url) as conn:
        entries = conn.execute(
            "SELECT actor_id, action, outcome, detail->>'reason' FROM audit_log WHERE target_id = %s "
            "AND action = 'machine_client.revoke' ORDER BY seq",
            (client_id,),
        ).fetchall()
    assert entries == [
        ("cli", "machine_client.revoke", "success", None),
        ("cli", "machine_client.revoke", "refused", "client_already_revoked"),
    ]
