"""The job runner: claims due jobs under a lease, runs their handlers, and records how each run ended.

Every process of the service runs one (started by the runtime, stopped by ``Runtime.close``); the command
line's ``etcwallet jobs run NAME`` uses the same claim. Exclusion rests on the ``jobs`` row alone:

1. **Claim** (one autocommit statement): the first due row of a declared job, ``FOR UPDATE SKIP LOCKED``,
   is set ``running`` with a fresh ``lease_token`` and ``lease_until = now() + lease``. Two runners never
   claim the same row: the second skips the row the first has locked, and once the first commits the row
   is no longer due. A row whose lease has lapsed is due again.
2. **Work**: the handler runs with no transaction of the runner's open; it opens its own. A heartbeat
   renews the lease every third of it. If a renewal finds the token gone (the lease lapsed and another
   runner took over), or the database cannot be reached until the lease would have lapsed, the handler is
   cancelled: it no longer holds the job.
3. **Finish** (one autocommit statement, only while the token is still ours): success sets the next run
   (a schedule) or ``done`` (a queued job); failure records the error and retries after the backoff, or
   parks the queued job (``failed``) or gives the schedule up until its next period after
   ``max_attempts``. A runner that stops releases what it still holds, due at once, without counting the
   attempt.

Times come from the database's clock (``now()``), so the processes' clocks never decide who runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.db import autocommit
from etcwallet.core.masking import mask_free_text
from etcwallet.platform.jobs import Job, JobContext, JobError, Registry, ensure_schedules

log = logging.getLogger(__name__)

ERROR_KEPT = 2000
"""Characters of a failure's text kept in ``last_error``."""

_CLAIM = """
WITH c AS (
    SELECT id, state AS was, lease_owner AS was_owner FROM jobs
    WHERE {where}
    ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE jobs j SET state = 'running',
    attempts = CASE WHEN j.retry OR c.was = 'running' THEN j.attempts + 1 ELSE 1 END,
    retry = false, lease_token = %(token)s, lease_owner = %(owner)s,
    lease_until = now() + make_interval(secs => u.lease), started_at = now()
FROM c, unnest(%(names)s::text[], %(leases)s::float8[]) AS u(name, lease)
WHERE j.id = c.id AND u.name = j.name
RETURNING j.id, j.name, j.scheduled, j.payload, j.attempts, c.was, c.was_owner, now()
"""
_DUE = (
    "name = ANY(%(names)s::text[]) AND ((state = 'waiting' AND run_at <= now()) "
    "OR (state = 'running' AND lease_until < now()))"
)
_NAMED = (
    "scheduled AND name = %(name)s AND (state = 'waiting' OR (state = 'running' AND lease_until < now()))"
)
CLAIM_DUE = _CLAIM.format(where=_DUE)
CLAIM_NAMED = _CLAIM.format(where=_NAMED)
_RELEASED = "lease_token = NULL, lease_owner = NULL, lease_until = NULL"


@dataclass(frozen=True)
class Claim:
    """A job this runner holds: which row, which try, and the lease that proves it."""

    job_id: int
    name: str
    scheduled: bool
    payload: dict[str, Any]
    attempt: int
    token: UUID
    claimed_at: datetime  # the database's clock at the claim
    lapsed_from: str | None  # the runner whose lease lapsed, when this claim took the job over
    started: float  # time.monotonic() at the claim

    def now(self) -> datetime:
        """The database's clock now, as the claim's time plus what has elapsed here since."""
        return self.claimed_at + timedelta(seconds=time.monotonic() - self.started)


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: ``success``, ``failure`` (retried later or parked), ``lost`` (the lease went to
    another runner) or ``released`` (the runner stopped first)."""

    job_id: int
    name: str
    attempt: int
    outcome: str
    error: str | None = None
    result: dict[str, Any] | None = None


def runner_name() -> str:
    """Who holds a lease: host, process and a random tag (a pid alone is reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:6]}"


