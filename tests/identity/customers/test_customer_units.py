"""Customers on the unit of work: a change and its audit entry commit together, and time rules follow the
unit's clock (injected here instead of sleeping)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyotp
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.crypto import Keys
from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError
from etcwallet.identity.customers import freezing, service
from etcwallet.identity.customers.types import TICKET_LIFETIME, CustomerStatus
from etcwallet.identity.factors import totp
from etcwallet.platform import audit
from etcwallet.platform.audit import AuditEvent
from etcwallet.platform.unit import UnitOfWork
from tests.identity.customer_helpers import scalar
from tests.identity.software_authenticator import make_customer

CLIENT = Client("192.0.2.77", "pytest")
PASSWORD = "Pass-word-2026"  # make_customer's


async def freeze_rows(pool: AsyncConnectionPool, customer_id: Any) -> tuple[str, int]:
    status = await scalar(pool, "SELECT status FROM customers WHERE id = %s", customer_id)
    audited = await scalar(
        pool,
        "SELECT count(*) FROM audit_log WHERE action = 'customer.freeze' AND target_id = %s",
        str(customer_id),
    )
    return status, audited


async def test_a_freeze_and_its_audit_entry_commit_together(
    pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The freeze's audit entry goes with the freeze's own commit: a failure right after the entry is
    appended (before the commit) leaves neither the frozen account nor the entry; without it, both."""
    customer_id, _ = await make_customer(pool)
    real = audit.append_statement

    def failing_after_append(events: Sequence[AuditEvent], at: Any = None) -> tuple[str, tuple[Any, ...]]:
        query, params = real(events, at)
        return f"{query}; SELECT 1 / 0", params

    monkeypatch.setattr(audit, "append_statement", failing_after_append)
    with pytest.raises(psycopg.errors.DivisionByZero):
        await freezing.freeze(
            uow=UnitOfWork(pool),
            customer_id=customer_id,
            reason="丢失手机",
            by=("customer", customer_id),
            client=CLIENT,
        )
    assert await freeze_rows(pool, customer_id) == ("active", 0)

    monkeypatch.setattr(audit, "append_statement", real)
    customer, _ = await freezing.freeze(
        uow=UnitOfWork(pool),
        customer_id=customer_id,
        reason="丢失手机",
        by=("customer", customer_id),
        client=CLIENT,
    )
    assert customer.status is CustomerStatus.FROZEN
    assert await freeze_rows(pool, customer_id) == ("frozen", 1)


async def test_a_freeze_is_dated_by_the_units_clock(pool: AsyncConnectionPool) -> None:
    customer_id, _ = await make_customer(pool)
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    customer, _ = await freezing.freeze(
        uow=UnitOfWork(pool, clock=lambda: at),
        customer_id=customer_id,
        reason="风控",
        by=("staff", customer_id),
        client=CLIENT,
    )
    assert customer.frozen_at == at


async def test_a_login_ticket_expires_by_the_units_clock(pool: AsyncConnectionPool, keys: Keys) -> None:
    """A password sign-in owing a second factor gives a ticket good for TICKET_LIFETIME by the unit's clock:
    a correct code just after it is refused, one just before it signs in. No sleeping."""
    customer_id, phone = await make_customer(pool)
    async with pool.connection() as conn:
        enrollment = await totp.enroll(
            conn, cipher=keys.cipher, principal_type="customer", principal_id=customer_id, account_name=phone
        )
        await conn.execute(
            "UPDATE totp_factors SET confirmed_at = now() WHERE principal_type = 'customer' AND principal_id = %s",
            (customer_id,),
        )
    start = datetime.now(UTC)

    async def ticket() -> str:
        signed = await service.login_password(
            uow=UnitOfWork(pool, clock=lambda: start), phone=phone, password=PASSWORD, client=CLIENT
        )
        assert signed.tokens is None and signed.ticket is not None
        assert signed.ticket_expires_at == start + TICKET_LIFETIME
        return signed.ticket

    async def finish(ticket: str, at: datetime) -> Any:
        return await service.login_second_factor(
            uow=UnitOfWork(pool, clock=lambda: at),
            cipher=keys.cipher,
            lookup_key=keys.lookup_key,
            ticket=ticket,
            code=pyotp.TOTP(enrollment.secret).at(at),  # the code of the unit's time
            client=CLIENT,
        )

    with pytest.raises(DomainError) as refused:
        await finish(await ticket(), start + TICKET_LIFETIME + timedelta(seconds=1))
    assert refused.value.code == "login_ticket_invalid"

    tokens = await finish(await ticket(), start + TICKET_LIFETIME - timedelta(seconds=1))
    assert tokens.access_token
