"""The ``etcwallet`` command: serve, migrate, ledger chores and benchmarks."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from etcwallet.core.config import Settings, get_settings
from etcwallet.core.db import DatabaseServer, connect_database, open_pool, prepare_database
from etcwallet.core.embedded_pg import exit_on_termination
from etcwallet.core.logging import configure_logging
from etcwallet.issuance.cli import issuance_app
from etcwallet.platform.clients.types import ClientKind, Scope

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from etcwallet.identity.staff.service import EnrollmentCode

app = typer.Typer(
    help="etcwallet: ETC 发行、钱包与清分 · ETC issuance, wallet and clearing", no_args_is_help=True
)
ledger_app = typer.Typer(help="总账 · ledger chores", no_args_is_help=True)
bench_app = typer.Typer(help="性能测试 · benchmarks", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(bench_app, name="bench")
staff_app = typer.Typer(help="员工 · staff", no_args_is_help=True)
audit_app = typer.Typer(help="审计 · audit log", no_args_is_help=True)
app.add_typer(staff_app, name="staff")
app.add_typer(audit_app, name="audit")
jobs_app = typer.Typer(help="后台任务 · scheduled and queued jobs", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")

clients_app = typer.Typer(
    help="机器客户端（车道、门架、商户终端、支付机构、路段业主）· machine clients", no_args_is_help=True
)
app.add_typer(clients_app, name="clients")

app.add_typer(issuance_app, name="issuance")
events_app = typer.Typer(help="事件 · events: parked events and replay", no_args_is_help=True)
app.add_typer(events_app, name="events")
dev_app = typer.Typer(
    help="开发工具（需 ETCW_DEV_OUTBOX=1，生产环境不可用）· development tools: ETCW_DEV_OUTBOX=1, never in production",
    no_args_is_help=True,
)
if get_settings().serves_dev_outbox:
    app.add_typer(dev_app, name="dev")
console = Console(stderr=True)
T = TypeVar("T")


def run_or_exit(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``; a refusal is printed in both languages and ends the command with status 1."""
    from etcwallet.core.errors import DomainError

    try:
        return asyncio.run(work)
    except DomainError as exc:
        console.print(f"[red]{exc.zh} / {exc.en}[/]")
        raise typer.Exit(1) from None


REPO_ROOT = Path(__file__).resolve().parents[2]
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _database(prepare: bool) -> DatabaseServer:
    """The configured database, starting the embedded server (left again at exit) if none is set.

    ``prepare`` migrates and grants the service's privileges (always done for the embedded server, whose
    service role may not exist yet). With the embedded server, child processes (uvicorn workers,
    benchmarks) are pointed at it as the service's role, and the owner's URL for their migrations.
    """
    settings = get_settings()
    if settings.database_url is None:
        exit_on_termination()  # SIGTERM and SIGHUP exit through `finally` and `atexit`: the server stops
    server = connect_database(settings)
    try:
        if prepare or server.embedded is not None:
            prepare_database(server)
    except BaseException:
        server.stop()
        raise
    if settings.database_url is None:
        os.environ["ETCW_DATABASE_URL"] = server.service_url
        os.environ["ETCW_DATABASE_OWNER_URL"] = server.owner_url
        get_settings.cache_clear()
    return server


def _database_url() -> str:
    """The service's URL for a command's own pool (see :func:`_database`)."""
    return _database(prepare=False).service_url


