"""Idempotency keys: a POST that a client retries with the same ``Idempotency-Key`` does its work once.

A network that drops an answer leaves the client not knowing whether its request took effect. Routes that
create something with a server-made id, or otherwise do what a second call would do again, take an
``Idempotency-Key`` header (DESIGN, "Every write is idempotent"); routes keyed by a client-supplied id
(the ledger's transfers and accounts) need none. A key belongs to one principal (``kind:id``: a customer,
a staff member, later a machine client) and to one request: a keyed HMAC of the method, path, query and
canonical body, so a body holding a password cannot be guessed from the table.

- The first request *claims* the key (one statement, committed at once) before its work runs, with a
  lease (:attr:`Policy.lease`); its answer is stored, encrypted with the field key (answers may hold
  secrets: an enrollment code, recovery codes), when it is a success or a deterministic refusal.
- The same key with the same request answers the stored answer (same status, body and the headers that
  matter) with ``Idempotent-Replayed: true``; with another request it is 409 ``idempotency_key_conflict``.
- A request arriving while the first still runs waits for it (up to :attr:`Policy.wait`) and answers its
  result, or 409 ``idempotency_key_in_use`` with ``Retry-After`` if it is still running then.
- A 5xx, an exception or a transient refusal (401, 403, 408, 423, 425, 429) deletes the claim, so the
  client may retry; a claim whose process died is taken over by a retry once its lease has run out.
- Keys are forgotten a day after their claim (:attr:`Policy.ttl`; :func:`purge_expired`).

A route takes it in one line, wrapping its authorization gate (which runs first, so a caller without
the right gets 401/403, not a 400 about the header)::

    me: Annotated[Principal, Depends(idempotent(require(Permission.OUTLETS_MANAGE)))]

and the application calls :func:`install` once. The dependency declares the header and its 400/409
answers to the OpenAPI document (its ``__openapi__``, which ``core/openapi.py`` reads).

Limit, until the unit of work stores the answer in the step's own transaction: the work commits before
its answer is stored, so a process that dies between the two leaves a claim whose retry (after the lease)
runs the work again. The covered routes then meet their own rules (a code taken, a change decided) and
answer a refusal rather than doing the work twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, TypeVar
from uuid import UUID, uuid4

from fastapi import Depends, FastAPI, Request, Response
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from etcwallet.core.crypto import FieldCipher
from etcwallet.core.db import autocommit
from etcwallet.core.errors import DomainError
from etcwallet.core.openapi import OPENAPI_ATTR
from etcwallet.platform import audit

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[!-~]{1,255}$"
"""1 to 255 visible ASCII characters (no spaces): a UUID, a ULID, or any client-made token."""
_KEY = re.compile(KEY_PATTERN)

KEPT_HEADERS = frozenset({b"content-type", b"location", b"content-language"})
"""The headers of an answer that a replay repeats; never a cookie (it would hold a session token)."""
TRANSIENT = frozenset({401, 403, 408, 423, 425, 429})
"""Refusals that may not hold on a retry (a session, a lock, a rate limit): never stored."""
MAX_STORED_BODY = 1 << 20
"""An answer larger than this is not stored (the claim is released): covered routes answer small bodies."""


# --- errors ----------------------------------------------------------------------------------------------

# code -> (status, zh, en, field the code is about)
IDEMPOTENCY_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "idempotency_key_missing": (
        400,
        "此操作需要 Idempotency-Key 请求头：每个新请求一个唯一值，重试时沿用同一个",
        "this operation needs an Idempotency-Key header: a unique value per new request, the same one on "
        "retries",
        HEADER,
    ),
    "idempotency_key_invalid": (
        400,
        "Idempotency-Key 须为 1–255 个可见 ASCII 字符（不含空格）",
        "Idempotency-Key must be 1-255 visible ASCII characters (no spaces)",
        HEADER,
    ),
    "idempotency_key_conflict": (
        409,
        "该 Idempotency-Key 已用于另一个不同的请求",
        "this Idempotency-Key was already used for a different request",
        HEADER,
    ),
    "idempotency_key_in_use": (
        409,
        "使用同一 Idempotency-Key 的请求仍在处理中，请稍后重试",
        "a request with this Idempotency-Key is still being processed: retry shortly",
        HEADER,
    ),
}
AUDITED = frozenset({"idempotency_key_missing", "idempotency_key_invalid", "idempotency_key_conflict"})
"""Refusals that show a client misusing keys: each leaves an audit entry (and nothing else)."""


class IdempotencyError(DomainError):
    """A request refused for its ``Idempotency-Key``; a fresh error per raise."""

    def __init__(self, code: str, **extra: Any) -> None:
        status, zh, en, field_ = IDEMPOTENCY_ERRORS[code]
        super().__init__(code, status, zh, en, field=field_, extra=extra)


class IdempotencyAction(StrEnum):
    """Audit actions of this module."""

    KEY_REFUSED = "idempotency.key_refused"


# --- policy, principals, requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """How long keys live and claims last, and how long a concurrent request waits for the first."""

    ttl: timedelta = timedelta(hours=24)
    lease: timedelta = timedelta(seconds=60)
    wait: timedelta = timedelta(seconds=5)


DEFAULT_POLICY = Policy()
POLICY_STATE = "idempotency_policy"
"""``app.state`` attribute that overrides :data:`DEFAULT_POLICY` (tests shorten the wait)."""


class Caller(Protocol):
    """What a key is scoped to: any principal with a kind and an id."""

    @property
    def kind(self) -> str: ...

    @property
    def id(self) -> object: ...


P = TypeVar("P", bound=Caller)


def principal_key(principal: Caller) -> str:
    """The string a key is scoped to: ``kind:id`` (``customer:…``, ``staff:…``, ``machine:…``)."""
    return f"{principal.kind}:{principal.id}"


def parse_key(value: str | None) -> str:
    """The header's value if well formed; 400 naming the header if missing or malformed."""
    if value is None:
        raise IdempotencyError("idempotency_key_missing")
    if not _KEY.fullmatch(value):
        raise IdempotencyError("idempotency_key_invalid")
    return value


