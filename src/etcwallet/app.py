"""The ASGI application: mounts every domain's router, health, metrics and the error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from etcwallet import __version__
from etcwallet.core import metrics
from etcwallet.core.bodies import BodyLimit, declared_limits
from etcwallet.core.config import Settings, get_settings
from etcwallet.core.crypto import Keys, load_keys
from etcwallet.core.db import DatabaseServer, connect_database, open_pool, prepare_database
from etcwallet.core.errors import install_handlers
from etcwallet.core.gc_tuning import tune_for_service
from etcwallet.core.headers import SecurityHeaders
from etcwallet.core.http import HotRoutes
from etcwallet.core.logging import configure_logging
from etcwallet.core.openapi import document_problems
from etcwallet.identity import jobs as identity_jobs
from etcwallet.identity.audit.api import admin as audit_admin_router
from etcwallet.identity.customers.accounts_api import router as customer_accounts_router
from etcwallet.identity.customers.api import router as customer_router
from etcwallet.identity.customers.closure_api import router as customer_closure_router
from etcwallet.identity.customers.closure_checks import ClosureChecks
from etcwallet.identity.customers.outlet_api import router as outlet_customer_router
from etcwallet.identity.dev_api import router as dev_router
from etcwallet.identity.factors import totp
from etcwallet.identity.factors.api import router as factors_router
from etcwallet.identity.sms import OutboxGateway, SmsGateway
from etcwallet.identity.staff.api import admin as admin_router
from etcwallet.identity.staff.api import router as staff_router
from etcwallet.issuance.api import router as issuance_router
from etcwallet.issuance.chip.keys import KeyService, key_service_from
from etcwallet.issuance.closure import LIVE_CARDS, live_cards_check
from etcwallet.issuance.context import IssuanceContext, issuance_context_from
from etcwallet.issuance.detection_api import router as detection_router
from etcwallet.issuance.services_api import router as issuance_services_router
from etcwallet.issuance.tags_api import router as issuance_tags_router
from etcwallet.ledger import jobs as ledger_jobs
from etcwallet.ledger.api import hot_router as ledger_hot_router
from etcwallet.ledger.api import router as ledger_router
from etcwallet.ledger.service import Ledger
from etcwallet.platform import events, idempotency
from etcwallet.platform.clients import jobs as client_jobs
from etcwallet.platform.clients.api import admin as clients_admin_router
from etcwallet.platform.clients.api import router as machine_router
from etcwallet.platform.events.api import admin as events_admin_router
from etcwallet.platform.events.relay import NatsRelay
from etcwallet.platform.job_runner import Runner
from etcwallet.platform.jobs import Registry, platform_jobs
from etcwallet.platform.unit import UnitOfWork

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What a running application holds: the database, the pool, the keys and the services built on them."""

    pool: AsyncConnectionPool
    ledger: Ledger
    keys: Keys
    sms: SmsGateway = field(default_factory=OutboxGateway)
    server: DatabaseServer | None = None
    jobs: Runner | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)
    dispatcher: events.Dispatcher | None = None
    relay: NatsRelay | None = None
    uow: UnitOfWork = field(init=False)
    closure_checks: ClosureChecks = field(default_factory=ClosureChecks)
    """What must hold before a customer's account closes: domains register their checks at start-up."""
    chip_keys: KeyService | None = None
    """The ETC issuer key service (issuance.chip.keys); set at start-up, None only in a hand-built runtime."""
    issuance: IssuanceContext | None = None
    """The issuer, its key service and the operators' readers; set at start-up (None: no issuance routes)."""

    def __post_init__(self) -> None:
        # One unit of work for every domain, on the ledger's clock, so steps and transfers agree on time.
        self.uow = UnitOfWork(self.pool, clock=self.ledger.clock)
        if LIVE_CARDS not in self.closure_checks.names:
            self.closure_checks.register(LIVE_CARDS, live_cards_check)

    async def close(self) -> None:
        """Stop the services, close the pool, and leave the embedded server (stopping it if last)."""
        try:
            if self.jobs is not None:
                await self.jobs.stop()  # running jobs finish (or are released) while the ledger still runs
            for task in self.background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.relay is not None:
                await self.relay.close()
            await self.ledger.stop()
            await self.pool.close()
        finally:
            if self.server is not None:
                await asyncio.to_thread(self.server.stop)


async def start_runtime(settings: Settings) -> Runtime:
    """Connect (starting the embedded server if configured so), migrate, and start the services.

    If anything fails on the way, the embedded server this started is stopped again before the error
    goes on: a failed start must not leave PostgreSQL running.
    """
    server = connect_database(settings)
    try:
        await asyncio.to_thread(prepare_database, server)
        return await _start_services(settings, server)
    except BaseException:
        await asyncio.to_thread(server.stop)
        raise


async def _start_services(settings: Settings, server: DatabaseServer) -> Runtime:
    keys = keys_from(settings)
    chip_keys = key_service_from(settings)  # production refuses to start without the issuer master keys
    pool = await open_pool(server.service_url, settings.db_pool_size)
    ledger = Ledger(pool, writers=settings.ledger_writers, max_batch=settings.ledger_max_batch)
    runtime = Runtime(
        pool=pool,
        ledger=ledger,
        keys=keys,
        server=server,
        chip_keys=chip_keys,
        issuance=issuance_context_from(settings, chip_keys),
    )
    try:
        await ledger.start()
        await ledger.ensure_chart()
        async with pool.connection() as conn:
            rekeyed = await totp.rekey_legacy_recovery_codes(conn, lookup_key=keys.lookup_key)
        if rekeyed:
            log.info("legacy recovery codes rekeyed", extra={"count": rekeyed})
        runtime.jobs = Runner(pool, job_registry(settings, ledger))
        await runtime.jobs.start()
        await _start_events(settings, runtime)
        if settings.demo and not settings.is_production:
            from etcwallet.demo import load_demo_data

            await load_demo_data(runtime)
    except BaseException:
        runtime.server = None  # stopped by the caller
        await runtime.close()
        raise
    return runtime


