"""The fast lane for the busiest HTTP endpoints.

FastAPI's middleware layers, route matching and dependency solving cost more CPU than the ledger itself
on the busiest endpoints. An endpoint on a *hot router* takes the ``Request`` alone, checks its own
token and parses its own body (:func:`parse_body`); :class:`HotRoutes` sits outermost and serves such
routes directly, with the same problem+json answers and metrics as every other route. The router is
still included in the application, so its routes appear in the OpenAPI document (:func:`body_schema`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from etcwallet.core import metrics
from etcwallet.core.bodies import body_limit, fast_json_fault, is_json, too_large, unsupported_media_type
from etcwallet.core.errors import problem_for

M = TypeVar("M", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]

MAX_HOT_BODY = 64 * 1024
"""Hot endpoints take small JSON documents; anything larger is refused before it is read whole."""


async def parse_body(request: Request, model: type[M]) -> M:
    """Validate the request's JSON body as ``model``; a failure is the usual 422 (or 413, 415) problem+json."""
    if not is_json(request.headers.get("content-type")):
        raise unsupported_media_type()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_HOT_BODY:
            raise too_large(MAX_HOT_BODY)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        bad_json = next((e for e in errors if e["type"] == "json_invalid"), None)
        if bad_json is None:
            raise RequestValidationError(errors) from None
    # The fast parser only says "invalid JSON"; the slow one says where and why (or which field is wrong)
    fault = fast_json_fault(str(bad_json.get("ctx", {}).get("error", "")), body)
    if fault.errors()[0]["type"] == "json_invalid":
        try:
            model.model_validate(json.loads(body))
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None
        except (ValueError, RecursionError):
            pass
    raise fault


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON request body of a route that parses it itself."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        **body_limit(MAX_HOT_BODY),
    }


class HotRoutes:
    """ASGI app in front of the whole stack: serves the hot routers' routes itself, passes the rest on.

    Every route on a hot router is ``async def endpoint(request: Request) -> Response`` on a fixed path.
    """

    def __init__(self, app: ASGIApp, hot_routers: Iterable[APIRouter]) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], Endpoint] = {}
        for route in (r for router in hot_routers for r in router.routes):
            if not isinstance(route, APIRoute) or "{" in route.path:
                raise ValueError(f"hot route {route} must be an API route on a fixed path")
            for method in route.methods or ():
                self.routes[(method, route.path)] = route.endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except ClientDisconnect:
            return  # nobody is left to answer
        except Exception as exc:  # every failure becomes the same problem+json the other routes give
            response = await problem_for(request, exc)
        await response(scope, receive, send)
        path = scope["path"]
        metrics.HTTP_REQUESTS.labels(scope["method"], path, str(response.status_code)).inc()
        metrics.HTTP_SECONDS.labels(scope["method"], path).observe(time.perf_counter() - started)
