"""Idempotency keys: a retried POST does its work once and answers the first answer.

Two applications are used: the real one (creating outlets, issuing enrollment codes: the work is counted in
rows), and a toy one whose single route counts its runs, can be held mid-work, and fails or refuses on
demand, for what the real routes cannot be made to do (run slowly, crash, raise a 5xx).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Annotated, Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import Keys
from etcwallet.core.db import autocommit
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError, install_handlers
from etcwallet.identity import housekeeping
from etcwallet.identity.authz import Role
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.staff import service as staff
from etcwallet.platform import idempotency
from etcwallet.platform.idempotency import HEADER, REPLAYED_HEADER, Answer, Busy, Claim, Policy
from tests.conftest import STAFF_PASSWORD
from tests.idempotency_keys import keyed

OUTLETS = "/api/v1/admin/outlets"
PROBLEM = "application/problem+json"


async def staff_session(
    pool: AsyncConnectionPool, role: Role = Role.ADMINISTRATOR
) -> tuple[dict[str, str], UUID]:
    """A new staff member in ``role`` with a live session: (headers, staff id)."""
    staff_id = uuid4()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO staff (id, username, display_name, password_hash, role) VALUES (%s, %s, %s, %s, %s)",
            (staff_id, f"idem-{staff_id.hex[:12]}", "幂等测试", "!unusable", role.value),
        )
        issued = await sessions.issue(
            conn, principal_type="staff", principal_id=staff_id, client=Client("10.6.6.6", "idempotency")
        )
    return {"Authorization": f"Bearer {issued.access_token}"}, staff_id


def outlet_body(code: str | None = None, name: str = "幂等网点") -> dict[str, str]:
    return {"code": code or f"I-{uuid4().hex[:10]}", "name": name, "kind": "self_operated"}


async def scalar(pool: AsyncConnectionPool, query: str, *params: Any) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
    return row[0] if row else None


async def outlets_with_code(pool: AsyncConnectionPool, code: str) -> int:
    return int(await scalar(pool, "SELECT count(*) FROM outlets WHERE code = %s", code))


async def keys_of(pool: AsyncConnectionPool, staff_id: UUID) -> int:
    return int(
        await scalar(pool, "SELECT count(*) FROM idempotency_keys WHERE principal = %s", f"staff:{staff_id}")
    )


async def refusals(pool: AsyncConnectionPool, staff_id: UUID) -> list[str]:
    """The reasons of the idempotency refusals audited for a staff member, oldest first."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT detail->>'reason' FROM audit_log WHERE actor_type = 'staff' AND actor_id = %s "
            "AND action = 'idempotency.key_refused' AND outcome = 'refused' ORDER BY seq",
            (str(staff_id),),
        )
        return [r[0] for r in await cur.fetchall()]


# --- the real routes -------------------------------------------------------------------------------------


async def test_a_retry_answers_the_first_answer_and_the_work_runs_once(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    headers, admin_id = await staff_session(pool)
    body = outlet_body()
    key = keyed(headers)
    first = await client.post(OUTLETS, json=body, headers=key)
    assert first.status_code == 201, first.text
    assert REPLAYED_HEADER not in first.headers
    # The same request again, re-serialized (other key order, other spacing): the same answer, replayed.
    again = await client.post(
        OUTLETS,
        content=json.dumps(dict(reversed(body.items())), indent=2),
        headers=key | {"Content-Type": "application/json"},
    )
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert await outlets_with_code(pool, body["code"]) == 1
    created = await scalar(
        pool,
        "SELECT count(*) FROM audit_log WHERE action = 'outlet.create' AND outcome = 'success' AND actor_id = %s",
        str(admin_id),
    )
    assert created == 1
    # Without the key (a new key) the same body is a new request: the outlet code is taken.
    other = await client.post(OUTLETS, json=body, headers=keyed(headers))
    assert other.status_code == 409 and other.json()["code"] != "idempotency_key_conflict", other.text


async def test_the_same_key_with_another_request_is_a_409(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    headers, admin_id = await staff_session(pool)
    key = keyed(headers)
    body = outlet_body()
    assert (await client.post(OUTLETS, json=body, headers=key)).status_code == 201
    changed = outlet_body(name="另一个名字")
    for method, url, payload in (
        ("POST", OUTLETS, changed),  # another body
        ("POST", OUTLETS, body | {"name": "另一个名字"}),  # one field changed
        (
            "POST",
            "/api/v1/admin/staff",
            {"username": "x.y", "display_name": "x", "password": STAFF_PASSWORD, "role": "support_agent"},
        ),  # another route
    ):
        r = await client.request(method, url, json=payload, headers=key | {"Accept-Language": "en"})
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == PROBLEM
        problem = r.json()
        assert (problem["code"], problem["field"]) == ("idempotency_key_conflict", HEADER), problem
        assert "different request" in problem["title"]
    assert await outlets_with_code(pool, changed["code"]) == 0
    assert await scalar(pool, "SELECT count(*) FROM staff WHERE username = 'x.y'") == 0
    assert await refusals(pool, admin_id) == ["idempotency_key_conflict"] * 3


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (None, "idempotency_key_missing"),
        (b"", "idempotency_key_invalid"),
        (b"k" * 256, "idempotency_key_invalid"),
        (b"two words", "idempotency_key_invalid"),
        (b"tab\tinside", "idempotency_key_invalid"),
        (b"\x01control", "idempotency_key_invalid"),
        ("键".encode(), "idempotency_key_invalid"),
        ("clé".encode("latin-1"), "idempotency_key_invalid"),
    ],
)
async def test_a_missing_or_malformed_key_is_a_400_naming_the_header_and_writes_nothing(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, value: bytes | None, code: str
) -> None:
    headers, admin_id = await staff_session(pool)
    body = outlet_body()
    sent: dict[str, Any] = dict(headers)
    if value is not None:
        sent[HEADER] = value
    r = await client.post(OUTLETS, json=body, headers=sent)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert (problem["code"], problem["field"]) == (code, HEADER), problem
    assert problem["errors"][0]["field"] == HEADER
    assert await outlets_with_code(pool, body["code"]) == 0
    assert await keys_of(pool, admin_id) == 0
    assert await refusals(pool, admin_id) == [code]  # the refusal is on record, and nothing else


