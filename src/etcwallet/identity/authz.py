"""Who may do what: principals, roles, permissions and the FastAPI dependencies that enforce them.

Every protected endpoint declares what it needs: ``Depends(require_customer)`` for a customer's own
resources, ``Depends(require(Permission.X))`` for staff. Outlet-scoped staff (operators, supervisors,
bank operators) see only their own outlet's records; services check that with :meth:`Principal.may_see_outlet`.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.clock import Clock, system_clock
from etcwallet.core.crypto import hash_token
from etcwallet.core.db import autocommit
from etcwallet.core.deps import Client, ClientDep, get_client, get_clock, get_pool
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.sessions import service as sessions
from etcwallet.platform.audit import Actor


class Role(StrEnum):
    OUTLET_OPERATOR = "outlet_operator"
    OUTLET_SUPERVISOR = "outlet_supervisor"
    BANK_OPERATOR = "bank_operator"
    FINANCE = "finance"
    RISK_OFFICER = "risk_officer"
    SUPPORT_AGENT = "support_agent"
    ADMINISTRATOR = "administrator"


ROLE_NAMES: dict[Role, tuple[str, str]] = {
    Role.OUTLET_OPERATOR: ("网点操作员", "outlet operator"),
    Role.OUTLET_SUPERVISOR: ("网点主管", "outlet supervisor"),
    Role.BANK_OPERATOR: ("银行网点操作员", "bank operator"),
    Role.FINANCE: ("财务", "finance"),
    Role.RISK_OFFICER: ("风控专员", "risk officer"),
    Role.SUPPORT_AGENT: ("客服", "support agent"),
    Role.ADMINISTRATOR: ("系统管理员", "administrator"),
}
OUTLET_ROLES = frozenset({Role.OUTLET_OPERATOR, Role.OUTLET_SUPERVISOR, Role.BANK_OPERATOR})


class Permission(StrEnum):
    LEDGER_READ = "ledger.read"
    LEDGER_WRITE = "ledger.write"
    OUTLETS_READ = "outlets.read"
    OUTLETS_MANAGE = "outlets.manage"
    STAFF_READ = "staff.read"
    STAFF_MANAGE = "staff.manage"
    AUDIT_READ = "audit.read"
    CUSTOMERS_READ = "customers.read"
    CUSTOMERS_FREEZE = "customers.freeze"
    ISSUANCE_OPERATE = "issuance.operate"
    ISSUANCE_SUPERVISE = "issuance.supervise"
    BANK_CARD_BIND = "bank_card.bind"
    CLIENTS_MANAGE = "clients.manage"  # machine clients (platform/clients): list and revoke
    PLATFORM_OPERATE = "platform.operate"  # the platform's machinery: parked events and their replay
    # What the domains gate on (issue 17); ROLE_PERMISSIONS and SEPARATION_OF_DUTIES say who holds them.
    ISSUANCE_STOCK = "issuance.stock"  # an outlet's card and tag stock: receive, count, write off
    LOADS_RECONCILE = "loads.reconcile"  # match loads against the banks' statements, settle differences
    LOADS_REFUND = "loads.refund"  # pay a load back to the customer
    PAYMENTS_OPERATE = "payments.operate"  # payment providers: statements, retries, manual settlement
    RISK_CASES = "risk.cases"  # open, investigate and decide risk cases
    TOLLING_DISPUTES = "tolling.disputes"  # handle a customer's dispute of a toll charge


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OUTLET_OPERATOR: frozenset(
        {Permission.ISSUANCE_OPERATE, Permission.CUSTOMERS_READ, Permission.OUTLETS_READ}
    ),
    # Supervisors answer for their outlet's stock (they receive and count it; operators issue from it).
    Role.OUTLET_SUPERVISOR: frozenset(
        {
            Permission.ISSUANCE_OPERATE,
            Permission.ISSUANCE_SUPERVISE,
            Permission.ISSUANCE_STOCK,
            Permission.CUSTOMERS_READ,
            Permission.OUTLETS_READ,
            Permission.STAFF_READ,
        }
    ),
    Role.BANK_OPERATOR: frozenset(
        {
            Permission.ISSUANCE_OPERATE,
            Permission.BANK_CARD_BIND,
            Permission.CUSTOMERS_READ,
            Permission.OUTLETS_READ,
        }
    ),
    # Finance moves the money: ledger transfers, refunds, reconciliation and payment-provider operations.
    # It neither reads the audit log nor decides risk cases or disputes (SEPARATION_OF_DUTIES).
    Role.FINANCE: frozenset(
        {
            Permission.LEDGER_READ,
            Permission.LEDGER_WRITE,
            Permission.OUTLETS_READ,
            Permission.LOADS_RECONCILE,
            Permission.LOADS_REFUND,
            Permission.PAYMENTS_OPERATE,
        }
    ),
    # Risk officers check the money movers: they read the ledger and the audit log, freeze customers, run
    # risk cases and take the disputes that look like fraud; they move no money.
    Role.RISK_OFFICER: frozenset(
        {
            Permission.CUSTOMERS_READ,
            Permission.CUSTOMERS_FREEZE,
            Permission.AUDIT_READ,
            Permission.LEDGER_READ,
            Permission.RISK_CASES,
            Permission.TOLLING_DISPUTES,
        }
    ),
    # Support agents take customers' toll disputes; a refund a dispute earns is paid by finance.
    Role.SUPPORT_AGENT: frozenset(
        {Permission.CUSTOMERS_READ, Permission.OUTLETS_READ, Permission.TOLLING_DISPUTES}
    ),
    # Administrators run the platform's people and places; separation of duties keeps them off the money.
    Role.ADMINISTRATOR: frozenset(
        {
            Permission.OUTLETS_READ,
            Permission.OUTLETS_MANAGE,
            Permission.STAFF_READ,
            Permission.STAFF_MANAGE,
            Permission.AUDIT_READ,
            Permission.CLIENTS_MANAGE,
            Permission.PLATFORM_OPERATE,
        }
    ),
}

MONEY_MOVERS = frozenset(
    {
        Permission.LEDGER_WRITE,
        Permission.LOADS_RECONCILE,
        Permission.LOADS_REFUND,
        Permission.PAYMENTS_OPERATE,
    }
)
"""The permissions that move customers' or the bank's money (settling a reconciliation difference does)."""

SEPARATION_OF_DUTIES: tuple[tuple[frozenset[Permission], frozenset[Permission], str], ...] = (
    (
        MONEY_MOVERS,
        frozenset({Permission.STAFF_MANAGE, Permission.CLIENTS_MANAGE, Permission.OUTLETS_MANAGE}),
        "whoever grants access to people and machines cannot move money with it",
    ),
    (
        MONEY_MOVERS,
        frozenset({Permission.AUDIT_READ, Permission.RISK_CASES}),
        "whoever moves money is not who reads the audit of it or investigates it",
    ),
    (
        frozenset({Permission.TOLLING_DISPUTES}),
        frozenset({Permission.LOADS_REFUND, Permission.PAYMENTS_OPERATE}),
        "whoever upholds a dispute does not pay out what it earns",
    ),
)
"""(makers, checkers, why): no role holds a permission from both sides of a pair. Checked by
tests/identity/test_permissions.py; a role's holding both a maker and its checker (an outlet supervisor
issues and supervises issuance) is separated per person by the service, not here."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    kind: str  # "customer" | "staff"
    id: UUID
    session_id: UUID
    role: Role | None = None
    outlet_id: UUID | None = None
    bank: str | None = None
    stepped_up_at: datetime | None = None
    csrf_token: str = ""

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role] if self.role else frozenset()

    def may_see_outlet(self, outlet_id: UUID | None) -> bool:
        """Outlet staff see their own outlet only; central roles see every outlet."""
        if self.kind != "staff":
            return False
        if self.role in OUTLET_ROLES:
            return outlet_id is not None and outlet_id == self.outlet_id
        return True


