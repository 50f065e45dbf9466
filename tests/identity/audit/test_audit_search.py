"""Searching the audit log: each filter, keyset pages under concurrent appends, masking, outlet scope,
bad filters refused without a trace, and the search audited.

No role holding ``audit.read`` is placed at an outlet today (administrators and risk officers are
bank-wide), so the outlet scope is tested at the service level with an outlet supervisor's principal built
for it; the route's gate would refuse that role before the service.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.masking import mask_id_number, mask_phone
from etcwallet.identity.audit import service
from etcwallet.identity.audit.types import AuditAction, AuditPage
from etcwallet.identity.authz import Principal, Role
from etcwallet.identity.errors import IdentityError
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor, AuditEvent
from etcwallet.platform.unit import UnitOfWork
from tests.conftest import StaffFactory
from tests.identity.customer_helpers import new_resident_id
from tests.identity.software_authenticator import random_phone
from tests.identity.staff_helpers import assert_problem, audit_rows, me

SEARCH = "/api/v1/admin/audit"
T0 = datetime(2021, 3, 1, 8, 0, tzinfo=UTC)


def domain() -> str:
    """An action domain no other test writes, so a search by it sees only this test's entries."""
    return f"t{uuid4().hex[:12]}"


def viewer(role: Role, outlet_id: UUID | None = None) -> Principal:
    return Principal("staff", uuid4(), uuid4(), role, outlet_id)


