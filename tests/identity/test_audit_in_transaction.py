"""A change and its audit row commit together (issue 16, item 8).

Identity used to record a success in a transaction of its own after the change had committed, so a crash
in between left a change nobody could find in the audit log. Now the row is appended last in the change's
own transaction. Each test makes that transaction fail just after the audit row was appended (as a crash
before the commit would): neither the change nor the row may be there. Then, without the crash, both are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from uuid import uuid4

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg_pool import AsyncConnectionPool

from etcwallet.platform import audit
from etcwallet.platform.audit import AuditEvent
from etcwallet.platform.unit import Unit, commit_statements
from tests.conftest import STAFF_PASSWORD
from tests.idempotency_keys import keyed
from tests.identity.customer_helpers import BASE, PASSWORD, login, register, scalar
from tests.identity.software_authenticator import make_customer, open_session
from tests.identity.staff_helpers import ADMIN, audit_rows, count, username

ME = "/api/v1/me/factors"


class Crash(Exception):
    """What the process meets just after the audit row was appended, before the commit."""


@contextlib.contextmanager
def crash_after_audit(action: str) -> Iterator[None]:
    """Make the transaction that appends an audit row for ``action`` fail right after the append.

    A unit of work sends its writes and audit rows with its commit in one message: there the writes and
    rows are sent without the ``COMMIT``, and then the process fails.
    """
    real_append, real_many = audit.append, audit.append_many

    async def append(conn: AsyncConnection[Any], event: AuditEvent) -> int:
        seq = await real_append(conn, event)
        if event.action == action:
            raise Crash(action)
        return seq

    async def append_many(conn: AsyncConnection[Any], events: Sequence[AuditEvent]) -> None:
        await real_many(conn, events)
        if any(e.action == action for e in events):
            raise Crash(action)

    real_commit = Unit.commit

    async def commit(unit: Unit) -> None:
        """A unit of work sends its writes and audit rows with COMMIT in one message: send them without."""
        if not any(e.action == action for e in unit.entries):
            return await real_commit(unit)
        async with AsyncClientCursor(unit.conn) as cur:
            tail = [cur.mogrify(q, p) for q, p in commit_statements([], unit.outbox, unit.entries)]
            await cur.execute("; ".join([*unit.ledger_writes, *tail]))
        raise Crash(action)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audit, "append", append)
        patch.setattr(audit, "append_many", append_many)
        patch.setattr(Unit, "commit", commit)
        yield


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the 500 a crash answers, rather than the exception (whose log is quieted)."""
    errors = logging.getLogger("etcwallet.errors")
    level = errors.level
    errors.setLevel(logging.CRITICAL)
    client = (f"10.{os.getpid() % 250}.{uuid4().int % 250}.{uuid4().int % 250}", 50000)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=client)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c
    finally:
        errors.setLevel(level)


async def audited(pool: AsyncConnectionPool, action: str, target_id: str | None = None, **detail: str) -> int:
    """How many successful audit rows of ``action`` there are (on ``target_id``, with ``detail``)."""
    sql = "SELECT count(*) FROM audit_log WHERE action = %s AND outcome = 'success'"
    params: list[Any] = [action]
    if target_id is not None:
        sql += " AND target_id = %s"
        params.append(target_id)
    for key, value in detail.items():
        sql += " AND detail ->> %s = %s"
        params += [key, value]
    return await count(pool, sql, *params)


async def test_staff_creation_commits_with_its_audit_row(
    served: httpx.AsyncClient, pool: AsyncConnectionPool, admin: tuple[dict[str, str], str]
) -> None:
    headers, admin_id = admin
    name = username()
    body = {"username": name, "display_name": "审计测试", "password": STAFF_PASSWORD, "role": "support_agent"}

    with crash_after_audit("staff.create"):
        r = await served.post(f"{ADMIN}/staff", json=body, headers=keyed(headers))
    assert r.status_code == 500, r.text
    assert await count(pool, "SELECT count(*) FROM staff WHERE username = %s", name) == 0
    assert await audited(pool, "staff.create", username=name) == 0

    r = await served.post(f"{ADMIN}/staff", json=body, headers=keyed(headers))
    assert r.status_code == 201, r.text
    assert await count(pool, "SELECT count(*) FROM staff WHERE username = %s", name) == 1
    [row] = await audit_rows(pool, action="staff.create", target_id=r.json()["id"])
    assert (row["outcome"], row["actor_id"], row["detail"]["username"]) == ("success", admin_id, name)


async def test_a_password_change_commits_with_its_audit_row(
    served: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    me = await register(served)
    change = {"old_password": PASSWORD, "new_password": "Brand-new-99"}
    stored = "SELECT password_hash FROM customers WHERE id = %s"
    before = await scalar(pool, stored, me.id)

    with crash_after_audit("customer.password.change"):
        r = await served.post(f"{BASE}/me/password", json=change, headers=keyed(me.headers))
    assert r.status_code == 500, r.text
    assert await scalar(pool, stored, me.id) == before
    assert (await login(served, me.phone)).status_code == 200  # still the old password
    assert await audited(pool, "customer.password.change", me.id) == 0

    r = await served.post(f"{BASE}/me/password", json=change, headers=keyed(me.headers))
    assert r.status_code == 200, r.text
    assert await scalar(pool, stored, me.id) != before
    assert (await login(served, me.phone, "Brand-new-99")).status_code == 200
    assert await audited(pool, "customer.password.change", me.id) == 1


async def test_a_totp_enrollment_commits_with_its_audit_row(
    served: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    customer_id, _ = await make_customer(pool)
    headers, _ = await open_session(pool, customer_id, stepped_up=True)
    r = await served.post(f"{ME}/totp/enroll", headers=keyed(headers))
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    enrolled = (
        "SELECT count(*) FROM totp_factors WHERE principal_type = 'customer' AND principal_id = %s "
        "AND confirmed_at IS NOT NULL"
    )
    recovery = "SELECT count(*) FROM recovery_codes WHERE principal_type = 'customer' AND principal_id = %s"

    with crash_after_audit("factor.totp.enroll"):
        r = await served.post(
            f"{ME}/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=keyed(headers)
        )
    assert r.status_code == 500, r.text
    assert await count(pool, enrolled, customer_id) == 0
    assert await count(pool, recovery, customer_id) == 0
    assert await audited(pool, "factor.totp.enroll", str(customer_id)) == 0

    code = pyotp.TOTP(secret).at(time.time())  # the crashed attempt spent nothing: a code is still good
    r = await served.post(f"{ME}/totp/confirm", json={"code": code}, headers=keyed(headers))
    assert r.status_code == 200, r.text
    assert await count(pool, enrolled, customer_id) == 1
    assert await count(pool, recovery, customer_id) == 10
    assert await audited(pool, "factor.totp.enroll", str(customer_id)) == 1