def start_banner(settings: Settings, host: str, port: int) -> str:
    """The line ``serve`` prints: where to connect, and the demo password only when demo data is loaded
    (``ETCW_DEMO=1`` outside production; production never loads it, so never prints it)."""
    from etcwallet.demo import DEMO_STAFF, DEMO_STAFF_PASSWORD

    line = f"[bold]etcwallet[/] http://{host}:{port}"
    if settings.is_production:
        return line
    notes = ["API docs: /docs"]
    if settings.demo:
        names = "/".join(username for username, *_ in DEMO_STAFF)
        notes.append(f"demo staff {names}, password {DEMO_STAFF_PASSWORD}")
    return f"{line}  ({' · '.join(notes)})"


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="listen address (ETCW_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (ETCW_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (ETCW_WORKERS)")] = None,
) -> None:
    """Run the service (starting the embedded PostgreSQL server when no database is configured).

    An embedded server this started (or adopted from a crashed run) is stopped however the service ends:
    Ctrl-C, SIGTERM, SIGHUP, a failed start-up or a normal return, all of which end in Python's
    ``atexit``, where :func:`etcwallet.core.db.start_embedded` registered the stop. Only SIGKILL escapes,
    and the next start adopts the server it left.
    """
    import uvicorn

    settings = get_settings()
    configure_logging(settings)
    _database(prepare=True)  # an embedded server is left (stopped, if last) at exit: see the docstring
    host, port = host or settings.host, port or settings.port
    console.print(start_banner(settings, host, port))
    uvicorn.run(
        "etcwallet.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers or settings.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


@app.command("migrate")
def migrate_command() -> None:
    """Apply database migrations and exit."""
    configure_logging(get_settings())
    _database(prepare=True)
    console.print("迁移完成 · migrations applied")


@staff_app.command("create")
def staff_create(
    username: Annotated[str, typer.Option(help="sign-in name (lowercase)")],
    display_name: Annotated[str, typer.Option(help="name shown to colleagues")],
    role: Annotated[
        str, typer.Option(help="administrator, finance, risk_officer, support_agent, outlet_operator, …")
    ] = "administrator",
    outlet_code: Annotated[str | None, typer.Option(help="outlet code, for outlet roles")] = None,
    password_stdin: Annotated[bool, typer.Option(help="read the password from standard input")] = False,
) -> None:
    """Create a staff member (the first administrator, typically) and print their TOTP enrollment code.

    This is the bootstrap path: whoever runs it holds the database, so the rule that a second administrator
    approves the finance and administrator roles cannot bind it; the member is active at once, and the
    creation is audited as the system. The member signs in with the password and the enrollment code.
    """
    from etcwallet.app import keys_from
    from etcwallet.core.errors import DomainError
    from etcwallet.identity.authz import Role
    from etcwallet.identity.staff import service as staff
    from etcwallet.identity.staff import store
    from etcwallet.platform import audit
    from etcwallet.platform.audit import Actor

    password = (
        sys.stdin.readline().rstrip("\n")
        if password_stdin
        else typer.prompt("密码 / password", hide_input=True, confirmation_prompt=True)
    )

    async def run() -> tuple[str, EnrollmentCode]:
        pool = await open_pool(_database_url(), 2)
        try:
            async with pool.connection() as conn, conn.transaction():
                outlet_id = None
                if outlet_code:
                    outlet = await store.get_outlet_by_code(conn, outlet_code)
                    if outlet is None:
                        raise DomainError(
                            "outlet_not_found",
                            404,
                            "网点不存在",
                            "no outlet with that code",
                            field="outlet_code",
                        )
                    outlet_id = outlet.id
                member = await staff.create_staff(
                    conn,
                    username=username,
                    display_name=display_name,
                    password=password,
                    role=Role(role),
                    outlet_id=outlet_id,
                )
                detail = {"username": username, "role": role}
                event = Actor.system("cli").event(
                    "staff.create", target=("staff", str(member.id)), detail=detail
                )
                await audit.append(conn, event)
                code = await _issue_code(conn, member.id)
            return str(member.id), code
        finally:
            await pool.close()

    settings = get_settings()
    configure_logging(settings)
    keys_from(settings)
    try:
        staff_id, code = asyncio.run(run())
    except DomainError as exc:
        console.print(f"[red]{exc.zh} / {exc.en}[/]")
        raise typer.Exit(1) from None
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    console.print(f"已创建员工 · staff created: {username} ({role}) {staff_id}")
    _print_code(code)


async def _issue_code(conn: AsyncConnection[Any], staff_id: UUID) -> EnrollmentCode:
    """Issue a TOTP enrollment code from the command line (audited as the system)."""
    from etcwallet.identity.staff import service as staff
    from etcwallet.platform import audit
    from etcwallet.platform.audit import Actor

    code = await staff.issue_enrollment_code(conn, staff_id=staff_id, issued_by=None)
    detail = {"expires_at": code.expires_at.isoformat()}
    event = Actor.system("cli").event(
        "staff.enrollment_code.issue", target=("staff", str(staff_id)), detail=detail
    )
    await audit.append(conn, event)
    return code


def _print_code(code: EnrollmentCode) -> None:
    # The code goes to standard output (the rest to standard error), so a script can capture it alone.
    console.print(
        f"首次登录绑定码（一次性，{code.expires_at:%Y-%m-%d %H:%M} UTC 前有效）· one-time TOTP enrollment code, "
        "good until that time: sign in with the password and this code"
    )
    print(code.code)


@staff_app.command("enrollment-code")
def staff_enrollment_code(
    username: Annotated[str, typer.Option(help="the staff member's sign-in name")],
) -> None:
    """Issue a new one-time TOTP enrollment code for a staff member who has not enrolled (bootstrap path:
    for example when no second administrator exists yet to issue it through the API)."""
    from etcwallet.core.errors import DomainError
    from etcwallet.identity.staff import service as staff

    async def run() -> EnrollmentCode:
        pool = await open_pool(_database_url(), 2)
        try:
            async with pool.connection() as conn, conn.transaction():
                staff_id = await staff.get_staff_id(conn, username)
                if staff_id is None:
                    raise DomainError(
                        "staff_not_found", 404, "员工不存在", "no staff member with that username"
                    )
                return await _issue_code(conn, staff_id)
        finally:
            await pool.close()

    configure_logging(get_settings())
    code = run_or_exit(run())
    _print_code(code)


@audit_app.command("verify")
def audit_verify(
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            help="SEQ:HASH of a row recorded earlier (repeatable); catches rows deleted from the end"
        ),
    ] = None,
) -> None:
    """Check the audit log's hash chain; exits 1 and names the first broken row if it does not hold.

    On success it prints the head (last row's seq and hash): keep it outside the database and pass it
    as ``--anchor`` next time.
    """
    from etcwallet.platform import audit

    try:
        anchors = [audit.Anchor.parse(text) for text in anchor or []]
    except ValueError as exc:
        raise typer.BadParameter(f"锚点格式错误 · {exc}", param_hint="--anchor") from None

    async def run() -> audit.ChainReport:
        pool = await open_pool(_database_url(), 2)
        try:
            async with pool.connection() as conn:
                return await audit.verify(conn, anchors=anchors)
        finally:
            await pool.close()

    configure_logging(get_settings())
    report = asyncio.run(run())
    if report.ok:
        console.print(f"审计链完整 · audit chain intact: {report.rows} rows")
        if report.head_seq is not None:
            console.print(f"链头 · head: {report.head_seq}:{report.head_hash}")
        return
    console.print(
        f"[red]审计链断裂 · audit chain broken at seq {report.first_broken_seq}: {report.reason}[/]"
    )
    raise typer.Exit(1)


