"""What a route may ask for, one way each: ``Annotated`` dependencies on what the running application holds.

A route declares ``pool: PoolDep``, ``ledger: LedgerDep``, ``keys: KeysDep``, ``uow: UnitOfWorkDep``,
``settings: SettingsDep``, ``clock: ClockDep`` or ``client: ClientDep`` rather than reaching into ``request.app.state``: the
route says what it uses, and tests can override one dependency (``app.dependency_overrides``).

Where each lives, and why:

- here (``core``): the process's resources (pool, ledger, keys, unit of work, settings, clock) and the
  caller's client (ip, user agent, device id). Routes that open a session take ``SessionClientDep``
  instead of ``ClientDep``: the same client, with the ``X-Device-Id`` header declared in the document. ``core`` stays free of ``identity``: this module is the one in ``core`` that
  names the ledger's and the platform's types, because a route needs them typed; the leaves (config,
  db, crypto...) import none of them.
- ``identity/authz.py``: the caller. ``Depends(require_customer)``, ``Depends(require(Permission.X))``
  (the gates, whose names the authorization matrix reads), and ``ActorDep`` / ``CustomerActor`` /
  ``StaffActor``: the audit's actor built from the gate's principal and this module's client.
- ``identity/sms.py``: ``SmsDep``, the SMS gateway (an identity type).

There is no ``RuntimeDep``: ``Runtime`` is defined in ``etcwallet.app``, which imports every router, so
a route asks for the part it uses instead of the whole runtime.

The ledger's hot route (``POST /api/v1/ledger/transfers``, served by ``core/http.py``'s ``HotRoutes``)
takes only a ``Request`` and solves no dependencies; it calls :func:`get_ledger` and
:func:`get_client` directly, which is why they take the request and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.clock import Clock
from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.core.errors import DomainError
from etcwallet.core.openapi import OPENAPI_ATTR
from etcwallet.ledger.service import Ledger
from etcwallet.platform.unit import UnitOfWork

DEVICE_HEADER = "X-Device-Id"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
"""A device id: the random id the app made once and keeps (8 to 64 of A-Z a-z 0-9 _ -)."""
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)


@dataclass(frozen=True)
class Client:
    """Where a request came from, for sessions and the audit log: the one shape of client info.

    ``ip`` is the peer's address, ``user_agent`` its ``User-Agent`` header, ``device_id`` the app's
    ``X-Device-Id`` header (None when not sent).
    """

    ip: str | None
    user_agent: str | None
    device_id: str | None = None


def device_id_invalid() -> DomainError:
    """The refusal of a malformed ``X-Device-Id`` header (a fresh error each time)."""
    return DomainError(
        "device_id_invalid",
        400,
        "X-Device-Id 请求头格式不正确：应为 8 至 64 位字母、数字、下划线或连字符",
        "the X-Device-Id header is malformed: 8 to 64 of A-Z a-z 0-9 _ -",
        field=DEVICE_HEADER,
    )


def get_pool(request: Request) -> AsyncConnectionPool:
    """The application's connection pool."""
    pool: AsyncConnectionPool = request.app.state.runtime.pool
    return pool


def get_ledger(request: Request) -> Ledger:
    """The application's ledger service."""
    ledger: Ledger = request.app.state.ledger
    return ledger


def get_keys(request: Request) -> Keys:
    """The application's keys (field cipher, token signing)."""
    keys: Keys = request.app.state.runtime.keys
    return keys


def get_uow(request: Request) -> UnitOfWork:
    """The application's unit of work (``Runtime.uow``): one step, one transaction."""
    uow: UnitOfWork = request.app.state.runtime.uow
    return uow


def get_settings(request: Request) -> Settings:
    """The settings the application was built with."""
    settings: Settings = request.app.state.settings
    return settings


def get_clock(request: Request) -> Clock:
    """The application's clock (the unit of work's, which is the ledger's): identity's time rules read it."""
    clock: Clock = request.app.state.runtime.uow.clock
    return clock


def get_client(request: Request) -> Client:
    """The request's client: the peer's address (None when unknown), ``User-Agent`` and ``X-Device-Id``.

    A malformed device id is refused (400 ``device_id_invalid``, naming the header) before the route runs,
    so nothing is written; an absent one is None.
    """
    ip = request.client.host if request.client else None
    headers = request.headers
    device_id = headers.get("x-device-id")
    if device_id is not None and _DEVICE_ID.fullmatch(device_id) is None:  # not before a final newline
        raise device_id_invalid()
    return Client(ip, headers.get("user-agent"), device_id)


def get_session_client(request: Request) -> Client:
    """:func:`get_client`, for the routes that open a session: they document the ``X-Device-Id`` header."""
    return get_client(request)


_DEVICE_PARAMETER: dict[str, Any] = {
    "name": DEVICE_HEADER,
    "in": "header",
    "required": False,
    "description": "the app's device id: a random id it made once and keeps, stored with the session so "
    "later rules can tell a new device (8-64 of A-Z a-z 0-9 _ -; a malformed one is a 400)",
    "schema": {"type": "string", "pattern": DEVICE_ID_PATTERN},
}
setattr(get_session_client, OPENAPI_ATTR, {"parameters": [_DEVICE_PARAMETER], "problems": [400]})


PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]
KeysDep = Annotated[Keys, Depends(get_keys)]
UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_uow)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
ClientDep = Annotated[Client, Depends(get_client)]
SessionClientDep = Annotated[Client, Depends(get_session_client)]
