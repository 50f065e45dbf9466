"""Jobs: scheduled and queued work that runs once across every process of the service.

Two ``etcwallet serve`` processes, or ``ETCW_WORKERS=4`` uvicorn workers, each run a job runner
(:class:`etcwallet.platform.job_runner.Runner`); the ``jobs`` table decides which of them runs what, so
no job (the ledger's expiry sweep, identity's housekeeping) ever runs twice at the same moment.

- **Declared in code.** Each domain declares its jobs (``<domain>/jobs.py``) as :class:`Job` values: a
  name, a handler, a :class:`Schedule` (:class:`Every` n seconds, or :class:`DailyAt` a local time) or
  none for a job that only runs when queued, the attempts a run may take and the :class:`Backoff` between
  them. The application gathers them in one :class:`Registry`.
- **Queued from a transaction.** :func:`enqueue` inserts a one-off job in the caller's transaction, so a
  domain schedules work atomically with its change: rolled back, the job never existed.
- **Claimed with a lease, never a long transaction.** A runner claims a due row with one statement
  (``FOR UPDATE SKIP LOCKED``) that marks it running under a lease, renews the lease while the handler
  works, and records the outcome with a second statement; the handler opens its own transactions. A runner
  that dies stops renewing: its lease lapses and another runner takes the job over, as another attempt.
- **Retried with backoff**, the last error recorded; a queued job that fails ``max_attempts`` times is
  parked (``failed``) where ``etcwallet jobs list`` shows it; a schedule that does gives up until its next
  period.

Jobs that audit act as ``Actor.system("jobs")`` (:attr:`JobContext.actor`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.errors import DomainError
from etcwallet.platform.audit import Actor

JOBS_ACTOR = Actor.system("jobs")
"""Who a job is, in the audit log."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
"""``<domain>.<what>``: lower case, dotted (``ledger.expire_holds``)."""


