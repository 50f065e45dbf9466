"""A process that runs a job runner, for the tests that need two real processes (or one to kill).

    python -m tests.platform.job_worker DATABASE_URL OUT_FILE SUFFIX MODE SECONDS

It opens its pool, prints ``ready``, waits for ``OUT_FILE.go`` to exist (so that both processes of a test
start claiming at the same moment), runs a :class:`Runner` for SECONDS and stops it. Handlers append one
line per run to OUT_FILE: ``kind pid start end [n]`` (``time.time()`` seconds).

Modes: ``share`` declares ``test.tick_SUFFIX`` (every 0.2 s, each run 0.3 s long),
``test.once_SUFFIX`` (hourly) and the queued ``test.queued_SUFFIX``; ``hang`` declares
``test.crash_SUFFIX`` (hourly, lease 1 s) whose run writes a line and then never ends.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from etcwallet.core.db import open_pool
from etcwallet.platform.job_runner import Runner
from etcwallet.platform.jobs import Every, Job, JobContext, Registry


def _append(out: Path, line: str) -> None:
    with out.open("a") as f:
        f.write(line + "\n")


def registry(out: Path, suffix: str, mode: str) -> Registry:
    async def tick(ctx: JobContext) -> None:
        start = time.time()
        await asyncio.sleep(0.3)
        _append(out, f"tick {os.getpid()} {start} {time.time()}")

    async def once(ctx: JobContext) -> None:
        start = time.time()
        await asyncio.sleep(0.5)
        _append(out, f"once {os.getpid()} {start} {time.time()}")

    async def queued(ctx: JobContext) -> Mapping[str, Any]:
        start = time.time()
        await asyncio.sleep(0.05)
        _append(out, f"queued {os.getpid()} {start} {time.time()} {ctx.payload['n']}")
        return {"n": ctx.payload["n"]}

    async def hang(ctx: JobContext) -> None:
        _append(out, f"crash {os.getpid()} {time.time()} 0")
        await asyncio.Event().wait()

    if mode == "hang":
        return Registry([Job(f"test.crash_{suffix}", hang, Every(3600), lease=1.0)])
    return Registry(
        [
            Job(f"test.tick_{suffix}", tick, Every(0.2), lease=5.0),
            Job(f"test.once_{suffix}", once, Every(3600)),
            Job(f"test.queued_{suffix}", queued),
        ]
    )


async def main(url: str, out: Path, suffix: str, mode: str, seconds: float) -> None:
    pool = await open_pool(url, 4)
    try:
        print("ready", flush=True)
        go = out.with_name(out.name + ".go")
        while not go.exists():  # noqa: ASYNC110 (another process makes the file)
            await asyncio.sleep(0.01)
        runner = Runner(pool, registry(out, suffix, mode), poll_interval=0.05, concurrency=2)
        await runner.start()
        await asyncio.sleep(seconds)
        await runner.stop()
    finally:
        await pool.close()


if __name__ == "__main__":
    url, out, suffix, mode, seconds = sys.argv[1:6]
    asyncio.run(main(url, Path(out), suffix, mode, float(seconds)))
