"""Jobs run once across processes: the claim, the lease, retries, queueing, and the command line."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime, job_registry
from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.core.db import open_pool
from etcwallet.ledger.service import Ledger
from etcwallet.platform import jobs
from etcwallet.platform.job_runner import Runner
from etcwallet.platform.jobs import Backoff, DailyAt, Every, Job, JobContext, Registry, enqueue

REPO_ROOT = Path(__file__).resolve().parents[2]


def suffix() -> str:
    return "t" + uuid4().hex[:10]


async def row(pool: AsyncConnectionPool, name: str, job_id: int | None = None) -> dict[str, Any]:
    """A job's row (the schedule's, or the queued job ``job_id``)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, state, attempts, retry, outcome, last_error, result, run_at, lease_token, "
            "lease_owner, now() AS now FROM jobs WHERE name = %s AND (id = %s::bigint OR (%s::bigint IS NULL AND scheduled))",
            (name, job_id, job_id),
        )
        found = await cur.fetchone()
        assert found is not None, name
        assert cur.description is not None
        return dict(zip([c.name for c in cur.description], found, strict=True))


async def eventually(check: Callable[[], Any], within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


# --- two processes -----------------------------------------------------------------------------------


def start_workers(
    database_url: str, out: Path, tag: str, mode: str, seconds: float, count: int
) -> list[subprocess.Popen[str]]:
    """``count`` worker processes (tests/platform/job_worker.py), each ready and waiting for the go file."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.platform.job_worker",
                database_url,
                str(out),
                tag,
                mode,
                str(seconds),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "ETCW_ENV": "test"},
        )
        for _ in range(count)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    return procs


def lines(out: Path, kind: str) -> list[list[str]]:
    if not out.exists():
        return []
    return [line.split() for line in out.read_text().splitlines() if line.startswith(kind + " ")]


async def test_two_processes_run_each_job_once_and_never_at_the_same_moment(
    database_url: str, pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    tag, out = suffix(), tmp_path / "runs.txt"
    async with pool.connection() as conn:
        for n in range(20):
            await enqueue(conn, f"test.queued_{tag}", {"n": n})
    procs = start_workers(database_url, out, tag, "share", seconds=4.0, count=2)
    try:
        (tmp_path / "runs.txt.go").touch()
        for proc in procs:
            assert (await asyncio.to_thread(proc.wait, 60)) == 0
    finally:
        for proc in procs:
            proc.kill()

    # The hourly job: one run in all, though both processes found it due at start.
    assert len(lines(out, "once")) == 1
    # Every queued job ran exactly once.
    queued = lines(out, "queued")
    assert sorted(int(q[4]) for q in queued) == list(range(20))
    # The frequent job ran many times, never two runs overlapping.
    ticks = sorted((float(t[2]), float(t[3]), t[1]) for t in lines(out, "tick"))
    assert len(ticks) >= 4, ticks
    for (_, end, _), (start, _, _) in itertools.pairwise(ticks):
        assert start >= end - 0.01, ticks  # the next run starts after the previous one ended
    # Both processes were claiming all along (each ran some of the jobs).
    ran_by = {q[1] for q in queued} | {pid for *_, pid in ticks} | {o[1] for o in lines(out, "once")}
    assert ran_by == {str(p.pid) for p in procs}
    schedule = await row(pool, f"test.tick_{tag}")
    assert schedule["state"] == "waiting" and schedule["lease_token"] is None


async def test_a_crashed_runners_lease_lapses_and_another_runner_takes_over(
    database_url: str, pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    tag, out = suffix(), tmp_path / "crash.txt"
    name = f"test.crash_{tag}"
    [proc] = start_workers(database_url, out, tag, "hang", seconds=60.0, count=1)
    try:
        (tmp_path / "crash.txt.go").touch()
        await eventually(lambda: asyncio.to_thread(lines, out, "crash"))
        held = await row(pool, name)
        assert held["state"] == "running" and held["lease_owner"].split(":")[1] == str(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # no finally, no release: the lease is all that is left
        await asyncio.to_thread(proc.wait, 30)
    finally:
        proc.kill()

    ran: list[int] = []

    async def recover(ctx: JobContext) -> Mapping[str, Any]:
        ran.append(ctx.attempt)
        return {"recovered": True}

    runner = Runner(pool, Registry([Job(name, recover, Every(3600), lease=1.0)]), owner="survivor")
    # While the dead runner's lease lasts, nobody else may take the job ...
    left = await _lease_left(pool, name)
    if left > 0.3:
        assert await runner.run_due() == []
    # ... and once it lapsed, the job is due again, as a second attempt.
    outcomes = await eventually(runner.run_due, within=10.0)
    assert [(o.name, o.outcome, o.attempt) for o in outcomes] == [(name, "success", 2)]
    assert ran == [2]
    done = await row(pool, name)
    assert (done["state"], done["outcome"], done["attempts"], done["lease_token"]) == (
        "waiting",
        "success",
        2,
        None,
    )


async def _lease_left(pool: AsyncConnectionPool, name: str) -> float:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT extract(epoch FROM lease_until - now()) FROM jobs WHERE name = %s AND scheduled", (name,)
        )
        found = await cur.fetchone()
    assert found is not None and found[0] is not None
    return float(found[0])


# --- one process, several runners --------------------------------------------------------------------


async def test_a_running_job_keeps_its_lease_past_the_lease_length(pool: AsyncConnectionPool) -> None:
    name = f"test.long_{suffix()}"
    started, release = asyncio.Event(), asyncio.Event()

    async def long_job(ctx: JobContext) -> None:
        started.set()
        await release.wait()

    registry = Registry([Job(name, long_job, Every(3600), lease=0.6)])
    first, second = Runner(pool, registry, owner="first"), Runner(pool, registry, owner="second")
    running = asyncio.create_task(first.run_now(name))
    await started.wait()
    await asyncio.sleep(1.5)  # more than twice the lease: renewed all along
    assert await second.run_due() == []
    with pytest.raises(jobs.JobError) as refused:
        await second.run_now(name)
    assert refused.value.code == "job_running"
    release.set()
    assert (await running).outcome == "success"
    assert (await second.run_now(name)).outcome == "success"  # free again once finished


async def test_a_runner_that_lost_its_lease_stops_the_job(pool: AsyncConnectionPool) -> None:
    name = f"test.lost_{suffix()}"
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def job(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runner = Runner(pool, Registry([Job(name, job, Every(3600), lease=0.6)]), owner="slow")
    running = asyncio.create_task(runner.run_now(name))
    await started.wait()
    async with pool.connection() as conn:  # as if its lease lapsed and another runner took the job
        await conn.execute(
            "UPDATE jobs SET lease_token = gen_random_uuid(), lease_owner = 'other' "
            "WHERE name = %s AND scheduled",
            (name,),
        )
    outcome = await asyncio.wait_for(running, 10)
    assert outcome.outcome == "lost" and cancelled.is_set()
    assert (await row(pool, name))["lease_owner"] == "other"  # the other runner's claim is untouched


async def test_failures_are_retried_with_backoff_then_succeed(pool: AsyncConnectionPool) -> None:
    name = f"test.flaky_{suffix()}"
    seen: list[tuple[int, float, str | None, int]] = []

    async def flaky(ctx: JobContext) -> Mapping[str, Any]:
        current = await row(ctx.pool, name, ctx.job_id)
        seen.append((ctx.attempt, time.monotonic(), current["last_error"], current["attempts"]))
        if ctx.attempt < 3:
            raise RuntimeError(f"boom {ctx.attempt} for 13912345678")
        return {"ok": ctx.attempt}

    registry = Registry([Job(name, flaky, max_attempts=5, backoff=Backoff(base=0.3, factor=2.0))])
    async with pool.connection() as conn:
        job_id = await enqueue(conn, name, {"x": 1})
    runner = Runner(pool, registry, poll_interval=0.05)
    await runner.start()
    try:
        await eventually(lambda: _state_is(pool, name, job_id, "done"))
    finally:
        await runner.stop()
    assert [s[0] for s in seen] == [1, 2, 3]
    # 0.3 s, then 0.6 s, by the database's clock as the claim read it: the claim's time is its statement's
    # start, so a retry may come up to one claim's round trip early by this process's clock (seen 6 ms
    # under a loaded machine).
    slack = 0.02
    assert seen[1][1] - seen[0][1] >= 0.3 - slack and seen[2][1] - seen[1][1] >= 0.6 - slack
    # Each retry saw the previous attempt's error recorded (the phone number in it masked).
    assert seen[1][2] == "RuntimeError: boom 1 for 139****5678" and seen[2][2].startswith(
        "RuntimeError: boom 2"
    )
    done = await row(pool, name, job_id)
    assert (done["outcome"], done["attempts"], done["last_error"], done["result"]) == (
        "success",
        3,
        None,
        {"ok": 3},
    )


async def _state_is(pool: AsyncConnectionPool, name: str, job_id: int | None, state: str) -> bool:
    return bool((await row(pool, name, job_id))["state"] == state)


async def test_a_queued_job_failing_every_attempt_is_parked(pool: AsyncConnectionPool) -> None:
    name = f"test.broken_{suffix()}"

    async def broken(ctx: JobContext) -> None:
        raise ValueError("never works")

    registry = Registry([Job(name, broken, max_attempts=2, backoff=Backoff(base=0.05))])
    async with pool.connection() as conn:
        job_id = await enqueue(conn, name)
    runner = Runner(pool, registry)
    outcomes = [o.outcome for o in await runner.run_due()]
    await asyncio.sleep(0.1)
    outcomes += [o.outcome for o in await runner.run_due()]
    assert outcomes == ["failure", "failure"]
    parked = await row(pool, name, job_id)
    assert (parked["state"], parked["attempts"], parked["last_error"]) == (
        "failed",
        2,
        "ValueError: never works",
    )
    await asyncio.sleep(0.1)
    assert await runner.run_due() == []  # parked: never claimed again
    async with pool.connection() as conn:
        listed = await jobs.overview(conn, registry)
    assert any(s.job_id == job_id and s.state == "failed" for s in listed)


async def test_a_schedule_that_fails_every_attempt_waits_for_its_next_period(
    pool: AsyncConnectionPool,
) -> None:
    name = f"test.sched_{suffix()}"

    async def broken(ctx: JobContext) -> None:
        raise ValueError("down")

    registry = Registry([Job(name, broken, Every(600), max_attempts=1)])
    outcome = await Runner(pool, registry).run_now(name)
    assert outcome.outcome == "failure"
    after = await row(pool, name)
    assert (after["state"], after["retry"], after["last_error"]) == ("waiting", False, "ValueError: down")
    assert timedelta(seconds=590) < after["run_at"] - after["now"] <= timedelta(seconds=600)


async def test_enqueue_commits_with_the_callers_transaction(pool: AsyncConnectionPool) -> None:
    name = f"test.step_{suffix()}"
    got: list[dict[str, Any]] = []

    async def step(ctx: JobContext) -> None:
        got.append(dict(ctx.payload))

    async with pool.connection() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await enqueue(conn, name, {"order": "rolled back"})
                raise RuntimeError("the step failed")
        async with conn.transaction():
            first = await enqueue(conn, name, {"order": 1}, key="order-1")
            assert await enqueue(conn, name, {"order": 1}, key="order-1") == first  # deduplicated
            await enqueue(conn, name, {"order": "later"}, run_at=datetime.now(UTC) + timedelta(hours=1))
    runner = Runner(pool, Registry([Job(name, step)]))
    assert [o.outcome for o in await runner.run_due()] == ["success"]
    assert got == [{"order": 1}]
    with pytest.raises(ValueError):
        async with pool.connection() as conn:
            await enqueue(conn, "NoDomain", {})


async def test_stopping_a_runner_gives_running_jobs_back(pool: AsyncConnectionPool) -> None:
    name = f"test.stop_{suffix()}"
    started = asyncio.Event()

    async def slow(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(30)

    runner = Runner(pool, Registry([Job(name, slow, Every(3600))]), poll_interval=0.05, grace=0.1)
    await runner.start()
    await asyncio.wait_for(started.wait(), 10)
    await runner.stop()
    released = await row(pool, name)
    assert (released["state"], released["attempts"], released["lease_token"]) == ("waiting", 0, None)
    assert released["run_at"] <= released["now"]  # due at once, for whichever runner is still up


def test_schedules_and_backoff() -> None:
    at = datetime(2026, 12, 10, 1, 30, tzinfo=UTC)  # 09:30 in Shanghai
    assert DailyAt(clock_time(2, 0)).next_run(at) == datetime(2026, 12, 10, 18, 0, tzinfo=UTC)
    assert DailyAt(clock_time(10, 0)).next_run(at) == datetime(2026, 12, 10, 2, 0, tzinfo=UTC)
    assert Every(5).next_run(at) == at + timedelta(seconds=5)
    assert [Backoff(1, 2, 5).delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    with pytest.raises(ValueError):
        Job("nodots", lambda ctx: asyncio.sleep(0))  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError):
        Registry([Job("a.b", _noop), Job("a.b", _noop)])


async def _noop(ctx: JobContext) -> None:
    return None


# --- the service's jobs ------------------------------------------------------------------------------


def test_the_service_declares_the_sweeper_and_housekeeping_with_their_settings(
    tmp_path: Path, pool: AsyncConnectionPool
) -> None:
    settings = Settings(data_dir=tmp_path, ledger_expiry_interval_seconds=7, housekeeping_interval_seconds=99)
    registry = job_registry(settings, Ledger(pool))
    declared = {job.name: job.schedule for job in registry}
    assert declared == {
        "jobs.prune": Every(3600),
        "ledger.expire_holds": Every(7),
        "identity.housekeeping": Every(99),
        "identity.anonymize_closed": DailyAt(clock_time(3, 30)),
        "machine_clients.forget_nonces": Every(60),
    }


async def test_the_runtime_stops_its_runner(database_url: str, keys: Keys) -> None:
    pool = await open_pool(database_url, 3)
    ledger = Ledger(pool)
    runner = Runner(pool, Registry([]))
    await runner.start()
    runtime = Runtime(pool=pool, ledger=ledger, keys=keys, jobs=runner)
    await runtime.close()
    assert runner._loop is None and pool.closed


# --- the command line --------------------------------------------------------------------------------


def test_cli_lists_and_runs_jobs(cli_database: Callable[..., Any]) -> None:
    url = cli_database.url  # type: ignore[attr-defined]
    listed = cli_database("jobs", "list")
    assert listed.exit_code == 0, listed.output
    for name in ("ledger.expire_holds", "identity.housekeeping", "jobs.prune"):
        assert name in listed.flat
    assert "every 5s" in listed.flat and "启动时" in listed.flat  # never run: due when a runner starts

    ran = cli_database("jobs", "run", "ledger.expire_holds")
    assert ran.exit_code == 0, ran.output
    assert "job done" in ran.flat and "'expired': 0" in ran.flat
    with psycopg.connect(url) as conn:
        state, outcome, attempts, next_in = conn.execute(
            "SELECT state, outcome, attempts, extract(epoch FROM run_at - now()) FROM jobs "
            "WHERE name = 'ledger.expire_holds' AND scheduled"
        ).fetchone()  # type: ignore[misc]
        audited = conn.execute(
            "SELECT actor_type, actor_id, outcome FROM audit_log WHERE action = 'jobs.run' "
            "AND target_id = 'ledger.expire_holds'"
        ).fetchall()
    assert (state, outcome, attempts) == ("waiting", "success", 1) and 0 < next_in <= 5
    assert audited == [("system", "cli", "success")]
    listed = cli_database("jobs", "list")
    assert "success" in listed.flat

    # Refused while another process holds the job; unknown names list what is declared.
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE jobs SET state = 'running', lease_token = gen_random_uuid(), lease_owner = 'elsewhere', "
            "lease_until = now() + interval '1 minute' WHERE name = 'ledger.expire_holds' AND scheduled"
        )
    busy = cli_database("jobs", "run", "ledger.expire_holds")
    assert busy.exit_code == 1 and "running elsewhere" in busy.flat
    assert "elsewhere" in cli_database("jobs", "list").flat
    unknown = cli_database("jobs", "run", "no.such_job")
    assert unknown.exit_code == 2 and "identity.housekeeping" in unknown.flat