# --- schedules -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Every:
    """Run again ``seconds`` after the previous run finished (a pause between runs, as a sleep loop)."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError("a schedule's interval must be positive")
        object.__setattr__(self, "seconds", float(self.seconds))  # 5 and 5.0 are one schedule

    def next_run(self, finished: datetime) -> datetime:
        return finished + timedelta(seconds=self.seconds)

    def describe(self) -> str:
        return f"每 {self.seconds:g} 秒 · every {self.seconds:g}s"


@dataclass(frozen=True)
class DailyAt:
    """Run once a day at a local wall-clock time (the day-end reconciliations), Asia/Shanghai unless told."""

    at: time
    tz: str = "Asia/Shanghai"

    def next_run(self, finished: datetime) -> datetime:
        zone = ZoneInfo(self.tz)
        local = finished.astimezone(zone)
        day = local.date()
        candidate = datetime.combine(day, self.at, tzinfo=zone)
        if candidate <= local:
            candidate = datetime.combine(day + timedelta(days=1), self.at, tzinfo=zone)
        return candidate

    def describe(self) -> str:
        return f"每天 {self.at:%H:%M} · daily at {self.at:%H:%M} {self.tz}"


Schedule = Every | DailyAt


@dataclass(frozen=True)
class Backoff:
    """How long to wait before retrying a failed attempt: ``base × factor^(attempt−1)``, at most ``cap``."""

    base: float = 5.0
    factor: float = 2.0
    cap: float = 600.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        return float(min(self.cap, self.base * self.factor ** max(0, attempt - 1)))


# --- declarations ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobContext:
    """What a handler is given: the pool to open its own transactions on, and which run this is."""

    pool: AsyncConnectionPool
    job_id: int
    name: str
    payload: Mapping[str, Any]
    attempt: int
    actor: Actor = JOBS_ACTOR


Handler = Callable[[JobContext], Coroutine[Any, Any, Mapping[str, Any] | None]]
"""A job's work. It may return a small summary (``{"expired": 3}``), kept as the run's result."""


@dataclass(frozen=True)
class Job:
    """A kind of work: its name, its handler, and how it is scheduled and retried.

    ``lease`` is how long a runner's claim lasts without renewal (it is renewed every third of it while
    the handler runs): the longest a crashed runner holds the job up, and the longest a runner cut off from
    the database may go on working before another takes over. Idempotent handlers make that harmless.
    """

    name: str
    handler: Handler
    schedule: Schedule | None = None
    max_attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    lease: float = 60.0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name) or len(self.name) > 100:
            raise ValueError(f"job names are <domain>.<what> in lower case: {self.name!r}")
        if self.max_attempts < 1:
            raise ValueError("a job needs at least one attempt")
        if self.lease <= 0:
            raise ValueError("a lease must be positive")
        object.__setattr__(self, "lease", float(self.lease))

    def describe(self) -> str:
        """The schedule in words, for ``etcwallet jobs list``."""
        return self.schedule.describe() if self.schedule is not None else "按需 · queued"


class Registry:
    """The jobs this program knows: a runner claims only these, and the command line lists them."""

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self._jobs: dict[str, Job] = {}
        for job in jobs:
            self.add(job)

    def add(self, job: Job) -> None:
        if job.name in self._jobs:
            raise ValueError(f"job {job.name!r} declared twice")
        self._jobs[job.name] = job

    def get(self, name: str) -> Job | None:
        return self._jobs.get(name)

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)

    @property
    def names(self) -> list[str]:
        return list(self._jobs)

    @property
    def scheduled(self) -> list[Job]:
        return [job for job in self._jobs.values() if job.schedule is not None]


# --- errors ----------------------------------------------------------------------------------------------

# code -> (status, zh, en, field the code is about)
JOB_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "job_not_found": (404, "没有这个任务", "no job of that name is declared", "name"),
    "job_not_scheduled": (
        409,
        "该任务没有计划，只能排队执行",
        "that job has no schedule; it only runs when queued",
        "name",
    ),
    "job_running": (409, "该任务正在其他进程中运行", "that job is running elsewhere right now", "name"),
}


class JobError(DomainError):
    """A job the caller asked for that cannot run: built fresh from :data:`JOB_ERRORS` at each raise."""

    def __init__(self, code: str, **extra: Any) -> None:
        status, zh, en, field_ = JOB_ERRORS[code]
        super().__init__(code, status, zh, en, field=field_, extra=extra)


# --- queueing --------------------------------------------------------------------------------------------


async def enqueue(
    conn: AsyncConnection[Any],
    name: str,
    payload: Mapping[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    key: str | None = None,
) -> int:
    """Queue a one-off run of job ``name`` in the caller's transaction; returns the job's id.

    It runs after the transaction commits (at ``run_at`` or at once), and not at all if it rolls back.
    With ``key``, queueing the same name and key again returns the first job's id instead of queueing
    another, so a step that may be re-driven queues its follow-up once.
    """
    if not _NAME.match(name):
        raise ValueError(f"job names are <domain>.<what> in lower case: {name!r}")
    cur = await conn.execute(
        "INSERT INTO jobs (name, key, payload, run_at) VALUES (%s, %s, %s, coalesce(%s, now())) "
        "ON CONFLICT (name, key) WHERE key IS NOT NULL DO NOTHING RETURNING id",
        (name, key, Jsonb(dict(payload or {})), run_at),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute("SELECT id FROM jobs WHERE name = %s AND key = %s", (name, key))
        row = await cur.fetchone()
        assert row is not None, "a conflicting job exists"
    return int(row[0])


async def ensure_schedules(conn: AsyncConnection[Any], jobs: Iterable[Job]) -> None:
    """Give each scheduled job its row (due at once when new), and bring forward a next run that a
    shortened interval (a changed setting) would have made sooner."""
    every = [(job.name, job.schedule.seconds) for job in jobs if isinstance(job.schedule, Every)]
    daily = [job.name for job in jobs if isinstance(job.schedule, DailyAt)]
    names = [name for name, _ in every] + daily
    if not names:
        return
    await conn.execute(
        "INSERT INTO jobs (name, scheduled) SELECT unnest(%s::text[]), true "
        "ON CONFLICT (name) WHERE scheduled DO NOTHING",
        (names,),
    )
    if every:
        await conn.execute(
            "UPDATE jobs j SET run_at = now() + make_interval(secs => u.secs) "
            "FROM unnest(%s::text[], %s::float8[]) AS u(name, secs) "
            "WHERE j.scheduled AND j.name = u.name AND j.state = 'waiting' AND NOT j.retry "
            "AND j.run_at > now() + make_interval(secs => u.secs)",
            ([name for name, _ in every], [secs for _, secs in every]),
        )


# --- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobStatus:
    """One row of ``etcwallet jobs list``: a schedule, or a queued job that has not succeeded."""

    name: str
    schedule: str
    scheduled: bool
    job_id: int | None
    state: str  # waiting | running | failed | new (declared, no row yet: runs when a runner starts)
    next_run: datetime | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None
    last_error: str | None
    result: Mapping[str, Any] | None
    lease_owner: str | None
    declared: bool


async def overview(conn: AsyncConnection[Any], registry: Registry, limit: int = 200) -> list[JobStatus]:
    """Every schedule (declared here or found in the table) and the queued jobs still to run or parked."""
    cur = await conn.execute(
        "(SELECT id, name, scheduled, state, run_at, attempts, started_at, finished_at, outcome, "
        " last_error, result, lease_owner FROM jobs WHERE scheduled) "
        "UNION ALL "
        "(SELECT id, name, scheduled, state, run_at, attempts, started_at, finished_at, outcome, "
        " last_error, result, lease_owner FROM jobs WHERE NOT scheduled AND state <> 'done' "
        " ORDER BY id LIMIT %s)",
        (limit,),
    )
    rows = await cur.fetchall()
    seen = {row[1] for row in rows if row[2]}
    out = [
        JobStatus(
            name=name,
            schedule=_describe(registry, name, scheduled),
            scheduled=scheduled,
            job_id=job_id,
            state=state,
            next_run=run_at if state == "waiting" else None,
            attempts=attempts,
            started_at=started_at,
            finished_at=finished_at,
            outcome=outcome,
            last_error=last_error,
            result=result,
            lease_owner=lease_owner,
            declared=registry.get(name) is not None,
        )
        for (
            job_id,
            name,
            scheduled,
            state,
            run_at,
            attempts,
            started_at,
            finished_at,
            outcome,
            last_error,
            result,
            lease_owner,
        ) in rows
    ]
    out += [
        JobStatus(
            job.name, job.describe(), True, None, "new", None, 0, None, None, None, None, None, None, True
        )
        for job in registry.scheduled
        if job.name not in seen
    ]
    return sorted(out, key=lambda s: (not s.scheduled, s.name if s.scheduled else "", s.job_id or 0))


def _describe(registry: Registry, name: str, scheduled: bool) -> str:
    job = registry.get(name)
    if job is None:
        return "未声明 · not declared here"
    return job.describe() if scheduled else "按需 · queued"


# --- the platform's own job ------------------------------------------------------------------------------

DONE_KEPT = timedelta(days=7)
"""Queued jobs that succeeded are kept a week (to see what ran), then deleted."""


async def prune(ctx: JobContext) -> Mapping[str, Any]:
    """Delete queued jobs that succeeded more than :data:`DONE_KEPT` ago (parked failures stay)."""
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "DELETE FROM jobs WHERE state = 'done' AND finished_at < now() - %s", (DONE_KEPT,)
        )
    return {"deleted": cur.rowcount}


def platform_jobs() -> list[Job]:
    """The platform's own scheduled work."""
    return [Job("jobs.prune", prune, Every(3600.0))]