def canonical_body(body: bytes) -> bytes:
    """The body as compared between a request and its retry: JSON with sorted keys and no spacing (so a
    client that re-serializes its document is not refused), any other body as its bytes."""
    if not body.strip():
        return b""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return b"raw:" + body
    return b"json:" + json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def fingerprint(lookup_key: bytes, principal: str, method: str, path: str, query: str, body: bytes) -> bytes:
    """The keyed hash that says whether a retry is the same request (HMAC-SHA256 under the look-up key)."""
    head = json.dumps([principal, method.upper(), path, query]).encode()
    return hmac.new(lookup_key, head + b"\n" + canonical_body(body), hashlib.sha256).digest()


# --- the store -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """This attempt holds the key: its work may run; it ends by :func:`complete` or :func:`release`."""

    principal: str
    key: str
    claim_id: UUID


@dataclass(frozen=True)
class Answer:
    """An answer as stored and replayed: status, the headers that matter, and the body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Busy:
    """Another attempt holds the key and its lease has not run out."""

    locked_until: datetime


def _context(principal: str, key: str) -> bytes:
    """Encryption context: the table, column and row, so a stored answer cannot be moved to another key."""
    return f"idempotency_keys.response|{principal}|{key}".encode()


def seal(cipher: FieldCipher, principal: str, key: str, answer: Answer) -> bytes:
    """The stored form of ``answer``: JSON sealed with AES-GCM under the field key."""
    document = {
        "status": answer.status,
        "headers": [list(h) for h in answer.headers],
        "body": base64.b64encode(answer.body).decode("ascii"),
    }
    return cipher.encrypt(json.dumps(document), context=_context(principal, key))


def unseal(cipher: FieldCipher, principal: str, key: str, blob: bytes) -> Answer:
    """The answer stored under ``(principal, key)``."""
    document = json.loads(cipher.decrypt(bytes(blob), context=_context(principal, key)))
    return Answer(
        int(document["status"]),
        tuple((str(k), str(v)) for k, v in document["headers"]),
        base64.b64decode(document["body"]),
    )


_CLAIM = """
INSERT INTO idempotency_keys AS k
    (principal, key, request_hash, route, claim_id, locked_until, created_at, expires_at)
VALUES (%(principal)s, %(key)s, %(hash)s, %(route)s, %(claim)s, %(lease)s, %(now)s, %(expires)s)
ON CONFLICT (principal, key) DO UPDATE SET
    request_hash = EXCLUDED.request_hash, route = EXCLUDED.route, claim_id = EXCLUDED.claim_id,
    locked_until = EXCLUDED.locked_until, status = NULL, response = NULL,
    created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
WHERE k.expires_at <= %(now)s
   OR (k.status IS NULL AND k.locked_until <= %(now)s AND k.request_hash = EXCLUDED.request_hash)
