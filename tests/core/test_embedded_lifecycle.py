"""The embedded PostgreSQL server stops with the service that started it, on every exit it can catch.

Each test runs ``etcwallet serve`` as a child process on a data directory of its own and a free port,
and finds the PostgreSQL server of that directory by its command line in ``/proc`` (not through the code
under test). A SIGKILL of the service leaves the server running (nothing can catch SIGKILL); the next
start must adopt it quickly, and a clean stop of that next run must stop it. Before the fix, the
package's list of users kept the killed process's pid, and no later stop ever stopped the server.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from etcwallet.app import start_runtime
from etcwallet.core.config import Settings
from etcwallet.core.embedded_pg import Postmaster
from etcwallet.core.privileges import SERVICE_ROLE

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc (Linux)")

READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postmasters(pgdata: Path) -> list[int]:
    """The pids of running postgres processes started on ``pgdata`` (their command line names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and Path(argv[0].decode(errors="replace")).name == "postgres"
            and str(pgdata).encode() in argv
        ):
            found.append(int(entry.name))
    return found


class Service:
    """``etcwallet serve`` in a child process, on its own data directory (embedded PostgreSQL) and port."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ETCW_DATABASE")}
        environment.update(
            ETCW_DATA_DIR=str(data_dir),
            ETCW_PORT=str(self.port),
            ETCW_ENV="test",
            ETCW_LOG_LEVEL="WARNING",
            ETCW_DB_POOL_SIZE="3",
        )
        environment.update(env)
        self.log = data_dir / f"serve-{self.port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "etcwallet.cli", "serve"],
                env=environment,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def wait_ready(self) -> float:
        started = time.monotonic()
        while time.monotonic() - started < READY_TIMEOUT:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.proc.kill()
        pytest.fail(f"serve not ready in {READY_TIMEOUT} s:\n{self.log.read_text()}")

    def stop(self, sig: signal.Signals) -> int:
        """Signal the service's whole process group, as a terminal's Ctrl-C or ``kill -- -PGID`` does."""
        os.killpg(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory of the test's own (not under pytest's ``tmp_path``: a concurrent pytest run sets
    that tree back to mode 0700, which the server's system user cannot enter when tests run as root)."""
    path = Path(tempfile.mkdtemp(prefix="etcw-lifecycle-"))
    yield path
    for pid in postmasters(path / "pg"):  # never leave a server behind, whatever the test found
        os.kill(pid, signal.SIGQUIT)
    shutil.rmtree(path, ignore_errors=True)


def kill_and_restart(data_dir: Path) -> tuple[Service, int]:
    """Start the service, SIGKILL it (its server stays up), start it again: the second run adopts it."""
    pgdata = data_dir / "pg"
    first = Service(data_dir)
    first.wait_ready()
    [server] = postmasters(pgdata)
    first.stop(signal.SIGKILL)
    assert postmasters(pgdata) == [server], "SIGKILL cannot be caught: the server is expected to survive it"
    second = Service(data_dir)
    took = second.wait_ready()
    assert took < 20, f"restart after a crash took {took:.1f} s"
    assert postmasters(pgdata) == [server], "the running server is adopted, not restarted"
    return second, server


def service_roles(pgdata: Path) -> set[str]:
    """The roles of the client connections on the server (other than this one)."""
    postmaster = Postmaster.read(pgdata)
    assert postmaster is not None
    url = f"postgresql://postgres@/postgres?host={postmaster.socket_dir}&port={postmaster.port}"
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    return {str(r[0]) for r in rows}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_clean_stop_after_a_crash_stops_postgres(data_dir: Path, sig: signal.Signals) -> None:
    service, _ = kill_and_restart(data_dir)
    assert service_roles(data_dir / "pg") == {SERVICE_ROLE}, "the service's pool is its restricted role"
    code = service.stop(sig)
    assert postmasters(data_dir / "pg") == [], f"PostgreSQL left running after {sig.name}"
    assert code in (0, 128 + sig, -sig), service.log.read_text()
    assert not (data_dir / "pg" / "postmaster.pid").exists()


def test_a_failed_start_up_after_a_crash_stops_postgres(data_dir: Path) -> None:
    """The application refuses to start (production without its keys): the server goes with it."""
    crashed = Service(data_dir)
    crashed.wait_ready()
    crashed.stop(signal.SIGKILL)
    assert postmasters(data_dir / "pg") != []
    failing = Service(data_dir, ETCW_ENV="production")
    assert failing.proc.wait(timeout=60) != 0
    assert "ETCW_ENCRYPTION_KEY" in failing.log.read_text()
    assert postmasters(data_dir / "pg") == [], "PostgreSQL left running after a failed start-up"


async def test_a_failed_runtime_start_stops_the_server_it_started(data_dir: Path) -> None:
    """The application started without the CLI (``uvicorn etcwallet.app:create_app_from_env``)."""
    settings = Settings(env="production", data_dir=data_dir, database_url=None, database_owner_url=None)
    with pytest.raises(SystemExit, match="ETCW_ENCRYPTION_KEY"):
        await start_runtime(settings)
    assert postmasters(data_dir / "pg") == [], "PostgreSQL left running after a failed start"