async def test_the_longest_key_is_taken(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    headers, admin_id = await staff_session(pool)
    r = await client.post(OUTLETS, json=outlet_body(), headers=headers | {HEADER: "~" * 255})
    assert r.status_code == 201, r.text
    assert await keys_of(pool, admin_id) == 1


async def test_the_gate_comes_before_the_key(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    """A caller who may not create outlets hears 401/403, not a 400 about the header."""
    finance, finance_id = await staff_session(pool, Role.FINANCE)
    r = await client.post(OUTLETS, json=outlet_body(), headers=finance)
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    r = await client.post(OUTLETS, json=outlet_body(), headers=keyed(finance))
    assert r.status_code == 403 and r.json()["code"] == "forbidden", r.text
    assert (await client.post(OUTLETS, json=outlet_body())).status_code == 401
    assert await keys_of(pool, finance_id) == 0


async def test_a_key_belongs_to_its_principal(client: httpx.AsyncClient, pool: AsyncConnectionPool) -> None:
    """Another administrator's request under the same key is their own: no conflict, no replayed answer."""
    (first, first_id), (second, second_id) = await staff_session(pool), await staff_session(pool)
    key = str(uuid4())
    a, b = outlet_body(), outlet_body()
    ra = await client.post(OUTLETS, json=a, headers=keyed(first, key))
    rb = await client.post(OUTLETS, json=b, headers=keyed(second, key))
    assert (ra.status_code, rb.status_code) == (201, 201), (ra.text, rb.text)
    assert REPLAYED_HEADER not in rb.headers and ra.json()["id"] != rb.json()["id"]
    # The same body too: the second administrator's request runs (and meets the taken code).
    rc = await client.post(OUTLETS, json=a, headers=keyed(second, str(uuid4())))
    rd = await client.post(OUTLETS, json=a, headers=keyed(second, key))
    assert rc.status_code == 409 and rc.json()["code"] == "outlet_code_taken", rc.text
    assert rd.json()["code"] == "idempotency_key_conflict", rd.text  # second's key holds b, not a
    assert await keys_of(pool, first_id) == 1 and await keys_of(pool, second_id) == 2


async def test_concurrent_requests_with_one_key_create_one_outlet(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    headers, _ = await staff_session(pool)
    body, key = outlet_body(), keyed(headers)
    answers = await asyncio.gather(*(client.post(OUTLETS, json=body, headers=key) for _ in range(4)))
    assert [r.status_code for r in answers] == [201] * 4, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum(r.headers.get(REPLAYED_HEADER) == "true" for r in answers) == 3
    assert await outlets_with_code(pool, body["code"]) == 1


async def test_a_stored_secret_is_encrypted_and_answered_again(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    """The enrollment code is shown once, but a retry of the same request gets the same one back: a lost
    answer is not a lost code. The table holds it only encrypted, and the request only as a keyed hash."""
    headers, admin_id = await staff_session(pool)
    async with pool.connection() as conn:
        member = await staff.create_staff(
            conn,
            username=f"idem.m.{uuid4().hex[:8]}",
            display_name="新员工",
            password=STAFF_PASSWORD,
            role=Role.SUPPORT_AGENT,
            outlet_id=None,
        )
    url = f"/api/v1/admin/staff/{member.id}/enrollment-code"
    key = keyed(headers)
    first = await client.post(url, headers=key)
    assert first.status_code == 201, first.text
    again = await client.post(url, headers=key)
    assert again.status_code == 201 and again.headers[REPLAYED_HEADER] == "true"
    code = first.json()["enrollment_code"]
    assert again.json()["enrollment_code"] == code
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT request_hash, response, status, route FROM idempotency_keys WHERE principal = %s",
            (f"staff:{admin_id}",),
        )
        ((request_hash, response, status, route),) = await cur.fetchall()
    assert (status, route) == (201, "POST /api/v1/admin/staff/{staff_id}/enrollment-code")
    stored = bytes(response)
    assert code.encode() not in stored and b"enrollment_code" not in stored
    assert bytes(request_hash) != hashlib.sha256(b"").digest()
    issued = await scalar(
        pool,
        "SELECT count(*) FROM audit_log WHERE action = 'staff.enrollment_code.issue' AND target_id = %s",
        str(member.id),
    )
    assert issued == 1


async def test_the_document_declares_the_header(app: FastAPI) -> None:
    document = app.openapi()
    covered = document["paths"][OUTLETS]["post"]
    (parameter,) = [p for p in covered["parameters"] if p["name"] == HEADER]
    assert parameter["in"] == "header" and parameter["required"] is True
    assert parameter["schema"]["pattern"] == idempotency.KEY_PATTERN
    assert {"400", "409"} <= set(covered["responses"])
    assert REPLAYED_HEADER in covered["responses"]["201"]["headers"]
    for path in ("/api/v1/ledger/transfers", "/api/v1/customers/login", "/api/v1/customers/me/freeze"):
        exempt = document["paths"][path]["post"]
        assert HEADER not in [p["name"] for p in exempt.get("parameters", [])], path


# --- the toy application ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lane:
    kind: str
    id: str


async def require_lane(request: Request) -> Lane:
    return Lane("machine", request.headers.get("x-lane", "lane-1"))


@dataclass
class Toy:
    """The toy route's behaviour: how it answers, and a count of its runs."""

    runs: int = 0
    fail: list[str] = field(default_factory=list)  # what the next runs do: "crash", "500", "429", "422"
    hold: asyncio.Event | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    policy: Policy = field(default_factory=Policy)


def toy_app(pool: AsyncConnectionPool, keys: Keys, toy: Toy) -> FastAPI:
    app = FastAPI()
    install_handlers(app)
    idempotency.install(app)
    app.state.runtime = SimpleNamespace(pool=pool, keys=keys)

    @app.middleware("http")
    async def policy(request: Request, call_next: Any) -> Any:
        setattr(request.app.state, idempotency.POLICY_STATE, toy.policy)
        return await call_next(request)

    @app.post("/work", status_code=201)
    async def work(
        request: Request, me: Annotated[Lane, Depends(idempotency.idempotent(require_lane))]
    ) -> JSONResponse:
        toy.runs += 1
        toy.started.set()
        if toy.hold is not None:
            await toy.hold.wait()
        what = toy.fail.pop(0) if toy.fail else "ok"
        if what == "crash":
            raise RuntimeError("the work failed")
        if what == "500":
            return JSONResponse({"error": "upstream"}, status_code=500)
        if what in ("429", "422"):
            raise DomainError(f"toy_{what}", int(what), "拒绝", "refused")
        return JSONResponse(
            {"run": toy.runs, "secret": "S3CRET-DO-NOT-STORE"},
            status_code=201,
            headers={"Location": f"/work/{toy.runs}", "Set-Cookie": "session=abc"},
        )

    return app


@pytest.fixture
def toy() -> Toy:
    return Toy()


@pytest.fixture
async def toy_client(pool: AsyncConnectionPool, keys: Keys, toy: Toy) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=toy_app(pool, keys, toy), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://toy") as c:
        yield c


def lane_headers(name: str | None = None, key: str | None = None) -> dict[str, str]:
    return keyed({"X-Lane": name or f"lane-{uuid4().hex[:8]}"}, key)


async def test_toy_replays_status_body_and_location_but_no_cookie(
    toy_client: httpx.AsyncClient, toy: Toy
) -> None:
    headers = lane_headers()
    first = await toy_client.post("/work", json={"a": 1}, headers=headers)
    again = await toy_client.post("/work", json={"a": 1}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() == {"run": 1, "secret": "S3CRET-DO-NOT-STORE"}
    assert again.headers["location"] == "/work/1" and "set-cookie" not in again.headers
    assert toy.runs == 1


async def test_toy_concurrent_requests_wait_for_the_first_and_run_once(
    toy_client: httpx.AsyncClient, toy: Toy
) -> None:
    toy.hold = asyncio.Event()
    headers = lane_headers()
    first = asyncio.create_task(toy_client.post("/work", json={"a": 1}, headers=headers))
    await asyncio.wait_for(toy.started.wait(), 5)
    second = asyncio.create_task(toy_client.post("/work", json={"a": 1}, headers=headers))
    await asyncio.sleep(0.2)  # the second is waiting on the first's claim
    assert not second.done()
    toy.hold.set()
    a, b = await first, await second
    assert (a.status_code, b.status_code) == (201, 201)
    assert b.json() == a.json() and b.headers[REPLAYED_HEADER] == "true"
    assert toy.runs == 1


async def test_toy_a_request_still_running_after_the_wait_is_a_409_in_use(
    toy_client: httpx.AsyncClient, toy: Toy
) -> None:
    toy.policy = Policy(wait=timedelta(0))  # a request meeting a running claim is answered at once
    toy.hold = asyncio.Event()
    headers = lane_headers()
    first = asyncio.create_task(toy_client.post("/work", json={"a": 1}, headers=headers))
    await asyncio.wait_for(toy.started.wait(), 5)
    busy = await toy_client.post("/work", json={"a": 1}, headers=headers)
    assert busy.status_code == 409 and busy.json()["code"] == "idempotency_key_in_use", busy.text
    assert busy.headers["retry-after"] == "1"
    other = await toy_client.post("/work", json={"a": 2}, headers=headers)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_conflict"
    toy.hold.set()
    assert (await first).status_code == 201
    assert toy.runs == 1


@pytest.mark.parametrize("failure", ["crash", "500", "429"])
async def test_toy_a_failure_releases_the_key(toy_client: httpx.AsyncClient, toy: Toy, failure: str) -> None:
    """A 5xx, an exception or a transient refusal is not stored: the retry runs the work again."""
    toy.fail = [failure]
    headers = lane_headers()
    r = await toy_client.post("/work", json={"a": 1}, headers=headers)
    assert r.status_code == (500 if failure != "429" else 429), r.text
    retry = await toy_client.post("/work", json={"a": 1}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert REPLAYED_HEADER not in retry.headers and retry.json()["run"] == 2
    assert toy.runs == 2


async def test_toy_a_deterministic_refusal_is_stored(toy_client: httpx.AsyncClient, toy: Toy) -> None:
    toy.fail = ["422"]
    headers = lane_headers()
    r = await toy_client.post("/work", json={"a": 1}, headers=headers)
    again = await toy_client.post("/work", json={"a": 1}, headers=headers)
    assert (r.status_code, again.status_code) == (422, 422)
    assert again.json() == r.json() and again.headers["content-type"] == PROBLEM
    assert again.headers[REPLAYED_HEADER] == "true"
    assert toy.runs == 1


async def test_toy_secrets_are_not_stored_in_plain_text(
    toy_client: httpx.AsyncClient, toy: Toy, pool: AsyncConnectionPool
) -> None:
    name = f"lane-{uuid4().hex[:8]}"
    assert (
        await toy_client.post("/work", json={"pin": "123456"}, headers=lane_headers(name))
    ).status_code == 201
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT request_hash, response FROM idempotency_keys WHERE principal = %s", (f"machine:{name}",)
        )
        ((request_hash, response),) = await cur.fetchall()
    assert b"S3CRET" not in bytes(response) and b"session=abc" not in bytes(response)
    # The request is a keyed hash: not the plain hash of its body, whatever the spelling.
    for plain in (b'{"pin":"123456"}', b'{"pin": "123456"}', b'json:{"pin":"123456"}'):
        assert bytes(request_hash) != hashlib.sha256(plain).digest()


async def test_toy_a_crashed_claim_is_taken_over_after_its_lease(
    toy_client: httpx.AsyncClient, toy: Toy, pool: AsyncConnectionPool, keys: Keys
) -> None:
    """A process that died mid-work leaves its claim: within the lease a retry waits (here: 409 at once),
    after it the retry runs the work."""
    name, key = f"lane-{uuid4().hex[:8]}", str(uuid4())
    request_hash = idempotency.fingerprint(
        keys.lookup_key, f"machine:{name}", "POST", "/work", "", b'{"a":1}'
    )
    async with autocommit(pool) as conn:
        crashed = await idempotency.claim(
            conn,
            keys.cipher,
            principal=f"machine:{name}",
            key=key,
            request_hash=request_hash,
            route="POST /work",
            now=datetime.now(UTC) - timedelta(seconds=61),
        )
    assert isinstance(crashed, Claim)
    r = await toy_client.post("/work", json={"a": 1}, headers=lane_headers(name, key))
    assert r.status_code == 201 and REPLAYED_HEADER not in r.headers, r.text
    assert toy.runs == 1
    async with autocommit(pool) as conn:  # the dead attempt can no longer store or release anything
        assert not await idempotency.complete(conn, keys.cipher, crashed, Answer(201, (), b"{}"))
        assert not await idempotency.release(conn, crashed)
    assert (await toy_client.post("/work", json={"a": 1}, headers=lane_headers(name, key))).json()["run"] == 1


# --- the store, without HTTP -----------------------------------------------------------------------------


async def test_claims_expire_with_their_lease_and_keys_with_their_ttl(
    pool: AsyncConnectionPool, keys: Keys
) -> None:
    principal, key, now = f"machine:{uuid4()}", str(uuid4()), datetime.now(UTC)
    same = idempotency.fingerprint(keys.lookup_key, principal, "POST", "/x", "", b"{}")
    other = idempotency.fingerprint(keys.lookup_key, principal, "POST", "/x", "", b'{"b":1}')
    policy = Policy()

    async def attempt(request_hash: bytes, at: datetime) -> Claim | Answer | Busy:
        async with autocommit(pool) as conn:
            return await idempotency.claim(
                conn,
                keys.cipher,
                principal=principal,
                key=key,
                request_hash=request_hash,
                route="POST /x",
                now=at,
                policy=policy,
            )

    held = await attempt(same, now)
    assert isinstance(held, Claim)
    assert isinstance(await attempt(same, now + policy.lease - timedelta(seconds=1)), Busy)
    with pytest.raises(DomainError) as refused:  # a dead attempt's key is still bound to its request
        await attempt(other, now + policy.lease + timedelta(seconds=1))
    assert refused.value.code == "idempotency_key_conflict"
    retaken = await attempt(same, now + policy.lease + timedelta(seconds=1))
    assert isinstance(retaken, Claim) and retaken.claim_id != held.claim_id
    async with autocommit(pool) as conn:
        assert await idempotency.complete(
            conn, keys.cipher, retaken, Answer(200, (("content-type", "x/y"),), b"ok")
        )
    assert await attempt(same, now + timedelta(hours=1)) == Answer(200, (("content-type", "x/y"),), b"ok")
    # A day after its (last) claim the key is forgotten: any request may take it.
    later = now + policy.lease + policy.ttl + timedelta(seconds=2)
    assert isinstance(await attempt(other, later), Claim)


async def test_purge_expired_deletes_only_expired_keys(pool: AsyncConnectionPool, keys: Keys) -> None:
    principal, now = f"machine:{uuid4()}", datetime.now(UTC)
    for key, at in (("old", now - timedelta(days=2)), ("new", now)):
        async with autocommit(pool) as conn:
            await idempotency.claim(
                conn, keys.cipher, principal=principal, key=key, request_hash=b"h", route="POST /x", now=at
            )
    async with autocommit(pool) as conn:
        assert await idempotency.purge_expired(conn, now) >= 1
        cur = await conn.execute("SELECT key FROM idempotency_keys WHERE principal = %s", (principal,))
        assert [r[0] for r in await cur.fetchall()] == ["new"]
    async with autocommit(pool) as conn:
        await idempotency.claim(
            conn,
            keys.cipher,
            principal=principal,
            key="older",
            request_hash=b"h",
            route="POST /x",
            now=now - timedelta(days=3),
        )
        deleted = await housekeeping.sweep(conn)
    assert deleted["idempotency_keys"] >= 1


def test_canonical_bodies() -> None:
    canonical = idempotency.canonical_body
    assert canonical(b'{"b": 1, "a": [1, 2]}') == canonical(b'{"a":[1,2],"b":1}')
    assert canonical(b'{"a": 1}') != canonical(b'{"a": 1.0}')
    assert canonical(b"") == canonical(b"  ") == b""
    assert canonical(b"not json") == b"raw:not json"
