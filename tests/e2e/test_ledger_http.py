"""The ledger's HTTP API end to end: the real application, the real PostgreSQL, over ASGI.

Every test opens its own accounts with random ids. Refusals are checked for their status, the
``application/problem+json`` media type, the stable ``code`` and the field they name; bad input is also
checked for having written nothing (the accounts' totals and histories are the same afterwards).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.authz import Role

API = "/api/v1/ledger"
MakeToken = Callable[[Role], Awaitable[str]]
PROBLEM = "application/problem+json"

# --- helpers -------------------------------------------------------------------------------------------


def assert_problem(
    resp: httpx.Response, status: int, code: str | None = None, field: str | None = None
) -> dict[str, Any]:
    """The answer is an RFC 9457 problem with this status, code and (in ``field`` or ``errors``) field."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].split(";")[0].strip() == PROBLEM, resp.headers["content-type"]
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    if code is not None:
        assert body.get("code") == code, body
    if field is not None:
        named = {body.get("field")} | {e.get("field") for e in body.get("errors", [])}
        assert field in named, body
    return body


def validation_fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body["errors"]}


async def open_account(
    client: httpx.AsyncClient,
    *,
    currency: str = "CNY",
    code: str = "general",
    dmnec: bool = False,
    cmned: bool = False,
) -> str:
    resp = await client.post(
        f"{API}/accounts",
        json={
            "id": str(uuid4()),
            "currency": currency,
            "code": code,
            "owner": "e2e",
            "debits_must_not_exceed_credits": dmnec,
            "credits_must_not_exceed_debits": cmned,
        },
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def transfer_body(
    debit: str,
    credit: str,
    amount: Any,
    *,
    currency: str = "CNY",
    transfer_id: str | None = None,
    pending: bool = False,
    timeout_seconds: int | None = None,
    code: str = "e2e",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": transfer_id or str(uuid4()),
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": {"amount": amount, "currency": currency},
        "code": code,
    }
    if pending:
        body["pending"] = True
    if timeout_seconds is not None:
        body["timeout_seconds"] = timeout_seconds
    return body


async def move(client: httpx.AsyncClient, debit: str, credit: str, amount: int, **kw: Any) -> dict[str, Any]:
    resp = await client.post(f"{API}/transfers", json=transfer_body(debit, credit, amount, **kw))
    assert resp.status_code == 201, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def account(client: httpx.AsyncClient, account_id: str) -> dict[str, Any]:
    resp = await client.get(f"{API}/accounts/{account_id}")
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def wallet_with(client: httpx.AsyncClient, amount: int) -> tuple[str, str]:
    """A customer wallet (never below zero) holding ``amount``, and the unconstrained source that paid it."""
    source = await open_account(client)
    wallet = await open_account(client, code="customer_wallet", dmnec=True)
    if amount:
        await move(client, source, wallet, amount)
    return source, wallet


async def snapshot(client: httpx.AsyncClient, *account_ids: str) -> list[Any]:
    """Each account's totals and flags and its whole history: what a refused request must leave alone."""
    state: list[Any] = []
    for account_id in account_ids:
        a = await account(client, account_id)
        resp = await client.get(f"{API}/accounts/{account_id}/transfers", params={"limit": 200})
        assert resp.status_code == 200, resp.text
        state.append((a["totals"], a["frozen"], [item["transfer"]["id"] for item in resp.json()["items"]]))
    return state


async def assert_absent(client: httpx.AsyncClient, transfer_id: Any) -> None:
    try:
        UUID(str(transfer_id))
    except ValueError:
        return
    resp = await client.get(f"{API}/transfers/{transfer_id}")
    assert_problem(resp, 404, "transfer_not_found", "transfer_id")


def money(amount: int, currency: str = "CNY") -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


# --- accounts ------------------------------------------------------------------------------------------


async def test_create_and_read_account(client: httpx.AsyncClient) -> None:
    account_id = str(uuid4())
    body = {
        "id": account_id,
        "currency": "CNY",
        "code": "customer_wallet",
        "owner": "customer-42",
        "debits_must_not_exceed_credits": True,
        "metadata": {"name": "张三"},
    }
    resp = await client.post(f"{API}/accounts", json=body)
    assert resp.status_code == 201, resp.text
    created = resp.json()
    assert created["id"] == account_id
    assert created["currency"] == "CNY"
    assert created["code"] == "customer_wallet"
    assert created["owner"] == "customer-42"
    assert created["debits_must_not_exceed_credits"] is True
    assert created["credits_must_not_exceed_debits"] is False
    assert created["frozen"] is False
    assert created["balance"] == money(0)
    assert created["available"] == money(0)
    assert created["totals"] == {
        "debits_posted": 0,
        "credits_posted": 0,
        "debits_pending": 0,
        "credits_pending": 0,
    }
    assert created["metadata"] == {"name": "张三"}
    datetime.fromisoformat(created["created_at"])

    assert await account(client, account_id) == created

    # Opening it again with the same fields is safe; with other fields it is refused.
    again = await client.post(f"{API}/accounts", json=body)
    assert again.status_code == 201
    assert again.json() == created
    conflict = await client.post(f"{API}/accounts", json={**body, "owner": "someone-else"})
    assert_problem(conflict, 409, "account_id_conflict", "id")
    assert (await account(client, account_id))["owner"] == "customer-42"


async def test_account_without_id_gets_one(client: httpx.AsyncClient) -> None:
    resp = await client.post(f"{API}/accounts", json={"currency": "USD", "code": "general", "owner": "x"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    UUID(body["id"])
    assert body["balance"] == money(0, "USD")


async def test_read_unknown_account(client: httpx.AsyncClient) -> None:
    resp = await client.get(f"{API}/accounts/{uuid4()}")
    assert_problem(resp, 404, "account_not_found", "account_id")


# --- transfers -----------------------------------------------------------------------------------------


async def test_single_transfer_moves_money(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 0)
    transfer_id = str(uuid4())
    resp = await client.post(
        f"{API}/transfers", json=transfer_body(source, wallet, 10_000, transfer_id=transfer_id, code="topup")
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    t = resp.json()
    assert t["id"] == transfer_id
    assert t["kind"] == "single"
    assert t["debit_account_id"] == source
    assert t["credit_account_id"] == wallet
    assert t["amount"] == money(10_000)
    assert t["code"] == "topup"
    assert t["pending_id"] is None
    assert t["expires_at"] is None

    w = await account(client, wallet)
    assert w["balance"] == money(10_000)
    assert w["available"] == money(10_000)
    assert w["totals"]["credits_posted"] == 10_000
    s = await account(client, source)
    assert s["balance"] == money(-10_000)
    assert s["totals"]["debits_posted"] == 10_000

    read = await client.get(f"{API}/transfers/{transfer_id}")
    assert read.status_code == 200
    assert read.json() == t


async def test_read_unknown_transfer(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{API}/transfers/{uuid4()}"), 404, "transfer_not_found", "transfer_id")


async def test_pending_then_post_in_full(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 10_000)
    merchant = await open_account(client)
    hold = await move(client, wallet, merchant, 3_000, pending=True, timeout_seconds=3600)
    assert hold["kind"] == "pending"
    assert hold["timeout_seconds"] == 3600
    assert hold["expires_at"] is not None

    w = await account(client, wallet)
    assert w["balance"] == money(10_000)
    assert w["available"] == money(7_000)
    assert w["totals"]["debits_pending"] == 3_000
    assert (await account(client, merchant))["totals"]["credits_pending"] == 3_000

    post_id = str(uuid4())
    resp = await client.post(f"{API}/transfers/{hold['id']}/post", json={"id": post_id})
    assert resp.status_code == 201, resp.text
    posted = resp.json()
    assert posted["id"] == post_id
    assert posted["kind"] == "post_pending"
    assert posted["pending_id"] == hold["id"]
    assert posted["amount"] == money(3_000)
    assert posted["debit_account_id"] == wallet
    assert posted["credit_account_id"] == merchant

    w = await account(client, wallet)
    assert w["balance"] == money(7_000)
    assert w["available"] == money(7_000)
    assert w["totals"]["debits_pending"] == 0
    m = await account(client, merchant)
    assert m["balance"] == money(3_000)
    assert m["totals"]["credits_pending"] == 0


async def test_pending_then_partial_post(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 10_000)
    merchant = await open_account(client)
    hold = await move(client, wallet, merchant, 3_000, pending=True)
    assert hold["expires_at"] is None
    resp = await client.post(
        f"{API}/transfers/{hold['id']}/post", json={"id": str(uuid4()), "amount": money(1_000)}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["amount"] == money(1_000)
    w = await account(client, wallet)
    assert w["balance"] == money(9_000)
    assert w["available"] == money(9_000)
    assert w["totals"]["debits_pending"] == 0
    assert (await account(client, merchant))["balance"] == money(1_000)


async def test_pending_then_void(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 10_000)
    merchant = await open_account(client)
    hold = await move(client, wallet, merchant, 4_000, pending=True)
    assert (await account(client, wallet))["available"] == money(6_000)
    resp = await client.post(f"{API}/transfers/{hold['id']}/void", json={"id": str(uuid4())})
    assert resp.status_code == 201, resp.text
    voided = resp.json()
    assert voided["kind"] == "void_pending"
    assert voided["pending_id"] == hold["id"]
    assert voided["amount"] == money(4_000)
    w = await account(client, wallet)
    assert w["balance"] == money(10_000)
    assert w["available"] == money(10_000)
    assert w["totals"]["debits_pending"] == 0
    m = await account(client, merchant)
    assert m["balance"] == money(0)
    assert m["totals"]["credits_pending"] == 0


async def test_hold_reserves_available_funds(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 1_000)
    merchant = await open_account(client)
    await move(client, wallet, merchant, 800, pending=True)
    resp = await client.post(f"{API}/transfers", json=transfer_body(wallet, merchant, 300))
    body = assert_problem(resp, 422, "exceeds_credits", "amount")
    assert body["available"] == 200


# --- linked and bulk -----------------------------------------------------------------------------------


async def test_linked_batch_commits_together(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    resp = await client.post(
        f"{API}/transfers/linked",
        json={"transfers": [transfer_body(source, wallet, 500), transfer_body(wallet, fees, 1_200)]},
    )
    assert resp.status_code == 201, resp.text
    transfers = resp.json()["transfers"]
    assert [t["amount"]["amount"] for t in transfers] == [500, 1_200]
    assert (await account(client, wallet))["balance"] == money(300)
    assert (await account(client, fees))["balance"] == money(1_200)


async def test_linked_batch_fails_as_a_whole(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    before = await snapshot(client, source, wallet, fees)
    items = [
        transfer_body(source, wallet, 100),
        transfer_body(wallet, fees, 50),
        transfer_body(wallet, fees, 5_000),  # more than the wallet holds, even with the 100 above
    ]
    resp = await client.post(f"{API}/transfers/linked", json={"transfers": items})
    body = assert_problem(resp, 422, "exceeds_credits", "amount")
    assert body["index"] == 2
    assert await snapshot(client, source, wallet, fees) == before
    for item in items:
        await assert_absent(client, item["id"])

    # An unknown account in the middle names its own index and field.
    items = [transfer_body(source, wallet, 1), transfer_body(str(uuid4()), wallet, 1)]
    resp = await client.post(f"{API}/transfers/linked", json={"transfers": items})
    body = assert_problem(resp, 404, "account_not_found", "debit_account_id")
    assert body["index"] == 1
    assert await snapshot(client, source, wallet, fees) == before


async def test_linked_batch_validation_names_the_item(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 1_000)
    before = await snapshot(client, source, wallet)
    items = [transfer_body(source, wallet, 1), transfer_body(source, wallet, 0)]
    resp = await client.post(f"{API}/transfers/linked", json={"transfers": items})
    body = assert_problem(resp, 422, "validation_failed")
    assert "transfers.1.amount.amount" in validation_fields(body)
    resp = await client.post(f"{API}/transfers/linked", json={"transfers": []})
    assert "transfers" in validation_fields(assert_problem(resp, 422, "validation_failed"))
    assert await snapshot(client, source, wallet) == before


async def test_bulk_batch_reports_each_item(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    items = [
        transfer_body(wallet, fees, 400),
        transfer_body(wallet, fees, 5_000),  # refused: not enough money
        transfer_body(wallet, fees, 500),
        {**transfer_body(source, wallet, 10), "linked": True},  # chained to the next, which fails
        transfer_body(wallet, wallet, 10),
    ]
    resp = await client.post(f"{API}/transfers/batch", json={"transfers": items})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 2
    assert body["refused"] == 3
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in results] == ["ok", "refused", "ok", "refused", "refused"]
    assert results[0]["transfer"]["id"] == items[0]["id"]
    assert results[2]["transfer"]["amount"] == money(500)
    assert results[1]["transfer"] is None
    assert results[1]["error"]["code"] == "exceeds_credits"
    assert results[1]["error"]["field"] == "amount"
    assert results[1]["error"]["index"] == 1
    assert results[1]["error"]["status"] == 422
    assert results[3]["error"]["code"] == "linked_event_failed"
    assert results[4]["error"]["code"] == "same_account"
    assert results[4]["error"]["field"] == "credit_account_id"
    assert results[4]["error"]["index"] == 4

    assert (await account(client, wallet))["balance"] == money(100)
    assert (await account(client, fees))["balance"] == money(900)
    await assert_absent(client, items[1]["id"])
    await assert_absent(client, items[3]["id"])


async def test_bulk_batch_errors_in_english(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 0)
    fees = await open_account(client)
    resp = await client.post(
        f"{API}/transfers/batch",
        json={"transfers": [transfer_body(wallet, fees, 1)]},
        headers={"Accept-Language": "en"},
    )
    assert resp.status_code == 200
    assert resp.json()["results"][0]["error"]["title"] == "insufficient funds: debits would exceed credits"


# --- history and balances ------------------------------------------------------------------------------


async def test_history_pages_with_running_balance(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 0)
    fees = await open_account(client)
    amounts = [100, 200, 300, 400, 500]
    for amount in amounts:
        await move(client, source, wallet, amount)
    await move(client, wallet, fees, 250)
    # The expected page, newest first: (amount, side, balance after).
    expected = [(250, "debit", 1_250), (500, "credit", 1_500), (400, "credit", 1_000)]
    expected += [(300, "credit", 600), (200, "credit", 300), (100, "credit", 100)]

    seen: list[tuple[int, str, int]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        resp = await client.get(f"{API}/accounts/{wallet}/transfers", params=params)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        pages += 1
        assert len(page["items"]) <= 4
        for item in page["items"]:
            assert item["balance_after"]["currency"] == "CNY"
            seen.append((item["transfer"]["amount"]["amount"], item["side"], item["balance_after"]["amount"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 2
    assert seen == expected

    # An exact page size does not promise a page that is not there.
    resp = await client.get(f"{API}/accounts/{wallet}/transfers", params={"limit": 6})
    assert len(resp.json()["items"]) == 6
    assert resp.json()["next_cursor"] is None

    # The source account (credit-normal, unconstrained) goes negative.
    resp = await client.get(f"{API}/accounts/{source}/transfers", params={"limit": 1})
    page = resp.json()
    assert page["items"][0]["side"] == "debit"
    assert page["items"][0]["balance_after"] == money(-1_500)
    assert page["next_cursor"] is not None


async def test_history_of_unknown_account(client: httpx.AsyncClient) -> None:
    resp = await client.get(f"{API}/accounts/{uuid4()}/transfers")
    assert_problem(resp, 404, "account_not_found", "account_id")


async def test_balance_as_of_a_time(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 0)
    created_at = datetime.fromisoformat((await account(client, wallet))["created_at"])
    first = await move(client, source, wallet, 700)
    second = await move(client, source, wallet, 300)
    t1 = datetime.fromisoformat(first["created_at"])
    t2 = datetime.fromisoformat(second["created_at"])
    assert t1 <= t2

    async def balance_at(at: datetime) -> Any:
        resp = await client.get(f"{API}/accounts/{wallet}/balance", params={"at": at.isoformat()})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["account_id"] == wallet
        assert datetime.fromisoformat(body["at"]) == at
        return body["balance"]

    assert await balance_at(created_at - timedelta(seconds=1)) == money(0)
    if t1 < t2:
        assert await balance_at(t1) == money(700)
    assert await balance_at(t2) == money(1_000)
    assert await balance_at(t2 + timedelta(days=1)) == money(1_000)
    # Times are compared as instants, whatever offset they are written with.
    beijing = timezone(timedelta(hours=8))
    assert await balance_at(t2.astimezone(beijing)) == money(1_000)
    assert await balance_at((created_at - timedelta(seconds=1)).astimezone(beijing)) == money(0)


async def test_balance_as_of_needs_a_zoned_time(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 0)
    resp = await client.get(f"{API}/accounts/{wallet}/balance", params={"at": "2026-01-01T00:00:00"})
    assert_problem(resp, 422, field="at")
    resp = await client.get(f"{API}/accounts/{wallet}/balance", params={"at": "yesterday"})
    assert_problem(resp, 422, "validation_failed", "at")
    resp = await client.get(f"{API}/accounts/{wallet}/balance")
    assert_problem(resp, 422, "validation_failed", "at")
    resp = await client.get(f"{API}/accounts/{uuid4()}/balance", params={"at": "2026-01-01T00:00:00+08:00"})
    assert_problem(resp, 404, "account_not_found", "account_id")


# --- freezing ------------------------------------------------------------------------------------------


async def test_freeze_refuses_debits_until_unfrozen(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    resp = await client.put(f"{API}/accounts/{wallet}/frozen", json={"frozen": True})
    assert resp.status_code == 200, resp.text
    assert resp.json()["frozen"] is True
    assert (await account(client, wallet))["frozen"] is True

    before = await snapshot(client, wallet, fees)
    body = transfer_body(wallet, fees, 100)
    assert_problem(
        await client.post(f"{API}/transfers", json=body), 422, "account_frozen", "debit_account_id"
    )
    pending = transfer_body(wallet, fees, 100, pending=True)
    assert_problem(
        await client.post(f"{API}/transfers", json=pending), 422, "account_frozen", "debit_account_id"
    )
    assert await snapshot(client, wallet, fees) == before
    await assert_absent(client, body["id"])

    # Money may still come in.
    await move(client, source, wallet, 50)

    resp = await client.put(f"{API}/accounts/{wallet}/frozen", json={"frozen": False})
    assert resp.status_code == 200
    assert resp.json()["frozen"] is False
    # A refusal is final: the refused id stays refused after the unfreeze; a new id goes through.
    assert_problem(
        await client.post(f"{API}/transfers", json=body), 422, "account_frozen", "debit_account_id"
    )
    assert (await client.post(f"{API}/transfers", json={**body, "id": str(uuid4())})).status_code == 201
    assert (await account(client, wallet))["balance"] == money(950)


async def test_freeze_bad_requests(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 0)
    resp = await client.put(f"{API}/accounts/{uuid4()}/frozen", json={"frozen": True})
    assert_problem(resp, 404, "account_not_found", "account_id")
    for frozen in ("maybe", "yes", "true", 1, None):
        resp = await client.put(f"{API}/accounts/{wallet}/frozen", json={"frozen": frozen})
        assert_problem(resp, 422, "validation_failed", "frozen")
    resp = await client.put(f"{API}/accounts/{wallet}/frozen", json={})
    assert_problem(resp, 422, "validation_failed", "frozen")
    resp = await client.put(f"{API}/accounts/not-a-uuid/frozen", json={"frozen": True})
    assert_problem(resp, 422, "validation_failed", "account_id")
    assert (await account(client, wallet))["frozen"] is False


# --- every ledger refusal ------------------------------------------------------------------------------


async def test_exceeds_credits(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 500)
    fees = await open_account(client)
    before = await snapshot(client, wallet, fees)
    body = transfer_body(wallet, fees, 501)
    problem = assert_problem(
        await client.post(f"{API}/transfers", json=body), 422, "exceeds_credits", "amount"
    )
    assert problem["type"] == "/problems/exceeds_credits"
    assert problem["available"] == 500
    assert problem["instance"] == f"{API}/transfers"
    assert await snapshot(client, wallet, fees) == before
    await assert_absent(client, body["id"])


async def test_exceeds_debits(client: httpx.AsyncClient) -> None:
    source = await open_account(client)
    mirror = await open_account(client, cmned=True)  # its credits may not exceed its debits
    before = await snapshot(client, source, mirror)
    body = transfer_body(source, mirror, 1)
    assert_problem(await client.post(f"{API}/transfers", json=body), 422, "exceeds_debits", "amount")
    assert await snapshot(client, source, mirror) == before
    await assert_absent(client, body["id"])


async def test_account_not_found(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 100)
    before = await snapshot(client, wallet)
    body = transfer_body(str(uuid4()), wallet, 1)
    assert_problem(
        await client.post(f"{API}/transfers", json=body), 404, "account_not_found", "debit_account_id"
    )
    body = transfer_body(wallet, str(uuid4()), 1)
    assert_problem(
        await client.post(f"{API}/transfers", json=body), 404, "account_not_found", "credit_account_id"
    )
    assert await snapshot(client, wallet) == before
    await assert_absent(client, body["id"])


async def test_currency_mismatch(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 100)
    dollars = await open_account(client, currency="USD")
    before = await snapshot(client, wallet, dollars)
    for body in (
        transfer_body(wallet, dollars, 1),
        transfer_body(wallet, dollars, 1, currency="USD"),
        transfer_body(source, wallet, 1, currency="USD"),
    ):
        resp = await client.post(f"{API}/transfers", json=body)
        assert_problem(resp, 422, "currency_mismatch", "currency")
        await assert_absent(client, body["id"])
    assert await snapshot(client, wallet, dollars) == before

    # Posting a hold in another currency than its own.
    fees = await open_account(client)
    hold = await move(client, wallet, fees, 10, pending=True)
    before = await snapshot(client, wallet, fees)
    post_id = str(uuid4())
    resp = await client.post(
        f"{API}/transfers/{hold['id']}/post", json={"id": post_id, "amount": money(5, "USD")}
    )
    assert_problem(resp, 422, "currency_mismatch", "currency")
    assert await snapshot(client, wallet, fees) == before
    await assert_absent(client, post_id)


async def test_same_account(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 100)
    before = await snapshot(client, wallet)
    body = transfer_body(wallet, wallet, 1)
    assert_problem(await client.post(f"{API}/transfers", json=body), 422, "same_account", "credit_account_id")
    assert await snapshot(client, wallet) == before
    await assert_absent(client, body["id"])


async def test_pending_not_found(client: httpx.AsyncClient) -> None:
    missing = uuid4()
    for action in ("post", "void"):
        new_id = str(uuid4())
        resp = await client.post(f"{API}/transfers/{missing}/{action}", json={"id": new_id})
        assert_problem(resp, 404, "pending_not_found", "pending_id")
        await assert_absent(client, new_id)
    # A transfer that exists but is not a hold.
    source, wallet = await wallet_with(client, 100)
    resp = await client.post(
        f"{API}/transfers/{(await move(client, source, wallet, 1))['id']}/post", json={"id": str(uuid4())}
    )
    assert_problem(resp, 404, "pending_not_found", "pending_id")


async def test_pending_already_posted(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    hold = await move(client, wallet, fees, 300, pending=True)
    resp = await client.post(f"{API}/transfers/{hold['id']}/post", json={"id": str(uuid4())})
    assert resp.status_code == 201
    before = await snapshot(client, wallet, fees)
    for action in ("post", "void"):
        new_id = str(uuid4())
        resp = await client.post(f"{API}/transfers/{hold['id']}/{action}", json={"id": new_id})
        assert_problem(resp, 409, "pending_already_posted", "pending_id")
        await assert_absent(client, new_id)
    assert await snapshot(client, wallet, fees) == before


async def test_pending_already_voided(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    hold = await move(client, wallet, fees, 300, pending=True)
    resp = await client.post(f"{API}/transfers/{hold['id']}/void", json={"id": str(uuid4())})
    assert resp.status_code == 201
    before = await snapshot(client, wallet, fees)
    for action in ("post", "void"):
        new_id = str(uuid4())
        resp = await client.post(f"{API}/transfers/{hold['id']}/{action}", json={"id": new_id})
        assert_problem(resp, 409, "pending_already_voided", "pending_id")
        await assert_absent(client, new_id)
    assert await snapshot(client, wallet, fees) == before


async def test_pending_expired(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    post_hold = await move(client, wallet, fees, 300, pending=True, timeout_seconds=1)
    void_hold = await move(client, wallet, fees, 200, pending=True, timeout_seconds=1)
    await asyncio.sleep(1.1)
    for hold, action in ((post_hold, "post"), (void_hold, "void")):
        new_id = str(uuid4())
        resp = await client.post(f"{API}/transfers/{hold['id']}/{action}", json={"id": new_id})
        assert_problem(resp, 409, "pending_expired", "pending_id")
        await assert_absent(client, new_id)
    w = await account(client, wallet)
    assert w["balance"] == money(1_000)
    assert w["totals"]["debits_posted"] == 0
    assert (await account(client, fees))["totals"]["credits_posted"] == 0


async def test_amount_exceeds_pending(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    hold = await move(client, wallet, fees, 300, pending=True)
    before = await snapshot(client, wallet, fees)
    post_id = str(uuid4())
    resp = await client.post(f"{API}/transfers/{hold['id']}/post", json={"id": post_id, "amount": money(301)})
    body = assert_problem(resp, 422, "amount_exceeds_pending", "amount")
    assert body["pending_amount"] == 300
    assert await snapshot(client, wallet, fees) == before
    await assert_absent(client, post_id)
    # The refused id is spent: another amount under it is a different request.
    resp = await client.post(f"{API}/transfers/{hold['id']}/post", json={"id": post_id, "amount": money(300)})
    assert_problem(resp, 409, "transfer_id_conflict", "id")
    # The hold is still open: a correct post under a new id goes through.
    resp = await client.post(
        f"{API}/transfers/{hold['id']}/post", json={"id": str(uuid4()), "amount": money(300)}
    )
    assert resp.status_code == 201, resp.text


async def test_transfer_id_conflict(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 0)
    fees = await open_account(client)
    first = await move(client, source, wallet, 100)
    before = await snapshot(client, source, wallet, fees)
    for changed in (
        transfer_body(source, wallet, 101, transfer_id=first["id"]),
        transfer_body(source, fees, 100, transfer_id=first["id"]),
        transfer_body(source, wallet, 100, transfer_id=first["id"], code="other"),
        transfer_body(source, wallet, 100, transfer_id=first["id"], pending=True),
    ):
        resp = await client.post(f"{API}/transfers", json=changed)
        assert_problem(resp, 409, "transfer_id_conflict", "id")
    # A post or void may not reuse a transfer's id either.
    hold = await move(client, wallet, fees, 10, pending=True)
    resp = await client.post(f"{API}/transfers/{hold['id']}/post", json={"id": first["id"]})
    assert_problem(resp, 409, "transfer_id_conflict", "id")
    assert (await client.get(f"{API}/transfers/{first['id']}")).json() == first
    w = await account(client, wallet)
    assert w["totals"]["credits_posted"] == 100
    assert w["totals"]["debits_pending"] == 10
    assert (await snapshot(client, source))[0] == before[0]


# --- idempotency ---------------------------------------------------------------------------------------


async def test_same_transfer_twice_is_applied_once(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 0)
    body = transfer_body(source, wallet, 1_234)
    first = await client.post(f"{API}/transfers", json=body)
    second = await client.post(f"{API}/transfers", json=body)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert (await account(client, wallet))["balance"] == money(1_234)
    history = (await client.get(f"{API}/accounts/{wallet}/transfers")).json()["items"]
    assert [item["transfer"]["id"] for item in history] == [body["id"]]


async def test_concurrent_duplicates_are_applied_once(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 0)
    body = transfer_body(source, wallet, 77)
    answers = await asyncio.gather(*(client.post(f"{API}/transfers", json=body) for _ in range(8)))
    assert {a.status_code for a in answers} == {201}
    assert len({a.text for a in answers}) == 1
    assert (await account(client, wallet))["balance"] == money(77)


async def test_retried_post_and_void_are_safe(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    hold = await move(client, wallet, fees, 300, pending=True)
    post = {"id": str(uuid4()), "amount": money(200)}
    first = await client.post(f"{API}/transfers/{hold['id']}/post", json=post)
    second = await client.post(f"{API}/transfers/{hold['id']}/post", json=post)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert (await account(client, wallet))["balance"] == money(800)
    # The same id for a different post is a conflict, not a second post.
    resp = await client.post(
        f"{API}/transfers/{hold['id']}/post", json={"id": post["id"], "amount": money(100)}
    )
    assert_problem(resp, 409, "transfer_id_conflict", "id")

    hold = await move(client, wallet, fees, 100, pending=True)
    void = {"id": str(uuid4())}
    first = await client.post(f"{API}/transfers/{hold['id']}/void", json=void)
    second = await client.post(f"{API}/transfers/{hold['id']}/void", json=void)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    w = await account(client, wallet)
    assert w["balance"] == money(800)
    assert w["available"] == money(800)


async def test_retried_linked_batch_is_safe(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 0)
    fees = await open_account(client)
    body = {"transfers": [transfer_body(source, wallet, 500), transfer_body(wallet, fees, 100)]}
    first = await client.post(f"{API}/transfers/linked", json=body)
    second = await client.post(f"{API}/transfers/linked", json=body)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert (await account(client, wallet))["balance"] == money(400)


# --- bad input changes nothing -------------------------------------------------------------------------

_BAD_TRANSFERS: list[tuple[str, Any, int, str | None, str]] = [
    # (case, how to spoil a good body, status, code, field)
    ("zero", {"amount": {"amount": 0, "currency": "CNY"}}, 422, "validation_failed", "amount.amount"),
    ("negative", {"amount": {"amount": -100, "currency": "CNY"}}, 422, "validation_failed", "amount.amount"),
    ("fraction", {"amount": {"amount": 1.5, "currency": "CNY"}}, 422, "validation_failed", "amount.amount"),
    ("float", {"amount": {"amount": 100.0, "currency": "CNY"}}, 422, "validation_failed", "amount.amount"),
    ("string", {"amount": {"amount": "100", "currency": "CNY"}}, 422, "validation_failed", "amount.amount"),
    ("bool", {"amount": {"amount": True, "currency": "CNY"}}, 422, "validation_failed", "amount.amount"),
    ("2**63", {"amount": {"amount": 2**63, "currency": "CNY"}}, 422, "validation_failed", "amount.amount"),
    ("2**64", {"amount": {"amount": 2**64, "currency": "CNY"}}, 422, "validation_failed", "amount.amount"),
    ("10**40", {"amount": {"amount": 10**40, "currency": "CNY"}}, 422, "validation_failed", "amount.amount"),
    ("bare int", {"amount": 100}, 422, "validation_failed", "amount"),
    (
        "unknown currency",
        {"amount": {"amount": 1, "currency": "XXX"}},
        422,
        "validation_failed",
        "amount.currency",
    ),
    ("lowercase", {"amount": {"amount": 1, "currency": "cny"}}, 422, "validation_failed", "amount.currency"),
    ("no currency", {"amount": {"amount": 1}}, 422, "validation_failed", "amount.currency"),
    (
        "money extra",
        {"amount": {"amount": 1, "currency": "CNY", "fx": 1}},
        422,
        "validation_failed",
        "amount.fx",
    ),
    ("extra field", {"memo": "hi"}, 422, "validation_failed", "memo"),
    ("bad id", {"id": "not-a-uuid"}, 422, "validation_failed", "id"),
    ("int id", {"id": 12345}, 422, "validation_failed", "id"),
    ("bad debit", {"debit_account_id": "1234"}, 422, "validation_failed", "debit_account_id"),
    ("bad credit", {"credit_account_id": ""}, 422, "validation_failed", "credit_account_id"),
    ("bad code", {"code": "Not A Code!"}, 422, "validation_failed", "code"),
    ("empty code", {"code": ""}, 422, "validation_failed", "code"),
    ("timeout without pending", {"timeout_seconds": 60}, 422, "validation_failed", "timeout_seconds"),
    ("zero timeout", {"pending": True, "timeout_seconds": 0}, 422, "validation_failed", "timeout_seconds"),
    ("float timeout", {"pending": True, "timeout_seconds": 1.5}, 422, "validation_failed", "timeout_seconds"),
    ("pending string", {"pending": "yes"}, 422, "validation_failed", "pending"),
    ("pending 1", {"pending": 1}, 422, "validation_failed", "pending"),
    ("pending 'false'", {"pending": "false"}, 422, "validation_failed", "pending"),
    ("timeout, pending 'no'", {"pending": "no", "timeout_seconds": 5}, 422, "validation_failed", "pending"),
    ("big metadata", {"metadata": {"note": "x" * 5000}}, 422, "validation_failed", "metadata"),
    ("metadata list", {"metadata": ["a"]}, 422, "validation_failed", "metadata"),
    ("metadata NUL", {"metadata": {"note": "a\u0000b"}}, 422, "validation_failed", "metadata"),
    ("metadata NUL key", {"metadata": {"a\u0000": [{"b": 1}]}}, 422, "validation_failed", "metadata"),
    ("metadata deep NUL", {"metadata": {"a": [{"b": ["\u0000"]}]}}, 422, "validation_failed", "metadata"),
    ("same account", "same", 422, "same_account", "credit_account_id"),
    ("unknown debit", "unknown-debit", 404, "account_not_found", "debit_account_id"),
    ("unknown credit", "unknown-credit", 404, "account_not_found", "credit_account_id"),
]
_MISSING = ["id", "debit_account_id", "credit_account_id", "amount", "code"]


@pytest.mark.parametrize(
    ("spoil", "status", "code", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in _BAD_TRANSFERS],
)
async def test_bad_transfer_changes_nothing(
    client: httpx.AsyncClient, spoil: Any, status: int, code: str, field: str
) -> None:
    source, wallet = await wallet_with(client, 1_000)
    before = await snapshot(client, source, wallet)
    body = transfer_body(wallet, source, 100)
    if spoil == "same":
        body["credit_account_id"] = wallet
    elif spoil == "unknown-debit":
        body["debit_account_id"] = str(uuid4())
    elif spoil == "unknown-credit":
        body["credit_account_id"] = str(uuid4())
    else:
        body.update(spoil)
    resp = await client.post(f"{API}/transfers", json=body)
    assert_problem(resp, status, code, field)
    assert await snapshot(client, source, wallet) == before
    await assert_absent(client, body["id"])


@pytest.mark.parametrize("missing", _MISSING)
async def test_missing_field_changes_nothing(client: httpx.AsyncClient, missing: str) -> None:
    source, wallet = await wallet_with(client, 1_000)
    before = await snapshot(client, source, wallet)
    body = transfer_body(wallet, source, 100)
    del body[missing]
    body = assert_problem(await client.post(f"{API}/transfers", json=body), 422, "validation_failed")
    assert body["errors"][0]["code"] == "missing"
    assert validation_fields(body) == {missing}
    assert await snapshot(client, source, wallet) == before


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"id": ', id="truncated"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"amount": {"amount": 1, "currency": "CNY"},}', id="trailing-comma"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ],
)
@pytest.mark.parametrize("path", ["/transfers", "/transfers/linked", "/transfers/batch", "/accounts"])
async def test_malformed_json_is_refused(client: httpx.AsyncClient, path: str, raw: bytes) -> None:
    resp = await client.post(f"{API}{path}", content=raw, headers={"Content-Type": "application/json"})
    body = assert_problem(resp, 422, "validation_failed")
    assert body["field"] == "body"
    assert body["errors"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_metadata_is_refused(client: httpx.AsyncClient, token: str) -> None:
    """Python's JSON reads NaN and Infinity, PostgreSQL's jsonb does not: a 422, never a 500."""
    source, wallet = await wallet_with(client, 1_000)
    before = await snapshot(client, source, wallet)
    body = transfer_body(wallet, source, 100)
    raw = json.dumps({**body, "metadata": {"rate": "@"}}).replace('"@"', token).encode()
    resp = await client.post(f"{API}/transfers", content=raw, headers={"Content-Type": "application/json"})
    assert_problem(resp, 422, "validation_failed", "metadata")
    raw = json.dumps({"transfers": [{**body, "metadata": {"rate": "@"}}]}).replace('"@"', token).encode()
    resp = await client.post(
        f"{API}/transfers/linked", content=raw, headers={"Content-Type": "application/json"}
    )
    assert_problem(resp, 422, "validation_failed", "transfers.0.metadata")
    assert await snapshot(client, source, wallet) == before
    await assert_absent(client, body["id"])


async def test_malformed_json_on_post_and_void(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    hold = await move(client, wallet, fees, 300, pending=True)
    before = await snapshot(client, wallet, fees)
    for action in ("post", "void"):
        resp = await client.post(
            f"{API}/transfers/{hold['id']}/{action}",
            content=b'{"id": "',
            headers={"Content-Type": "application/json"},
        )
        assert assert_problem(resp, 422, "validation_failed")["field"] == "body"
    assert await snapshot(client, wallet, fees) == before


_BAD_POSTS: list[tuple[str, dict[str, Any], str]] = [
    ("zero", {"amount": {"amount": 0, "currency": "CNY"}}, "amount.amount"),
    ("negative", {"amount": {"amount": -1, "currency": "CNY"}}, "amount.amount"),
    ("fraction", {"amount": {"amount": 0.5, "currency": "CNY"}}, "amount.amount"),
    ("string", {"amount": {"amount": "100", "currency": "CNY"}}, "amount.amount"),
    ("huge", {"amount": {"amount": 2**63, "currency": "CNY"}}, "amount.amount"),
    ("currency", {"amount": {"amount": 1, "currency": "cny"}}, "amount.currency"),
    ("extra", {"memo": "x"}, "memo"),
    ("bad id", {"id": "nope"}, "id"),
    ("big metadata", {"metadata": {"x": "y" * 5000}}, "metadata"),
]


@pytest.mark.parametrize(("spoil", "field"), [pytest.param(c[1], c[2], id=c[0]) for c in _BAD_POSTS])
async def test_bad_post_changes_nothing(client: httpx.AsyncClient, spoil: dict[str, Any], field: str) -> None:
    _, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    hold = await move(client, wallet, fees, 300, pending=True)
    before = await snapshot(client, wallet, fees)
    body = {"id": str(uuid4()), **spoil}
    resp = await client.post(f"{API}/transfers/{hold['id']}/post", json=body)
    assert_problem(resp, 422, "validation_failed", field)
    if "amount" not in spoil:
        resp = await client.post(f"{API}/transfers/{hold['id']}/void", json=body)
        assert_problem(resp, 422, "validation_failed", field)
    assert await snapshot(client, wallet, fees) == before
    await assert_absent(client, body["id"])
    # A void takes no amount.
    resp = await client.post(
        f"{API}/transfers/{hold['id']}/void", json={"id": str(uuid4()), "amount": money(300)}
    )
    assert_problem(resp, 422, "validation_failed", "amount")
    # A post or void without an id cannot be retried safely, so it is refused.
    for action in ("post", "void"):
        resp = await client.post(f"{API}/transfers/{hold['id']}/{action}", json={})
        assert_problem(resp, 422, "validation_failed", "id")
    assert await snapshot(client, wallet, fees) == before


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("GET", "/accounts/not-a-uuid", "account_id"),
        ("GET", "/accounts/123/transfers", "account_id"),
        ("GET", "/accounts/xyz/balance?at=2026-01-01T00:00:00Z", "account_id"),
        ("PUT", "/accounts/xyz/frozen", "account_id"),
        ("GET", "/transfers/not-a-uuid", "transfer_id"),
        ("POST", "/transfers/not-a-uuid/post", "pending_id"),
        ("POST", "/transfers/not-a-uuid/void", "pending_id"),
    ],
)
async def test_malformed_id_in_path(client: httpx.AsyncClient, method: str, path: str, field: str) -> None:
    body = {"frozen": True} if method == "PUT" else {"id": str(uuid4())}
    resp = await client.request(method, f"{API}{path}", json=body if method != "GET" else None)
    assert_problem(resp, 422, "validation_failed", field)
    if method == "POST":
        await assert_absent(client, body["id"])


async def test_bad_account_requests(client: httpx.AsyncClient) -> None:
    good = {"id": str(uuid4()), "currency": "CNY", "code": "general", "owner": "e2e"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"currency": "XXX"}, "currency"),
        ({"currency": "cny"}, "currency"),
        ({"currency": None}, "currency"),
        ({"code": "piggy_bank"}, "code"),
        ({"owner": ""}, "owner"),
        ({"id": "not-a-uuid"}, "id"),
        ({"extra": 1}, "extra"),
        ({"metadata": {"x": "y" * 5000}}, "metadata"),
        ({"metadata": {"x": "a\u0000b"}}, "metadata"),
        ({"owner": "a\u0000b"}, "owner"),
        ({"owner": "x" * 129}, "owner"),
        ({"debits_must_not_exceed_credits": "yes"}, "debits_must_not_exceed_credits"),
        (
            {"debits_must_not_exceed_credits": True, "credits_must_not_exceed_debits": True},
            "credits_must_not_exceed_debits",
        ),
    ]
    for spoil, field in cases:
        resp = await client.post(f"{API}/accounts", json={**good, **spoil})
        assert_problem(resp, 422, "validation_failed", field)
    for missing in ("currency", "code", "owner"):
        body = {k: v for k, v in good.items() if k != missing}
        assert_problem(await client.post(f"{API}/accounts", json=body), 422, "validation_failed", missing)
    assert_problem(await client.get(f"{API}/accounts/{good['id']}"), 404, "account_not_found")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "abc"}, "cursor"),
        ({"cursor": "0"}, "cursor"),
        ({"cursor": "-5"}, "cursor"),
        ({"cursor": "1.5"}, "cursor"),
        ({"cursor": "99999999999999999999"}, "cursor"),
        ({"cursor": ""}, "cursor"),
    ],
)
async def test_bad_history_parameters(client: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    _, wallet = await wallet_with(client, 10)
    resp = await client.get(f"{API}/accounts/{wallet}/transfers", params=params)
    assert_problem(resp, 422, "validation_failed", field)


async def test_history_limit_bounds_are_inclusive(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 10)
    for limit in (1, 200):
        resp = await client.get(f"{API}/accounts/{wallet}/transfers", params={"limit": limit})
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["items"]) == 1
    resp = await client.get(f"{API}/accounts/{wallet}/transfers", params={"cursor": str(2**63 - 1)})
    assert resp.status_code == 200
    assert len(resp.json()["items"]) == 1


async def test_bad_bulk_batch_changes_nothing(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 1_000)
    before = await snapshot(client, source, wallet)
    items = [transfer_body(source, wallet, 1), {**transfer_body(source, wallet, 1), "linked": "no"}]
    resp = await client.post(f"{API}/transfers/batch", json={"transfers": items})
    assert "transfers.1.linked" in validation_fields(assert_problem(resp, 422, "validation_failed"))
    items = [transfer_body(source, wallet, 1), transfer_body(source, wallet, 2.5)]
    resp = await client.post(f"{API}/transfers/batch", json={"transfers": items})
    assert "transfers.1.amount.amount" in validation_fields(assert_problem(resp, 422, "validation_failed"))
    resp = await client.post(f"{API}/transfers/batch", json={"transfers": []})
    assert_problem(resp, 422, "validation_failed", "transfers")
    assert await snapshot(client, source, wallet) == before
    await assert_absent(client, items[0]["id"])


# --- language ------------------------------------------------------------------------------------------


async def test_problem_titles_follow_accept_language(client: httpx.AsyncClient) -> None:
    _, wallet = await wallet_with(client, 0)
    fees = await open_account(client)
    body = transfer_body(wallet, fees, 1)
    zh = assert_problem(await client.post(f"{API}/transfers", json=body), 422, "exceeds_credits")
    assert zh["title"] == "余额不足：借方账户的借记将超过贷记"
    en = assert_problem(
        await client.post(f"{API}/transfers", json=body, headers={"Accept-Language": "en"}),
        422,
        "exceeds_credits",
    )
    assert en["title"] == "insufficient funds: debits would exceed credits"
    assert en["errors"][0]["message"] == en["title"]
    preferred = assert_problem(
        await client.post(
            f"{API}/transfers", json=body, headers={"Accept-Language": "zh-CN;q=0.3, en-GB;q=0.9"}
        ),
        422,
    )
    assert preferred["title"] == en["title"]

    bad = transfer_body(wallet, fees, 0)
    zh = assert_problem(await client.post(f"{API}/transfers", json=bad), 422, "validation_failed")
    assert zh["title"] == "请求参数有误"
    assert zh["errors"][0]["message"].startswith("数值太小")
    en = assert_problem(
        await client.post(f"{API}/transfers", json=bad, headers={"Accept-Language": "en-US,en;q=0.9"}),
        422,
        "validation_failed",
    )
    assert en["title"] == "The request is invalid"
    assert en["errors"][0]["message"].startswith("value too small")

    resp = await client.get(f"{API}/accounts/{uuid4()}", headers={"Accept-Language": "en"})
    assert assert_problem(resp, 404, "account_not_found")["title"] == "account not found"
    resp = await client.get(f"{API}/accounts/{uuid4()}")
    assert assert_problem(resp, 404, "account_not_found")["title"] == "账户不存在"


# --- authentication and authorization ------------------------------------------------------------------


async def test_authentication_is_required(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient, finance_token: str
) -> None:
    source, wallet = await wallet_with(client, 1_000)
    fees = await open_account(client)
    hold = await move(client, wallet, fees, 100, pending=True)
    before = await snapshot(client, source, wallet, fees)
    headers_cases = {
        "missing": {},
        "wrong token": {"Authorization": "Bearer not-the-token-0123456789"},
        "empty bearer": {"Authorization": "Bearer "},
        "wrong scheme": {"Authorization": f"Basic {finance_token}"},
        "bare token": {"Authorization": finance_token},
    }
    new_account = {"id": str(uuid4()), "currency": "CNY", "code": "general", "owner": "intruder"}
    for name, headers in headers_cases.items():
        ids = [str(uuid4()) for _ in range(5)]
        requests = [
            ("POST", "/transfers", transfer_body(wallet, fees, 1, transfer_id=ids[0])),
            (
                "POST",
                "/transfers/linked",
                {"transfers": [transfer_body(wallet, fees, 1, transfer_id=ids[1])]},
            ),
            ("POST", "/transfers/batch", {"transfers": [transfer_body(wallet, fees, 1, transfer_id=ids[2])]}),
            ("POST", f"/transfers/{hold['id']}/post", {"id": ids[3]}),
            ("POST", f"/transfers/{hold['id']}/void", {"id": ids[4]}),
            ("POST", "/accounts", new_account),
            ("PUT", f"/accounts/{wallet}/frozen", {"frozen": True}),
            ("GET", f"/accounts/{wallet}", None),
            ("GET", f"/accounts/{wallet}/transfers", None),
            ("GET", f"/accounts/{wallet}/balance?at=2026-01-01T00:00:00Z", None),
            ("GET", f"/transfers/{hold['id']}", None),
        ]
        for method, path, body in requests:
            resp = await anonymous.request(method, f"{API}{path}", json=body, headers=headers)
            problem = assert_problem(resp, 401, "unauthenticated")
            assert problem["field"] == "Authorization", (name, path)
            assert "transfer" not in problem and "id" not in problem
        # Bad input from an anonymous caller is still a 401: nothing about the request is judged first.
        for method, path, _ in requests:
            for raw in (b"{", b'{"x": 1}'):
                resp = await anonymous.request(method, f"{API}{path}", content=raw, headers=headers)
                assert_problem(resp, 401, "unauthenticated")
        resp = await anonymous.get(f"{API}/accounts/not-a-uuid", headers=headers)
        assert_problem(resp, 401, "unauthenticated")
        resp = await anonymous.get(f"{API}/accounts/{wallet}/transfers?limit=0", headers=headers)
        assert_problem(resp, 401, "unauthenticated")
        for transfer_id in ids:
            await assert_absent(client, transfer_id)
    assert await snapshot(client, source, wallet, fees) == before
    assert_problem(await client.get(f"{API}/accounts/{new_account['id']}"), 404, "account_not_found")

    resp = await anonymous.get(f"{API}/accounts/{wallet}", headers={"Accept-Language": "en"})
    assert assert_problem(resp, 401)["title"].startswith("sign in first")


async def test_revoked_session_is_refused(
    app: Any, client: httpx.AsyncClient, pool: AsyncConnectionPool, make_token: MakeToken
) -> None:
    _, wallet = await wallet_with(client, 0)
    token = await make_token(Role.FINANCE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        headers = {"Authorization": f"Bearer {token}"}
        assert (await c.get(f"{API}/accounts/{wallet}", headers=headers)).status_code == 200
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE sessions SET revoked_at = now() WHERE token_hash = sha256(%s::bytea)",
                (token.encode(),),
            )
        assert_problem(await c.get(f"{API}/accounts/{wallet}", headers=headers), 401, "unauthenticated")


async def test_roles_without_ledger_permission_are_forbidden(
    app: Any, client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    source, wallet = await wallet_with(client, 1_000)
    before = await snapshot(client, source, wallet)
    admin = await make_token(Role.ADMINISTRATOR)
    risk = await make_token(Role.RISK_OFFICER)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        # Administrators run people and places, not money: no reading, no writing.
        as_admin = {"Authorization": f"Bearer {admin}"}
        resp = await c.get(f"{API}/accounts/{wallet}", headers=as_admin)
        assert assert_problem(resp, 403, "forbidden")["permission"] == "ledger.read"
        body = transfer_body(wallet, source, 1)
        resp = await c.post(f"{API}/transfers", json=body, headers=as_admin)
        assert assert_problem(resp, 403, "forbidden")["permission"] == "ledger.write"
        # Risk officers may read the ledger but not move money or freeze accounts through it.
        as_risk = {"Authorization": f"Bearer {risk}"}
        resp = await c.get(f"{API}/accounts/{wallet}", headers=as_risk)
        assert resp.status_code == 200
        assert resp.json()["balance"] == money(1_000)
        for method, path, payload in (
            ("POST", "/transfers", body),
            ("POST", "/transfers/linked", {"transfers": [body]}),
            ("POST", "/transfers/batch", {"transfers": [body]}),
            ("PUT", f"/accounts/{wallet}/frozen", {"frozen": True}),
        ):
            resp = await c.request(method, f"{API}{path}", json=payload, headers=as_risk)
            assert assert_problem(resp, 403, "forbidden")["permission"] == "ledger.write"
    assert await snapshot(client, source, wallet) == before
    await assert_absent(client, body["id"])


# --- operations and documentation ----------------------------------------------------------------------


async def test_health_and_readiness(anonymous: httpx.AsyncClient) -> None:
    resp = await anonymous.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
    resp = await anonymous.get("/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready"}


async def test_metrics(client: httpx.AsyncClient, anonymous: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 5)
    resp = await anonymous.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert "etcw_http_requests_total" in text
    assert 'route="/api/v1/ledger/transfers"' in text
    assert 'route="/api/v1/ledger/accounts/{account_id}"' in text  # by template, never by id
    assert wallet not in text and source not in text
    assert 'etcw_ledger_transfers_total{outcome="accepted"}' in text


async def test_docs_and_openapi(anonymous: httpx.AsyncClient) -> None:
    resp = await anonymous.get("/docs")
    assert resp.status_code == 200
    assert "text/html" in resp.headers["content-type"]
    assert "/openapi.json" in resp.text
    resp = await anonymous.get("/openapi.json")
    assert resp.status_code == 200
    spec = resp.json()
    paths = spec["paths"]
    for path in (
        f"{API}/accounts",
        f"{API}/accounts/{{account_id}}",
        f"{API}/accounts/{{account_id}}/frozen",
        f"{API}/accounts/{{account_id}}/transfers",
        f"{API}/accounts/{{account_id}}/balance",
        f"{API}/transfers",
        f"{API}/transfers/linked",
        f"{API}/transfers/batch",
        f"{API}/transfers/{{pending_id}}/post",
        f"{API}/transfers/{{pending_id}}/void",
        f"{API}/transfers/{{transfer_id}}",
    ):
        assert path in paths, path
    # The hot route parses its own body, yet documents it.
    schema = paths[f"{API}/transfers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["required"]) >= {"id", "debit_account_id", "credit_account_id", "amount", "code"}
    assert json.dumps(spec)  # serialisable through and through


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(f"{API}/nothing-here"), 404)
    assert_problem(await client.delete(f"{API}/transfers"), 405)


# --- characters PostgreSQL cannot store, and bodies too large for the fast lane ------------------------


async def test_nul_character_in_metadata_is_refused(client: httpx.AsyncClient) -> None:
    """PostgreSQL's jsonb cannot hold NUL: refused as a 422 on the field, and nothing moves."""
    source, wallet = await wallet_with(client, 100)
    body = transfer_body(source, wallet, 5)
    body["metadata"] = {"plate": ["甘A", {"note": "a\u0000b"}]}
    before = await snapshot(client, source, wallet)
    resp = await client.post(f"{API}/transfers", json=body)
    problem = assert_problem(resp, 422, "validation_failed", "metadata")
    assert problem["errors"][0]["code"] == "nul_character"
    assert await snapshot(client, source, wallet) == before
    assert (await client.get(f"{API}/transfers/{body['id']}")).status_code == 404


async def test_nul_character_in_account_owner_is_refused(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        f"{API}/accounts", json={"id": str(uuid4()), "currency": "CNY", "code": "general", "owner": "a\u0000"}
    )
    problem = assert_problem(resp, 422, "validation_failed", "owner")
    assert problem["errors"][0]["code"] == "nul_character"


async def test_oversized_transfer_body_is_refused(client: httpx.AsyncClient) -> None:
    source, wallet = await wallet_with(client, 100)
    body = transfer_body(source, wallet, 5)
    body["padding"] = "x" * 70_000
    resp = await client.post(f"{API}/transfers", json=body)
    assert_problem(resp, 413, "body_too_large", "body")
    assert (await client.get(f"{API}/transfers/{body['id']}")).status_code == 404
