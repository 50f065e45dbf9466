"""The authorization matrix: every protected endpoint called as every kind of caller.

Callers: nobody (no token), a revoked session's token, a customer, a staff member in each role, and two
machine clients: a toll lane that signs its requests and holds the lane's scopes (``machine``), and a
road operator with a bearer key holding only ``settlement.download`` (``machine_wrong_scope`` wherever a
route needs another scope). The expectation table ``EXPECTED`` names, route by route, who gets past the
authorization gate. It is written
out by hand on purpose: widening a role's permissions or loosening a route's dependency makes a cell fail
here, and a new route fails ``test_every_route_is_classified`` until someone classifies it.

A refusal is 401 (no live session) or 403 (the wrong kind of principal, or a role without the permission),
on a machine route 401 ``machine_unauthenticated`` (no machine credentials: people's sessions are not) or
403 ``scope_missing`` (a machine without the route's scope), and machines' credentials are no session on
people's routes (401 ``unauthenticated``); always an ``application/problem+json`` body with only the problem's fields, and none of the target's data. An
admitted call may still be refused for its (deliberately minimal) body — a 422 proves the gate was passed —
but never with 401, 403 or 500.

Beyond the gate: outlet staff see only their own outlet's records (others' are 404, as if they did not
exist), and one customer cannot end another customer's session or remove their passkey.

Principals are opened directly in the database (staff rows and sessions, as ``tests/e2e/conftest.py``
does): the sign-in flows are the identity tests' job, and a fresh session per cell costs one INSERT, so a
cell that signs out or freezes its caller cannot disturb the next one.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.deps import Client
from etcwallet.identity.authz import OUTLET_ROLES, ROLE_PERMISSIONS, Permission, Role
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.staff import service as staff
from etcwallet.platform.audit import Actor
from etcwallet.platform.clients import service as clients
from etcwallet.platform.clients.gate import MachineGate
from etcwallet.platform.clients.types import KIND_SCOPES, ClientKind, IssuedClient, Scope
from tests.idempotency_keys import keyed
from tests.identity.customer_helpers import new_resident_id
from tests.identity.software_authenticator import SoftwareAuthenticator, random_phone
from tests.platform.clients.builders import credentials

try:  # FastAPI ≥ 0.16x keeps included routers as nodes; this walks them down to the routes
    from fastapi.routing import iter_route_contexts
except ImportError:  # pragma: no cover - older FastAPI lists the routes flat
    iter_route_contexts = None

PROBLEM = "application/problem+json"
ORIGIN = "http://test"  # the client's base URL: WebAuthn RP id "test"
STAFF_PASSWORD = "Staff-pass-2026!"

# --- who calls -----------------------------------------------------------------------------------------

ANONYMOUS = "anonymous"
REVOKED = "revoked_token"
CUSTOMER = "customer"
OO, OS, BO = "outlet_operator", "outlet_supervisor", "bank_operator"
FIN, RISK, SUP, ADM = "finance", "risk_officer", "support_agent", "administrator"
MACHINE, MACHINE_WRONG_SCOPE = "machine", "machine_wrong_scope"
PRINCIPALS = (ANONYMOUS, REVOKED, CUSTOMER, OO, OS, BO, FIN, RISK, SUP, ADM, MACHINE, MACHINE_WRONG_SCOPE)
UNAUTHENTICATED = frozenset({ANONYMOUS, REVOKED})
MACHINES = frozenset({MACHINE, MACHINE_WRONG_SCOPE})
# The machine clients the world makes: (kind, scopes). Written out, like the table below.
MACHINE_CLIENTS: dict[str, tuple[ClientKind, frozenset[Scope]]] = {
    MACHINE: (ClientKind.LANE, KIND_SCOPES[ClientKind.LANE]),  # signs its requests
    MACHINE_WRONG_SCOPE: (ClientKind.ROAD_OPERATOR, frozenset({Scope.SETTLEMENT_DOWNLOAD})),  # a bearer key
}

# --- the expectation table -----------------------------------------------------------------------------
# Who is let through each route's gate. Literal role names, not derived from ROLE_PERMISSIONS, so that a
# change in code that widens access fails a cell; test_table_matches_declared_permissions checks the table
# against each route's declared dependency and ROLE_PERMISSIONS, so the two cannot drift apart silently.

ALL_STAFF = frozenset({OO, OS, BO, FIN, RISK, SUP, ADM})
ONLY_CUSTOMER = frozenset({CUSTOMER})
LEDGER_READERS = frozenset({FIN, RISK})
LEDGER_WRITERS = frozenset({FIN})
OUTLET_READERS = frozenset({OO, OS, BO, FIN, SUP, ADM})
STAFF_READERS = frozenset({OS, ADM})
ADMINISTRATORS = frozenset({ADM})
AUDIT_READERS = frozenset({RISK, ADM})
PLATFORM_OPERATORS = frozenset({ADM})
CUSTOMER_READERS = frozenset({OO, OS, BO, RISK, SUP})
CUSTOMER_FREEZERS = frozenset({RISK})
OUTLET_OPERATORS = frozenset({OO, OS, BO})  # issuance.operate: staff at an outlet's counter
STOCKKEEPERS = frozenset({OS})  # issuance.stock: an outlet's supervisor receives and moves its stock
ANY_MACHINE = MACHINES
DEVICES = frozenset({MACHINE})  # devices.heartbeat: lanes, gantries, terminals; not a road operator

L = "/api/v1/ledger"
C = "/api/v1/customers"
F = "/api/v1/me/factors"
ISS = "/api/v1/issuance"
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    # ledger (finance moves money; risk reads it)
    ("POST", f"{L}/transfers"): LEDGER_WRITERS,
    ("POST", f"{L}/accounts"): LEDGER_WRITERS,
    ("GET", f"{L}/accounts/{{account_id}}"): LEDGER_READERS,
    ("PUT", f"{L}/accounts/{{account_id}}/frozen"): LEDGER_WRITERS,
    ("GET", f"{L}/accounts/{{account_id}}/transfers"): LEDGER_READERS,
    ("GET", f"{L}/accounts/{{account_id}}/balance"): LEDGER_READERS,
    ("POST", f"{L}/transfers/linked"): LEDGER_WRITERS,
    ("POST", f"{L}/transfers/batch"): LEDGER_WRITERS,
    ("POST", f"{L}/transfers/{{pending_id}}/post"): LEDGER_WRITERS,
    ("POST", f"{L}/transfers/{{pending_id}}/void"): LEDGER_WRITERS,
    ("GET", f"{L}/transfers/{{transfer_id}}"): LEDGER_READERS,
    # staff session
    ("POST", "/api/v1/staff/auth/logout"): ALL_STAFF,
    ("GET", "/api/v1/staff/me"): ALL_STAFF,
    ("GET", "/api/v1/staff/me/step-up"): ALL_STAFF,
    ("POST", "/api/v1/staff/me/step-up/totp"): ALL_STAFF,
    # administration
    ("POST", "/api/v1/admin/outlets"): ADMINISTRATORS,
    ("GET", "/api/v1/admin/outlets"): OUTLET_READERS,
    ("GET", "/api/v1/admin/outlets/{outlet_id}"): OUTLET_READERS,
    ("POST", "/api/v1/admin/staff"): ADMINISTRATORS,
    ("GET", "/api/v1/admin/staff"): STAFF_READERS,
    ("GET", "/api/v1/admin/staff/{staff_id}"): STAFF_READERS,
    ("PATCH", "/api/v1/admin/staff/{staff_id}"): ADMINISTRATORS,
    ("POST", "/api/v1/admin/staff/{staff_id}/enrollment-code"): ADMINISTRATORS,
    ("GET", "/api/v1/admin/staff-changes"): ADMINISTRATORS,
    ("GET", "/api/v1/admin/staff-changes/{change_id}"): ADMINISTRATORS,
    ("POST", "/api/v1/admin/staff-changes/{change_id}/approve"): ADMINISTRATORS,
    ("POST", "/api/v1/admin/staff-changes/{change_id}/reject"): ADMINISTRATORS,
    ("GET", "/api/v1/admin/audit"): AUDIT_READERS,
    ("GET", "/api/v1/admin/audit/verify"): AUDIT_READERS,
    ("GET", "/api/v1/admin/machine-clients"): ADMINISTRATORS,
    ("POST", "/api/v1/admin/machine-clients/{client_id}/revoke"): ADMINISTRATORS,
    # machine clients (never people)
    ("GET", "/api/v1/machine/whoami"): ANY_MACHINE,
    ("POST", "/api/v1/machine/heartbeat"): DEVICES,
    ("GET", "/api/v1/admin/events/consumers"): PLATFORM_OPERATORS,
    ("GET", "/api/v1/admin/events/parked"): PLATFORM_OPERATORS,
    ("POST", "/api/v1/admin/events/parked/{parked_id}/replay"): PLATFORM_OPERATORS,
    # the signed-in customer's own account
    ("POST", f"{C}/auth/logout"): ONLY_CUSTOMER,
    ("GET", f"{C}/me"): ONLY_CUSTOMER,
    ("POST", f"{C}/me/sms-codes"): ONLY_CUSTOMER,
    ("POST", f"{C}/me/password"): ONLY_CUSTOMER,
    ("GET", f"{C}/me/sessions"): ONLY_CUSTOMER,
    ("DELETE", f"{C}/me/sessions/{{session_id}}"): ONLY_CUSTOMER,
    ("GET", f"{C}/me/profile"): ONLY_CUSTOMER,
    ("PUT", f"{C}/me/profile"): ONLY_CUSTOMER,
    ("GET", f"{C}/me/payment-password"): ONLY_CUSTOMER,
    ("PUT", f"{C}/me/payment-password"): ONLY_CUSTOMER,
    ("POST", f"{C}/me/payment-password/verify"): ONLY_CUSTOMER,
    ("POST", f"{C}/me/payment-password/reset"): ONLY_CUSTOMER,
    ("POST", f"{C}/me/freeze"): ONLY_CUSTOMER,
    ("GET", "/api/v1/me/accounts"): ONLY_CUSTOMER,
    ("POST", "/api/v1/me/close"): ONLY_CUSTOMER,
    # staff on customers
    ("GET", f"{C}/{{customer_id}}"): CUSTOMER_READERS,
    ("GET", f"{C}/{{customer_id}}/accounts"): CUSTOMER_READERS,
    ("POST", f"{C}/{{customer_id}}/freeze"): CUSTOMER_FREEZERS,
    ("POST", f"{C}/{{customer_id}}/unfreeze"): CUSTOMER_FREEZERS,
    # an outlet's counter: find, open and verify customers
    ("POST", "/api/v1/outlet/customers/search/phone"): OUTLET_OPERATORS,
    ("POST", "/api/v1/outlet/customers"): OUTLET_OPERATORS,
    ("POST", "/api/v1/outlet/customers/search"): OUTLET_OPERATORS,
    ("POST", "/api/v1/outlet/customers/{customer_id}/verify"): OUTLET_OPERATORS,
    ("POST", f"{C}/{{customer_id}}/close"): CUSTOMER_FREEZERS,
    # issuance: the outlet's stock (its supervisor), the operator's desk, applications and card issuance
    ("POST", f"{ISS}/stock/batches"): STOCKKEEPERS,
    ("POST", f"{ISS}/stock/moves"): STOCKKEEPERS,
    ("GET", f"{ISS}/stock"): OUTLET_OPERATORS,
    ("GET", f"{ISS}/stock/summary"): OUTLET_OPERATORS,
    ("GET", f"{ISS}/chips/{{kind}}/{{number}}"): OUTLET_OPERATORS,
    ("GET", f"{ISS}/desk"): OUTLET_OPERATORS,
    ("PUT", f"{ISS}/desk/card"): OUTLET_OPERATORS,
    ("DELETE", f"{ISS}/desk/card"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/desk/tags"): OUTLET_OPERATORS,
    ("DELETE", f"{ISS}/desk/tags"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/applications"): OUTLET_OPERATORS,
    ("GET", f"{ISS}/applications"): OUTLET_OPERATORS,
    ("GET", f"{ISS}/applications/{{application_id}}"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/applications/{{application_id}}/cancel"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/applications/{{application_id}}/card/read"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/applications/{{application_id}}/card/register"): OUTLET_OPERATORS,
    # issuance: tags
    ("POST", f"{ISS}/applications/{{application_id}}/tag/read-card"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/applications/{{application_id}}/tag/read"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/applications/{{application_id}}/tag/register"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/tags/activation/read"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/tags/activate"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/desk/tags/switch"): OUTLET_OPERATORS,
    # issuance: detection
    ("POST", f"{ISS}/detection/card"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/detection/card/activate"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/detection/tag"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/tags/{{number}}/deregistration"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/cards/{{number}}/loss"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/cards/{{number}}/cancellation"): frozenset({OS}),  # issuance.supervise
    # issuance: account services
    ("POST", f"{ISS}/account-query"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/bank-card-changes"): frozenset({BO}),
    ("POST", f"{ISS}/bank-card-changes/confirm"): frozenset({BO}),
    ("POST", f"{ISS}/info-changes/search"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/info-changes/sms-codes"): OUTLET_OPERATORS,
    ("POST", f"{ISS}/info-changes"): OUTLET_OPERATORS,
    # the customer's second factors and step-up
    ("POST", f"{F}/totp/enroll"): ONLY_CUSTOMER,
    ("POST", f"{F}/totp/confirm"): ONLY_CUSTOMER,
    ("DELETE", f"{F}/totp"): ONLY_CUSTOMER,
    ("POST", f"{F}/recovery-codes/regenerate"): ONLY_CUSTOMER,
    ("POST", f"{F}/passkeys/register/options"): ONLY_CUSTOMER,
    ("POST", f"{F}/passkeys/register/verify"): ONLY_CUSTOMER,
    ("GET", f"{F}/passkeys"): ONLY_CUSTOMER,
    ("DELETE", f"{F}/passkeys/{{passkey_id}}"): ONLY_CUSTOMER,
    ("GET", f"{F}/step-up"): ONLY_CUSTOMER,
    ("POST", f"{F}/step-up/totp"): ONLY_CUSTOMER,
    ("POST", f"{F}/step-up/recovery"): ONLY_CUSTOMER,
    ("POST", f"{F}/step-up/passkey/options"): ONLY_CUSTOMER,
    ("POST", f"{F}/step-up/passkey/verify"): ONLY_CUSTOMER,
    ("POST", f"{F}/step-up/sms/send"): ONLY_CUSTOMER,
    ("POST", f"{F}/step-up/sms/verify"): ONLY_CUSTOMER,
}

# Who holds each permission, written out like EXPECTED: the permissions no route gates on yet (the
# domains' to come) are held to their roles here, and the routes' rows above are checked against the same
# ROLE_PERMISSIONS by test_table_matches_declared_permissions.
PERMISSION_HOLDERS: dict[Permission, frozenset[str]] = {
    Permission.LEDGER_READ: LEDGER_READERS,
    Permission.LEDGER_WRITE: LEDGER_WRITERS,
    Permission.OUTLETS_READ: OUTLET_READERS,
    Permission.OUTLETS_MANAGE: ADMINISTRATORS,
    Permission.STAFF_READ: STAFF_READERS,
    Permission.STAFF_MANAGE: ADMINISTRATORS,
    Permission.AUDIT_READ: AUDIT_READERS,
    Permission.CUSTOMERS_READ: CUSTOMER_READERS,
    Permission.CUSTOMERS_FREEZE: CUSTOMER_FREEZERS,
    Permission.ISSUANCE_OPERATE: OUTLET_OPERATORS,
    Permission.ISSUANCE_SUPERVISE: frozenset({OS}),
    Permission.BANK_CARD_BIND: frozenset({BO}),
    Permission.CLIENTS_MANAGE: ADMINISTRATORS,
    Permission.PLATFORM_OPERATE: PLATFORM_OPERATORS,
    Permission.ISSUANCE_STOCK: STOCKKEEPERS,
    Permission.LOADS_RECONCILE: frozenset({FIN}),
    Permission.LOADS_REFUND: frozenset({FIN}),
    Permission.PAYMENTS_OPERATE: frozenset({FIN}),
    Permission.RISK_CASES: frozenset({RISK}),
    Permission.TOLLING_DISPUTES: frozenset({SUP, RISK}),
}

# Routes anybody may call: operations, documentation, and the steps that lead to a session.
PUBLIC: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"),
        ("POST", "/api/v1/staff/auth/login"),
        ("POST", "/api/v1/staff/auth/totp"),
        ("POST", "/api/v1/staff/auth/refresh"),
        ("POST", f"{C}/sms-codes"),
        ("POST", f"{C}/register"),
        ("POST", f"{C}/login"),
        ("POST", f"{C}/login/sms"),
        ("POST", f"{C}/login/totp"),
        ("POST", f"{C}/login/passkey/options"),
        ("POST", f"{C}/login/passkey"),
        ("POST", f"{C}/password/forgot"),
        ("POST", f"{C}/auth/refresh"),
        ("POST", f"{C}/unfreeze"),
        ("POST", f"{C}/auth/passkey/options"),
        ("POST", f"{C}/auth/passkey/verify"),
        ("GET", "/api/v1/dev/sms-outbox"),  # development only: not mounted in production
    }
)

# Routes that check authorization in their own body rather than through a FastAPI dependency.
GATES_IN_BODY: dict[tuple[str, str], Permission] = {("POST", f"{L}/transfers"): Permission.LEDGER_WRITE}

# Known deviations, one per (method, path, principal): each cell is marked xfail(strict=True).
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}

# The only fields a refusal may carry.
PROBLEM_FIELDS = frozenset(
    {"type", "title", "status", "code", "field", "errors", "instance", "permission", "scope"}
)


# --- the application's routes --------------------------------------------------------------------------


def app_routes(app: FastAPI) -> dict[tuple[str, str], Any]:
    """Every (method, path template) the application answers, with its route (HEAD folded into GET)."""
    if iter_route_contexts is not None:
        found = [(rc.original_route, rc.path, rc.methods) for rc in iter_route_contexts(app.routes)]
    else:  # pragma: no cover
        found = [(r, getattr(r, "path", None), getattr(r, "methods", None)) for r in app.routes]
    routes: dict[tuple[str, str], Any] = {}
    for route, path, methods in found:
        assert path is not None, f"a route without a path: {route!r}"
        if methods is None:  # a mount (static files, a sub-application): classify it as ("*", path)
            routes[("*", path)] = route
        for method in methods or ():
            if method != "HEAD":
                routes[(method, path)] = route
    return routes


def _dependency_names(route: APIRoute) -> set[str]:
    names: set[str] = set()
    todo = list(route.dependant.dependencies)
    while todo:
        dep = todo.pop()
        names.add(getattr(dep.call, "__name__", repr(dep.call)))
        todo.extend(dep.dependencies)
    return names


def _machine_gates(route: APIRoute) -> list[MachineGate]:
    found: list[MachineGate] = []
    todo = list(route.dependant.dependencies)
    while todo:
        dep = todo.pop()
        if isinstance(dep.call, MachineGate):
            found.append(dep.call)
        todo.extend(dep.dependencies)
    return found


Gate = str | Permission | MachineGate


def declared_gate(method: str, path: str, route: Any) -> Gate | None:
    """What the route says it needs: "customer", "staff", a Permission, a machine gate (its scope), or
    None (public)."""
    if (method, path) in GATES_IN_BODY:
        return GATES_IN_BODY[(method, path)]
    if not isinstance(route, APIRoute):
        return None
    names = _dependency_names(route)
    gates: list[Gate] = list(_machine_gates(route))
    if "require_customer" in names:
        gates.append("customer")
    if "require_staff" in names:
        gates.append("staff")
    gates += [p for p in Permission if f"require_{p.value.replace('.', '_')}" in names]
    assert len(gates) <= 1, f"{method} {path} declares several gates: {gates}"
    return gates[0] if gates else None


def admitted_by(gate: Gate | None) -> frozenset[str]:
    """Who a gate admits, by ROLE_PERMISSIONS (and for a machine gate, by the machines' scopes)."""
    if isinstance(gate, MachineGate):
        return frozenset(m for m, (_, scopes) in MACHINE_CLIENTS.items() if gate.scope in scopes | {None})
    if gate == "customer":
        return ONLY_CUSTOMER
    if gate == "staff":
        return frozenset(r.value for r in Role)
    assert isinstance(gate, Permission)
    return frozenset(role.value for role, perms in ROLE_PERMISSIONS.items() if gate in perms)


# --- the world the matrix runs in ----------------------------------------------------------------------


@dataclass
class CustomerB:
    """The other customer: the target of cross-customer calls, with data that must never leak."""

    id: UUID
    phone: str
    name: str
    id_number: str
    session_id: UUID
    headers: dict[str, str]
    passkey_id: UUID
    device: SoftwareAuthenticator


@dataclass
class World:
    pool: AsyncConnectionPool
    outlet_a: staff.Outlet  # the outlet roles' own (self-operated) outlet
    bank_outlet_a: staff.Outlet  # the bank operator's own outlet (兰州银行)
    outlet_b: staff.Outlet  # another self-operated outlet
    bank_outlet_b: staff.Outlet  # another outlet of the same bank
    staff_ids: dict[str, UUID]  # one staff member per role; outlet roles at outlet A (bank: bank outlet A)
    staff_b: staff.StaffMember  # an operator at outlet B
    customer_b: CustomerB
    account_id: UUID
    pending_id: UUID
    transfer_id: UUID
    account_owner: str
    amount: int
    machines: dict[str, IssuedClient]  # the machine principals' clients
    revoke_target: UUID  # a machine client only the administrator's cell revokes
    change_id: UUID = field(default_factory=uuid4)  # no such change: an admitted call answers 404

    def path_value(self, name: str) -> str:
        values = {
            "account_id": self.account_id,
            "pending_id": self.pending_id,
            "transfer_id": self.transfer_id,
            "outlet_id": self.outlet_b.id,
            "staff_id": self.staff_b.id,
            "customer_id": self.customer_b.id,
            "session_id": self.customer_b.session_id,
            "passkey_id": self.customer_b.passkey_id,
            "change_id": self.change_id,
            "client_id": self.revoke_target,
            "parked_id": 2**62,  # no such parked event: an admitted call answers 404
            "application_id": self.change_id,  # no such application: an admitted call answers 404
            "kind": "card",
            "number": "62010101999999999999",  # no such card: an admitted call answers 404
        }
        assert name in values, f"no value for path parameter {name!r}: add one to World.path_value"
        return str(values[name])

    def url(self, template: str) -> str:
        return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: self.path_value(m.group(1)), template)

    def secrets(self) -> list[str]:
        """Strings of the targets' data that no refusal may contain."""
        b = self.customer_b
        return [
            b.phone,
            b.phone[:3] + "****" + b.phone[-4:],
            b.name,
            b.id_number,
            self.outlet_b.code,
            self.outlet_b.name,
            self.bank_outlet_b.code,
            self.staff_b.username,
            self.staff_b.display_name,
            self.account_owner,
            str(self.amount),
        ]

    async def session(
        self, principal_type: str, principal_id: UUID, *, stepped_up: bool = False
    ) -> tuple[UUID, str]:
        """A new live session: (session id, access token)."""
        async with self.pool.connection() as conn:
            issued = await sessions.issue(
                conn,
                principal_type=principal_type,
                principal_id=principal_id,
                client=Client("10.9.9.9", "matrix"),
            )
            if stepped_up:
                await sessions.record_step_up(conn, session_id=issued.session_id, factor="test")
        return issued.session_id, issued.access_token

    async def headers_for(
        self, who: str, method: str = "GET", url: str = "/", body: bytes = b""
    ) -> dict[str, str]:
        """Fresh credentials for a principal (a new session each time; a new customer for CUSTOMER; a
        machine signs ``method url body`` with a fresh nonce, or presents its key)."""
        if who in MACHINES:
            return credentials(self.machines[who], method, url, body)
        if who == ANONYMOUS:
            return {}
        if who == REVOKED:
            session_id, token = await self.session("staff", self.staff_ids[FIN])
            async with self.pool.connection() as conn:
                await sessions.end_session(conn, session_id=session_id, reason="logout")
            return bearer(token)
        if who == CUSTOMER:
            customer_id, _ = await new_customer(self.pool)
            # Stepped up, so that the routes needing a fresh step-up are judged on their gate alone.
            _, token = await self.session("customer", customer_id, stepped_up=True)
            return bearer(token)
        _, token = await self.session("staff", self.staff_ids[who], stepped_up=True)  # as customers, above
        return bearer(token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def unique_name() -> str:
    """A Chinese name no other row carries (so finding it in an answer means it leaked)."""
    return "欧阳" + "".join(secrets.choice("明华建国志强秀英桂兰思远云飞晓峰") for _ in range(4))


async def new_customer(pool: AsyncConnectionPool) -> tuple[UUID, str]:
    customer_id, phone = uuid4(), random_phone()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO customers (id, phone, password_hash) VALUES (%s, %s, %s)",
            (customer_id, phone, "!unusable"),
        )
    return customer_id, phone


