"""Account services over HTTP: the account query and the information change end to end (codes read from the
dev outbox), and the bank card change's refusals at the door (role, slot, typing)."""

from __future__ import annotations

import httpx
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.authz import Role
from tests.conftest import StaffFactory
from tests.identity.customer_helpers import codes, new_phone, new_resident_id
from tests.payments.builders import card_number as bank_card_number

ISS = "/api/v1/issuance"


async def open_customer(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, str]:
    phone, id_number = new_phone(), new_resident_id()
    body = {"phone": phone, "name": "王小明", "id_type": "resident_id", "id_number": id_number}
    r = await client.post("/api/v1/outlet/customers", json=body, headers=headers | {"Idempotency-Key": phone})
    assert r.status_code == 201, r.text
    return phone, id_number


async def test_account_query_by_phone_and_by_id_masked_and_a_miss_is_404(
    client: httpx.AsyncClient, make_staff: StaffFactory, pool: AsyncConnectionPool
) -> None:
    headers = await make_staff(Role.OUTLET_OPERATOR)
    phone, id_number = await open_customer(client, headers)
    other_outlet = await make_staff(Role.BANK_OPERATOR)
    r = await client.post(f"{ISS}/account-query", json={"phone": phone}, headers=other_outlet)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["customer"]["phone_masked"] == phone[:3] + "****" + phone[-4:]
    assert phone not in r.text and id_number not in r.text and "王小明" not in r.text
    assert answer["applications"] == [] and answer["chips"] == []
    r = await client.post(
        f"{ISS}/account-query", json={"id_type": "resident_id", "id_number": id_number}, headers=headers
    )
    assert r.status_code == 200 and r.json()["customer"]["id"] == answer["customer"]["id"]
    r = await client.post(f"{ISS}/account-query", json={"phone": new_phone()}, headers=headers)
    assert r.status_code == 404 and r.json()["code"] == "customer_not_found"
    r = await client.post(
        f"{ISS}/account-query", json={"phone": phone, "id_number": id_number}, headers=headers
    )
    assert r.status_code == 422
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT outcome, count(*) FROM audit_log WHERE action = 'issuance.account.query' "
            "AND detail->>'outlet_id' IS NOT NULL AND at > now() - interval '1 minute' "
            "AND target_id IS NOT DISTINCT FROM %s GROUP BY outcome",
            (answer["customer"]["id"],),
        )
        assert dict(await cur.fetchall()) == {"success": 2}


async def test_information_change_over_http_with_the_customers_code(
    client: httpx.AsyncClient, make_staff: StaffFactory
) -> None:
    headers = await make_staff(Role.OUTLET_OPERATOR)
    phone, id_number = await open_customer(client, headers)
    ident = {"phone": phone, "id_type": "resident_id", "id_number": id_number}
    r = await client.post(f"{ISS}/info-changes/search", json=ident, headers=headers)
    assert r.status_code == 200, r.text
    assert [(f["field"], f["required"]) for f in r.json()["fields"]] == [("phone", True), ("name", True)]
    r = await client.post(
        f"{ISS}/info-changes/search", json=ident | {"id_number": new_resident_id()}, headers=headers
    )
    assert r.status_code == 404 and r.json()["code"] == "customer_not_matched"
    r = await client.post(f"{ISS}/info-changes/sms-codes", json=ident, headers=headers)
    assert r.status_code == 202, r.text
    (code, *_) = await codes(client, phone)
    moved = new_phone()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    r = await client.post(
        f"{ISS}/info-changes", json=ident | {"sms_code": wrong, "new_phone": moved}, headers=headers
    )
    assert r.status_code == 422 and r.json()["code"] == "sms_code_invalid"
    r = await client.post(
        f"{ISS}/info-changes", json=ident | {"sms_code": code, "new_phone": moved}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["customer"]["phone_masked"] == moved[:3] + "****" + moved[-4:]
    r = await client.post(f"{ISS}/account-query", json={"phone": phone}, headers=headers)
    assert r.status_code == 404


async def test_bank_card_change_refusals_at_the_door(
    client: httpx.AsyncClient, make_staff: StaffFactory
) -> None:
    number = bank_card_number("622202")
    body = {"bank_card_number": number, "confirm_number": number}
    operator = await make_staff(Role.OUTLET_OPERATOR)
    r = await client.post(f"{ISS}/bank-card-changes", json=body, headers=operator)
    assert r.status_code == 403
    bank = await make_staff(Role.BANK_OPERATOR)
    r = await client.post(f"{ISS}/bank-card-changes", json=body, headers=bank)
    assert r.status_code == 409 and r.json()["code"] == "no_card_in_reader"
    confirm = {
        "card_number": "62010101999999999999",
        "bank_card_number": number,
        "change_token": "1.00",
        "sms_code": "123456",
    }
    r = await client.post(f"{ISS}/bank-card-changes/confirm", json=confirm, headers=bank)
    assert r.status_code == 422 and r.json()["code"] == "card_not_ours"
