"""Identity housekeeping deletes spent rows and nothing that a check could still need."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity import housekeeping
from etcwallet.identity import jobs as identity_jobs
from etcwallet.platform import audit
from etcwallet.platform.audit import AuditEvent
from etcwallet.platform.job_runner import Runner
from etcwallet.platform.jobs import Registry

NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(days=45)
RECENT = NOW - timedelta(hours=2)


async def _sms_code(conn: AsyncConnection[Any], expires_at: datetime) -> UUID:
    code_id = uuid4()
    await conn.execute(
        "INSERT INTO sms_codes (id, phone, purpose, code_hash, created_at, expires_at) "
        "VALUES (%s, '13800000000', 'register', %s, %s, %s)",
        (code_id, os.urandom(32), expires_at - timedelta(minutes=5), expires_at),
    )
    return code_id


async def _ticket(conn: AsyncConnection[Any], expires_at: datetime) -> bytes:
    ticket = os.urandom(32)
    await conn.execute(
        "INSERT INTO login_tickets (ticket_hash, principal_type, principal_id, expires_at) "
        "VALUES (%s, 'customer', %s, %s)",
        (ticket, uuid4(), expires_at),
    )
    return ticket


async def _challenge(conn: AsyncConnection[Any], expires_at: datetime) -> UUID:
    challenge_id = uuid4()
    await conn.execute(
        "INSERT INTO webauthn_challenges (id, purpose, challenge, expires_at) VALUES (%s, 'login', %s, %s)",
        (challenge_id, os.urandom(32), expires_at),
    )
    return challenge_id


async def _unknown(conn: AsyncConnection[Any], updated_at: datetime, locked_until: datetime | None) -> bytes:
    key = os.urandom(32)
    await conn.execute(
        "INSERT INTO unknown_login_failures (identity_hash, failed_logins, lockouts, locked_until, "
        "last_lock_until, last_failed_at, updated_at) VALUES (%s, 0, 1, %s, %s, %s, %s)",
        (key, locked_until, locked_until, updated_at, updated_at),
    )
    return key


async def _window(conn: AsyncConnection[Any], start: datetime) -> str:
    key = f"test:{uuid4()}"
    await conn.execute("INSERT INTO rate_limits (key, window_start, count) VALUES (%s, %s, 3)", (key, start))
    return key


async def _exists(conn: AsyncConnection[Any], table: str, column: str, value: object) -> bool:
    cur = await conn.execute(f"SELECT 1 FROM {table} WHERE {column} = %s", (value,))
    return await cur.fetchone() is not None


async def test_sweep_deletes_spent_rows_and_keeps_live_ones(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        old_code, live_code = await _sms_code(conn, LONG_AGO), await _sms_code(conn, RECENT)
        old_ticket, live_ticket = (
            await _ticket(conn, LONG_AGO),
            await _ticket(conn, NOW + timedelta(minutes=5)),
        )
        old_challenge, live_challenge = await _challenge(conn, LONG_AGO), await _challenge(conn, RECENT)
        forgotten = await _unknown(conn, LONG_AGO, LONG_AGO + timedelta(minutes=15))
        still_locked = await _unknown(conn, LONG_AGO, NOW + timedelta(hours=1))
        recent_failures = await _unknown(conn, RECENT, None)
        lock_just_ended = await _unknown(conn, LONG_AGO, RECENT)  # its escalation is still remembered
        old_window = await _window(conn, NOW - timedelta(days=3))
        todays_window = await _window(conn, NOW.replace(hour=0, minute=0, second=0, microsecond=0))

        deleted = await housekeeping.sweep(conn)

        assert not await _exists(conn, "sms_codes", "id", old_code)
        assert await _exists(conn, "sms_codes", "id", live_code)
        assert not await _exists(conn, "login_tickets", "ticket_hash", old_ticket)
        assert await _exists(conn, "login_tickets", "ticket_hash", live_ticket)
        assert not await _exists(conn, "webauthn_challenges", "id", old_challenge)
        assert await _exists(conn, "webauthn_challenges", "id", live_challenge)
        assert not await _exists(conn, "unknown_login_failures", "identity_hash", forgotten)
        assert await _exists(conn, "unknown_login_failures", "identity_hash", still_locked)
        assert await _exists(conn, "unknown_login_failures", "identity_hash", recent_failures)
        assert await _exists(conn, "unknown_login_failures", "identity_hash", lock_just_ended)
        assert not await _exists(conn, "rate_limits", "key", old_window)
        assert await _exists(conn, "rate_limits", "key", todays_window)
    for table in (
        "sms_codes",
        "login_tickets",
        "webauthn_challenges",
        "unknown_login_failures",
        "rate_limits",
    ):
        assert deleted[table] >= 1, (table, deleted)


async def test_the_housekeeping_job_sweeps_under_a_runner_until_stopped(
    pool: AsyncConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=housekeeping.__name__)
    seq = await audit.record(pool, AuditEvent("system", "test", "test.housekeeping", "success"))
    async with pool.connection() as conn:
        old_code = await _sms_code(conn, LONG_AGO)
    runner = Runner(pool, Registry(identity_jobs.jobs(0.05)), poll_interval=0.05)
    await runner.start()
    try:
        for _ in range(100):
            async with pool.connection() as conn:
                if not await _exists(conn, "sms_codes", "id", old_code):
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the housekeeping job never swept")
    finally:
        await runner.stop()
    # Each round logs the audit head as an anchor that verifies against the log.
    anchors = [r.anchor for r in caplog.records if r.getMessage() == "audit chain head"]  # type: ignore[attr-defined]
    assert anchors, caplog.text
    parsed = audit.Anchor.parse(anchors[-1])
    assert parsed.seq >= seq
    async with pool.connection() as conn:
        assert (await audit.verify(conn, anchors=[parsed])).ok
