"""Parked events for administrators: the admin API (listing, replay, audit) and the command line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from typer.testing import CliRunner

from etcwallet import cli
from etcwallet.core.config import get_settings
from etcwallet.identity.authz import Role
from etcwallet.platform import events
from etcwallet.platform.events import Consumer, Delivered, Dispatcher, Policy
from tests.conftest import StaffFactory

PARKED = "/api/v1/admin/events/parked"


async def park_one(pool: AsyncConnectionPool, consumer: str, fixed: list[bool]) -> int:
    """Emit an event whose handler fails until ``fixed[0]``; with one attempt allowed it is parked at once."""
    event_type = f"test.parked_{uuid4().hex[:10]}"

    async def handler(conn: AsyncConnection[Any], event: Delivered) -> None:
        if not fixed[0]:
            raise RuntimeError("downstream refused")

    d = Dispatcher(
        pool,
        [Consumer(consumer, handler, frozenset({event_type}))],
        policy=Policy(max_attempts=1),
        retention=None,
    )
    await d.start()
    async with pool.connection() as conn:
        await events.emit(conn, event_type, "order-7", {"amount": 1200, "currency": "CNY"})
    await d.run_once()
    async with pool.connection() as conn:
        (parked,) = await events.list_parked(conn, consumer=consumer)
    return parked.id


async def audit_head(pool: AsyncConnectionPool) -> int:
    """The newest audit row's seq: rows about a parked id written before it belong to other tests (the
    API fuzzer and the authorization matrix replay parked ids of their own choosing)."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT coalesce(max(seq), 0) FROM audit_log")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def audit_rows(pool: AsyncConnectionPool, parked_id: int, since: int = 0) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT actor_type, actor_id, outcome, detail FROM audit_log WHERE action = 'events.replay' "
            "AND target_type = 'event_parked' AND target_id = %s AND seq > %s ORDER BY seq",
            (str(parked_id), since),
        )
        return await cur.fetchall()


async def test_an_administrator_lists_and_replays_a_parked_event_and_it_is_audited(
    pool: AsyncConnectionPool, client: httpx.AsyncClient, make_staff: StaffFactory
) -> None:
    consumer, fixed = f"test.{uuid4().hex[:10]}", [False]
    parked_id = await park_one(pool, consumer, fixed)
    admin = await make_staff(Role.ADMINISTRATOR)

    r = await client.get(PARKED, params={"consumer": consumer}, headers=admin)
    assert r.status_code == 200, r.text
    (listed,) = r.json()
    assert (listed["id"], listed["status"], listed["attempts"], listed["key"]) == (
        parked_id,
        "parked",
        1,
        "order-7",
    )
    assert listed["payload"] == {"amount": 1200, "currency": "CNY"}
    assert "downstream refused" in listed["last_error"]

    r = await client.get("/api/v1/admin/events/consumers", headers=admin)
    assert r.status_code == 200 and consumer in {c["name"] for c in r.json()}, r.text

    since = await audit_head(pool)
    r = await client.post(f"{PARKED}/{parked_id}/replay", headers=admin)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "replaying" and r.json()["replay_requested_by"].startswith("staff:")
    r = await client.post(f"{PARKED}/{parked_id}/replay", headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "parked_event_not_parked", r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.post(f"{PARKED}/{2**62}/replay", headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "parked_event_not_found", r.text

    rows = await audit_rows(pool, parked_id, since)
    assert [(t, outcome) for t, _, outcome, _ in rows] == [("staff", "success"), ("staff", "refused")]
    assert rows[0][3]["consumer"] == consumer and rows[1][3]["reason"] == "parked_event_not_parked"

    fixed[0] = True
    await park_done(pool, consumer, fixed)
    r = await client.get(PARKED, params={"consumer": consumer, "status": "all"}, headers=admin)
    assert [p["status"] for p in r.json()] == ["replayed"], r.text


async def park_done(pool: AsyncConnectionPool, consumer: str, fixed: list[bool]) -> None:
    """The dispatcher holding the consumer delivers the replay at its next round."""

    async def handler(conn: AsyncConnection[Any], event: Delivered) -> None:
        assert fixed[0] and event.replay

    d = Dispatcher(pool, [Consumer(consumer, handler)], retention=None)
    assert await d.consume(d.consumers[consumer]) >= 1


async def test_finance_cannot_see_parked_events(client: httpx.AsyncClient, make_staff: StaffFactory) -> None:
    r = await client.get(PARKED, headers=await make_staff(Role.FINANCE))
    assert r.status_code == 403 and r.json()["permission"] == "platform.operate", r.text


# --- the command line -----------------------------------------------------------------------------------


@pytest.fixture
def cli_on(
    fresh_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> Iterator[tuple[Callable[..., Any], str]]:
    """A fresh database the ``etcwallet`` command is pointed at, and a runner for it."""
    url = fresh_database()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setenv("ETCW_DATABASE_URL", url)
    monkeypatch.setenv("ETCW_DATA_DIR", str(tmp_path / "cli-data"))
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli.app, list(args), env={"COLUMNS": "200"})

    yield run, url
    monkeypatch.undo()
    get_settings.cache_clear()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_command_line_lists_and_replays_parked_events(cli_on: tuple[Callable[..., Any], str]) -> None:
    run, url = cli_on
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO event_consumers (name) VALUES ('risk.scoring')")
        row = conn.execute(
            "INSERT INTO event_parked (consumer, event_id, event_xid, event_seq, type, key, payload, emitted_at, "
            "attempts, last_error) VALUES ('risk.scoring', %s, '7', 1, 'wallet.paid', 'w-1', '{\"amount\": 5}', "
            "now(), 5, 'TimeoutError') RETURNING id",
            (uuid4(),),
        ).fetchone()
    assert row is not None
    parked_id = row[0]

    listed = run("events", "parked")
    assert listed.exit_code == 0, listed.output
    line = next(x for x in listed.stdout.splitlines() if x.startswith(f"{parked_id}\t"))
    assert "risk.scoring" in line and "wallet.paid" in line and "attempts=5" in line

    done = run("events", "replay", str(parked_id))
    assert done.exit_code == 0, done.output
    again = run("events", "replay", str(parked_id))
    assert again.exit_code == 1 and "already being replayed" in again.output
    missing = run("events", "replay", str(parked_id + 1000))
    assert missing.exit_code == 1 and "no parked event" in missing.output

    with psycopg.connect(url) as conn:
        status = conn.execute(
            "SELECT status, replay_requested_by FROM event_parked WHERE id = %s", (parked_id,)
        )
        assert status.fetchone() == ("replaying", "system:cli")
        audited = conn.execute(
            "SELECT actor_type, actor_id, outcome, target_id FROM audit_log WHERE action = 'events.replay' "
            "ORDER BY seq"
        ).fetchall()
    assert audited == [
        ("system", "cli", "success", str(parked_id)),
        ("system", "cli", "refused", str(parked_id)),
        ("system", "cli", "refused", str(parked_id + 1000)),
    ]
