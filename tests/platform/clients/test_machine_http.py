"""Machine clients over HTTP: both ways of authenticating, every refusal the gate gives, and what each
leaves behind (an audit entry, and nothing else).

Each test makes its own clients through the service (as the command line does) and calls the two machine
routes: ``GET /api/v1/machine/whoami`` (any machine) and the signed ``POST /api/v1/machine/heartbeat``
(scope ``devices.heartbeat``), whose body the signature covers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import Keys
from etcwallet.identity.authz import Role
from etcwallet.platform.clients import signing
from etcwallet.platform.clients.types import ClientKind, IssuedClient, Scope
from tests.conftest import StaffFactory
from tests.platform.clients.builders import (
    ADMIN,
    HEARTBEAT,
    WHOAMI,
    audit_rows,
    body_bytes,
    credentials,
    new_client,
    nonce_count,
    signed,
)

PROBLEM = "application/problem+json"


def beat(**overrides: Any) -> bytes:
    return body_bytes(
        {"device_time": datetime.now(UTC).isoformat(), "status": "ok", "software": "lane-ctl 4.2"} | overrides
    )


def refused(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM, r.headers
    problem: dict[str, Any] = r.json()
    assert problem["code"] == code, problem
    return problem


async def heartbeat_of(pool: AsyncConnectionPool, issued: IssuedClient) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT last_heartbeat_at, last_heartbeat FROM machine_clients WHERE id = %s", (issued.client.id,)
        )
        return await cur.fetchone()


@pytest.fixture
async def lane(pool: AsyncConnectionPool, keys: Keys) -> IssuedClient:
    return await new_client(pool, keys, ClientKind.LANE, name="G0601 K12 出口 3 号车道")


@pytest.fixture
async def operator(pool: AsyncConnectionPool, keys: Keys) -> IssuedClient:
    return await new_client(pool, keys, ClientKind.ROAD_OPERATOR, name="甘肃公路航空旅游投资集团")


# --- success, both ways ---------------------------------------------------------------------------------


async def test_a_signed_request_passes_and_is_attributed(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, lane: IssuedClient
) -> None:
    r = await client.get(WHOAMI, headers=signed(lane, "GET", WHOAMI) | {"User-Agent": "lane-ctl/4.2"})
    assert r.status_code == 200, r.text
    me = r.json()
    assert (me["id"], me["kind"], me["auth"], me["name"]) == (
        str(lane.client.id),
        "lane",
        "hmac",
        "G0601 K12 出口 3 号车道",
    )
    assert set(me["scopes"]) == {"tolls.ingest", "tolls.status_list", "devices.heartbeat"}
    assert me["window_seconds"] == signing.WINDOW_SECONDS
    assert lane.secret not in r.text
    rows = await audit_rows(pool, lane.client.id)
    assert rows[-1] == ("machine", str(lane.client.id), "machine_client.whoami", "success", None)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT ip, user_agent FROM audit_log WHERE target_id = %s AND action = 'machine_client.whoami'",
            (str(lane.client.id),),
        )
        assert (await cur.fetchone())[1] == "lane-ctl/4.2"  # type: ignore[index]
    assert await nonce_count(pool, lane.client.id) == 1


async def test_a_signed_body_passes_and_is_recorded(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, lane: IssuedClient
) -> None:
    body = beat(device_time=datetime.fromtimestamp(time.time() + 12, UTC).isoformat())
    r = await client.post(HEARTBEAT, content=body, headers=signed(lane, "POST", HEARTBEAT, body))
    assert r.status_code == 200, r.text
    assert 10 < r.json()["clock_skew_seconds"] < 14
    at, detail = await heartbeat_of(pool, lane)
    assert at is not None and detail["software"] == "lane-ctl 4.2" and detail["status"] == "ok"
    assert (await audit_rows(pool, lane.client.id))[-1][2:4] == ("machine_client.heartbeat", "success")


async def test_a_query_is_part_of_what_is_signed(client: httpx.AsyncClient, lane: IssuedClient) -> None:
    r = await client.get(f"{WHOAMI}?probe=1", headers=signed(lane, "GET", f"{WHOAMI}?probe=1"))
    assert r.status_code == 200, r.text
    r = await client.get(f"{WHOAMI}?probe=2", headers=signed(lane, "GET", f"{WHOAMI}?probe=1"))
    refused(r, 401, "signature_invalid")


async def test_a_bearer_key_passes(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, operator: IssuedClient
) -> None:
    assert operator.secret.startswith(signing.BEARER_KEY_PREFIX)
    r = await client.get(WHOAMI, headers={"Authorization": f"Bearer {operator.secret}"})
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["kind"], r.json()["auth"], r.json()["scopes"]) == (
        str(operator.client.id),
        "road_operator",
        "bearer",
        ["settlement.download"],
    )
    assert (await audit_rows(pool, operator.client.id))[-1][:4] == (
        "machine",
        str(operator.client.id),
        "machine_client.whoami",
        "success",
    )


# --- refusals: each a problem naming its reason, audited, and nothing else written --------------------


async def assert_only_audited(
    pool: AsyncConnectionPool, issued: IssuedClient, before: int, reason: str, *, verified: bool
) -> None:
    """The refusal left one audit entry with its reason, and no nonce or heartbeat."""
    rows = await audit_rows(pool, issued.client.id)
    assert len(rows) == before + 1, rows
    actor_type, actor_id, action, outcome, why = rows[-1]
    assert (actor_type, action, outcome, why) == ("machine", "machine_client.call", "refused", reason)
    # Only a caller that proved it holds the secret is named as the actor.
    assert actor_id == (str(issued.client.id) if verified else None)
    assert await nonce_count(pool, issued.client.id) == 0
    assert await heartbeat_of(pool, issued) == (None, None)


async def test_a_wrong_signature_is_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, lane: IssuedClient
) -> None:
    before = len(await audit_rows(pool, lane.client.id))
    body = beat()
    forged = signed(lane, "POST", HEARTBEAT, body, secret=signing.new_secret(signing.HMAC_SECRET_PREFIX))
    r = await client.post(HEARTBEAT, content=body, headers=forged)
    assert refused(r, 401, "signature_invalid")["field"] == "X-Etcw-Signature"
    await assert_only_audited(pool, lane, before, "signature_invalid", verified=False)


async def test_a_tampered_body_is_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, lane: IssuedClient
) -> None:
    before = len(await audit_rows(pool, lane.client.id))
    body = beat(status="ok")
    headers = signed(lane, "POST", HEARTBEAT, body)
    r = await client.post(HEARTBEAT, content=body.replace(b'"ok"', b'"fault"'), headers=headers)
    refused(r, 401, "signature_invalid")
    await assert_only_audited(pool, lane, before, "signature_invalid", verified=False)


@pytest.mark.parametrize("offset", [-signing.WINDOW_SECONDS - 5, signing.WINDOW_SECONDS + 5])
async def test_a_timestamp_outside_the_window_is_refused(
    offset: int, client: httpx.AsyncClient, pool: AsyncConnectionPool, lane: IssuedClient
) -> None:
    before = len(await audit_rows(pool, lane.client.id))
    body = beat()
    headers = signed(lane, "POST", HEARTBEAT, body, timestamp=int(time.time()) + offset)
    r = await client.post(HEARTBEAT, content=body, headers=headers)
    problem = refused(r, 401, "timestamp_out_of_window")
    assert problem["field"] == "X-Etcw-Timestamp" and abs(problem["server_time"] - time.time()) < 5
    await assert_only_audited(pool, lane, before, "timestamp_out_of_window", verified=False)


async def test_a_replayed_request_is_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, lane: IssuedClient
) -> None:
    body = beat()
    headers = signed(lane, "POST", HEARTBEAT, body)
    r = await client.post(HEARTBEAT, content=body, headers=headers)
    assert r.status_code == 200, r.text
    first = await heartbeat_of(pool, lane)
    r = await client.post(HEARTBEAT, content=body, headers=headers)
    assert refused(r, 401, "request_replayed")["field"] == "X-Etcw-Nonce"
    assert await heartbeat_of(pool, lane) == first  # the replay changed nothing
    assert (await audit_rows(pool, lane.client.id))[-1] == (
        "machine",
        str(lane.client.id),
        "machine_client.call",
        "refused",
        "request_replayed",
    )
    # The same nonce on an otherwise new request is a replay too; a fresh nonce is not.
    nonce = headers[signing.HEADER_NONCE]
    r = await client.get(WHOAMI, headers=signed(lane, "GET", WHOAMI, nonce=nonce))
    refused(r, 401, "request_replayed")
    r = await client.get(WHOAMI, headers=signed(lane, "GET", WHOAMI))
    assert r.status_code == 200, r.text


async def test_a_revoked_client_is_refused_at_once(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    lane: IssuedClient,
    operator: IssuedClient,
    make_staff: StaffFactory,
) -> None:
    admin = await make_staff(Role.ADMINISTRATOR)
    for issued in (lane, operator):
        assert (await client.get(WHOAMI, headers=credentials(issued, "GET", WHOAMI))).status_code == 200
        r = await client.post(f"{ADMIN}/{issued.client.id}/revoke", headers=admin)
        assert r.status_code == 200 and r.json()["revoked_at"] is not None, r.text
        before = len(await audit_rows(pool, issued.client.id))
        r = await client.get(WHOAMI, headers=credentials(issued, "GET", WHOAMI))
        refused(r, 401, "client_revoked")
        rows = await audit_rows(pool, issued.client.id)
        assert len(rows) == before + 1
        assert rows[-1] == (
            "machine",
            str(issued.client.id),
            "machine_client.call",
            "refused",
            "client_revoked",
        )
    assert await nonce_count(pool, lane.client.id) == 1  # the call before revocation only


async def test_a_wrong_scope_is_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, keys: Keys, operator: IssuedClient
) -> None:
    provider = await new_client(pool, keys, ClientKind.PAYMENT_PROVIDER)
    body = beat()
    for issued in (provider, operator):  # one signing, one with a key: neither may report heartbeats
        before = len(await audit_rows(pool, issued.client.id))
        r = await client.post(HEARTBEAT, content=body, headers=credentials(issued, "POST", HEARTBEAT, body))
        assert refused(r, 403, "scope_missing")["scope"] == "devices.heartbeat"
        await assert_only_audited(pool, issued, before, "scope_missing", verified=True)
    # A lane given only tolls.ingest may not either.
    ingest_only = await new_client(pool, keys, ClientKind.LANE, frozenset({Scope.TOLLS_INGEST}))
    r = await client.post(HEARTBEAT, content=body, headers=signed(ingest_only, "POST", HEARTBEAT, body))
    refused(r, 403, "scope_missing")


async def test_an_unknown_client_is_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, lane: IssuedClient, operator: IssuedClient
) -> None:
    # An id the server never issued, with a secret it would accept for another client.
    stranger = IssuedClient(dataclasses.replace(lane.client, id=uuid4()), lane.secret)
    r = await client.get(WHOAMI, headers=signed(stranger, "GET", WHOAMI))
    assert refused(r, 401, "client_unknown")["field"] == "X-Etcw-Client"
    rows = await audit_rows(pool, stranger.client.id)
    assert rows == [("machine", None, "machine_client.call", "refused", "client_unknown")]
    # A key the server never issued; and the HMAC route of a client that uses a key.
    r = await client.get(WHOAMI, headers={"Authorization": f"Bearer {signing.new_secret('etcwk_')}"})
    assert refused(r, 401, "client_unknown")["field"] == "Authorization"
    key_client_signing = IssuedClient(operator.client, operator.secret)
    r = await client.get(WHOAMI, headers=signed(key_client_signing, "GET", WHOAMI))
    refused(r, 401, "client_unknown")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (signing.HEADER_CLIENT, "lane-3"),
        (signing.HEADER_TIMESTAMP, "yesterday"),
        (signing.HEADER_NONCE, "short"),
        (signing.HEADER_SIGNATURE, "zz" * 32),
        (signing.HEADER_SIGNATURE, None),
    ],
)
async def test_malformed_credentials_are_refused_naming_the_header(
    header: str, value: str | None, client: httpx.AsyncClient, pool: AsyncConnectionPool, lane: IssuedClient
) -> None:
    headers = signed(lane, "GET", WHOAMI)
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    r = await client.get(WHOAMI, headers=headers)
    assert refused(r, 401, "machine_credentials_malformed")["field"] == header
    assert await nonce_count(pool, lane.client.id) == 0


async def test_people_do_not_pass_the_machine_gate_nor_machines_the_peoples(
    client: httpx.AsyncClient, make_staff: StaffFactory, operator: IssuedClient, lane: IssuedClient
) -> None:
    admin = await make_staff(Role.ADMINISTRATOR)
    for headers in ({}, admin, {"Authorization": "Bearer not-a-machine-key"}):
        r = await client.get(WHOAMI, headers=headers)
        refused(r, 401, "machine_unauthenticated")
    for headers in (credentials(operator, "GET", ADMIN), signed(lane, "GET", ADMIN)):
        r = await client.get(ADMIN, headers=headers)
        refused(r, 401, "unauthenticated")


# --- administration ------------------------------------------------------------------------------------


async def test_administrators_list_and_revoke(
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
    lane: IssuedClient,
    operator: IssuedClient,
    make_staff: StaffFactory,
) -> None:
    admin = await make_staff(Role.ADMINISTRATOR)
    r = await client.get(ADMIN, headers=admin)
    assert r.status_code == 200, r.text
    listed = {c["id"]: c for c in r.json()["items"]}
    assert {str(lane.client.id), str(operator.client.id)} <= set(listed)
    assert listed[str(lane.client.id)]["kind_name"] == "收费车道 / toll lane"
    assert lane.secret not in r.text and operator.secret not in r.text
    # Newest first, a page at a time: the operator was made after the lane.
    first = (await client.get(ADMIN, params={"limit": 1}, headers=admin)).json()
    assert [c["id"] for c in first["items"]] == [str(operator.client.id)]
    second = (
        await client.get(ADMIN, params={"limit": 1, "cursor": first["next_cursor"]}, headers=admin)
    ).json()
    assert [c["id"] for c in second["items"]] == [str(lane.client.id)]

    r = await client.post(f"{ADMIN}/{lane.client.id}/revoke", headers=admin)
    assert r.status_code == 200, r.text
    page = (await client.get(ADMIN, params={"limit": 200}, headers=admin)).json()
    assert str(lane.client.id) not in {c["id"] for c in page["items"]}
    r = await client.get(ADMIN, params={"include_revoked": True, "limit": 200}, headers=admin)
    assert str(lane.client.id) in {c["id"] for c in r.json()["items"]}

    refused(
        await client.post(f"{ADMIN}/{lane.client.id}/revoke", headers=admin), 409, "client_already_revoked"
    )
    unknown = uuid4()
    refused(await client.post(f"{ADMIN}/{unknown}/revoke", headers=admin), 404, "client_not_found")
    rows = await audit_rows(pool, lane.client.id)
    assert [r[2:5] for r in rows if r[2] == "machine_client.revoke"] == [
        ("machine_client.revoke", "success", None),
        ("machine_client.revoke", "refused", "client_already_revoked"),
    ]
    assert [r[0] for r in rows if r[2] == "machine_client.revoke"] == ["staff", "staff"]
    assert (await audit_rows(pool, unknown))[-1][2:5] == (
        "machine_client.revoke",
        "refused",
        "client_not_found",
    )


async def test_secrets_are_not_stored_in_clear(
    pool: AsyncConnectionPool, lane: IssuedClient, operator: IssuedClient
) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT m::text, encode(coalesce(secret_sealed, key_hash), 'escape') FROM machine_clients m "
            "WHERE id = ANY(%s)",
            ([lane.client.id, operator.client.id],),
        )
        rows = await cur.fetchall()
        cur = await conn.execute(
            "SELECT detail::text FROM audit_log WHERE target_id = %s", (str(lane.client.id),)
        )
        details = [r[0] for r in await cur.fetchall()]
    assert len(rows) == 2
    for row in rows:
        for secret in (lane.secret, operator.secret, lane.secret[6:], operator.secret[6:]):
            assert secret not in row[0] and secret not in row[1]
    assert not [d for d in details if lane.secret[6:] in d]


async def test_a_request_sent_twice_at_once_runs_once(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, lane: IssuedClient
) -> None:
    body = beat()
    headers = signed(lane, "POST", HEARTBEAT, body)
    answers = await asyncio.gather(*(client.post(HEARTBEAT, content=body, headers=headers) for _ in range(4)))
    assert sorted(r.status_code for r in answers) == [200, 401, 401, 401], [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code == 401} == {"request_replayed"}
    rows = await audit_rows(pool, lane.client.id)
    assert [r[2:4] for r in rows].count(("machine_client.heartbeat", "success")) == 1


async def test_every_call_is_attributed_in_the_logs(
    client: httpx.AsyncClient, lane: IssuedClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="etcwallet.platform.clients")
    r = await client.get(WHOAMI, headers=signed(lane, "GET", WHOAMI))
    assert r.status_code == 200, r.text
    r = await client.get(WHOAMI, headers=signed(lane, "GET", WHOAMI, secret="etcws_wrong"))
    assert r.status_code == 401, r.text
    calls = [
        (rec.getMessage(), getattr(rec, "client_id", None), getattr(rec, "reason", None))
        for rec in caplog.records
    ]
    assert ("machine call", str(lane.client.id), None) in calls
    assert ("machine call refused", str(lane.client.id), "signature_invalid") in calls
    assert not [
        rec for rec in caplog.records if lane.secret in rec.getMessage() or lane.secret in str(rec.__dict__)
    ]
