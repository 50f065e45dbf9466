"""Every write of the ledger's API is on the audit record: committed with the change, refusals on their own."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx
from psycopg_pool import AsyncConnectionPool

from etcwallet.platform import audit
from tests.e2e.test_ledger_http import API, open_account, transfer_body, wallet_with


async def rows_about(pool: AsyncConnectionPool, target_id: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action, outcome, actor_type, detail FROM audit_log WHERE target_id = %s ORDER BY seq",
            (target_id,),
        )
        return [tuple(r) for r in await cur.fetchall()]


async def test_opening_freezing_and_moving_are_audited_once_each(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    source, wallet = await wallet_with(client, 0)
    assert [r[:3] for r in await rows_about(pool, wallet)] == [("ledger.account_opened", "success", "staff")]

    body = transfer_body(source, wallet, 500)
    for _ in range(2):  # the resend finds the transfer stored: nothing new to audit
        assert (await client.post(f"{API}/transfers", json=body)).status_code == 201
    ((action, outcome, actor, detail),) = await rows_about(pool, body["id"])
    assert (action, outcome, actor) == ("ledger.transfer_created", "success", "staff")
    assert detail == {
        "kind": "single",
        "debit_account_id": source,
        "credit_account_id": wallet,
        "amount": 500,
        "currency": "CNY",
        "code": "e2e",
    }

    for frozen in (True, False):
        r = await client.put(f"{API}/accounts/{wallet}/frozen", json={"frozen": frozen})
        assert r.status_code == 200, r.text
    assert [r[0] for r in await rows_about(pool, wallet)] == [
        "ledger.account_opened",
        "ledger.account_frozen",
        "ledger.account_unfrozen",
    ]


async def test_a_refused_transfer_is_audited_as_refused(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    source, wallet = await wallet_with(client, 100)
    body = transfer_body(wallet, source, 101)
    r = await client.post(f"{API}/transfers", json=body)
    assert r.status_code == 422 and r.json()["code"] == "exceeds_credits"
    ((action, outcome, _, detail),) = await rows_about(pool, body["id"])
    assert (action, outcome, detail["reason"]) == ("ledger.transfer_created", "refused", "exceeds_credits")


async def test_holds_posts_voids_chains_and_batches_are_audited(
    client: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    source, wallet = await wallet_with(client, 0)
    holds = [transfer_body(source, wallet, 10, pending=True) for _ in range(2)]
    for hold in holds:
        assert (await client.post(f"{API}/transfers", json=hold)).status_code == 201
    post_id, void_id = str(uuid4()), str(uuid4())
    assert (
        await client.post(f"{API}/transfers/{holds[0]['id']}/post", json={"id": post_id})
    ).status_code == 201
    assert (
        await client.post(f"{API}/transfers/{holds[1]['id']}/void", json={"id": void_id})
    ).status_code == 201
    assert (await rows_about(pool, post_id))[0][3]["kind"] == "post_pending"
    assert (await rows_about(pool, void_id))[0][3]["kind"] == "void_pending"

    chain = [transfer_body(source, wallet, 1), transfer_body(source, wallet, 2)]
    assert (await client.post(f"{API}/transfers/linked", json={"transfers": chain})).status_code == 201
    ((action, _, _, detail),) = await rows_about(pool, chain[0]["id"])
    assert action == "ledger.linked_created" and [t["id"] for t in detail["transfers"]] == [
        c["id"] for c in chain
    ]

    other = await open_account(client, code="customer_wallet", dmnec=True)
    batch = [transfer_body(source, wallet, 3), transfer_body(other, source, 5)]  # the second is refused
    r = await client.post(f"{API}/transfers/batch", json={"transfers": batch})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    ((action, outcome, _, detail),) = await rows_about(pool, batch[0]["id"])
    assert (action, outcome) == ("ledger.batch_submitted", "success")
    assert detail == {"count": 2, "accepted": 1, "refused": 1, "last_id": batch[1]["id"]}
    async with pool.connection() as conn:
        assert (await audit.verify(conn)).ok