class Runner:
    """Claims and runs the jobs of ``registry`` until stopped; at most ``concurrency`` at a time.

    It sleeps until the next due time it knows of, at most ``poll_interval`` (queued jobs from other
    processes appear without notice).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        registry: Registry,
        *,
        owner: str | None = None,
        poll_interval: float = 1.0,
        concurrency: int = 4,
        grace: float = 5.0,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.owner = owner or runner_name()
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self.grace = grace
        self._names = registry.names
        self._leases = [registry.get(name).lease for name in self._names]  # type: ignore[union-attr]
        self._running: set[asyncio.Task[RunOutcome]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop: asyncio.Task[None] | None = None

    # --- life -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Give the schedules their rows and start claiming."""
        async with autocommit(self.pool) as conn:
            await ensure_schedules(conn, self.registry.scheduled)
        self._stopping = False
        self._loop = asyncio.create_task(self._claim_loop(), name=f"jobs {self.owner}")

    async def stop(self) -> None:
        """Stop claiming; let running jobs finish for ``grace`` seconds, then cancel and release them.

        The claim loop is told to stop rather than cancelled, so a claim is never cut off between the
        server's commit and the runner learning of it (that job would wait for its lease to lapse).
        """
        if self._loop is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._loop), self.grace)
            except TimeoutError:
                self._loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._loop
            self._loop = None
        if self._running:
            _, pending = await asyncio.wait(set(self._running), timeout=self.grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def run_now(self, name: str) -> RunOutcome:
        """Run the scheduled job ``name`` now, once, whether due or not, under the same exclusion.

        Raises :class:`JobError` ``job_running`` when another runner holds it (its lease has not lapsed).
        """
        job = self.registry.get(name)
        if job is None:
            raise JobError("job_not_found", names=self.registry.names)
        if job.schedule is None:
            raise JobError("job_not_scheduled")
        async with autocommit(self.pool) as conn:
            await ensure_schedules(conn, [job])
        claim = await self._claim(CLAIM_NAMED, {"name": name})
        if claim is None:
            raise JobError("job_running")
        return await self.execute(claim)

    async def run_due(self) -> list[RunOutcome]:
        """Claim and run every job due now, one after another (tests and one-shot tools)."""
        outcomes = []
        while (claim := await self._claim(CLAIM_DUE, {})) is not None:
            outcomes.append(await self.execute(claim))
        return outcomes

    # --- claiming ---------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            delay = self.poll_interval
            try:
                while len(self._running) < self.concurrency and not self._stopping:
                    claim = await self._claim(CLAIM_DUE, {})
                    if claim is None:
                        break
                    task = asyncio.create_task(self.execute(claim), name=f"job {claim.name}")
                    self._running.add(task)
                    task.add_done_callback(self._finished)
                if len(self._running) < self.concurrency:  # when full, a finishing job wakes the loop
                    delay = await self._next_due_in()
            except Exception:  # the database is away, say: try again after a pause, never stop claiming
                log.exception("job runner could not claim", extra={"runner": self.owner})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _finished(self, task: asyncio.Task[RunOutcome]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _claim(self, sql: str, params: dict[str, Any]) -> Claim | None:
        token = uuid4()
        args = {"token": token, "owner": self.owner, "names": self._names, "leases": self._leases, **params}
        async with autocommit(self.pool) as conn:
            cur = await conn.execute(sql, args)
            row = await cur.fetchone()
        if row is None:
            return None
        job_id, name, scheduled, payload, attempt, was, was_owner, now = row
        return Claim(
            job_id=job_id,
            name=name,
            scheduled=scheduled,
            payload=dict(payload),
            attempt=attempt,
            token=token,
            claimed_at=now,
            lapsed_from=was_owner if was == "running" else None,
            started=time.monotonic(),
        )

    async def _next_due_in(self) -> float:
        """Seconds until a declared job is due (or a lease lapses), at most ``poll_interval``."""
        async with autocommit(self.pool) as conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM least("
                " (SELECT min(run_at) FROM jobs WHERE state = 'waiting' AND name = ANY(%(n)s::text[])),"
                " (SELECT min(lease_until) FROM jobs WHERE state = 'running' AND name = ANY(%(n)s::text[]))"
                ") - now())",
                {"n": self._names},
            )
            row = await cur.fetchone()
        if row is None or row[0] is None:
            return self.poll_interval
        return min(self.poll_interval, max(0.01, float(row[0])))

    # --- running ----------------------------------------------------------------------------------------

    async def execute(self, claim: Claim) -> RunOutcome:
        """Run a claimed job's handler under its lease and record the outcome."""
        job = self.registry.get(claim.name)
        assert job is not None, "a runner claims only declared jobs"
        if claim.lapsed_from is not None:
            log.warning(
                "job lease lapsed; taken over",
                extra={
                    "job": claim.name,
                    "job_id": claim.job_id,
                    "from": claim.lapsed_from,
                    "runner": self.owner,
                    "attempt": claim.attempt,
                },
            )
            if claim.attempt > job.max_attempts:
                error = f"lease of {claim.lapsed_from} lapsed on the last attempt"
                return await self._fail(job, claim, error)
        ctx = JobContext(self.pool, claim.job_id, claim.name, claim.payload, claim.attempt)
        work = asyncio.create_task(job.handler(ctx))
        lost, done = asyncio.Event(), asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(job, claim, work, lost, done))
        result: Mapping[str, Any] | None = None
        failure: Exception | None = None
        try:
            result = await work
        except asyncio.CancelledError:
            if not lost.is_set():  # the runner is stopping: give the job back, then stop
                await self._end_heartbeat(done, heartbeat)
                await self._release(claim)
                raise
        except Exception as exc:
            failure = exc
        finally:
            await self._end_heartbeat(done, heartbeat)
        if lost.is_set():
            log.error(
                "job lease lost; the run was cancelled",
                extra={"job": claim.name, "job_id": claim.job_id, "runner": self.owner},
            )
            return RunOutcome(claim.job_id, claim.name, claim.attempt, "lost")
        if failure is not None:
            log.warning(
                "job failed",
                exc_info=failure,
                extra={"job": claim.name, "job_id": claim.job_id, "attempt": claim.attempt},
            )
            return await self._fail(job, claim, _error_text(failure))
        return await self._succeed(job, claim, dict(result) if result else None)

    @staticmethod
    async def _end_heartbeat(done: asyncio.Event, heartbeat: asyncio.Task[None]) -> None:
        """Tell the heartbeat to end and wait for it: never cancelled, so a renewal in flight completes
        (a query cut off by cancellation would leave its connection busy)."""
        done.set()
        await heartbeat

    async def _heartbeat(
        self, job: Job, claim: Claim, work: asyncio.Task[Any], lost: asyncio.Event, done: asyncio.Event
    ) -> None:
        """Renew the lease every third of it until ``done``; cancel ``work`` once the lease is surely not
        ours."""
        held_until = time.monotonic() + job.lease
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), job.lease / 3)
                return
            try:
                async with autocommit(self.pool) as conn:
                    cur = await conn.execute(
                        "UPDATE jobs SET lease_until = now() + make_interval(secs => %s) "
                        "WHERE id = %s AND lease_token = %s",
                        (job.lease, claim.job_id, claim.token),
                    )
                renewed = cur.rowcount == 1
                if renewed:
                    held_until = time.monotonic() + job.lease
            except (psycopg.Error, OSError):
                log.warning("job lease renewal failed", exc_info=True, extra={"job": claim.name})
                renewed = time.monotonic() < held_until - job.lease / 6  # keep on while surely held
            if not renewed:
                lost.set()
                work.cancel()
                return

    async def _succeed(self, job: Job, claim: Claim, result: dict[str, Any] | None) -> RunOutcome:
        next_run = job.schedule.next_run(claim.now()) if job.schedule is not None else None
        await self._finish(
            claim,
            f"UPDATE jobs SET state = CASE WHEN scheduled THEN 'waiting' ELSE 'done' END, "
            f"run_at = coalesce(%(next)s, run_at), retry = false, {_RELEASED}, finished_at = now(), "
            f"outcome = 'success', last_error = NULL, result = %(result)s "
            f"WHERE id = %(id)s AND lease_token = %(token)s",
            {"next": next_run, "result": Jsonb(result) if result is not None else None},
        )
        return RunOutcome(claim.job_id, claim.name, claim.attempt, "success", result=result)

    async def _fail(self, job: Job, claim: Claim, error: str) -> RunOutcome:
        now = claim.now()
        if claim.attempt < job.max_attempts:
            state, run_at, retry = "waiting", now + timedelta(seconds=job.backoff.delay(claim.attempt)), True
        elif job.schedule is not None:
            state, run_at, retry = "waiting", job.schedule.next_run(now), False
        else:
            state, run_at, retry = "failed", None, False
        if not retry:
            log.error(
                "job gave up after its last attempt",
                extra={"job": claim.name, "job_id": claim.job_id, "attempts": claim.attempt},
            )
        await self._finish(
            claim,
            f"UPDATE jobs SET state = %(state)s, run_at = coalesce(%(run_at)s, run_at), "
            f"retry = %(retry)s, {_RELEASED}, finished_at = now(), outcome = 'failure', "
            f"last_error = %(error)s, result = NULL WHERE id = %(id)s AND lease_token = %(token)s",
            {"state": state, "run_at": run_at, "retry": retry, "error": error},
        )
        return RunOutcome(claim.job_id, claim.name, claim.attempt, "failure", error=error)

    async def _release(self, claim: Claim) -> None:
        """Give a job back when the runner stops mid-run: due at once elsewhere, the attempt not counted."""
        with contextlib.suppress(psycopg.Error, OSError):
            await self._finish(
                claim,
                f"UPDATE jobs SET state = 'waiting', run_at = now(), attempts = attempts - 1, "
                f"retry = attempts > 1, {_RELEASED} WHERE id = %(id)s AND lease_token = %(token)s",
                {},
            )

    async def _finish(self, claim: Claim, sql: str, params: dict[str, Any]) -> None:
        async with autocommit(self.pool) as conn:
            cur = await conn.execute(sql, {"id": claim.job_id, "token": claim.token, **params})
        if cur.rowcount != 1:
            log.error(
                "job outcome not recorded: the lease was no longer held",
                extra={"job": claim.name, "job_id": claim.job_id, "runner": self.owner},
            )


def _error_text(exc: BaseException) -> str:
    """A failure as kept in ``last_error``: its type and message, personal numbers masked, bounded."""
    return mask_free_text(f"{type(exc).__name__}: {exc}")[:ERROR_KEPT]
