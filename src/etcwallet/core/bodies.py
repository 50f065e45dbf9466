"""Request bodies: how large they may be, which media type they must have, and how bad JSON is answered.

A body is refused before it is read whole: :class:`BodyLimit` (pure ASGI, outermost) answers 413 at once
when ``Content-Length`` is over the route's limit, and stops a chunked body as soon as it grows past it.
The limit is :data:`MAX_BODY` unless a route declares its own with :func:`body_limit` (the batch routes take
more; the fast lane less).

Bad JSON is answered like every other bad input, a 422 problem naming the field and the reason in the
caller's language: :func:`json_fault` turns what the JSON parsers raise (invalid UTF-8, nesting too deep,
a number too long to read) into a :class:`RequestValidationError`. A body that is not JSON at all
(another ``Content-Type``) is a 415 (:func:`unsupported_media_type`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from etcwallet.core.errors import DomainError, DomainHTTPError, problem_response
from etcwallet.core.i18n import negotiate

KIB = 1024
MIB = 1024 * KIB
MAX_BODY = 1 * MIB
"""The largest request body a route takes unless it declares another limit with :func:`body_limit`."""

MAX_BODY_KEY = "x-max-body-bytes"
"""The OpenAPI operation field in which a route declares (and documents) its own body limit."""

BODY_CHUNKS_KEY = "etcwallet.body_chunks"
"""Where :class:`BodyLimit` keeps the body's chunks in the ASGI scope, to say where bad JSON went wrong."""

MAX_DIGITS = 4300
"""The longest integer the JSON parsers read (Python's own limit for decimal strings)."""


def body_limit(limit: int) -> dict[str, Any]:
    """``openapi_extra`` for a route that takes bodies of up to ``limit`` bytes instead of :data:`MAX_BODY`."""
    return {MAX_BODY_KEY: limit}


def too_large(limit: int) -> DomainError:
    """The 413 refusal of a body over ``limit`` bytes."""
    return DomainError(
        "body_too_large",
        413,
        f"请求体太大：本接口最多接受 {limit} 字节",
        f"the request body is too large: this endpoint takes at most {limit} bytes",
        field="body",
        extra={"max_bytes": limit},
    )


def unsupported_media_type() -> DomainError:
    """The 415 refusal of a body that is not sent as JSON."""
    return DomainError(
        "unsupported_media_type",
        415,
        "请求体须为JSON（Content-Type: application/json）",
        "the body must be JSON (Content-Type: application/json)",
        field="Content-Type",
    )


def is_json(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` names JSON (``application/json`` or ``application/*+json``)."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class BodyLimit:
    """Refuse request bodies over their route's limit with 413 problem+json, before reading them whole.

    Pure ASGI, so that nothing in front of it reads the body: it wraps ``receive`` and counts. A declared
    ``Content-Length`` over the limit is answered at once, before the application (or its authentication)
    runs; a chunked body is stopped by the chunk that crosses the limit.
    """

    def __init__(self, app: ASGIApp, limits: Mapping[str, int], default: int = MAX_BODY) -> None:
        self.app = app
        self.default = default
        self.fixed = {path: limit for path, limit in limits.items() if "{" not in path}
        self.templated = [(compile_path(p)[0], n) for p, n in limits.items() if "{" in p]

    def limit_for(self, path: str) -> int:
        """The body limit of the route at ``path`` (a concrete request path)."""
        limit = self.fixed.get(path)
        if limit is not None:
            return limit
        for regex, declared in self.templated:
            if regex.match(path):
                return declared
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, send, limit)
            return
        chunks: list[bytes] = []
        scope[BODY_CHUNKS_KEY] = chunks
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > limit:
                    chunks.clear()
                    raise DomainHTTPError(too_large(limit))
                chunks.append(chunk)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except DomainHTTPError as exc:
            if started or exc.error.code != "body_too_large":
                raise
            await self._refuse(scope, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        lang = negotiate(headers.get("accept-language"))
        error = too_large(limit)
        response = problem_response(413, error.problem(lang, scope["path"]), {"Connection": "close"})

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def declared_limits(app: FastAPI) -> dict[str, int]:
    """Path template -> body limit of every route that declares one (``openapi_extra`` via :func:`body_limit`)."""
    limits: dict[str, int] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path and route.openapi_extra:
            declared = route.openapi_extra.get(MAX_BODY_KEY)
            if isinstance(declared, int):
                limits[context.path] = declared
    return limits


# --- bad JSON ----------------------------------------------------------------------------------------------


class _TooLong:
    """Stands in for an integer with more digits than Python reads, so that its place can be named."""


def _fault(
    kind: str, field: tuple[str | int, ...] = (), position: int | None = None
) -> RequestValidationError:
    error: dict[str, Any] = {"type": kind, "loc": ("body", *field), "msg": kind, "input": None}
    if position is not None:
        error["ctx"] = {"position": position}
    return RequestValidationError([error])


def _find(data: Any, wanted: type) -> tuple[str | int, ...]:
    """The location of the first value of type ``wanted`` in parsed JSON (without recursion: it may be deep)."""
    todo: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while todo:
        value, loc = todo.pop()
        if isinstance(value, wanted):
            return loc
        if isinstance(value, dict):
            todo.extend((v, (*loc, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            todo.extend((v, (*loc, i)) for i, v in reversed(list(enumerate(value))))
    return ()


def json_fault(body: bytes) -> RequestValidationError:
    """What is wrong with a body that a JSON parser refused, naming the field where it can.

    Invalid UTF-8 (with the byte offset), nesting too deep, an integer too long to read (at its field),
    or plain bad syntax (with the offset). Called only once a parser has failed, so it may be slow.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _fault("invalid_utf8", position=exc.start)
    too_long: list[_TooLong] = []

    def parse_int(digits: str) -> Any:
        if len(digits) > MAX_DIGITS:
            too_long.append(_TooLong())
            return too_long[-1]
        return int(digits)

    try:
        data = json.loads(text, parse_int=parse_int)
    except RecursionError:
        return _fault("json_too_deep")
    except json.JSONDecodeError as exc:
        return _fault("json_invalid", position=len(text[: exc.pos].encode()))
    if too_long:
        return _fault("number_too_long", _find(data, _TooLong))
    return _fault("json_invalid")


def fast_json_fault(message: str, body: bytes) -> RequestValidationError:
    """The fault behind pydantic-core's ``json_invalid`` (its parser stops at 200 levels of nesting)."""
    return _fault("json_too_deep") if "recursion limit exceeded" in message else json_fault(body)


def body_of(scope: Scope) -> bytes | None:
    """The body as :class:`BodyLimit` saw it go by (None when it did not)."""
    chunks: Iterable[bytes] | None = scope.get(BODY_CHUNKS_KEY)
    return None if chunks is None else b"".join(chunks)


def parse_failure(scope: Scope, cause: BaseException) -> RequestValidationError:
    """The 422 for a body FastAPI could not parse (it answers those with a bare 400 naming nothing)."""
    if isinstance(cause, UnicodeDecodeError):
        return _fault("invalid_utf8", position=cause.start)
    if isinstance(cause, RecursionError):
        return _fault("json_too_deep")
    body = body_of(scope)
    return _fault("json_invalid") if body is None else json_fault(body)