async def new_outlet(pool: AsyncConnectionPool, bank: str | None = None) -> staff.Outlet:
    async with pool.connection() as conn:
        return await staff.create_outlet(
            conn,
            code=f"M-{uuid4().hex[:10]}",
            name=f"矩阵网点{uuid4().hex[:6]}",
            kind="bank" if bank else "self_operated",
            bank=bank,
        )


async def new_staff(pool: AsyncConnectionPool, role: Role, outlet_id: UUID | None) -> staff.StaffMember:
    async with pool.connection() as conn:
        return await staff.create_staff(
            conn,
            username=f"mx.{role.value[:8]}.{uuid4().hex[:8]}",
            display_name=f"矩阵{uuid4().hex[:8]}",
            password=STAFF_PASSWORD,
            role=role,
            outlet_id=outlet_id,
        )


@pytest.fixture(scope="module")
def routes(app: FastAPI) -> dict[tuple[str, str], Any]:
    return app_routes(app)


@pytest.fixture(scope="module")
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with no credentials of its own (each call brings its headers), from an IP of its own."""
    transport = httpx.ASGITransport(
        app=app, client=(f"10.77.{secrets.randbelow(250)}.{secrets.randbelow(250)}", 1)
    )
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as c:
        yield c


@pytest.fixture(scope="module")
async def world(app: FastAPI, pool: AsyncConnectionPool, http: httpx.AsyncClient) -> World:
    outlet_a, outlet_b = await new_outlet(pool), await new_outlet(pool)
    bank_a, bank_b = await new_outlet(pool, "lanzhou_bank"), await new_outlet(pool, "lanzhou_bank")
    staff_ids: dict[str, UUID] = {}
    for role in Role:
        place = (bank_a.id if role is Role.BANK_OPERATOR else outlet_a.id) if role in OUTLET_ROLES else None
        staff_ids[role.value] = (await new_staff(pool, role, place)).id
    staff_b = await new_staff(pool, Role.OUTLET_OPERATOR, outlet_b.id)
    await new_staff(pool, Role.OUTLET_SUPERVISOR, outlet_b.id)
    await new_staff(pool, Role.BANK_OPERATOR, bank_b.id)

    # Customer B: a real-name profile, a live session and a passkey.
    b_id, b_phone = await new_customer(pool)
    async with pool.connection() as conn:
        issued = await sessions.issue(
            conn, principal_type="customer", principal_id=b_id, client=Client("10.8.8.8", "customer-b")
        )
        await sessions.record_step_up(conn, session_id=issued.session_id, factor="test")
    b_headers = bearer(issued.access_token)
    name, id_number = unique_name(), new_resident_id()
    r = await http.put(
        f"{C}/me/profile",
        json={"name": name, "id_type": "resident_id", "id_number": id_number},
        headers=b_headers,
    )
    assert r.status_code == 200, r.text
    device = SoftwareAuthenticator()
    r = await http.post(f"{F}/passkeys/register/options", headers=b_headers)
    assert r.status_code == 200, r.text
    options = r.json()
    r = await http.post(
        f"{F}/passkeys/register/verify",
        json={
            "challenge_id": options["challenge_id"],
            "credential": device.create(options, ORIGIN),
            "name": "B",
        },
        headers=keyed(b_headers),
    )
    assert r.status_code == 201, r.text
    customer_b = CustomerB(
        b_id, b_phone, name, id_number, issued.session_id, b_headers, UUID(r.json()["id"]), device
    )

    # Machine clients, made with the application's keys (as the command line makes them).
    keys, actor = app.state.runtime.keys, Actor.system("matrix")
    machines = {
        who: await clients.create_client(
            pool, keys, kind=kind, scopes=scopes, name=f"matrix {who}", actor=actor
        )
        for who, (kind, scopes) in MACHINE_CLIENTS.items()
    }
    target = await clients.create_client(
        pool, keys, kind=ClientKind.GANTRY, scopes=frozenset({Scope.TOLLS_INGEST}), actor=actor
    )

    # Ledger: two accounts, a posted transfer and a hold, with an amount no other test moves.
    w = World(
        pool,
        outlet_a,
        bank_a,
        outlet_b,
        bank_b,
        staff_ids,
        staff_b,
        customer_b,
        account_id=uuid4(),
        pending_id=uuid4(),
        transfer_id=uuid4(),
        account_owner=f"matrix-owner-{uuid4().hex[:12]}",
        amount=7_000_000 + secrets.randbelow(999_999),
        machines=machines,
        revoke_target=target.client.id,
    )
    fin = await w.headers_for(FIN)
    source = uuid4()
    for account_id in (source, w.account_id):
        r = await http.post(
            f"{L}/accounts",
            json={"id": str(account_id), "currency": "CNY", "code": "general", "owner": w.account_owner},
            headers=fin,
        )
        assert r.status_code == 201, r.text
    for transfer_id, pending in ((w.transfer_id, False), (w.pending_id, True)):
        body: dict[str, Any] = {
            "id": str(transfer_id),
            "debit_account_id": str(source),
            "credit_account_id": str(w.account_id),
            "amount": {"amount": w.amount, "currency": "CNY"},
            "code": "matrix",
        }
        if pending:
            body |= {"pending": True, "timeout_seconds": 3600}
        r = await http.post(f"{L}/transfers", json=body, headers=fin)
        assert r.status_code == 201, r.text
    return w


# --- every route is classified -------------------------------------------------------------------------


def test_every_route_is_classified(app: FastAPI) -> None:
    """A new route must be added to EXPECTED (or, if anybody may call it, to PUBLIC)."""
    routes = set(app_routes(app))
    unclassified = sorted(routes - set(EXPECTED) - PUBLIC)
    assert not unclassified, f"classify these routes in EXPECTED or PUBLIC: {unclassified}"
    stale = sorted((set(EXPECTED) | PUBLIC) - routes)
    assert not stale, f"these classified routes no longer exist: {stale}"
    assert not set(EXPECTED) & PUBLIC


def test_table_matches_declared_permissions(app: FastAPI) -> None:
    """Each route's table entry is what its declared dependency admits by ROLE_PERMISSIONS, and public
    routes declare no gate (so PUBLIC cannot hide a protected route from the matrix)."""
    routes = app_routes(app)
    drift = []
    for (method, path), allowed in EXPECTED.items():
        gate = declared_gate(method, path, routes[(method, path)])
        assert gate is not None, (
            f"{method} {path} declares no authorization: add it to GATES_IN_BODY or PUBLIC"
        )
        if admitted_by(gate) != allowed:
            drift.append((method, path, str(gate), sorted(admitted_by(gate)), sorted(allowed)))
    assert not drift, f"(method, path, gate, admitted by code, expected): {drift}"
    for method, path in PUBLIC:
        gate = declared_gate(method, path, routes[(method, path)])
        assert gate is None, f"{method} {path} is listed as public but requires {gate}"


def test_every_permission_is_held_by_exactly_the_roles_written_out() -> None:
    """Widening or narrowing a role fails here, for permissions no route gates on yet as well."""
    assert set(PERMISSION_HOLDERS) == set(Permission), "add the new permission to PERMISSION_HOLDERS"
    held = {p: frozenset(r.value for r, perms in ROLE_PERMISSIONS.items() if p in perms) for p in Permission}
    drift = {
        p.value: (sorted(held[p]), sorted(want)) for p, want in PERMISSION_HOLDERS.items() if held[p] != want
    }
    assert not drift, f"permission: (held in code, written here): {drift}"


def test_routes_admit_the_holders_of_their_permission(app: FastAPI) -> None:
    """A route gated on a permission admits exactly that permission's holders written out above."""
    routes = app_routes(app)
    for (method, path), allowed in EXPECTED.items():
        gate = declared_gate(method, path, routes[(method, path)])
        if isinstance(gate, Permission):
            assert allowed == PERMISSION_HOLDERS[gate], (method, path, gate)


