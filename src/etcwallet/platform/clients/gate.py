"""The machine gate: a FastAPI dependency admitting machine clients that hold a route's scope.

A machine route declares ``Depends(machine(Scope.X))`` (or ``machine()`` for any machine) and receives the
:class:`~etcwallet.platform.clients.types.MachinePrincipal`. People's sessions never pass it, and machine
credentials never pass the people's gates (a machine key is not a session token). Every admitted call
is logged with the client's id, which is also bound to the request's log context, and audited by the
route's service; every refusal is audited by :func:`~etcwallet.platform.clients.service.authenticate`.
"""

from __future__ import annotations

import structlog
from fastapi import Request

from etcwallet.core.openapi import MACHINE_GATE
from etcwallet.platform.clients import service, signing
from etcwallet.platform.clients.types import MachineCall, MachinePrincipal, Scope

GATE_PREFIX = MACHINE_GATE
"""Every machine gate's name starts so: the OpenAPI document and the authorization matrix recognise it."""


class MachineGate:
    """``Depends(MachineGate(scope))``: the calling machine, authenticated and holding ``scope``."""

    def __init__(self, scope: Scope | None) -> None:
        self.scope = scope
        self.__name__ = GATE_PREFIX + (f"_{scope.value.replace('.', '_')}" if scope else "")

    async def __call__(self, request: Request) -> MachinePrincipal:
        rt = request.app.state.runtime
        principal = await service.authenticate(rt.pool, rt.keys, await read_call(request), scope=self.scope)
        structlog.contextvars.bind_contextvars(machine_client_id=str(principal.id))
        request.state.machine = principal
        return principal

    def __repr__(self) -> str:
        return f"MachineGate({self.scope})"


def machine(scope: Scope | None = None) -> MachineGate:
    """The gate of a machine route: machines holding ``scope`` (any machine client when None)."""
    return MachineGate(scope)


async def read_call(request: Request) -> MachineCall:
    """The request's target, body and machine credentials (absent ones None), as the service checks them."""
    headers = request.headers
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    key = token if scheme.lower() == "bearer" and token.startswith(signing.BEARER_KEY_PREFIX) else None
    return MachineCall(
        method=request.method,
        target=signing.request_target(
            request.scope.get("raw_path") or request.scope["path"].encode(), request.scope["query_string"]
        ),
        body=await request.body(),
        ip=request.client.host if request.client else None,
        user_agent=headers.get("user-agent"),
        client=headers.get(signing.HEADER_CLIENT),
        timestamp=headers.get(signing.HEADER_TIMESTAMP),
        nonce=headers.get(signing.HEADER_NONCE),
        signature=headers.get(signing.HEADER_SIGNATURE),
        key=key,
    )
