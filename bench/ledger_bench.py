"""Ledger throughput against pgbench TPC-B on the same PostgreSQL server, in the same run.

Run with ``etcwallet bench ledger [--json] [--duration S] [--clients N]``. Phases:

(a) pgbench TPC-B, N clients, prepared statements: the baseline;
(b) single transfers through the service layer (``Ledger.create_transfer``), N concurrent workers;
(c) single transfers over HTTP, N concurrent keep-alive clients against ``etcwallet serve``;
(d) bulk calls of 8,000 transfers (``Ledger.create_transfers``);
(e) a hot domain step over HTTP, N clients: each request one transfer plus one row of the step's own
    table, one event and one audit entry, all committed together (``bench/step_service.py``). While it
    runs, a sampler counts how often a transaction waits for the audit chain's lock.

Each is printed as transfers per second and as a ratio to pgbench's TPS, since these machines are shared
and noisy; only the ratio is comparable between runs. The benchmark runs on uvloop, the event loop the
service itself runs on under uvicorn, so (b) measures the service as it runs and (c)'s clients stay cheap.
Transfer ids are UUIDv7 (``etcwallet.core.ids``), as the platform's own jobs make them.

Every phase starts from the same server state: a ``CHECKPOINT`` first, so no phase pays for writing out
the pages an earlier one dirtied. When the benchmark starts its own server, it also gives it the WAL
files a server in service already has: a fresh cluster creates and zero-fills a new 16 MB file for each
16 MB of WAL it writes (about 50 ms apiece here, once per four bulk calls), whereas a running server
recycles the files of earlier checkpoints. Its WAL settings are those of a write-heavy production
server: ``min_wal_size``/``max_wal_size`` so that no checkpoint falls inside a phase, and a WAL writer
that flushes every 10 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import psycopg
import uvloop
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings
from etcwallet.core.crypto import generate_key
from etcwallet.core.db import create_database, migrate, open_pool, pg_bin, start_embedded, with_user
from etcwallet.core.deps import Client
from etcwallet.core.embedded_pg import exit_on_termination
from etcwallet.core.gc_tuning import tune_for_service
from etcwallet.core.ids import new_id
from etcwallet.core.privileges import (
    SERVICE_ROLE,
    PrivilegeError,
    ensure_service_role,
    grant_service_privileges,
)
from etcwallet.identity.authz import Role
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.staff import service as staff
from etcwallet.ledger.chart import AccountCode
from etcwallet.ledger.service import AccountSpec, Ledger, wallet_spec
from etcwallet.ledger.types import TransferRequest

ACCOUNTS = 1000
FUNDING = 10**15


@dataclass
class Report:
    pgbench_tps: float = 0.0
    service_tps: float = 0.0
    http_tps: float = 0.0
    batch_tps: float = 0.0
    http_p50_ms: float = 0.0
    http_p99_ms: float = 0.0
    step_tps: float = 0.0
    step_p50_ms: float = 0.0
    step_p99_ms: float = 0.0
    notes: dict[str, object] = field(default_factory=dict)

    def ratios(self) -> dict[str, float]:
        base = self.pgbench_tps or 1.0
        return {
            "service_ratio": self.service_tps / base,
            "http_ratio": self.http_tps / base,
            "batch_ratio": self.batch_tps / base,
            "step_ratio": self.step_tps / base,
        }

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "pgbench_tps": round(self.pgbench_tps, 1),
            "service_tps": round(self.service_tps, 1),
            "http_tps": round(self.http_tps, 1),
            "batch_tps": round(self.batch_tps, 1),
            "step_tps": round(self.step_tps, 1),
        }
        out.update({k: round(v, 3) for k, v in self.ratios().items()})
        out["http_p50_ms"] = round(self.http_p50_ms, 2)
        out["http_p99_ms"] = round(self.http_p99_ms, 2)
        out["step_p50_ms"] = round(self.step_p50_ms, 2)
        out["step_p99_ms"] = round(self.step_p99_ms, 2)
        return out


def _say(json_output: bool, text: str) -> None:
    print(text, file=sys.stderr if json_output else sys.stdout, flush=True)


# --- (a) pgbench ---------------------------------------------------------------------------------------


def run_pgbench(url: str, clients: int, duration: float) -> float:
    """TPC-B with ``clients`` clients on its own database of the same server; returns TPS."""
    bench_url = create_database(url, "etcw_pgbench")
    parts = urlsplit(bench_url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    common = ["-h", host, "-U", parts.username or "postgres"]
    if parts.port:
        common += ["-p", str(parts.port)]
    env = dict(os.environ, PGPASSWORD=parts.password or "")
    scale = max(clients, 16)
    subprocess.run(
        [str(pg_bin("pgbench")), "-i", "-q", "-s", str(scale), *common, "etcw_pgbench"],
        check=True,
        capture_output=True,
        env=env,
    )
    done = subprocess.run(
        [
            str(pg_bin("pgbench")),
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(int(duration)),
            "-M",
            "prepared",
            *common,
            "etcw_pgbench",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    match = re.search(r"tps = ([0-9.]+)", done.stdout)
    if not match:
        raise RuntimeError(f"pgbench printed no tps:\n{done.stdout}\n{done.stderr}")
    return float(match.group(1))


# --- server state ---------------------------------------------------------------------------------------

WAL_BYTES_PER_SECOND = 100 * 2**20
"""More WAL than the busiest phase writes per second on these machines (bulk calls: about 65 MB/s)."""


def checkpoint(url: str) -> None:
    """Write out every dirty page and recycle spent WAL files, so the next phase starts clean.

    Skipped where the role may not run ``CHECKPOINT`` (a server the benchmark does not own).
    """
    with (
        psycopg.connect(url, autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("CHECKPOINT")


def settle_own_server(url: str, duration: float) -> int:
    """Give the benchmark's own server the WAL files and WAL limits of a server in service.

    Writes a small WAL record and switches to a new segment until ``pg_wal`` holds enough files for the
    busiest phase, then checkpoints, which keeps them (below ``min_wal_size``) for reuse. Returns how
    many WAL files the server then holds.
    """
    needed = int(duration * WAL_BYTES_PER_SECOND / (16 * 2**20)) + 8
    keep = f"{needed * 16}MB"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET min_wal_size = '{keep}'")
        conn.execute(f"ALTER SYSTEM SET max_wal_size = '{needed * 16 * 2}MB'")
        # The WAL writer flushes every 10 ms instead of 200 ms, so a commit after a bulk call waits for
        # the last few hundred kB of its WAL rather than for megabytes.
        conn.execute("ALTER SYSTEM SET wal_writer_delay = '10ms'")
        conn.execute("SELECT pg_reload_conf()")
        for _ in range(needed):
            conn.execute("SELECT pg_logical_emit_message(false, 'etcwallet-bench', ''), pg_switch_wal()")
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT count(*) FROM pg_ls_waldir()").fetchone()
    return int(row[0]) if row else 0


# --- shared set-up ---------------------------------------------------------------------------------------


async def open_accounts(ledger: Ledger, n: int) -> list[UUID]:
    """``n`` customer wallets (may not go below zero), each funded from one unconstrained account."""
    source = await ledger.create_account(
        AccountSpec(uuid4(), "CNY", AccountCode.GENERAL.value, "bench:source")
    )
    ids = [uuid4() for _ in range(n)]
    for account_id in ids:
        await ledger.create_account(wallet_spec(account_id, "bench:wallet"))
    funding = [
        TransferRequest(
            uuid4(),
            debit_account_id=source.id,
            credit_account_id=a,
            amount=FUNDING,
            currency="CNY",
            code="bench_funding",
        )
        for a in ids
    ]
    await ledger.create_transfers(funding)
    return ids


def random_transfer(accounts: list[UUID], rng: random.Random) -> TransferRequest:
    debit, credit = rng.sample(accounts, 2)
    return TransferRequest(
        new_id(),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=rng.randint(1, 10_000),
        currency="CNY",
        code="bench",
    )


def service_role_url(url: str) -> str:
    """``url`` signed in as the service's own restricted role, as ``etcwallet serve`` runs in service.

    Where the benchmark may not make roles (a server it does not own), the URL as given.
    """
    try:
        ensure_service_role(url, SERVICE_ROLE)
        grant_service_privileges(url, SERVICE_ROLE)
    except (psycopg.Error, PrivilegeError):
        return url
    return with_user(url, SERVICE_ROLE)


# --- (b) service layer -------------------------------------------------------------------------------------


async def bench_service(url: str, clients: int, duration: float) -> tuple[float, dict[str, object]]:
    pool = await open_pool(url, 8)
    ledger = Ledger(pool, writers=Settings().ledger_writers)  # as `etcwallet serve` runs it
    await ledger.start()
    try:
        accounts = await open_accounts(ledger, ACCOUNTS)
        deadline = time.perf_counter() + duration
        counts = [0] * clients
        refused = 0

        async def worker(i: int) -> None:
            nonlocal refused
            rng = random.Random(i)
            while time.perf_counter() < deadline:
                try:
                    await ledger.create_transfer(random_transfer(accounts, rng))
                    counts[i] += 1
                except Exception:
                    refused += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
        return sum(counts) / elapsed, {"service_refused": refused}
    finally:
        await ledger.stop()
        await pool.close()


# --- (d) bulk calls ----------------------------------------------------------------------------------------


async def bench_batch(url: str, duration: float) -> tuple[float, dict[str, object]]:
    pool = await open_pool(url, 4)
    ledger = Ledger(pool)
    try:
        accounts = await open_accounts(ledger, ACCOUNTS)
        rng = random.Random(7)
        total, refused, elapsed, calls = 0, 0, 0.0, 0
        while elapsed < duration or calls < 3:
            batch = [random_transfer(accounts, rng) for _ in range(8000)]
            started = time.perf_counter()
            results = await ledger.create_transfers(batch)
            elapsed += time.perf_counter() - started
            calls += 1
            accepted = sum(1 for r in results if not isinstance(r, Exception))
            total += accepted
            refused += len(results) - accepted
        return total / elapsed, {"batch_calls": calls, "batch_refused": refused}
    finally:
        await ledger.stop()  # closes the connection of its refusal probe
        await pool.close()


# --- (c) HTTP ----------------------------------------------------------------------------------------------


async def finance_session(pool: AsyncConnectionPool) -> str:
    """A finance staff member and a session for them: the bearer token the HTTP clients send."""
    async with pool.connection() as conn:
        member = await staff.create_staff(
            conn,
            username=f"bench.{uuid4().hex[:8]}",
            display_name="bench",
            password="Bench-pass-2026!",
            role=Role.FINANCE,
            outlet_id=None,
        )
        tokens = await sessions.issue(
            conn, principal_type="staff", principal_id=member.id, client=Client("127.0.0.1", "bench")
        )
    return tokens.access_token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_ready(port: int, proc: asyncio.subprocess.Process, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError("the service exited before it was ready")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: bench\r\n\r\n")
            await writer.drain()
            line = await reader.readline()
            writer.close()
            if b" 200 " in line:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("the service did not become ready")


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes, token: str
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection: a lean client, so the load generator stays cheap."""
    writer.write(
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer "
        + token.encode()
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    payload = await reader.readexactly(length)
    return int(status_line.split()[1]), payload


Body = Callable[[random.Random, list[UUID]], bytes]


def transfer_body(rng: random.Random, accounts: list[UUID]) -> bytes:
    debit, credit = rng.sample(accounts, 2)
    return json.dumps(
        {
            "id": str(new_id()),
            "debit_account_id": str(debit),
            "credit_account_id": str(credit),
            "amount": {"amount": rng.randint(1, 10_000), "currency": "CNY"},
            "code": "bench",
        }
    ).encode()


def step_body(rng: random.Random, accounts: list[UUID]) -> bytes:
    payer, payee = rng.sample(accounts, 2)
    return json.dumps(
        {
            "id": str(new_id()),
            "payer": str(payer),
            "payee": str(payee),
            "amount": {"amount": rng.randint(1, 10_000), "currency": "CNY"},
        }
    ).encode()


@dataclass
class HttpRun:
    tps: float
    p50_ms: float
    p99_ms: float
    failures: int


async def bench_http(
    url: str,
    clients: int,
    duration: float,
    workers: int,
    *,
    path: str = "/api/v1/ledger/transfers",
    body: Body = transfer_body,
    command: Sequence[str] = ("-m", "etcwallet.cli", "serve"),
    during: Callable[[], Coroutine[Any, Any, object]] | None = None,
) -> tuple[HttpRun, object]:
    """``clients`` keep-alive clients posting ``body`` to ``path`` of a service started as ``command``.

    ``during`` runs beside the clients (a sampler); its result comes back with the figures.
    """
    pool = await open_pool(url, 2)
    ledger = Ledger(pool)
    accounts = await open_accounts(ledger, ACCOUNTS)
    token = await finance_session(pool)
    await pool.close()
    port = free_port()
    env = dict(
        os.environ,
        ETCW_DATABASE_URL=service_role_url(url),
        ETCW_DATABASE_OWNER_URL=url,
        ETCW_ENV="production",
        ETCW_ENCRYPTION_KEY=generate_key(),
        ETCW_LOOKUP_KEY=generate_key(),
        ETCW_LOG_LEVEL="WARNING",
        ETCW_PORT=str(port),
        ETCW_WORKERS=str(workers),
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, *command, env=env)
    try:
        await wait_ready(port, proc)
        deadline = time.perf_counter() + duration
        latencies: list[float] = []
        failures = 0

        async def client(i: int) -> None:
            nonlocal failures
            rng = random.Random(1000 + i)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            while time.perf_counter() < deadline:
                payload = body(rng, accounts)
                started = time.perf_counter()
                status, _ = await _post(reader, writer, path, payload, token)
                latencies.append(time.perf_counter() - started)
                if status != 201:
                    failures += 1
            writer.close()

        started = time.perf_counter()
        side = asyncio.create_task(during()) if during is not None else None
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
        sampled = await side if side is not None else None
        ok = len(latencies) - failures
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        return HttpRun(ok / elapsed, p50, p99, failures), sampled
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


# --- (e) a hot domain step ------------------------------------------------------------------------------


def prepare_step_schema(owner_url: str) -> None:
    """The step's own table (bench/step_service.py), readable and writable by the service's role."""
    spec = importlib.util.spec_from_file_location("step_service", Path(__file__).with_name("step_service.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    service_role_url(owner_url)  # the service's role exists before it is granted anything
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(module.DDL)
        with contextlib.suppress(psycopg.Error):  # no service role on a server the benchmark does not own
            conn.execute(f"GRANT USAGE ON SCHEMA {module.SCHEMA} TO {SERVICE_ROLE}")
            conn.execute(f"GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA {module.SCHEMA} TO {SERVICE_ROLE}")


async def sample_audit_lock(url: str, duration: float, every: float = 0.01) -> dict[str, object]:
    """How often, while the step's load runs, some transaction waits for an advisory lock.

    Only the audit chain's lock is an advisory lock on this path. Sampled from ``pg_stat_activity``, not
    ``pg_locks``: reading ``pg_locks`` takes every lock-manager partition and would slow the load it
    measures.
    """
    samples = waiting = waiters = 0
    deadline = time.perf_counter() + duration
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while time.perf_counter() < deadline:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
            )
            row = await cur.fetchone()
            n = int(row[0]) if row else 0
            samples += 1
            waiting += n > 0
            waiters += n
            await asyncio.sleep(every)
    return {
        "audit_lock_samples": samples,
        "audit_lock_waiting_share": round(waiting / samples, 4) if samples else 0.0,
        "audit_lock_mean_waiters": round(waiters / samples, 3) if samples else 0.0,
    }


# --- driver ------------------------------------------------------------------------------------------------


async def run_all(url: str, clients: int, duration: float, json_output: bool, http_workers: int) -> Report:
    report = Report()
    tune_for_service()  # as `etcwallet serve` does once it is ready: (b) and (d) run in this process
    checkpoint(url)
    _say(json_output, f"(a) pgbench TPC-B, {clients} clients, {duration:.0f} s ...")
    report.pgbench_tps = await asyncio.to_thread(run_pgbench, url, clients, duration)
    _say(json_output, f"    {report.pgbench_tps:,.0f} TPS")

    service_url = create_database(url, "etcw_bench_service")
    migrate(service_url)
    checkpoint(url)
    _say(json_output, f"(b) service layer, {clients} workers ...")
    report.service_tps, notes = await bench_service(service_role_url(service_url), clients, duration)
    report.notes.update(notes)

    http_url = create_database(url, "etcw_bench_http")
    migrate(http_url)
    checkpoint(url)
    _say(json_output, f"(c) HTTP, {clients} clients ...")
    run, _ = await bench_http(http_url, clients, duration, http_workers)
    report.http_tps, report.http_p50_ms, report.http_p99_ms = run.tps, run.p50_ms, run.p99_ms
    report.notes.update({"http_failures": run.failures, "http_workers": http_workers})

    batch_url = create_database(url, "etcw_bench_batch")
    migrate(batch_url)
    checkpoint(url)
    _say(json_output, "(d) bulk calls of 8,000 transfers ...")
    report.batch_tps, notes = await bench_batch(service_role_url(batch_url), duration)
    report.notes.update(notes)

    step_url = create_database(url, "etcw_bench_step")
    migrate(step_url)
    prepare_step_schema(step_url)
    checkpoint(url)
    _say(json_output, f"(e) a domain step over HTTP (transfer + row + event + audit), {clients} clients ...")
    run, sampled = await bench_http(
        step_url,
        clients,
        duration,
        http_workers,
        path="/bench/v1/steps",
        body=step_body,
        command=(str(Path(__file__).with_name("step_service.py")),),
        during=lambda: sample_audit_lock(step_url, duration),
    )
    report.step_tps, report.step_p50_ms, report.step_p99_ms = run.tps, run.p50_ms, run.p99_ms
    report.notes.update({"step_failures": run.failures, **(sampled if isinstance(sampled, dict) else {})})
    return report


def main(json_output: bool = False, duration: float = 20.0, clients: int = 16, http_workers: int = 1) -> None:
    """Run every phase on one PostgreSQL server and print the figures (or one JSON object)."""
    server_url = os.environ.get("ETCW_DATABASE_URL")
    tmp = None
    server = None
    if not server_url:
        exit_on_termination()  # a SIGTERM still stops the benchmark's own server
        tmp = Path(tempfile.mkdtemp(prefix="etcw-bench-"))
        server = start_embedded(tmp / "pg")
        server_url = server.url
        _say(json_output, "preparing the server's WAL files ...")
        settle_own_server(server_url, duration)
    try:
        report = uvloop.run(run_all(server_url, clients, duration, json_output, http_workers))
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    data = report.as_dict()
    if json_output:
        print(json.dumps(data))
        return
    ratios = report.ratios()
    print()
    print(f"{'phase':<34}{'transfers/s':>14}{'× pgbench':>12}")
    print(f"{'(a) pgbench TPC-B (baseline)':<34}{report.pgbench_tps:>14,.0f}{1.0:>12.2f}")
    print(f"{'(b) service layer':<34}{report.service_tps:>14,.0f}{ratios['service_ratio']:>12.2f}")
    print(f"{'(c) HTTP':<34}{report.http_tps:>14,.0f}{ratios['http_ratio']:>12.2f}")
    print(f"{'(d) bulk, 8,000 a call':<34}{report.batch_tps:>14,.0f}{ratios['batch_ratio']:>12.2f}")
    print(f"{'(e) domain step over HTTP':<34}{report.step_tps:>14,.0f}{ratios['step_ratio']:>12.2f}")
    print(
        f"HTTP latency p50 {report.http_p50_ms:.1f} ms, p99 {report.http_p99_ms:.1f} ms; "
        f"step p50 {report.step_p50_ms:.1f} ms, p99 {report.step_p99_ms:.1f} ms; {report.notes}"
    )


if __name__ == "__main__":
    main(json_output="--json" in sys.argv)