async def write(pool: AsyncConnectionPool, events: list[AuditEvent], at: datetime | None = None) -> None:
    """Append ``events`` in one transaction (at ``at``, by the appending clock when None)."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(*audit.append_statement(events, at))


@pytest.fixture
def uow(pool: AsyncConnectionPool) -> UnitOfWork:
    return UnitOfWork(pool)


async def search(uow: UnitOfWork, who: Principal | None = None, **filters: Any) -> AuditPage:
    return await service.search_audit(uow, viewer=who or viewer(Role.RISK_OFFICER), **filters)


def actions(page: AuditPage) -> list[str]:
    return [e.action for e in page.entries]


async def test_each_filter_narrows_the_search(pool: AsyncConnectionPool, uow: UnitOfWork) -> None:
    d = domain()
    staff_1, staff_2, customer_1, customer_2 = (str(uuid4()) for _ in range(4))
    outlet_1, outlet_2 = uuid4(), uuid4()
    await write(
        pool,
        [
            Actor("staff", staff_1).event(
                f"{d}.create", target=("customer", customer_1), detail={"outlet_id": str(outlet_1)}
            )
        ],
        T0,
    )
    await write(
        pool,
        [
            Actor("staff", staff_2).event(
                f"{d}.update", target=("customer", customer_2), detail={"outlet_id": str(outlet_2)}
            )
        ],
        T0 + timedelta(hours=1),
    )
    await write(
        pool,
        [Actor("customer", customer_1).event(f"{d}.login.password", target=("customer", customer_1))],
        T0 + timedelta(hours=2),
    )
    every = f"{d}.*"
    assert actions(await search(uow, action=every)) == [f"{d}.login.password", f"{d}.update", f"{d}.create"]
    assert actions(await search(uow, action=f"{d}.login.*")) == [f"{d}.login.password"]
    assert actions(await search(uow, action=f"{d}.update")) == [f"{d}.update"]
    assert actions(await search(uow, action=every, actor_type="staff")) == [f"{d}.update", f"{d}.create"]
    assert actions(await search(uow, actor_type="staff", actor_id=staff_1)) == [f"{d}.create"]
    assert actions(await search(uow, target_type="customer", target_id=customer_1)) == [
        f"{d}.login.password",
        f"{d}.create",
    ]
    assert actions(await search(uow, outlet_id=outlet_2)) == [f"{d}.update"]
    page = await search(uow, action=every, since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=2))
    assert actions(page) == [f"{d}.update"]  # since inclusive, until exclusive
    assert actions(await search(uow, action=every, since=T0 + timedelta(hours=2))) == [f"{d}.login.password"]
    assert actions(await search(uow, action=every, until=T0 + timedelta(seconds=1))) == [f"{d}.create"]
    # A prefix is a prefix of whole words: ``_`` and ``%`` in it are no wildcards.
    assert actions(await search(uow, action=f"{d[:-1]}_.*")) == []
    entry = (await search(uow, action=f"{d}.create")).entries[0]
    assert (entry.actor_id, entry.target_id, entry.outlet_id, entry.at) == (
        staff_1,
        customer_1,
        str(outlet_1),
        T0,
    )


async def test_keyset_pages_cover_everything_once_under_concurrent_appends(
    pool: AsyncConnectionPool, uow: UnitOfWork
) -> None:
    d = domain()
    action = f"{d}.page"
    await write(pool, [Actor("system", "test").event(action, detail={"n": n}) for n in range(23)])
    appended = 0
    paging = True

    async def append_meanwhile() -> None:
        nonlocal appended
        while paging:
            await write(pool, [Actor("system", "test").event(action, detail={"late": True})])
            appended += 1
            await asyncio.sleep(0)

    appender = asyncio.create_task(append_meanwhile())
    try:
        seen: list[int] = []
        cursor: int | None = None
        while True:
            page = await search(uow, action=action, after=cursor, limit=4)
            seen += [e.seq for e in page.entries]
            assert len(page.entries) <= 4
            if page.next_cursor is None:
                break
            assert page.next_cursor == page.entries[-1].seq
            cursor = page.next_cursor
            await asyncio.sleep(0.01)  # let the appender in between pages
    finally:
        paging = False
        await appender
    assert appended > 0
    assert seen == sorted(set(seen), reverse=True), "a page repeated or reordered an entry"
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT seq FROM audit_log WHERE action = %s AND seq <= %s ORDER BY seq DESC", (action, seen[0])
        )
        expected = [row[0] for row in await cur.fetchall()]
    assert seen == expected  # every entry up to the first page's newest, exactly once
    assert len(seen) >= 23


async def test_a_page_is_capped_and_the_last_page_has_no_cursor(
    pool: AsyncConnectionPool, uow: UnitOfWork
) -> None:
    d = domain()
    await write(pool, [Actor("system", "test").event(f"{d}.x") for _ in range(3)])
    first = await search(uow, action=f"{d}.x", limit=3)
    assert len(first.entries) == 3 and first.next_cursor is None
    first = await search(uow, action=f"{d}.x", limit=2)
    assert first.next_cursor is not None
    last = await search(uow, action=f"{d}.x", limit=2, after=first.next_cursor)
    assert len(last.entries) == 1 and last.next_cursor is None
    with pytest.raises(IdentityError) as refused:
        await search(uow, action=f"{d}.x", limit=201)
    assert refused.value.field == "limit"


async def test_details_leave_masked(
    pool: AsyncConnectionPool, uow: UnitOfWork, make_staff: StaffFactory, client: httpx.AsyncClient
) -> None:
    d = domain()
    phone, id_number, other_phone, other_id = (
        random_phone(),
        new_resident_id(),
        random_phone(),
        new_resident_id(),
    )
    card = "6222021234567890123"
    detail = {
        "phone": phone,
        "id_number": id_number,
        "reason": f"客户 {other_phone} 出示证件 {other_id}，卡号 {card}",
        "name": "欧阳明华",
        "nested": {"holder_name": "司马建国", "notes": [f"call {other_phone}"]},
    }
    await write(pool, [Actor("anonymous", phone).event(f"{d}.login", target=("phone", phone), detail=detail)])
    raw = [phone, id_number, other_phone, other_id, card, "欧阳明华", "司马建国"]

    page = await search(uow, action=f"{d}.login")
    text = json.dumps([e.__dict__ for e in page.entries], default=str, ensure_ascii=False)
    assert not [value for value in raw if value in text], text
    entry = page.entries[0]
    assert entry.detail["phone"] == mask_phone(phone)
    assert entry.detail["id_number"] == mask_id_number(id_number)
    assert (
        mask_phone(other_phone) in entry.detail["reason"]
        and mask_id_number(other_id) in entry.detail["reason"]
    )
    assert (entry.actor_id, entry.target_id) == (mask_phone(phone), mask_phone(phone))
    assert entry.detail["name"] == "欧***"

    headers = await make_staff(Role.ADMINISTRATOR)
    r = await client.get(SEARCH, params={"action": f"{d}.login"}, headers=headers)
    assert r.status_code == 200, r.text
    assert [item["action"] for item in r.json()["items"]] == [f"{d}.login"]
    assert not [value for value in raw if value in r.text], r.text
    assert mask_phone(phone) in r.text


async def test_outlet_staff_see_only_their_outlets_entries(
    pool: AsyncConnectionPool, uow: UnitOfWork
) -> None:
    """At the service level: no role holding audit.read is outlet-scoped, so the principal is built here."""
    d = domain()
    mine, other = uuid4(), uuid4()
    await write(
        pool,
        [
            Actor("staff", str(uuid4())).event(f"{d}.mine", detail={"outlet_id": str(mine)}),
            Actor("staff", str(uuid4())).event(f"{d}.other", detail={"outlet_id": str(other)}),
            Actor("system", "test").event(f"{d}.nowhere"),
        ],
    )
    placed = viewer(Role.OUTLET_SUPERVISOR, mine)
    assert actions(await search(uow, placed, action=f"{d}.*")) == [f"{d}.mine"]
    assert actions(await search(uow, placed, action=f"{d}.*", outlet_id=mine)) == [f"{d}.mine"]
    assert actions(await search(uow, placed, action=f"{d}.*", outlet_id=other)) == []
    assert actions(await search(uow, viewer(Role.OUTLET_OPERATOR, None), action=f"{d}.*")) == []
    bank_wide = viewer(Role.RISK_OFFICER)
    assert actions(await search(uow, bank_wide, action=f"{d}.*")) == [
        f"{d}.nowhere",
        f"{d}.other",
        f"{d}.mine",
    ]
    assert actions(await search(uow, bank_wide, action=f"{d}.*", outlet_id=other)) == [f"{d}.other"]
    # The placed viewer's own searches are entries of its outlet.
    searches = (await search(uow, bank_wide, actor_type="staff", actor_id=str(placed.id))).entries
    assert len(searches) == 3
    assert {(e.action, e.outlet_id) for e in searches} == {(AuditAction.SEARCH, str(mine))}


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"action": "Customer Login!"}, "action"),
        ({"action": "customer..login"}, "action"),
        ({"actor_type": "robot"}, "actor_type"),
        ({"actor_id": "someone"}, "actor_type"),
        ({"target_id": "someone"}, "target_type"),
        ({"target_type": "Bad-Type"}, "target_type"),
        ({"since": "2026-02-01T00:00:00+08:00", "until": "2026-01-01T00:00:00+08:00"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"after": "abc"}, "after"),
        ({"after": "0"}, "after"),
        ({"after": str(2**63)}, "after"),
        ({"limit": "201"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"outlet_id": "not-a-uuid"}, "outlet_id"),
        ({"actor_type": "staff", "actor_id": "a\u0000b"}, "actor_id"),  # PostgreSQL text holds no NUL
        ({"target_type": "customer", "target_id": "a\u0000b"}, "target_id"),
        ({"action": "customer.login\n"}, "action"),
    ],
)
async def test_bad_filters_are_refused_naming_the_field_and_write_nothing(
    filters: dict[str, str],
    field: str,
    make_staff: StaffFactory,
    client: httpx.AsyncClient,
    pool: AsyncConnectionPool,
) -> None:
    headers = await make_staff(Role.RISK_OFFICER)
    staff_id = (await me(client, headers))["id"]
    r = await client.get(SEARCH, params=filters, headers=headers)
    assert_problem(r, 422, field=field)
    assert await audit_rows(pool, actor_id=staff_id, action=AuditAction.SEARCH) == []


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"action": "a b"}, "action"),
        ({"since": T0 + timedelta(days=1), "until": T0}, "since"),
        ({"until": datetime(2026, 1, 1)}, "until"),
        ({"after": 0}, "after"),
        ({"limit": 0}, "limit"),
        ({"actor_id": "x"}, "actor_type"),
        ({"actor_type": "staff", "actor_id": "x" * 201}, "actor_id"),
    ],
)
async def test_the_service_refuses_bad_filters_itself(
    filters: dict[str, Any], field: str, uow: UnitOfWork, pool: AsyncConnectionPool
) -> None:
    who = viewer(Role.ADMINISTRATOR)
    with pytest.raises(IdentityError) as refused:
        await search(uow, who, **filters)
    assert (refused.value.status, refused.value.field) == (422, field)
    assert await audit_rows(pool, actor_id=str(who.id)) == []


async def test_a_search_is_audited_with_its_filters(
    make_staff: StaffFactory, client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    headers = await make_staff(Role.RISK_OFFICER)
    staff_id = (await me(client, headers))["id"]
    d = domain()
    r = await client.get(SEARCH, params={"action": f"{d}.*", "limit": "7"}, headers=headers)
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}, r.text
    (row,) = await audit_rows(pool, actor_id=staff_id, action=AuditAction.SEARCH)
    assert row["actor_type"] == "staff" and row["outcome"] == "success" and row["ip"]
    assert row["detail"] == {"filters": {"action": f"{d}.*"}, "limit": 7, "answered": 0}
    # Pages continue over HTTP with the answer's cursor.
    await write(pool, [Actor("system", "test").event(f"{d}.x") for _ in range(3)])
    r = await client.get(SEARCH, params={"action": f"{d}.x", "limit": "2"}, headers=headers)
    first = r.json()
    assert len(first["items"]) == 2 and first["next_cursor"] == str(first["items"][-1]["seq"]), first
    r = await client.get(SEARCH, params={"action": f"{d}.x", "after": first["next_cursor"]}, headers=headers)
    assert [i["seq"] for i in r.json()["items"]] == [first["items"][-1]["seq"] - 1], r.text


async def test_a_customer_principal_never_reads_the_log(uow: UnitOfWork, pool: AsyncConnectionPool) -> None:
    customer = Principal("customer", uuid4(), uuid4())
    with pytest.raises(IdentityError) as refused:
        await search(uow, customer)
    assert refused.value.status == 403
    assert await audit_rows(pool, actor_id=str(customer.id)) == []


async def test_what_outlet_staff_do_is_found_by_their_outlet(
    client: httpx.AsyncClient, make_staff: StaffFactory
) -> None:
    """Staff placed at an outlet act for it: their entries carry the outlet (``Actor.outlet_id``), so a
    search by outlet finds a supervisor's step-up without the step-up's code naming the outlet itself."""
    supervisor = await make_staff(Role.OUTLET_SUPERVISOR, step_up=True)
    placed = await me(client, supervisor)
    risk = await make_staff(Role.RISK_OFFICER)
    r = await client.get(SEARCH, params={"outlet_id": placed["outlet_id"]}, headers=risk)
    assert r.status_code == 200, r.text
    found = [(e["actor_id"], e["action"]) for e in r.json()["items"]]
    assert (placed["id"], "step_up.totp") in found
    assert all(e["detail"]["outlet_id"] == placed["outlet_id"] for e in r.json()["items"])