RETURNING claim_id
"""


async def claim(
    conn: AsyncConnection[Any],
    cipher: FieldCipher,
    *,
    principal: str,
    key: str,
    request_hash: bytes,
    route: str,
    now: datetime,
    policy: Policy = DEFAULT_POLICY,
) -> Claim | Answer | Busy:
    """Try once to claim ``key`` for ``principal`` (``conn`` in autocommit: the claim must be visible to
    other requests at once). A new key, an expired one, or one whose earlier attempt died (lease over,
    same request) is claimed; a key answered for the same request gives the stored :class:`Answer`; one
    still running gives :class:`Busy`. A key used for another request is 409 ``idempotency_key_conflict``.
    """
    while True:
        attempt = uuid4()
        cur = await conn.execute(
            _CLAIM,
            {
                "principal": principal,
                "key": key,
                "hash": request_hash,
                "route": route,
                "claim": attempt,
                "lease": now + policy.lease,
                "now": now,
                "expires": now + policy.ttl,
            },
        )
        if await cur.fetchone() is not None:
            return Claim(principal, key, attempt)
        cur = await conn.execute(
            "SELECT request_hash, status, response, locked_until FROM idempotency_keys "
            "WHERE principal = %s AND key = %s",
            (principal, key),
        )
        row = await cur.fetchone()
        if row is None:
            continue  # released between the two statements: try again
        stored_hash, status, response, locked_until = row
        if not hmac.compare_digest(bytes(stored_hash), request_hash):
            raise IdempotencyError("idempotency_key_conflict")
        if status is not None:
            return unseal(cipher, principal, key, response)
        return Busy(locked_until)


async def complete(conn: AsyncConnection[Any], cipher: FieldCipher, held: Claim, answer: Answer) -> bool:
    """Store ``answer`` for the claim (in the caller's transaction); False if the claim was lost (its lease
    ran out and a retry took the key over), in which case nothing is stored."""
    cur = await conn.execute(
        "UPDATE idempotency_keys SET status = %s, response = %s, claim_id = NULL, locked_until = NULL "
        "WHERE principal = %s AND key = %s AND claim_id = %s",
        (
            answer.status,
            seal(cipher, held.principal, held.key, answer),
            held.principal,
            held.key,
            held.claim_id,
        ),
    )
    return cur.rowcount == 1


async def release(conn: AsyncConnection[Any], held: Claim) -> bool:
    """Give the key up after a failure, so a retry runs the work; False if the claim was already lost."""
    cur = await conn.execute(
        "DELETE FROM idempotency_keys WHERE principal = %s AND key = %s AND claim_id = %s",
        (held.principal, held.key, held.claim_id),
    )
    return cur.rowcount == 1


async def purge_expired(conn: AsyncConnection[Any], now: datetime) -> int:
    """Delete the keys past their expiry (housekeeping; a jobs runner may call it); how many went."""
    cur = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at < %s", (now,))
    return cur.rowcount


async def begin(
    pool: AsyncConnectionPool,
    cipher: FieldCipher,
    *,
    principal: str,
    key: str,
    request_hash: bytes,
    route: str,
    policy: Policy = DEFAULT_POLICY,
) -> Claim | Answer:
    """Claim the key, or the stored answer; while another attempt runs, wait for it up to ``policy.wait``
    (polling with a growing pause), then 409 ``idempotency_key_in_use`` with ``Retry-After: 1``."""
    deadline = time.monotonic() + policy.wait.total_seconds()
    pause = 0.02
    while True:
        async with autocommit(pool) as conn:
            found = await claim(
                conn,
                cipher,
                principal=principal,
                key=key,
                request_hash=request_hash,
                route=route,
                now=datetime.now(UTC),
                policy=policy,
            )
        if not isinstance(found, Busy):
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            raise IdempotencyError("idempotency_key_in_use", retry_after=1)
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, 0.25)


# --- HTTP: the dependency, the replay and the recorder ---------------------------------------------------

STATE_KEY = "idempotency_claim"
"""The request-state attribute holding the running claim, for :class:`IdempotencyRecorder`."""


@dataclass
class Pending:
    """A claim held by a running request, with what is needed to answer or release it."""

    held: Claim
    pool: AsyncConnectionPool
    cipher: FieldCipher
    ended: bool = field(default=False)

    async def finish(self, answer: Answer) -> None:
        """Store a success or a deterministic refusal; release the key after anything else."""
        self.ended = True
        try:
            async with autocommit(self.pool) as conn:
                if storable(answer):
                    if not await complete(conn, self.cipher, self.held, answer):
                        log.warning("idempotency claim lost before its answer was stored")
                else:
                    await release(conn, self.held)
        except Exception:  # the answer still goes out; the claim's lease runs out on its own
            log.exception("idempotency answer not stored")

    async def abandon(self) -> None:
        """The request failed without an answer (an exception, a cancellation): release the key."""
        if self.ended:
            return
        self.ended = True
        try:
            async with autocommit(self.pool) as conn:
                await release(conn, self.held)
        except Exception:
            log.exception("idempotency claim not released (its lease will run out)")


def storable(answer: Answer) -> bool:
    """Successes and deterministic refusals are stored; a 5xx or a transient refusal is not."""
    return answer.status < 500 and answer.status not in TRANSIENT and len(answer.body) <= MAX_STORED_BODY


class Replayed(Exception):
    """Raised by the dependency to answer a stored answer instead of running the route."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