def unauthenticated() -> IdentityError:
    return IdentityError("unauthenticated")


def refresh_token_reused() -> IdentityError:
    """The answer to a replayed refresh token: its session has just been ended."""
    return IdentityError("refresh_token_reused")


def forbidden(permission: str) -> IdentityError:
    return IdentityError("forbidden", permission=permission)


def actor(request: Request, principal: Principal | None = None) -> Actor:
    """Who acts in ``request``, for the audit: the principal (anonymous without one), from the request's
    client address and user agent. For routes that solve no dependencies (the ledger's hot route);
    other routes declare ``ActorDep``, ``CustomerActor`` or ``StaffActor``."""
    return actor_of(principal, get_client(request))


def actor_of(principal: Principal | None, client: Client) -> Actor:
    """The audit's actor: ``principal`` (anonymous without one) calling from ``client``."""
    if principal is None:
        return Actor("anonymous", None, client.ip, client.user_agent)
    outlet = str(principal.outlet_id) if principal.outlet_id is not None else None
    return Actor(principal.kind, str(principal.id), client.ip, client.user_agent, outlet)


def bearer_token(request: Request) -> str | None:
    """The access token from ``Authorization: Bearer`` or the web session cookie."""
    return credential(request)[0]


def credential(request: Request) -> tuple[str | None, bool]:
    """The access token and whether it came from the web session cookie (which then needs the CSRF check)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), False
    cookie = request.cookies.get("etcw_session")
    return cookie, cookie is not None


class SessionLookup:
    """Looks sessions up for concurrent requests together: one query for every token waiting at the time.

    Every request still reads the session from the database (so revocation takes effect at once in every
    worker), but a busy process pays one round trip per batch of requests rather than per request.
    """

    def __init__(self, pool: AsyncConnectionPool, *, clock: Clock = system_clock) -> None:
        self.pool = pool
        self.clock = clock
        self._waiting: dict[bytes, list[asyncio.Future[tuple[Any, ...] | None]]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def find(self, token_hash: bytes) -> tuple[Any, ...] | None:
        """The live session row for ``token_hash`` (joined with its principal), or None."""
        future: asyncio.Future[tuple[Any, ...] | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(token_hash, []).append(future)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, {}
            try:
                rows = await self._query(list(batch))
            except Exception as exc:
                for futures in batch.values():
                    for f in futures:
                        if not f.done():
                            f.set_exception(exc)
                continue
            for token_hash, futures in batch.items():
                row = rows.get(token_hash)
                for f in futures:
                    if not f.done():
                        f.set_result(row)

    async def _query(self, hashes: list[bytes]) -> dict[bytes, tuple[Any, ...]]:
        now = self.clock()
        async with autocommit(self.pool) as conn:
            return await sessions.lookup_principals(conn, token_hashes=hashes, now=now)


def session_lookup(request: Request) -> SessionLookup:
    """The application's session look-up (one per process, created on first use)."""
    lookup: SessionLookup | None = getattr(request.app.state, "session_lookup", None)
    if lookup is None:
        lookup = SessionLookup(get_pool(request), clock=get_clock(request))
        request.app.state.session_lookup = lookup
    return lookup


