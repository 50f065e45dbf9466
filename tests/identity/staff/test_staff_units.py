"""The staff use cases on the unit of work: each change commits with its audit row or not at all, a
refusal is audited on its own, and time rules follow the injected clock (no sleeping)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import pytest
from psycopg import AsyncClientCursor
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import Keys
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError
from etcwallet.identity.authz import Principal, Role
from etcwallet.identity.staff import changes, service, store
from etcwallet.identity.staff.types import ENROLLMENT_CODE_LIFETIME, LoginStep, StaffAction
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork, commit_statements, utcnow
from tests.conftest import STAFF_PASSWORD
from tests.identity.staff_helpers import count, new_staff, username


class Crash(Exception):
    """What the process meets after the audit row was sent, before the commit."""


@contextlib.contextmanager
def crash_before_commit(action: str) -> Iterator[None]:
    """Make the unit that audits ``action`` send its writes and audit rows, then fail instead of committing."""
    real_commit = Unit.commit

    async def commit(unit: Unit) -> None:
        if not any(e.action == action for e in unit.entries):
            return await real_commit(unit)
        async with AsyncClientCursor(unit.conn) as cur:
            tail = [cur.mogrify(q, p) for q, p in commit_statements([], unit.outbox, unit.entries)]
            await cur.execute("; ".join([*unit.ledger_writes, *tail]))
        raise Crash(action)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Unit, "commit", commit)
        yield


def as_actor(staff_id: UUID) -> Actor:
    return Actor("staff", str(staff_id), "192.0.2.10", "staff-units-test")


async def audited(pool: AsyncConnectionPool, action: str, target_id: UUID, outcome: str = "success") -> int:
    sql = "SELECT count(*) FROM audit_log WHERE action = %s AND target_id = %s AND outcome = %s"
    return await count(pool, sql, action, str(target_id), outcome)


def stepped_up(staff_id: UUID) -> Principal:
    """An administrator's principal whose session proved a TOTP just now (a role change asks for it)."""
    return Principal("staff", staff_id, uuid4(), Role.ADMINISTRATOR, stepped_up_at=utcnow())


async def test_an_approval_commits_with_its_audit_row_or_not_at_all(pool: AsyncConnectionPool) -> None:
    requester = await new_staff(pool, Role.ADMINISTRATOR)
    approver = await new_staff(pool, Role.ADMINISTRATOR)
    uow = UnitOfWork(pool)
    asked = await changes.request_creation(
        uow,
        actor=as_actor(requester.id),
        principal=stepped_up(requester.id),
        username=username(),
        display_name="财务",
        password=STAFF_PASSWORD,
        role=Role.FINANCE,
        outlet_id=None,
    )
    assert asked.change is not None and asked.member.status == "pending"
    assert await audited(pool, StaffAction.CHANGE_REQUEST, asked.member.id) == 1

    with crash_before_commit(StaffAction.CHANGE_APPROVE), pytest.raises(Crash):
        await changes.approve_change(
            uow, actor=as_actor(approver.id), principal=stepped_up(approver.id), change_id=asked.change.id
        )
    async with pool.connection() as conn:
        change = await store.get_change_or_raise(conn, asked.change.id)
        member = await store.get_staff_or_raise(conn, asked.member.id)
    assert (change.status, member.status) == ("pending", "pending")
    assert await audited(pool, StaffAction.CHANGE_APPROVE, asked.member.id) == 0

    with pytest.raises(DomainError) as refused:  # the requester: refused, and that refusal is on record
        await changes.approve_change(
            uow, actor=as_actor(requester.id), principal=stepped_up(requester.id), change_id=asked.change.id
        )
    assert refused.value.code == "self_approval"
    sql = "SELECT count(*) FROM audit_log WHERE action = %s AND target_id = %s AND outcome = 'refused'"
    assert await count(pool, sql, StaffAction.CHANGE_APPROVE, str(asked.change.id)) == 1

    done = await changes.approve_change(
        uow, actor=as_actor(approver.id), principal=stepped_up(approver.id), change_id=asked.change.id
    )
    assert done.change is not None and done.change.status == "approved" and done.member.status == "active"
    assert await audited(pool, StaffAction.CHANGE_APPROVE, asked.member.id) == 1


async def test_an_enrollment_code_is_issued_with_its_audit_row_or_not_at_all(
    pool: AsyncConnectionPool,
) -> None:
    administrator = await new_staff(pool, Role.ADMINISTRATOR)
    member = await new_staff(pool)
    uow = UnitOfWork(pool)
    actor = as_actor(administrator.id)
    with crash_before_commit(StaffAction.ENROLLMENT_CODE_ISSUE), pytest.raises(Crash):
        await service.give_enrollment_code(uow, actor=actor, issued_by=administrator.id, staff_id=member.id)
    sql = "SELECT count(*) FROM staff_enrollment_codes WHERE staff_id = %s"
    assert await count(pool, sql, member.id) == 0
    assert await audited(pool, StaffAction.ENROLLMENT_CODE_ISSUE, member.id) == 0

    await service.give_enrollment_code(uow, actor=actor, issued_by=administrator.id, staff_id=member.id)
    assert await count(pool, sql, member.id) == 1
    assert await audited(pool, StaffAction.ENROLLMENT_CODE_ISSUE, member.id) == 1


async def test_an_enrollment_code_expires_by_the_clock(pool: AsyncConnectionPool, keys: Keys) -> None:
    """The code's lifetime runs on the unit's clock when issued and the sign-in's clock when spent."""
    administrator = await new_staff(pool, Role.ADMINISTRATOR)
    member = await new_staff(pool)
    issued_at = utcnow() - timedelta(days=1)
    uow = UnitOfWork(pool, clock=lambda: issued_at)
    issued = await service.give_enrollment_code(
        uow, actor=as_actor(administrator.id), issued_by=administrator.id, staff_id=member.id
    )
    assert issued.expires_at == issued_at + ENROLLMENT_CODE_LIFETIME

    async def sign_in_at(at: datetime) -> LoginStep:
        return await service.login_password(
            pool,
            cipher=keys.cipher,
            username=member.username,
            password=STAFF_PASSWORD,
            client=Client(ip=None, user_agent=None),
            enrollment_code=issued.code,
            clock=lambda: at,
        )

    with pytest.raises(DomainError) as refused:
        await sign_in_at(issued.expires_at + timedelta(seconds=1))
    assert (refused.value.code, refused.value.status) == ("enrollment_code_invalid", 401)
    step = await sign_in_at(issued.expires_at - timedelta(seconds=1))
    assert step.enrollment is not None