async def replay_answer(request: Request, exc: Replayed) -> Response:
    """The stored answer again, marked ``Idempotent-Replayed: true``."""
    answer = exc.answer
    headers = {k: v for k, v in answer.headers if k.lower() != "content-type"}
    headers[REPLAYED_HEADER] = "true"
    media_type = next((v for k, v in answer.headers if k.lower() == "content-type"), None)
    return Response(answer.body, status_code=answer.status, headers=headers, media_type=media_type)


def _route_name(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


async def _audit_refusal(request: Request, principal: Caller, route: str, refused: DomainError) -> None:
    actor = audit.Actor(
        principal.kind,
        str(principal.id),
        request.client.host if request.client else None,
        request.headers.get("user-agent"),
    )
    event = actor.refused(IdempotencyAction.KEY_REFUSED, refused.code, target=("route", route))
    await audit.record(request.app.state.runtime.pool, event)


async def claim_for_request(request: Request, principal: Caller) -> None:
    """Claim the request's key for ``principal``; raise :class:`Replayed` with the stored answer, or a 400
    or 409 refusal. A claim is left in the request's state for :class:`IdempotencyRecorder` to end."""
    runtime = request.app.state.runtime
    policy: Policy = getattr(request.app.state, POLICY_STATE, DEFAULT_POLICY)
    who, route = principal_key(principal), _route_name(request)
    try:
        key = parse_key(request.headers.get(HEADER))
        request_hash = fingerprint(
            runtime.keys.lookup_key,
            who,
            request.method,
            request.url.path,
            request.url.query,
            await request.body(),
        )
        found = await begin(
            runtime.pool,
            runtime.keys.cipher,
            principal=who,
            key=key,
            request_hash=request_hash,
            route=route,
            policy=policy,
        )
    except DomainError as refused:
        if refused.code in AUDITED:
            await _audit_refusal(request, principal, route, refused)
        raise
    if isinstance(found, Answer):
        raise Replayed(found)
    setattr(request.state, STATE_KEY, Pending(found, runtime.pool, runtime.keys.cipher))


DOCUMENTATION: Mapping[str, Any] = {
    "parameters": [
        {
            "name": HEADER,
            "in": "header",
            "required": True,
            "description": "A unique value per new request, the same on its retries: a retry answers the "
            "first answer (with `Idempotent-Replayed: true`); the same key with another request is a 409.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_PATTERN},
        }
    ],
    "problems": (400, 409),
    "answer_headers": {
        REPLAYED_HEADER: {
            "description": "`true` when this is the stored answer to an earlier request with the same key",
            "schema": {"type": "string", "enum": ["true"]},
        }
    },
}


def idempotent(gate: Callable[..., Awaitable[P]]) -> Callable[..., Awaitable[P]]:
    """A dependency: ``gate`` (the route's authorization), then the request's ``Idempotency-Key`` claimed
    for the principal it answers, which it passes on. Use it where the route names its principal::

        me: Annotated[Principal, Depends(idempotent(require_customer))]
    """

    async def dependency(request: Request, principal: Any = Depends(gate)) -> P:
        await claim_for_request(request, principal)
        caller: P = principal
        return caller

    dependency.__name__ = f"idempotent_{getattr(gate, '__name__', 'gate')}"
    setattr(dependency, OPENAPI_ATTR, DOCUMENTATION)
    return dependency


class IdempotencyRecorder:
    """Pure ASGI middleware: holds back the answer of a request that claimed a key until the answer is
    stored (or the key released), so a retry that comes after the answer always finds it; releases the
    key when the request raises or is cancelled."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def record(message: Message) -> None:
            nonlocal start
            pending: Pending | None = scope.get("state", {}).get(STATE_KEY)
            if pending is None or pending.ended or message["type"] not in _RESPONSE:
                await send(message)
                return
            if message["type"] == "http.response.start":
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            assert start is not None
            body = b"".join(chunks)
            await pending.finish(Answer(start["status"], _kept(start.get("headers", ())), body))
            await send(start)
            await send({"type": "http.response.body", "body": body})

        try:
            await self.app(scope, receive, record)
        finally:
            pending: Pending | None = scope.get("state", {}).get(STATE_KEY)
            if pending is not None:
                await pending.abandon()  # nothing if the answer was recorded


_RESPONSE = frozenset({"http.response.start", "http.response.body"})


def _kept(headers: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k.lower() in KEPT_HEADERS)


def install(app: FastAPI) -> None:
    """Make ``app`` answer stored answers and record new ones (once, beside the error handlers)."""
    app.add_exception_handler(Replayed, replay_answer)  # type: ignore[arg-type]
    app.add_middleware(IdempotencyRecorder)
