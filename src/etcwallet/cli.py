"""The ``etcwallet`` command: serve, migrate, ledger chores and benchmarks."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from etcwallet.core.auth import load_admin_token
from etcwallet.core.config import get_settings
from etcwallet.core.db import connect_database, migrate, open_pool
from etcwallet.core.logging import configure_logging

app = typer.Typer(
    help="etcwallet: ETC 发行、钱包与清分 · ETC issuance, wallet and clearing", no_args_is_help=True
)
ledger_app = typer.Typer(help="总账 · ledger chores", no_args_is_help=True)
bench_app = typer.Typer(help="性能测试 · benchmarks", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
app.add_typer(bench_app, name="bench")
console = Console(stderr=True)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    """The configured database, starting the embedded server (kept for this process) if none is set."""
    settings = get_settings()
    server = connect_database(settings)
    if settings.database_url is None:
        # Child processes (uvicorn workers, benchmarks) reach the server this process started.
        os.environ["ETCW_DATABASE_URL"] = server.url
        get_settings.cache_clear()
    return server.url


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="listen address (ETCW_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (ETCW_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (ETCW_WORKERS)")] = None,
) -> None:
    """Run the service (starting the embedded PostgreSQL server when no database is configured)."""
    import uvicorn

    settings = get_settings()
    configure_logging(settings)
    url = _database_url()
    migrate(url)
    token_note = "ETCW_ADMIN_TOKEN" if settings.admin_token else str(settings.data_dir / "admin-token")
    load_admin_token(settings)
    host, port = host or settings.host, port or settings.port
    console.print(f"[bold]etcwallet[/] http://{host}:{port}  (API docs: /docs, admin token: {token_note})")
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
    migrate(_database_url())
    console.print("迁移完成 · migrations applied")


@app.command("admin-token")
def admin_token() -> None:
    """Print the admin token the staff APIs accept (generated on first use outside production)."""
    typer.echo(load_admin_token(get_settings()))


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


if __name__ == "__main__":
    app()
