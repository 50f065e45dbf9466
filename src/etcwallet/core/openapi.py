"""The OpenAPI document tells the truth about refusals: every problem answer a route can give, as problem+json.

A route lists the refusals particular to it with ``responses=problems(404, 409, ...)``. The ones that follow
from its shape are added to the document for every route by :func:`document_problems`, so a new route gets
them without asking: 401 and 403, and the bearer security requirement, when an authorization dependency
(``require_*``) guards it; 422 when it takes parameters or a body; 413 and 415 when it takes a body (with
the route's body limit); 404 when its path names a resource. FastAPI's own 422 (``application/json``, a shape we never send) is replaced.

A dependency may describe what it adds to the operations it guards with an ``__openapi__`` mapping
(``platform/idempotency.py`` does: the ``Idempotency-Key`` header, its 400 and 409 answers and the
``Idempotent-Replayed`` answer header): ``parameters``, ``problems`` and ``answer_headers`` (on 2xx).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field

from etcwallet.core.bodies import MAX_BODY, MAX_BODY_KEY
from etcwallet.core.errors import PROBLEM_JSON

PROBLEM_REF = "#/components/schemas/ProblemDetails"

DESCRIPTIONS: dict[int, str] = {
    400: "Refused as malformed beyond field validation (an expired or spent WebAuthn challenge, a missing or "
    "malformed `Idempotency-Key`)",
    401: "Not signed in: the token is missing, invalid or expired (`unauthenticated`)",
    403: "Signed in, but this principal or role may not do this (`forbidden`)",
    404: "The resource named in the path (or a resource the body names) does not exist",
    409: "Conflicts with the current state (an id or `Idempotency-Key` reused with another request, a key "
    "still in use, a state already reached)",
    413: "The request body is over this endpoint's limit (`body_too_large`)",
    415: "The body is not sent as JSON (`unsupported_media_type`)",
    422: "The request is invalid: `errors` names each field and the reason",
    423: "Locked after too many failed attempts (`locked_until` says until when)",
    429: "Too many requests: retry after `Retry-After` seconds",
    503: "Not available on this server (passkeys not configured)",
}


BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "a session's access token (web pages send it in the etcw_session cookie with X-CSRF-Token)",
}


MACHINE_SIGNATURE = {
    "type": "apiKey",
    "in": "header",
    "name": "X-Etcw-Signature",
    "description": "a machine client's signed request: X-Etcw-Client (its id), X-Etcw-Timestamp (Unix "
    "seconds, within 300 s of the server's clock), X-Etcw-Nonce (16-64 of A-Z a-z 0-9 _ -, never reused) and "
    "X-Etcw-Signature, the hex HMAC-SHA256 under its secret of 'ETCW1-HMAC-SHA256', the method, the path and "
    "query as sent, the timestamp, the nonce and the hex SHA-256 of the body, one per line",
}
MACHINE_KEY = {
    "type": "http",
    "scheme": "bearer",
    "description": "a machine client's bearer key (etcwk_…), for the kinds that do not sign",
}
MACHINE_GATE = "require_machine"
"""The name every machine gate's dependency starts with (etcwallet.platform.clients.gate)."""


class FieldError(BaseModel):
    """One field that was wrong, and why."""

    field: str
    code: str
    message: str


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: ``code`` is stable, ``title`` is in the caller's language (zh-CN or English)."""

    model_config = ConfigDict(extra="allow", title="ProblemDetails")

    type: str = Field(description="a URI reference naming the kind of problem")
    title: str = Field(description="what went wrong, in the caller's language")
    status: int = Field(ge=400, le=599)
    code: str | None = Field(default=None, description="a stable, machine-readable reason")
    field: str | None = Field(default=None, description="the field (or header) the problem is about")
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = Field(default=None, description="every field that was wrong")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route's own refusals (those :func:`document_problems` cannot infer), as problem+json."""
    return {
        status: {
            "description": DESCRIPTIONS.get(status, "Refused"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
        }
        for status in statuses
    }


OPENAPI_ATTR = "__openapi__"


def _dependencies(route: APIRoute) -> list[Any]:
    """Every dependency callable of ``route``, sub-dependencies included."""
    calls, todo = [], list(route.dependant.dependencies)
    while todo:
        dep = todo.pop()
        calls.append(dep.call)
        todo.extend(dep.dependencies)
    return calls


def _gate(route: APIRoute) -> str | None:
    """Who the route's authorization dependency admits: "machine", "person", or None (nobody checks)."""
    for call in _dependencies(route):
        name = getattr(call, "__name__", "")
        if name.startswith(MACHINE_GATE):
            return "machine"
        if name.startswith(("require_", "load_principal")):
            return "person"
    return None


def _gated(route: APIRoute) -> bool:
    return _gate(route) is not None


def _annotations(route: APIRoute) -> list[Mapping[str, Any]]:
    """What the route's dependencies say they add to its operation (their ``__openapi__``)."""
    return [getattr(call, OPENAPI_ATTR) for call in _dependencies(route) if hasattr(call, OPENAPI_ATTR)]


def _annotate(route: APIRoute, operation: dict[str, Any]) -> None:
    """Add the route's dependencies' parameters and answer headers to ``operation``."""
    for note in _annotations(route):
        parameters = operation.setdefault("parameters", [])
        named = {(p.get("in"), p.get("name")) for p in parameters}
        parameters.extend(
            copy.deepcopy(p) for p in note.get("parameters", ()) if (p["in"], p["name"]) not in named
        )
        for status, answer in operation.get("responses", {}).items():
            if str(status).startswith("2"):
                answer.setdefault("headers", {}).update(copy.deepcopy(dict(note.get("answer_headers", {}))))


def _inferred(route: APIRoute, path: str, operation: dict[str, Any]) -> list[int]:
    statuses: list[int] = [status for note in _annotations(route) for status in note.get("problems", ())]
    has_body = "requestBody" in operation
    if _gated(route):
        statuses += [401, 403]
    if "{" in path:
        statuses.append(404)
    if has_body:
        statuses += [413, 415]
    if has_body or operation.get("parameters"):
        statuses.append(422)
    return statuses


def document_problems(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    """Add every inferable problem answer to ``document`` (the app's OpenAPI document), in place."""
    document.setdefault("components", {}).setdefault("schemas", {})
    schemas = document["components"]["schemas"]
    schemas["ProblemDetails"] = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas["FieldError"] = schemas["ProblemDetails"].pop("$defs", {}).get("FieldError", {})
    schemes = document["components"].setdefault("securitySchemes", {})
    schemes.update(bearer=BEARER, machine_signature=MACHINE_SIGNATURE, machine_key=MACHINE_KEY)
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path
        if not isinstance(route, APIRoute) or not route.include_in_schema or path not in document["paths"]:
            continue
        assert path is not None
        for method in sorted(context.methods or ()):
            operation = document["paths"][path].get(method.lower())
            if operation is None:
                continue
            gate = _gate(route)
            if gate == "machine":
                operation.setdefault("security", [{"machine_signature": []}, {"machine_key": []}])
            elif gate == "person":
                operation.setdefault("security", [{"bearer": []}])
            _annotate(route, operation)
            responses = operation.setdefault("responses", {})
            for status, answer in problems(*_inferred(route, path, operation)).items():
                if str(status) == "422" or str(status) not in responses:
                    responses[str(status)] = copy.deepcopy(answer)
            operation["responses"] = responses = dict(sorted(responses.items()))
            if "413" in responses:
                limit = operation.get(MAX_BODY_KEY, MAX_BODY)
                responses["413"]["description"] = f"The request body is over {limit} bytes (`body_too_large`)"
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document
