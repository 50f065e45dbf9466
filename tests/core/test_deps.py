"""The route dependencies (core/deps.py): each hands a route what the application holds, and nothing else."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import httpx
from fastapi import FastAPI

import etcwallet
from etcwallet.core.deps import (
    Client,
    ClientDep,
    KeysDep,
    LedgerDep,
    PoolDep,
    SettingsDep,
    UnitOfWorkDep,
    get_client,
    get_pool,
)
from etcwallet.identity.authz import (
    ActorDep,
    AnonymousActor,
    CustomerActor,
    Principal,
    Role,
    StaffActor,
    actor_of,
    load_principal,
    require_customer,
)
from etcwallet.identity.sms import SmsDep
from etcwallet.platform.audit import Actor

SRC = Path(etcwallet.__file__).parent


def _http(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _app() -> tuple[FastAPI, dict[str, object]]:
    """An application whose state holds a distinct marker object for each resource."""
    held: dict[str, object] = {
        name: object() for name in ("pool", "ledger", "keys", "uow", "sms", "settings")
    }
    app = FastAPI()
    app.state.runtime = SimpleNamespace(
        pool=held["pool"], ledger=held["ledger"], keys=held["keys"], uow=held["uow"], sms=held["sms"]
    )
    app.state.ledger = held["ledger"]
    app.state.settings = held["settings"]
    seen: dict[str, object] = {}

    @app.get("/all")
    async def everything(
        pool: PoolDep,
        ledger: LedgerDep,
        keys: KeysDep,
        uow: UnitOfWorkDep,
        settings: SettingsDep,
        sms: SmsDep,
        client: ClientDep,
    ) -> dict[str, Any]:
        seen.update(pool=pool, ledger=ledger, keys=keys, uow=uow, settings=settings, sms=sms, client=client)
        return {}

    return app, {**held, "seen": seen}


async def test_each_dependency_hands_over_what_the_application_holds() -> None:
    app, held = _app()
    async with _http(app) as http:
        assert (await http.get("/all", headers={"user-agent": "etcw-test/1"})).status_code == 200
    seen = held["seen"]
    assert isinstance(seen, dict)
    for name in ("pool", "ledger", "keys", "uow", "settings", "sms"):
        assert seen[name] is held[name], name
    assert seen["client"] == Client("192.0.2.7", "etcw-test/1")


def test_dependencies_add_no_parameter_to_the_api_document() -> None:
    app, _ = _app()
    operation = app.openapi()["paths"]["/all"]["get"]
    assert "parameters" not in operation
    assert "requestBody" not in operation


async def test_a_test_may_override_one_dependency() -> None:
    app, held = _app()
    other = object()
    app.dependency_overrides[get_pool] = lambda: other
    async with _http(app) as http:
        await http.get("/all")
    seen = held["seen"]
    assert isinstance(seen, dict)
    assert seen["pool"] is other
    assert seen["keys"] is held["keys"]


def test_the_client_without_a_user_agent_or_peer() -> None:
    from starlette.requests import Request

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    assert get_client(Request(scope)) == Client(None, None)
    scope = {**scope, "client": ("203.0.113.9", 5555), "headers": [(b"user-agent", b"app/2")]}
    assert get_client(Request(scope)) == Client("203.0.113.9", "app/2")


def test_the_actor_of_a_principal_and_a_client() -> None:
    client = Client("198.51.100.1", "ua")
    customer = Principal("customer", uuid4(), uuid4())
    staff = Principal("staff", uuid4(), uuid4(), Role.FINANCE)
    assert actor_of(None, client) == Actor("anonymous", None, "198.51.100.1", "ua")
    assert actor_of(customer, client) == Actor("customer", str(customer.id), "198.51.100.1", "ua")
    assert actor_of(staff, client) == Actor("staff", str(staff.id), "198.51.100.1", "ua")


async def test_the_actor_dependencies_go_through_the_gates() -> None:
    """The authorization matrix recognises gates by name: each actor dependency must depend on one."""
    app = FastAPI()
    customer_id = uuid4()

    async def signed_in() -> Principal:
        return Principal("customer", customer_id, uuid4())

    @app.get("/a")
    async def a(who: ActorDep, c: CustomerActor, anyone: AnonymousActor) -> dict[str, Any]:
        return {"who": who.id, "customer": c.id, "anyone": anyone.type}

    @app.get("/s")
    async def s(who: StaffActor) -> dict[str, Any]:
        return {"who": who.id}

    names = {
        dep.call.__name__
        for route in app.routes
        if hasattr(route, "dependant")
        for top in route.dependant.dependencies
        for dep in top.dependencies
    }
    assert {"load_principal", "require_customer", "require_staff"} <= names
    app.dependency_overrides[load_principal] = signed_in
    app.dependency_overrides[require_customer] = signed_in
    async with _http(app) as http:
        answer = (await http.get("/a")).json()
    assert answer == {"who": str(customer_id), "customer": str(customer_id), "anyone": "anonymous"}


def test_routes_ask_for_what_they_use_rather_than_reach_into_the_app_state() -> None:
    """Route modules take the pool, keys… as dependencies (the gates and the fast lane read the state)."""
    offenders = [
        str(path.relative_to(SRC)) for path in sorted(SRC.rglob("*api.py")) if "app.state" in path.read_text()
    ]
    assert offenders == []