def job_registry(settings: Settings, ledger: Ledger) -> Registry:
    """Every job the service declares, bound to this process's services (the runner's and the CLI's)."""
    return Registry(
        [
            *platform_jobs(),
            *ledger_jobs.jobs(ledger, settings.ledger_expiry_interval_seconds),
            *identity_jobs.jobs(
                settings.housekeeping_interval_seconds,
                retention_days=settings.customer_retention_days,
                clock=ledger.clock,
            ),
            *client_jobs.jobs(),
        ]
    )


async def _start_events(settings: Settings, runtime: Runtime) -> None:
    """The event dispatcher for the registered consumers, and the NATS relay when ``ETCW_NATS_URL`` is set."""
    consumers = list(events.CONSUMERS)
    if settings.nats_url:
        runtime.relay = NatsRelay(settings.nats_url, stream=settings.nats_stream)
        consumers.append(runtime.relay.consumer())
        try:
            await runtime.relay.connect()
        except events.Unavailable as exc:
            log.warning("NATS unavailable at start; events wait in the outbox", extra={"reason": str(exc)})
    runtime.dispatcher = events.Dispatcher.from_settings(runtime.pool, consumers, settings)
    runtime.background.append(asyncio.create_task(runtime.dispatcher.run()))


class MetricsMiddleware:
    """Count and time every request by route template (pure ASGI: no per-request task overhead)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def record_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(scope["method"], route, str(status_code)).inc()
            metrics.HTTP_SECONDS.labels(scope["method"], route).observe(time.perf_counter() - started)


class EtcwalletAPI(FastAPI):
    """FastAPI with a fast lane (:class:`~etcwallet.core.http.HotRoutes`) in front of its middleware.

    Outermost of all, :class:`~etcwallet.core.headers.SecurityHeaders` puts the security headers on every
    answer, and inside it :class:`~etcwallet.core.bodies.BodyLimit` refuses oversized bodies before anything
    reads them (its 413 gets the headers too); the OpenAPI document lists every problem answer
    (:mod:`etcwallet.core.openapi`).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hot_routers: list[APIRouter] = []

    def include_hot_router(self, router: APIRouter) -> None:
        """Include ``router`` (for the documentation) and serve its routes from the fast lane."""
        self.hot_routers.append(router)
        self.include_router(router)

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(
            BodyLimit(HotRoutes(super().build_middleware_stack(), self.hot_routers), declared_limits(self))
        )

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = document_problems(self, super().openapi())
        return self.openapi_schema


def keys_from(settings: Settings) -> Keys:
    """The encryption and look-up keys from configuration (generated once into the data directory in development)."""
    return load_keys(
        settings.secret("encryption_key"),
        settings.data_dir,
        settings.is_production,
        old_keys=settings.secret("encryption_old_keys"),
        lookup_key=settings.secret("lookup_key"),
    )


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the application; with ``runtime`` given (tests), it uses that instead of starting its own."""
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = runtime is None
        rt = runtime or await start_runtime(settings)
        app.state.runtime = rt
        app.state.ledger = rt.ledger
        if own:
            tune_for_service()
        log.info("etcwallet ready", extra={"version": __version__, "env": settings.env})
        try:
            yield
        finally:
            if own:
                await rt.close()

    # In production the API document, its viewers and the metrics are not served (404): they map the
    # attack surface and the traffic for anyone who reaches the port.
    public_docs = not settings.is_production
    app = EtcwalletAPI(
        title="etcwallet",
        version=__version__,
        description="ETC 发行、钱包与通行费清分 · ETC issuance, wallet and toll clearing",
        lifespan=lifespan,
        openapi_url="/openapi.json" if public_docs else None,
        docs_url="/docs" if public_docs else None,
        redoc_url="/redoc" if public_docs else None,
    )
    app.state.settings = settings
    if runtime is not None:
        app.state.runtime = runtime
        app.state.ledger = runtime.ledger
    install_handlers(app)
    idempotency.install(app)

    app.add_middleware(MetricsMiddleware)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> JSONResponse:
        """The database answers: ready to take traffic."""
        try:
            async with request.app.state.runtime.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    if public_docs:

        @app.get("/metrics", tags=["ops"], include_in_schema=False)
        async def prometheus() -> Response:
            """Prometheus metrics (not served in production)."""
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_hot_router(ledger_hot_router)
    app.include_router(ledger_router)
    app.include_router(staff_router)
    app.include_router(admin_router)
    app.include_router(audit_admin_router)
    app.include_router(clients_admin_router)
    app.include_router(machine_router)
    app.include_router(events_admin_router)
    app.include_router(customer_router)
    app.include_router(customer_accounts_router)
    app.include_router(outlet_customer_router)
    app.include_router(customer_closure_router)
    app.include_router(factors_router)
    app.include_router(issuance_router)
    # issuance: tags (tags_api)
    app.include_router(issuance_tags_router)

    # issuance: detection (detection_api)
    app.include_router(detection_router)

    # issuance: account services (services_api)
    app.include_router(issuance_services_router)
    if settings.serves_dev_outbox:
        app.include_router(dev_router)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn: settings from the environment."""
    return create_app(get_settings())
