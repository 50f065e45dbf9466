"""What a route may ask for, one way each: ``Annotated`` dependencies on what the running application holds.

A route declares ``pool: PoolDep``, ``ledger: LedgerDep``, ``keys: KeysDep``, ``uow: UnitOfWorkDep``,
``settings: SettingsDep`` or ``client: ClientDep`` rather than reaching into ``request.app.state``: the
route says what it uses, and tests can override one dependency (``app.dependency_overrides``).

Where each lives, and why:

- here (``core``): the process's resources (pool, ledger, keys, unit of work, settings) and the caller's
  client (ip, user agent). ``core`` stays free of ``identity``: this module is the one in ``core`` that
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

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.ledger.service import Ledger
from etcwallet.platform.unit import UnitOfWork


@dataclass(frozen=True)
class Client:
    """Where a request came from: its peer address and user agent, for sessions and the audit log."""

    ip: str | None
    user_agent: str | None


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


def get_client(request: Request) -> Client:
    """The request's client: the peer's address (None when unknown) and its ``User-Agent`` header."""
    ip = request.client.host if request.client else None
    return Client(ip, request.headers.get("user-agent"))


PoolDep = Annotated[AsyncConnectionPool, Depends(get_pool)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]
KeysDep = Annotated[Keys, Depends(get_keys)]
UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_uow)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[Client, Depends(get_client)]