def test_dev_routes_are_not_mounted_in_production(tmp_path: Any) -> None:
    """The SMS outbox is public by design only because production does not have it."""
    from etcwallet.app import create_app
    from etcwallet.core.config import Settings

    prod = create_app(Settings(env="production", data_dir=tmp_path, dev_outbox=True))
    assert not [k for k in app_routes(prod) if k[1].startswith("/api/v1/dev/")]


# --- the matrix ----------------------------------------------------------------------------------------


def _cells() -> Iterator[Any]:
    for (method, path), allowed in EXPECTED.items():
        for who in PRINCIPALS:
            verdict = "allowed" if who in allowed else "refused"
            marks = []
            if (method, path, who) in KNOWN_BUGS:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[(method, path, who)]))
            yield pytest.param(method, path, who, id=f"{method} {path} as {who} ({verdict})", marks=marks)


def assert_refusal(r: httpx.Response, status: int, secrets_: list[str]) -> dict[str, Any]:
    """A problem+json refusal with this status, only the problem's fields, and none of the secrets."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0].strip() == PROBLEM, r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert set(body) <= PROBLEM_FIELDS, (
        f"a refusal carries extra fields: {sorted(set(body) - PROBLEM_FIELDS)}"
    )
    text = r.text
    leaked = [s for s in secrets_ if s and s in text]
    assert not leaked, f"the refusal leaks {leaked}: {text}"
    return body


@pytest.mark.parametrize(("method", "path", "who"), list(_cells()))
async def test_matrix(
    method: str,
    path: str,
    who: str,
    world: World,
    http: httpx.AsyncClient,
    routes: dict[tuple[str, str], Any],
) -> None:
    url = world.url(path)
    content = b"{}" if method in ("POST", "PUT", "PATCH") else b""
    # Every call carries a fresh Idempotency-Key, so that an admitted call on a route taking one is judged
    # on its body (a missing key would be a 400 before it); the gate runs before the key is looked at.
    headers = keyed(await world.headers_for(who, method, url, content))
    if content:
        headers["Content-Type"] = "application/json"
    r = await http.request(method, url, headers=headers, content=content)
    assert r.status_code < 500, f"{r.status_code}: {r.text}"
    if who in EXPECTED[(method, path)]:
        assert r.status_code not in (401, 403), f"{who} was refused at {method} {path}: {r.text}"
        if who == CUSTOMER and r.content:
            # Another customer's data never shows up in this customer's answers.
            b = world.customer_b
            payload = r.json()
            if isinstance(payload, dict):
                payload.pop("instance", None)  # a 404 echoes the request's own path
            text = json.dumps(payload, ensure_ascii=False)
            leaked = [
                s for s in (b.phone, b.name, b.id_number, str(b.session_id), str(b.passkey_id)) if s in text
            ]
            assert not leaked, f"{method} {path} shows customer B's {leaked}: {text}"
        return
    gate = declared_gate(method, path, routes[(method, path)])
    if isinstance(gate, MachineGate):
        if who in MACHINES:  # a machine without the route's scope
            problem = assert_refusal(r, 403, world.secrets())
            assert (problem["code"], problem["scope"]) == ("scope_missing", str(gate.scope)), problem
        else:  # a person, or nobody: no machine credentials
            problem = assert_refusal(r, 401, world.secrets())
            assert problem["code"] == "machine_unauthenticated", problem
        return
    if who in UNAUTHENTICATED or who in MACHINES:  # a machine's credentials are no session
        problem = assert_refusal(r, 401, world.secrets())
        assert problem["code"] == "unauthenticated", problem
        return
    problem = assert_refusal(r, 403, world.secrets())
    assert problem["code"] == "forbidden", problem
    # The refusal names what was missing: being a customer, being staff, or the staff permission.
    if gate == "customer":
        assert problem["permission"] == "customer", problem
    elif who == CUSTOMER:
        assert problem["permission"] == "staff", problem
    else:
        assert problem["permission"] == str(gate), problem


# --- outlet scoping ------------------------------------------------------------------------------------

OUTLET_ROLE_NAMES = [r.value for r in Role if r in OUTLET_ROLES]
CENTRAL_OUTLET_READERS = sorted(OUTLET_READERS - {r.value for r in OUTLET_ROLES})


def own_outlet(world: World, who: str) -> staff.Outlet:
    return world.bank_outlet_a if who == BO else world.outlet_a


@pytest.mark.parametrize("who", OUTLET_ROLE_NAMES)
async def test_outlet_staff_read_only_their_own_outlet(
    who: str, world: World, http: httpx.AsyncClient
) -> None:
    """Another outlet (even of the same bank) is a 404 exactly like one that does not exist."""
    headers = await world.headers_for(who)
    mine = own_outlet(world, who)
    r = await http.get(f"/api/v1/admin/outlets/{mine.id}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["code"] == mine.code
    for other in (world.outlet_b, world.bank_outlet_b, world.outlet_a if who == BO else world.bank_outlet_a):
        r = await http.get(f"/api/v1/admin/outlets/{other.id}", headers=headers)
        problem = assert_refusal(r, 404, [*world.secrets(), other.code, other.name])
        assert problem["code"] == "outlet_not_found", problem
    r = await http.get(f"/api/v1/admin/outlets/{uuid4()}", headers=headers)
    assert r.status_code == 404 and r.json()["code"] == "outlet_not_found", r.text


@pytest.mark.parametrize("who", OUTLET_ROLE_NAMES)
async def test_outlet_staff_list_only_their_own_outlet(
    who: str, world: World, http: httpx.AsyncClient
) -> None:
    r = await http.get("/api/v1/admin/outlets", headers=await world.headers_for(who))
    assert r.status_code == 200, r.text
    assert [o["id"] for o in r.json()] == [str(own_outlet(world, who).id)]


@pytest.mark.parametrize("who", CENTRAL_OUTLET_READERS)
async def test_central_roles_see_every_outlet(who: str, world: World, http: httpx.AsyncClient) -> None:
    headers = await world.headers_for(who)
    r = await http.get(f"/api/v1/admin/outlets/{world.outlet_b.id}", headers=headers)
    assert r.status_code == 200 and r.json()["code"] == world.outlet_b.code, r.text
    r = await http.get("/api/v1/admin/outlets", headers=headers)
    assert r.status_code == 200, r.text
    listed = {o["id"] for o in r.json()}
    assert {
        str(o.id) for o in (world.outlet_a, world.outlet_b, world.bank_outlet_a, world.bank_outlet_b)
    } <= listed


async def test_supervisor_sees_only_their_outlets_staff(world: World, http: httpx.AsyncClient) -> None:
    headers = await world.headers_for(OS)
    r = await http.get(f"/api/v1/admin/staff/{world.staff_ids[OO]}", headers=headers)
    assert r.status_code == 200, r.text
    for other in (world.staff_b.id, world.staff_ids[ADM], world.staff_ids[BO]):
        r = await http.get(f"/api/v1/admin/staff/{other}", headers=headers)
        problem = assert_refusal(r, 404, world.secrets())
        assert problem["code"] == "staff_not_found", problem
    r = await http.get(f"/api/v1/admin/staff/{uuid4()}", headers=headers)
    assert r.status_code == 404 and r.json()["code"] == "staff_not_found", r.text

    r = await http.get("/api/v1/admin/staff", headers=headers)
    assert r.status_code == 200, r.text
    rows = r.json()
    assert {m["outlet_id"] for m in rows} == {str(world.outlet_a.id)}, rows
    assert {str(world.staff_ids[OO]), str(world.staff_ids[OS])} <= {m["id"] for m in rows}
    assert world.staff_b.username not in r.text


async def test_administrator_sees_every_outlets_staff(world: World, http: httpx.AsyncClient) -> None:
    headers = await world.headers_for(ADM)
    r = await http.get(f"/api/v1/admin/staff/{world.staff_b.id}", headers=headers)
    assert r.status_code == 200 and r.json()["username"] == world.staff_b.username, r.text
    r = await http.get("/api/v1/admin/staff", headers=headers)
    assert r.status_code == 200, r.text
    listed = {m["id"] for m in r.json()}
    assert {str(world.staff_b.id), str(world.staff_ids[OO]), str(world.staff_ids[FIN])} <= listed


# --- one customer against another ----------------------------------------------------------------------


async def test_customer_cannot_end_another_customers_session(world: World, http: httpx.AsyncClient) -> None:
    b = world.customer_b
    a = await world.headers_for(CUSTOMER)
    r = await http.delete(f"{C}/me/sessions/{b.session_id}", headers=a)
    problem = assert_refusal(r, 404, world.secrets())
    assert problem["code"] == "session_not_found", problem
    # Indistinguishable from an id that does not exist.
    r = await http.delete(f"{C}/me/sessions/{uuid4()}", headers=a)
    assert r.status_code == 404 and r.json()["code"] == problem["code"], r.text
    r = await http.get(f"{C}/me/sessions", headers=a)
    assert r.status_code == 200 and str(b.session_id) not in r.text, r.text
    r = await http.get(f"{C}/me", headers=b.headers)
    assert r.status_code == 200 and r.json()["id"] == str(b.id), r.text


async def test_customer_cannot_remove_another_customers_passkey(
    world: World, http: httpx.AsyncClient
) -> None:
    b = world.customer_b
    a = await world.headers_for(CUSTOMER)  # stepped up: only ownership stands in the way
    r = await http.delete(f"{F}/passkeys/{b.passkey_id}", headers=a)
    problem = assert_refusal(r, 404, world.secrets())
    r = await http.delete(f"{F}/passkeys/{uuid4()}", headers=a)
    assert r.status_code == 404 and r.json()["code"] == problem["code"], r.text
    r = await http.get(f"{F}/passkeys", headers=a)
    assert r.status_code == 200 and r.json() == [], r.text
    r = await http.get(f"{F}/passkeys", headers=b.headers)
    assert r.status_code == 200 and [k["id"] for k in r.json()] == [str(b.passkey_id)], r.text


async def test_customer_sees_only_their_own_account(world: World, http: httpx.AsyncClient) -> None:
    b = world.customer_b
    a = await world.headers_for(CUSTOMER)
    r = await http.get(f"{C}/me", headers=a)
    assert r.status_code == 200 and r.json()["id"] != str(b.id), r.text
    r = await http.get(f"{C}/me/profile", headers=a)
    assert r.status_code == 404, r.text  # A has none; B's is not shown instead
    r = await http.get(f"{C}/{b.id}", headers=a)  # the staff look-up by id
    assert_refusal(r, 403, world.secrets())


# --- tokens used across realms ---------------------------------------------------------------------------


async def test_customer_refresh_refuses_a_staff_refresh_token(world: World, http: httpx.AsyncClient) -> None:
    async with world.pool.connection() as conn:
        issued = await sessions.issue(
            conn, principal_type="staff", principal_id=world.staff_ids[FIN], client=Client(None, None)
        )
    r = await http.post(f"{C}/auth/refresh", json={"refresh_token": issued.refresh_token})
    assert_refusal(r, 401, world.secrets())


async def test_staff_refresh_refuses_a_customer_refresh_token(world: World, http: httpx.AsyncClient) -> None:
    customer_id, _ = await new_customer(world.pool)
    async with world.pool.connection() as conn:
        issued = await sessions.issue(
            conn, principal_type="customer", principal_id=customer_id, client=Client(None, None)
        )
    r = await http.post("/api/v1/staff/auth/refresh", json={"refresh_token": issued.refresh_token})
    assert_refusal(r, 401, world.secrets())
