"""Closing an account (``identity/customers/closure.py``): the refusals (money left, a pending hold, another
domain's check, no step-up, the payment password, already closed) that change nothing; a closure that ends
the sessions, freezes the ledger accounts and refuses sign-in; anonymization after the retention period by
the job, on an injected clock, with the ledger's history kept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.app import Runtime
from etcwallet.core.errors import DomainError
from etcwallet.identity import jobs as identity_jobs
from etcwallet.identity.authz import Role
from etcwallet.identity.customers import accounts, closure
from etcwallet.identity.customers import service as customers
from etcwallet.identity.customers.closure_checks import ClosureChecks, ClosureRefusal
from etcwallet.ledger.chart import AccountPurpose
from etcwallet.ledger.service import Ledger
from etcwallet.ledger.types import Account
from etcwallet.platform.audit import Actor
from etcwallet.platform.jobs import JobContext
from etcwallet.platform.unit import Unit, UnitOfWork
from tests.conftest import StaffFactory
from tests.idempotency_keys import keyed
from tests.identity.customer_helpers import (
    BASE,
    EN,
    Signed,
    assert_problem,
    codes,
    login,
    new_resident_id,
    register,
    scalar,
    send_own_code,
    sign_in,
    skip_cooldown,
    step_up,
)
from tests.ledger.builders import hold, move, open_account, refused

CLOSE = "/api/v1/me/close"
PIN = "258147"


async def wallet_of(ledger: Ledger, customer_id: str) -> Account:
    return await accounts.account_for(
        ledger, customer_id=UUID(customer_id), purpose=AccountPurpose.WALLET, frozen=False
    )


async def emptied_wallet(ledger: Ledger, customer_id: str) -> tuple[Account, UUID]:
    """A wallet that had money (a history) and holds none now."""
    wallet = await wallet_of(ledger, customer_id)
    source = await open_account(ledger)
    await ledger.create_transfer(move(source.id, wallet.id, 500))
    await ledger.create_transfer(move(wallet.id, source.id, 500))
    return wallet, source.id


async def set_pin(client: httpx.AsyncClient, who: Signed) -> None:
    code = await send_own_code(client, who.headers, who.phone, "reset_payment_password")
    r = await client.put(
        f"{BASE}/me/payment-password", json={"pin": PIN, "sms_code": code}, headers=who.headers
    )
    assert r.status_code == 200, r.text


async def close_audits(pool: AsyncConnectionPool, customer_id: str) -> list[tuple[str, str, str, str | None]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT outcome, actor_type, actor_id, detail->>'reason' FROM audit_log "
            "WHERE action = 'customer.close' AND target_id = %s ORDER BY seq",
            (customer_id,),
        )
        return [tuple(row) for row in await cur.fetchall()]  # type: ignore[misc]


async def assert_untouched(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, ledger: Ledger, who: Signed
) -> None:
    """Nothing of a refused closure was written: active, signed in, accounts not frozen, no closure."""
    assert await scalar(pool, "SELECT status FROM customers WHERE id = %s", who.id) == "active"
    assert await scalar(pool, "SELECT closed_at FROM customers WHERE id = %s", who.id) is None
    assert (await client.get(f"{BASE}/me", headers=who.headers)).status_code == 200
    for account in await accounts.accounts_of(ledger, customer_id=UUID(who.id)):
        assert not account.frozen
    assert all(outcome != "success" for outcome, *_ in await close_audits(pool, who.id))


# --- a successful closure ----------------------------------------------------------------------------------


async def test_closing_my_account_ends_sessions_freezes_accounts_and_refuses_sign_in(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    me = await register(client)
    other_device = await sign_in(client, me)
    wallet, source = await emptied_wallet(ledger, me.id)
    await set_pin(client, me)
    await step_up(client, me)

    r = await client.post(CLOSE, json={"pin": PIN, "reason": "不再使用 13912345678"}, headers=me.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == me.id and body["status"] == "closed"
    assert body["sessions_ended"] == 2 and body["accounts_frozen"] == 1

    assert await scalar(pool, "SELECT status FROM customers WHERE id = %s", me.id) == "closed"
    assert await scalar(pool, "SELECT closed_by FROM customers WHERE id = %s", me.id) == "customer"
    for session in (me, other_device):
        assert_problem(await client.get(f"{BASE}/me", headers=session.headers), 401, "unauthenticated")
    assert_problem(await login(client, me.phone), 403, "account_closed")

    # The wallet is frozen for debits; credits still arrive, and its history is kept.
    assert (await ledger.get_account_or_raise(wallet.id)).frozen
    await ledger.create_transfer(move(source, wallet.id, 1))
    await refused(ledger.create_transfer(move(wallet.id, source, 1)), "account_frozen")
    history, _ = await ledger.history(wallet.id)
    assert len(history) == 3

    ((outcome, actor_type, actor_id, reason),) = await close_audits(pool, me.id)
    assert (outcome, actor_type, actor_id) == ("success", "customer", me.id)
    assert reason is not None and "13912345678" not in reason  # free text is masked


async def test_risk_staff_close_an_account_on_request_after_their_step_up(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, make_staff: StaffFactory
) -> None:
    customer = await register(client)
    url = f"{BASE}/{customer.id}/close"
    reason = {"reason": "客户到网点申请注销"}

    support = await make_staff(Role.SUPPORT_AGENT, step_up=True)
    assert_problem(await client.post(url, json=reason, headers=keyed(support)), 403, "forbidden")
    not_stepped_up = await make_staff(Role.RISK_OFFICER)
    r = await client.post(url, json=reason, headers=keyed(not_stepped_up))
    assert_problem(r, 403, "step_up_required")
    assert await scalar(pool, "SELECT status FROM customers WHERE id = %s", customer.id) == "active"

    risk = await make_staff(Role.RISK_OFFICER, step_up=True)
    r = await client.post(url, json=reason, headers=keyed(risk))
    assert r.status_code == 200, r.text
    assert r.json()["sessions_ended"] == 1
    closed_by = await scalar(pool, "SELECT closed_by FROM customers WHERE id = %s", customer.id)
    assert closed_by.startswith("staff:")
    audits = await close_audits(pool, customer.id)
    assert [(outcome, actor_type) for outcome, actor_type, _, _ in audits] == [
        ("refused", "staff"),
        ("success", "staff"),
    ]

    # Closing it again: 409, nothing written.
    assert_problem(await client.post(url, json=reason, headers=keyed(risk)), 409, "account_already_closed")
    assert_problem(
        await client.post(f"{BASE}/{uuid4()}/close", json=reason, headers=keyed(risk)),
        404,
        "customer_not_found",
    )


# --- refusals: nothing written -----------------------------------------------------------------------------


async def test_money_left_on_an_account_refuses_the_closure_naming_the_amount(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    me = await register(client)
    wallet = await wallet_of(ledger, me.id)
    await ledger.create_transfer(move((await open_account(ledger)).id, wallet.id, 12345))
    await step_up(client, me)

    r = await client.post(CLOSE, headers={**me.headers, **EN})
    body = assert_problem(r, 409, "closure_balance_left")
    assert body["amount"] == 12345 and body["currency"] == "CNY" and body["purpose"] == "wallet"
    assert body["domain"] == "identity" and body["check"] == "identity.balances"
    assert "123.45" in body["title"] and "bank card" in body["title"]
    zh = (await client.post(CLOSE, headers=me.headers)).json()["title"]
    assert "123.45" in zh and "银行卡" in zh
    await assert_untouched(client, pool, ledger, me)
    refusals = await close_audits(pool, me.id)
    assert [outcome for outcome, *_ in refusals] == ["refused", "refused"]


async def test_a_pending_hold_refuses_the_closure(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    me = await register(client)
    wallet = await wallet_of(ledger, me.id)
    source = await open_account(ledger)
    await ledger.create_transfer(hold(source.id, wallet.id, 700))  # money on its way in, not yet posted
    await step_up(client, me)

    body = assert_problem(await client.post(CLOSE, headers=me.headers), 409, "closure_pending")
    assert body["credits_pending"] == 700 and body["purpose"] == "wallet"
    await assert_untouched(client, pool, ledger, me)


async def test_a_check_another_domain_registered_refuses_the_closure_with_its_reason(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, ledger: Ledger, runtime: Runtime
) -> None:
    me = await register(client)
    await emptied_wallet(ledger, me.id)
    await step_up(client, me)
    seen: list[UUID] = []

    async def live_card(unit: Unit, customer_id: UUID) -> ClosureRefusal | None:
        seen.append(customer_id)
        return ClosureRefusal(
            "closure_live_card",
            "名下有未注销的ETC卡（尾号 0042），请先办理销卡",
            "an ETC card (ending 0042) is still live: cancel it first",
            {"card_last4": "0042"},
        )

    with runtime.closure_checks.scoped() as checks:
        checks.unregister("issuance.live_cards")  # the real check, standing in for a card of the test's own
        checks.register("issuance.live_cards", live_card)
        body = assert_problem(
            await client.post(CLOSE, headers={**me.headers, **EN}), 409, "closure_live_card"
        )
    assert seen == [UUID(me.id)]
    assert body["domain"] == "issuance" and body["check"] == "issuance.live_cards"
    assert body["card_last4"] == "0042" and "ETC card" in body["title"]
    assert [r["code"] for r in body["refusals"]] == ["closure_live_card"]
    await assert_untouched(client, pool, ledger, me)

    # The registration does not outlive the block: the same closure now goes through.
    assert runtime.closure_checks.names == ["identity.balances", "identity.pending", "issuance.live_cards"]
    r = await client.post(CLOSE, headers=me.headers)
    assert r.status_code == 200, r.text


async def test_every_refusal_is_listed_the_first_one_answering(
    client: httpx.AsyncClient, ledger: Ledger, runtime: Runtime
) -> None:
    me = await register(client)
    wallet = await wallet_of(ledger, me.id)
    await ledger.create_transfer(move((await open_account(ledger)).id, wallet.id, 1))
    await step_up(client, me)

    async def live_tag(unit: Unit, customer_id: UUID) -> ClosureRefusal | None:
        return ClosureRefusal("closure_live_tag", "有未注销的标签", "an OBU tag is still live")

    with runtime.closure_checks.scoped() as checks:
        checks.register("issuance.live_tags", live_tag)
        body = assert_problem(await client.post(CLOSE, headers=me.headers), 409, "closure_balance_left")
    assert [(r["domain"], r["code"]) for r in body["refusals"]] == [
        ("identity", "closure_balance_left"),
        ("issuance", "closure_live_tag"),
    ]


async def test_closing_needs_a_fresh_step_up_and_the_payment_password(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    me = await register(client)
    await set_pin(client, me)
    assert_problem(await client.post(CLOSE, headers=me.headers), 403, "step_up_required")
    await step_up(client, me)
    assert_problem(await client.post(CLOSE, headers=me.headers), 422, "closure_needs_payment_password", "pin")
    assert_problem(
        await client.post(CLOSE, json={"pin": "369258"}, headers=me.headers), 403, "payment_password_wrong"
    )
    await assert_untouched(client, pool, ledger, me)
    codes_seen = [r for r in await close_audits(pool, me.id)]
    assert len(codes_seen) == 3 and {outcome for outcome, *_ in codes_seen} == {"refused"}
    r = await client.post(CLOSE, json={"pin": PIN}, headers=me.headers)
    assert r.status_code == 200, r.text


async def test_staff_cannot_use_the_customers_route(
    client: httpx.AsyncClient, make_staff: StaffFactory
) -> None:
    risk = await make_staff(Role.RISK_OFFICER, step_up=True)
    assert_problem(await client.post(CLOSE, headers=risk), 403, "forbidden")


# --- the registry --------------------------------------------------------------------------------------------


def test_checks_are_named_by_domain_and_registered_once_per_application() -> None:
    async def ok(unit: Unit, customer_id: UUID) -> ClosureRefusal | None:
        return None

    one, two = ClosureChecks(), ClosureChecks()
    one.register("issuance.live_cards", ok)
    assert "issuance.live_cards" in one.names and "issuance.live_cards" not in two.names
    with pytest.raises(ValueError, match="twice"):
        one.register("issuance.live_cards", ok)
    with pytest.raises(ValueError, match="domain"):
        one.register("live cards", ok)
    with pytest.raises(ValueError, match="cannot be removed"):
        one.unregister("identity.balances")
    one.unregister("issuance.live_cards")
    assert one.names == ["identity.balances", "identity.pending"]


# --- anonymization after the retention period --------------------------------------------------------------


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


async def with_profile(client: httpx.AsyncClient, who: Signed, id_number: str) -> None:
    await step_up(client, who)
    r = await client.put(
        f"{BASE}/me/profile",
        json={"name": "张三", "id_type": "resident_id", "id_number": id_number},
        headers=who.headers,
    )
    assert r.status_code == 200, r.text


async def close_at(pool: AsyncConnectionPool, customer_id: str, moment: datetime) -> None:
    await closure.close_account(
        uow=UnitOfWork(pool, clock=at(moment)),
        checks=ClosureChecks(),
        customer_id=UUID(customer_id),
        actor=Actor("staff", str(uuid4())),
        reason="客户申请",
    )


async def row(pool: AsyncConnectionPool, sql: str, *params: Any) -> tuple[Any, ...] | None:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, params)
        found = await cur.fetchone()
        return None if found is None else tuple(found)


async def test_the_job_anonymizes_customers_closed_longer_than_the_retention_and_keeps_the_ledger(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    retention_days = 3653
    now = datetime.now(UTC)
    old, recent = await register(client), await register(client)
    old_id, recent_id = new_resident_id(), new_resident_id()
    await with_profile(client, old, old_id)
    await with_profile(client, recent, recent_id)
    await set_pin(client, old)
    wallet, _ = await emptied_wallet(ledger, old.id)
    history_before, _ = await ledger.history(wallet.id)
    await close_at(pool, old.id, now - timedelta(days=2))
    await close_at(pool, recent.id, now)

    # Before anonymization the closed record keeps the phone and the ID number: neither registers again.
    await skip_cooldown(pool, recent.phone)
    sent_before = len(await codes(client, recent.phone))
    r = await client.post(f"{BASE}/sms-codes", json={"phone": recent.phone, "purpose": "register"})
    assert r.status_code == 202 and len(await codes(client, recent.phone)) == sent_before
    newcomer = await register(client)
    await step_up(client, newcomer)
    r = await client.put(
        f"{BASE}/me/profile",
        json={"name": "李四", "id_type": "resident_id", "id_number": old_id},
        headers=newcomer.headers,
    )
    assert_problem(r, 409, "id_number_registered")

    # One day past the retention for ``old`` (closed two days earlier), one day short of it for ``recent``.
    job = identity_jobs.anonymizer(retention_days, clock=at(now + timedelta(days=retention_days - 1)))
    context = JobContext(pool=pool, job_id=0, name=job.name, payload={}, attempt=1)
    result = await job.handler(context)
    assert result is not None and result["anonymized"] >= 1

    phone, anonymized_at, password_hash = await row(
        pool, "SELECT phone, anonymized_at, password_hash FROM customers WHERE id = %s", old.id
    )  # type: ignore[misc]
    assert phone == f"closed:{old.id}" and anonymized_at is not None and password_hash == "!anonymized"
    assert await scalar(pool, "SELECT count(*) FROM customer_profiles WHERE customer_id = %s", old.id) == 0
    assert await scalar(pool, "SELECT count(*) FROM payment_passwords WHERE customer_id = %s", old.id) == 0
    assert (
        await scalar(
            pool,
            "SELECT count(*) FROM sessions WHERE principal_id = %s AND (ip IS NOT NULL OR user_agent IS NOT NULL)",
            old.id,
        )
        == 0
    )
    assert await scalar(pool, "SELECT status FROM customers WHERE id = %s", old.id) == "closed"
    assert await row(
        pool,
        "SELECT actor_type, actor_id, outcome FROM audit_log WHERE action = 'customer.anonymize' AND target_id = %s",
        old.id,
    ) == ("system", "jobs", "success")

    # ``recent`` is untouched.
    assert await scalar(pool, "SELECT phone FROM customers WHERE id = %s", recent.id) == recent.phone
    assert await scalar(pool, "SELECT anonymized_at FROM customers WHERE id = %s", recent.id) is None
    assert await scalar(pool, "SELECT count(*) FROM customer_profiles WHERE customer_id = %s", recent.id) == 1

    # The ledger keeps the account and its history.
    history_after, _ = await ledger.history(wallet.id)
    assert [e.transfer.id for e in history_after] == [e.transfer.id for e in history_before]
    assert (await ledger.get_account_or_raise(wallet.id)).owner == f"customer:{old.id}"

    # Again: nothing to do, one audit entry.
    await job.handler(context)
    assert (
        await scalar(
            pool,
            "SELECT count(*) FROM audit_log WHERE action = 'customer.anonymize' AND target_id = %s",
            old.id,
        )
        == 1
    )

    # The phone and the ID number may register again, as a new customer.
    await skip_cooldown(pool, old.phone)
    again = await register(client, phone=old.phone)
    assert again.id != old.id
    r = await client.put(
        f"{BASE}/me/profile",
        json={"name": "李四", "id_type": "resident_id", "id_number": old_id},
        headers=newcomer.headers,
    )
    assert r.status_code == 200, r.text


def test_the_command_line_runs_the_anonymizer(cli_database: Callable[..., Any]) -> None:
    ran = cli_database("jobs", "run", "identity.anonymize_closed")
    assert ran.exit_code == 0, ran.output
    assert "'anonymized': 0" in ran.flat


async def test_money_that_arrived_after_the_closure_keeps_the_customer_known(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    """A credit after the closure (a late refund, say) lands on the frozen wallet; the anonymizer then
    skips that customer, audits why, every run, and still anonymizes those closed after them."""
    retention = timedelta(days=3653)
    now = datetime.now(UTC)
    held, other = await register(client), await register(client)
    wallet, source = await emptied_wallet(ledger, held.id)
    await close_at(pool, held.id, now - timedelta(days=30))
    await close_at(pool, other.id, now - timedelta(days=20))
    await ledger.create_transfer(move(source, wallet.id, 88))  # credits still reach a frozen account

    uow = UnitOfWork(pool, clock=at(now + retention - timedelta(days=10)))
    for _ in range(2):
        await closure.anonymize_closed(uow=uow, retention=retention, batch=1)
    assert await scalar(pool, "SELECT phone FROM customers WHERE id = %s", held.id) == held.phone
    assert await scalar(pool, "SELECT anonymized_at FROM customers WHERE id = %s", other.id) is not None
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT outcome, detail ->> 'reason', detail ->> 'amount' FROM audit_log "
            "WHERE action = 'customer.anonymize' AND target_id = %s ORDER BY seq",
            (held.id,),
        )
        assert await cur.fetchall() == [("refused", "closure_balance_left", "88")] * 2


async def test_a_domain_step_holding_the_customer_open_is_seen_by_a_closure_that_waits_for_it(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    """Another domain's step share-locks the customer (``hold_open_customer``) while it makes a card; a
    closure started meanwhile waits, then its check sees the card and refuses. Once closed, the step is
    refused instead."""
    me = await register(client)
    cards: set[UUID] = set()
    issuing, closing_started = asyncio.Event(), asyncio.Event()

    async def live_cards(unit: Unit, customer_id: UUID) -> ClosureRefusal | None:
        if customer_id in cards:
            return ClosureRefusal("closure_live_card", "名下有未注销的ETC卡", "an ETC card is still live", {})
        return None

    checks = ClosureChecks()
    checks.register("issuance.live_cards", live_cards)

    async def issue_card(unit: Unit) -> None:
        await customers.hold_open_customer(unit.conn, customer_id=UUID(me.id))
        issuing.set()
        await closing_started.wait()
        await asyncio.sleep(0.3)  # the closure is waiting on the customer's row meanwhile
        cards.add(UUID(me.id))  # stands for the card row this step commits

    async def close() -> None:
        await issuing.wait()
        closing_started.set()
        await closure.close_account(
            uow=UnitOfWork(pool),
            checks=checks,
            customer_id=UUID(me.id),
            actor=Actor("staff", None),
            reason="x",
        )

    step = asyncio.create_task(UnitOfWork(pool).run(issue_card))
    with pytest.raises(DomainError) as refused_closure:
        await asyncio.gather(step, close())
    assert refused_closure.value.code == "closure_live_card"
    assert await scalar(pool, "SELECT status FROM customers WHERE id = %s", me.id) == "active"

    cards.clear()
    await close_at(pool, me.id, datetime.now(UTC))

    async def too_late(unit: Unit) -> None:
        await customers.hold_open_customer(unit.conn, customer_id=UUID(me.id))

    with pytest.raises(DomainError) as refused_step:
        await UnitOfWork(pool).run(too_late)
    assert refused_step.value.code == "account_closed"


async def test_a_debt_on_an_account_card_refuses_the_closure_as_a_debt(
    client: httpx.AsyncClient, pool: AsyncConnectionPool, ledger: Ledger
) -> None:
    """An account card's receivable holds what the customer owes: the refusal asks them to settle it, not
    to move it to their bank card."""
    me = await register(client)
    owed = await accounts.account_for(
        ledger, customer_id=UUID(me.id), purpose=AccountPurpose.ACCOUNT_CARD_RECEIVABLE, frozen=False
    )
    await ledger.create_transfer(move(owed.id, (await open_account(ledger)).id, 3050))  # tolls charged
    await step_up(client, me)
    body = assert_problem(await client.post(CLOSE, headers={**me.headers, **EN}), 409, "closure_debt_left")
    assert body["amount"] == 3050 and body["purpose"] == "account_card_receivable"
    assert "owe 30.50" in body["title"] and "bank card" not in body["title"]
    await assert_untouched(client, pool, ledger, me)
