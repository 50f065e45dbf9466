"""Identity's time rules read an injected clock: moving it ends sessions, locks and SMS codes, no sleeping."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from uuid import uuid4

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.clock import system_clock
from etcwallet.core.crypto import Keys, hash_token
from etcwallet.core.deps import Client
from etcwallet.identity import lockout, sms
from etcwallet.identity.authz import SessionLookup
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.sessions.types import ABSOLUTE, IDLE
from tests.identity.customer_helpers import new_phone


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, by: timedelta) -> None:
        self.now += by


async def test_a_session_ends_once_the_clock_passes_its_idle_end(pool: AsyncConnectionPool) -> None:
    clock = FakeClock(system_clock())
    async with pool.connection() as conn:
        issued = await sessions.issue(
            conn, principal_type="customer", principal_id=uuid4(), client=Client(None, None), now=clock()
        )
    lookup = SessionLookup(pool, clock=clock)  # the hot path's look-up, on the injected clock
    clock.advance(IDLE - timedelta(seconds=1))
    async with pool.connection() as conn:
        assert await sessions.find_live(conn, access_token=issued.access_token, now=clock()) is not None
    # That use restarted the idle timer: a full idle period later it has ended, by either look-up.
    clock.advance(IDLE - timedelta(seconds=1))
    assert await lookup.find(hash_token(issued.access_token)) is not None
    clock.advance(IDLE + timedelta(seconds=1))
    assert await lookup.find(hash_token(issued.access_token)) is None
    async with pool.connection() as conn:
        assert await sessions.find_live(conn, access_token=issued.access_token, now=clock()) is None


async def test_use_never_extends_a_session_past_its_absolute_end(pool: AsyncConnectionPool) -> None:
    clock = FakeClock(system_clock())
    async with pool.connection() as conn:
        issued = await sessions.issue(
            conn, principal_type="customer", principal_id=uuid4(), client=Client(None, None), now=clock()
        )
        while clock() - issued.absolute_expires_at < -IDLE:
            clock.advance(IDLE - timedelta(minutes=1))
            assert await sessions.find_live(conn, access_token=issued.access_token, now=clock()) is not None
        clock.now = issued.absolute_expires_at
        assert await sessions.find_live(conn, access_token=issued.access_token, now=clock()) is None
    assert issued.absolute_expires_at - issued.expires_at == ABSOLUTE - IDLE


async def test_a_lock_lifts_once_the_clock_passes_its_end(pool: AsyncConnectionPool) -> None:
    clock = FakeClock(system_clock())
    phone = new_phone()
    async with pool.connection() as conn:
        for attempt in range(lockout.MAX_FAILURES):
            assert (
                await lockout.unknown_lock_in_force(conn, table="customers", identifier=phone, now=clock())
                is None
            )
            until = await lockout.record_unknown_failure(
                conn, table="customers", identifier=phone, now=clock()
            )
            assert (until is None) == (attempt < lockout.MAX_FAILURES - 1)
        assert until == clock() + lockout.BASE_LOCK
        clock.advance(lockout.BASE_LOCK - timedelta(seconds=1))
        locked = await lockout.unknown_lock_in_force(conn, table="customers", identifier=phone, now=clock())
        assert locked is not None and locked.code == "account_locked"
        clock.advance(timedelta(seconds=2))
        assert (
            await lockout.unknown_lock_in_force(conn, table="customers", identifier=phone, now=clock())
            is None
        )
        # The next lock, within a day, lasts twice as long.
        for _ in range(lockout.MAX_FAILURES):
            until = await lockout.record_unknown_failure(
                conn, table="customers", identifier=phone, now=clock()
            )
        assert until == clock() + 2 * lockout.BASE_LOCK
        assert lockout.lock_in_force(until, now=clock() + 2 * lockout.BASE_LOCK - timedelta(seconds=1))
        assert lockout.lock_in_force(until, now=clock() + 2 * lockout.BASE_LOCK) is None


def _sent_code(text: str) -> str:
    match = re.search(r"\d{6}", text)
    assert match is not None
    return match.group(0)


async def test_an_sms_code_expires_and_the_cooldown_passes_as_the_clock_moves(
    pool: AsyncConnectionPool, keys: Keys
) -> None:
    clock = FakeClock(system_clock())
    phone, gateway = new_phone(), sms.OutboxGateway()
    async with pool.connection() as conn:
        await sms.send_code(
            conn,
            gateway=gateway,
            lookup_key=keys.lookup_key,
            phone=phone,
            purpose=sms.Purpose.LOGIN,
            ip=None,
            now=clock(),
        )
        code = _sent_code((await sms.outbox(conn, phone=phone, limit=1))[0][2])
        clock.advance(sms.COOLDOWN - timedelta(seconds=1))
        with pytest.raises(IdentityError) as cooling:  # the cooldown has not passed on this clock
            await sms.send_code(
                conn,
                gateway=gateway,
                lookup_key=keys.lookup_key,
                phone=phone,
                purpose=sms.Purpose.LOGIN,
                ip=None,
                now=clock(),
            )
        assert cooling.value.code == "sms_cooldown"
        clock.now += sms.LIFETIME  # past the first code's five minutes
        refused = await sms.check_code(
            conn, lookup_key=keys.lookup_key, phone=phone, purpose=sms.Purpose.LOGIN, code=code, now=clock()
        )
        assert refused is not None and refused.code == "sms_code_expired"

        await sms.send_code(
            conn,
            gateway=gateway,
            lookup_key=keys.lookup_key,
            phone=phone,
            purpose=sms.Purpose.LOGIN,
            ip=None,
            now=clock(),
        )
        fresh = _sent_code((await sms.outbox(conn, phone=phone, limit=1))[0][2])
        clock.advance(sms.LIFETIME - timedelta(seconds=1))
        assert (
            await sms.check_code(
                conn,
                lookup_key=keys.lookup_key,
                phone=phone,
                purpose=sms.Purpose.LOGIN,
                code=fresh,
                now=clock(),
            )
            is None
        )