@events_app.command("parked")
def events_parked(
    status: Annotated[str, typer.Option(help="parked, replaying, replayed or all")] = "parked",
    consumer: Annotated[str | None, typer.Option(help="only this consumer's")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
) -> None:
    """List events that a consumer gave up on after too many failures, newest first."""
    from etcwallet.platform.events import ParkedEvent, list_parked

    if status not in ("parked", "replaying", "replayed", "all"):
        raise typer.BadParameter("parked, replaying, replayed or all", param_hint="--status")

    async def run() -> list[ParkedEvent]:
        pool = await open_pool(_database_url(), 2)
        try:
            async with pool.connection() as conn:
                return await list_parked(
                    conn,
                    status=None if status == "all" else status,  # type: ignore[arg-type]
                    consumer=consumer,
                    limit=limit,
                )
        finally:
            await pool.close()

    configure_logging(get_settings())
    found = asyncio.run(run())
    console.print(f"搁置的事件 · parked events: {len(found)}")
    for p in found:
        # One line per event on standard output: id first, for `etcwallet events replay ID`.
        typer.echo(
            f"{p.id}\t{p.status}\t{p.consumer}\t{p.type}\t{p.key}\t{p.event_id}\t"
            f"attempts={p.attempts}\t{p.parked_at:%Y-%m-%d %H:%M:%S}\t{p.last_error}"
        )


@events_app.command("replay")
def events_replay(parked_id: Annotated[int, typer.Argument(min=1, help="the parked event's id")]) -> None:
    """Deliver a parked event to its consumer once more (the dispatcher holding that consumer does it at
    its next round); audited as the system."""
    from etcwallet.platform import audit
    from etcwallet.platform.events import ParkedEvent, parked
    from etcwallet.platform.unit import UnitOfWork

    async def run() -> ParkedEvent:
        pool = await open_pool(_database_url(), 2)
        try:
            return await parked.replay(UnitOfWork(pool), parked_id=parked_id, actor=audit.Actor.system("cli"))
        finally:
            await pool.close()

    configure_logging(get_settings())
    done = run_or_exit(run())
    console.print(
        f"已请求重放 · replay requested: {done.id} ({done.type} for {done.consumer}); "
        "the dispatcher delivers it at its next round"
    )


@ledger_app.command("expire")
def ledger_expire() -> None:
    """Release every pending transfer whose timeout has passed."""
    from etcwallet.ledger.service import Ledger

    async def run() -> int:
        pool = await open_pool(_database_url(), 2)
        try:
            return await Ledger(pool).expire_due()
        finally:
            await pool.close()

    configure_logging(get_settings())
    console.print(f"已释放过期冻结 · expired holds released: {asyncio.run(run())}")


def _when(value: datetime | None) -> str:
    """A time as the console shows it: Asia/Shanghai, to the second."""
    return "—" if value is None else f"{value.astimezone(SHANGHAI):%Y-%m-%d %H:%M:%S}"


@jobs_app.command("list")
def jobs_list() -> None:
    """Show every scheduled job (schedule, last run, outcome, next run, attempts) and the queued jobs that
    are waiting, running or parked after their last attempt failed. Times are Asia/Shanghai."""
    from rich.table import Table

    from etcwallet.app import job_registry
    from etcwallet.ledger.service import Ledger
    from etcwallet.platform import jobs

    async def run() -> list[jobs.JobStatus]:
        pool = await open_pool(_database_url(), 2)
        try:
            async with pool.connection() as conn:
                return await jobs.overview(conn, job_registry(get_settings(), Ledger(pool)))
        finally:
            await pool.close()

    configure_logging(get_settings())
    table = Table(title="后台任务 · jobs")
    for heading in (
        "任务 · job",
        "计划 · schedule",
        "状态 · state",
        "上次运行 · last run",
        "结果 · outcome",
        "下次运行 · next run",
        "尝试 · attempts",
    ):
        table.add_column(heading, no_wrap=heading != "计划 · schedule")
    table.add_column("最近错误 · last error")
    for status in asyncio.run(run()):
        name = status.name if status.scheduled else f"{status.name} #{status.job_id}"
        state = status.state + (f" ({status.lease_owner})" if status.state == "running" else "")
        table.add_row(
            name,
            status.schedule,
            state,
            _when(status.started_at),
            status.outcome or "—",
            _when(status.next_run) if status.state != "new" else "启动时 · at start",
            str(status.attempts),
            (status.last_error or "")[:120],
        )
    Console(width=max(console.width, 180)).print(table)


@jobs_app.command("run")
def jobs_run(name: Annotated[str, typer.Argument(help="the job's name, e.g. ledger.expire_holds")]) -> None:
    """Run a scheduled job now, once, whether due or not; refused while another process runs it.

    The run counts as the job's latest (its next run is one period later) and is audited as the command
    line's.
    """
    from etcwallet.app import job_registry
    from etcwallet.core.errors import DomainError
    from etcwallet.ledger.service import Ledger
    from etcwallet.platform import audit
    from etcwallet.platform.job_runner import Runner, RunOutcome, runner_name

    async def run() -> RunOutcome:
        pool = await open_pool(_database_url(), 3)  # the claim and lease, and the job's own work
        try:
            runner = Runner(pool, job_registry(get_settings(), Ledger(pool)), owner=f"cli:{runner_name()}")
            outcome = await runner.run_now(name)
            await audit.record(
                pool,
                audit.Actor.system("cli").event(
                    "jobs.run",
                    target=("job", name),
                    detail={"job_id": outcome.job_id, "result": outcome.result, "error": outcome.error},
                    outcome="success" if outcome.outcome == "success" else "failure",
                ),
            )
            return outcome
        finally:
            await pool.close()

    configure_logging(get_settings())
    try:
        outcome = asyncio.run(run())
    except DomainError as exc:
        console.print(f"[red]{exc.zh} / {exc.en}: {name}[/]")
        if exc.code == "job_not_found":
            console.print("已声明的任务 · declared jobs: " + ", ".join(exc.extra.get("names", [])))
        raise typer.Exit(2 if exc.code == "job_not_found" else 1) from None
    if outcome.outcome != "success":
        console.print(f"[red]任务失败 · job failed ({outcome.outcome}): {outcome.error}[/]")
        raise typer.Exit(1)
    console.print(f"任务已完成 · job done: {name} {outcome.result or ''}")


@bench_app.command("ledger")
def bench_ledger(
    json_output: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    duration: Annotated[float, typer.Option(help="seconds per measured phase")] = 20.0,
    clients: Annotated[int, typer.Option(help="concurrent clients/workers")] = 16,
) -> None:
    """Ledger throughput against pgbench TPC-B on the same PostgreSQL, in the same run (code in bench/)."""
    path = REPO_ROOT / "bench" / "ledger_bench.py"
    if not path.exists():
        console.print(f"[red]benchmark code not found at {path} (run from a source checkout)[/]")
        raise typer.Exit(2)
    spec = importlib.util.spec_from_file_location("ledger_bench", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["ledger_bench"] = module
    spec.loader.exec_module(module)
    module.main(json_output=json_output, duration=duration, clients=clients)


@clients_app.command("create")
def clients_create(
    kind: Annotated[ClientKind, typer.Option(help="what holds the credential", case_sensitive=False)],
    scope: Annotated[
        list[Scope], typer.Option(help="what it may call (repeatable); the kind limits the choice")
    ],
    name: Annotated[
        str | None, typer.Option(help="a name administrators recognise (1-64 characters)")
    ] = None,
) -> None:
    """Create a machine client and print its id and secret, ONCE: the secret cannot be read again.

    The id and the secret go to standard output, one a line (so a script can capture them alone); what
    they are goes to standard error. The creation is audited as the system.
    """
    from rich.table import Table

    from etcwallet.app import keys_from
    from etcwallet.core.errors import DomainError
    from etcwallet.platform.audit import Actor
    from etcwallet.platform.clients import service, signing
    from etcwallet.platform.clients.types import KIND_NAMES, AuthStyle, IssuedClient

    settings = get_settings()
    configure_logging(settings)
    keys = keys_from(settings)

    async def run() -> IssuedClient:
        pool = await open_pool(_database_url(), 2)
        try:
            return await service.create_client(
                pool, keys, kind=kind, scopes=frozenset(scope), name=name, actor=Actor.system("cli")
            )
        finally:
            await pool.close()

    try:
        issued = asyncio.run(run())
    except DomainError as exc:
        allowed = ", ".join(exc.extra.get("allowed", ()))
        console.print(f"[red]{exc.zh} / {exc.en}[/]" + (f" ({kind.value}: {allowed})" if allowed else ""))
        raise typer.Exit(1) from None
    client = issued.client
    table = Table(title="已创建机器客户端 · machine client created", show_header=False)
    table.add_row("ID", str(client.id))
    table.add_row("名称 · name", client.name)
    table.add_row("类型 · kind", f"{client.kind.value} ({' / '.join(KIND_NAMES[client.kind])})")
    table.add_row("权限范围 · scopes", ", ".join(sorted(client.scopes)))
    if client.auth is AuthStyle.HMAC:
        how = (
            f"签名请求 · signed requests: {signing.HEADER_CLIENT}, {signing.HEADER_TIMESTAMP}, "
            f"{signing.HEADER_NONCE}, {signing.HEADER_SIGNATURE} (HMAC-SHA256, README)"
        )
    else:
        how = "Authorization: Bearer <密钥 · key>"
    table.add_row("认证方式 · auth", how)
    console.print(table)
    console.print(
        "[bold yellow]密钥只显示这一次，请立即妥善保存（标准输出：第一行 ID，第二行密钥）· "
        "the secret is shown this once only: store it now (standard output: the id, then the secret)[/]"
    )
    print(client.id)
    print(issued.secret)


@clients_app.command("list")
def clients_list(
    all_: Annotated[bool, typer.Option("--all", help="revoked clients too")] = False,
) -> None:
    """List the machine clients, newest first (never a secret)."""
    from zoneinfo import ZoneInfo

    from rich.table import Table

    from etcwallet.platform.clients import service
    from etcwallet.platform.clients.types import MachineClient

    async def run() -> list[MachineClient]:
        pool = await open_pool(_database_url(), 2)
        try:
            return await service.list_clients(pool, include_revoked=all_)
        finally:
            await pool.close()

    configure_logging(get_settings())
    clients = asyncio.run(run())
    shanghai = ZoneInfo("Asia/Shanghai")
    table = Table(title=f"机器客户端 · machine clients ({len(clients)}; 北京时间 · Asia/Shanghai)")
    for column in (
        "ID",
        "名称 · name",
        "类型 · kind",
        "认证 · auth",
        "权限范围 · scopes",
        "创建 · created",
        "状态 · status",
        "最近心跳 · last heartbeat",
    ):
        table.add_column(column, overflow="fold")
    for c in clients:
        revoked, beat = c.revoked_at, c.last_heartbeat_at
        status = (
            "有效 · active"
            if revoked is None
            else f"已吊销 · revoked {revoked.astimezone(shanghai):%Y-%m-%d %H:%M}"
        )
        table.add_row(
            str(c.id),
            c.name,
            c.kind.value,
            c.auth.value,
            ", ".join(sorted(c.scopes)),
            f"{c.created_at.astimezone(shanghai):%Y-%m-%d %H:%M}",
            status,
            f"{beat.astimezone(shanghai):%Y-%m-%d %H:%M:%S}" if beat else "-",
        )
    Console(width=max(160, console.width)).print(table)


@clients_app.command("revoke")
def clients_revoke(client_id: Annotated[UUID, typer.Argument(help="the client's id")]) -> None:
    """Revoke a machine client: every process refuses its next call. Audited as the system."""
    from etcwallet.platform.audit import Actor
    from etcwallet.platform.clients import service
    from etcwallet.platform.clients.types import MachineClient

    async def run() -> MachineClient:
        pool = await open_pool(_database_url(), 2)
        try:
            return await service.revoke_client(pool, client_id=client_id, actor=Actor.system("cli"))
        finally:
            await pool.close()

    configure_logging(get_settings())
    client = run_or_exit(run())
    console.print(f"已吊销 · revoked: {client.id} {client.name} ({client.kind.value})")


@dev_app.command("sms-outbox")
def dev_sms_outbox(
    phone: Annotated[str | None, typer.Option(help="only messages to this number")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
) -> None:
    """Show what the development SMS sink holds (messages a real gateway would have sent), newest first."""
    from etcwallet.identity import sms

    async def run() -> list[tuple[int, str, str, object]]:
        pool = await open_pool(_database_url(), 2)
        try:
            async with pool.connection() as conn:
                return list(await sms.outbox(conn, phone=phone, limit=limit))
        finally:
            await pool.close()

    for _id, to, text, at in asyncio.run(run()):
        typer.echo(f"{at}  {to}  {text}")


if __name__ == "__main__":
    app()