async def load_principal(request: Request) -> Principal:
    """Authenticate the request's session and load who is behind it; 401 if not live."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    token, from_cookie = credential(request)
    if not token:
        raise unauthenticated()
    row = await session_lookup(request).find(hash_token(token))
    if row is None:
        raise unauthenticated()
    session_id, kind, principal_id, stepped_up_at, csrf = row[:5]
    if kind == "staff":
        if row[9] != "active":
            raise unauthenticated()
        principal = Principal(
            "staff", principal_id, session_id, Role(row[6]), row[7], row[8], stepped_up_at, csrf
        )
    else:
        if row[10] != "active":
            raise unauthenticated()
        principal = Principal(
            "customer", principal_id, session_id, stepped_up_at=stepped_up_at, csrf_token=csrf
        )
    # A token taken from the cookie needs the CSRF token echoed on every unsafe request, whatever other
    # headers (an Authorization header of another scheme, say) the request carries.
    unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
    if from_cookie and unsafe and not _csrf_echoed(request, principal.csrf_token):
        raise IdentityError("csrf_failed")
    request.state.principal = principal
    return principal


def _csrf_echoed(request: Request, expected: str) -> bool:
    """Whether the request's ``X-CSRF-Token`` header is the session's CSRF token."""
    sent = request.headers.get("x-csrf-token", "")
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


async def require_customer(request: Request) -> Principal:
    """A signed-in customer (for the customer's own resources)."""
    principal = await load_principal(request)
    if principal.kind != "customer":
        raise forbidden("customer")
    return principal


async def require_staff(request: Request) -> Principal:
    """Any signed-in staff member."""
    principal = await load_principal(request)
    if principal.kind != "staff":
        raise forbidden("staff")
    return principal


def require(permission: Permission) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency admitting staff whose role grants ``permission``."""

    async def dependency(request: Request) -> Principal:
        principal = await require_staff(request)
        if permission not in principal.permissions:
            raise forbidden(permission.value)
        return principal

    dependency.__name__ = f"require_{permission.value.replace('.', '_')}"
    return dependency


# --- the caller as the audit's actor (core/deps.py says why these live here) ---------------------------


async def signed_in_actor(
    principal: Annotated[Principal, Depends(load_principal)], client: ClientDep
) -> Actor:
    """Whoever is signed in (customer or staff), as the audit's actor."""
    return actor_of(principal, client)


async def customer_actor(
    principal: Annotated[Principal, Depends(require_customer)], client: ClientDep
) -> Actor:
    """The signed-in customer, as the audit's actor."""
    return actor_of(principal, client)


async def staff_actor(principal: Annotated[Principal, Depends(require_staff)], client: ClientDep) -> Actor:
    """The signed-in staff member, as the audit's actor."""
    return actor_of(principal, client)


async def anonymous_actor(client: ClientDep) -> Actor:
    """Nobody signed in yet (sign-in, registration), as the audit's actor."""
    return actor_of(None, client)


ActorDep = Annotated[Actor, Depends(signed_in_actor)]
CustomerActor = Annotated[Actor, Depends(customer_actor)]
StaffActor = Annotated[Actor, Depends(staff_actor)]
AnonymousActor = Annotated[Actor, Depends(anonymous_actor)]
