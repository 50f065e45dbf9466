"""Issuance over HTTP with the emulated desk: stock in, a customer at the counter, an application, a card
read and registered, at a self-operated and at a bank outlet; bad input answered in both languages and
another outlet's records answering 404."""

from __future__ import annotations

import secrets
from typing import Any
from uuid import UUID

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.authz import Role
from etcwallet.identity.staff import service as staff
from etcwallet.issuance.types import ChipKind
from tests.conftest import StaffFactory
from tests.idempotency_keys import keyed
from tests.identity.customer_helpers import new_phone, new_resident_id
from tests.issuance.builders import mistyped, new_chip_number, new_plate
from tests.issuance.test_cards import rows
from tests.payments.builders import card_number as bank_card_number

ISS = "/api/v1/issuance"


def vehicle(plate: str | None = None, **changes: Any) -> dict[str, Any]:
    body = {
        "plate_colour": 0,
        "plate": plate or new_plate(),
        "kind": "passenger",
        "vin": "LSVAM4187C2184847",
        "engine_number": "EA211 123456",
        "length_mm": 4800,
        "width_mm": 1800,
        "height_mm": 1500,
        "seats": 5,
    }
    body.update(changes)
    return body


def problem(r: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    codes = [body.get("code")] + [e.get("code") for e in body.get("errors", [])]
    assert code in codes, body
    if field is not None:
        fields = [body.get("field")] + [e.get("field") for e in body.get("errors", [])]
        assert field in fields, body
    return body


async def new_outlet(pool: AsyncConnectionPool, *, bank: bool) -> UUID:
    async with pool.connection() as conn:
        made = await staff.create_outlet(
            conn,
            code=f"H-{secrets.token_hex(5)}",
            name="接口网点",
            kind="bank" if bank else "self_operated",
            bank="lanzhou_bank" if bank else None,
        )
    return made.id


async def open_customer(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    r = await client.post(
        "/api/v1/outlet/customers",
        json={"phone": new_phone(), "name": "李四", "id_type": "resident_id", "id_number": new_resident_id()},
        headers=keyed(headers),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def add_stock(
    client: httpx.AsyncClient, headers: dict[str, str], kind: str, card_type: int | None
) -> str:
    first = new_chip_number(ChipKind(kind))
    body: dict[str, Any] = {"kind": kind, "first_number": first, "count": 3}
    if card_type is not None:
        body["card_type"] = card_type
    r = await client.post(f"{ISS}/stock/batches", json=body, headers=keyed(headers))
    assert r.status_code == 201, r.text
    return first


@pytest.mark.parametrize(
    ("bank", "card_type"), [(False, 22), (True, 23)], ids=["self-operated stored-value", "bank account card"]
)
async def test_the_whole_card_issuance_over_http(
    client: httpx.AsyncClient, make_staff: StaffFactory, pool: AsyncConnectionPool, bank: bool, card_type: int
) -> None:
    outlet_id = await new_outlet(pool, bank=bank)
    supervisor = await make_staff(Role.OUTLET_SUPERVISOR, outlet_id) if not bank else None
    operator = await make_staff(Role.BANK_OPERATOR if bank else Role.OUTLET_OPERATOR, outlet_id)
    keeper = supervisor or await make_staff(Role.OUTLET_SUPERVISOR, await new_outlet(pool, bank=False))
    if bank:  # the bank outlet's stock is received by a supervisor elsewhere and moved in
        first = await add_stock(client, keeper, "card", card_type)
        moved = await client.post(
            f"{ISS}/stock/moves",
            json={"kind": "card", "numbers": [first], "to_outlet_id": str(outlet_id)},
            headers=keyed(keeper),
        )
        assert moved.status_code == 200, moved.text
    else:
        first = await add_stock(client, keeper, "card", card_type)
    listed = await client.get(f"{ISS}/stock", params={"kind": "card"}, headers=operator)
    assert first in [c["number"] for c in listed.json()["items"]]

    customer_id = await open_customer(client, operator)
    plate = new_plate()
    body: dict[str, Any] = {"customer_id": customer_id, "vehicle": vehicle(plate), "card_type": card_type}
    typed = bank_card_number("622202") if bank else None
    if typed:
        body |= {"bank_card_number": typed, "bank_card_confirm": typed}
    created = await client.post(f"{ISS}/applications", json=body, headers=keyed(operator))
    assert created.status_code == 201, created.text
    application = created.json()
    assert application["vehicle"]["plate"] == plate and application["vehicle"]["vehicle_class"] == 1
    found = await client.get(
        f"{ISS}/applications", params={"plate": plate, "plate_colour": 0}, headers=operator
    )
    assert [a["id"] for a in found.json()["items"]] == [application["id"]]

    put = await client.put(f"{ISS}/desk/card", json={"number": first}, headers=operator)
    assert put.status_code == 200 and put.json()["card"] == first, put.text
    read = await client.post(
        f"{ISS}/applications/{application['id']}/card/read", json={"mode": "new"}, headers=operator
    )
    assert read.status_code == 200, read.text
    assert (read.json()["card_number"], read.json()["card_type"]) == (first, card_type)
    assert read.json()["issuance"]["retries_left"] == 2

    register: dict[str, Any] = {"card_number": first, "mode": "new"}
    if typed:
        register |= {"bank_card_number": typed, "bank_card_confirm": typed}
    done = await client.post(
        f"{ISS}/applications/{application['id']}/card/register", json=register, headers=keyed(operator)
    )
    assert done.status_code == 200, done.text
    assert done.json()["card"]["status"] == "issued" and done.json()["card"]["vehicle"] == f"{plate}_0"
    assert done.json()["application"]["status"] == "card_issued"
    chip = await client.get(f"{ISS}/chips/card/{first}", headers=operator)
    assert [h["to_status"] for h in chip.json()["history"]][-1] == "issued"


async def test_bad_vehicle_input_is_refused_naming_the_field_and_nothing_is_written(
    client: httpx.AsyncClient, make_staff: StaffFactory, pool: AsyncConnectionPool
) -> None:
    operator = await make_staff(Role.OUTLET_OPERATOR, await new_outlet(pool, bank=False))
    customer_id = await open_customer(client, operator)
    cases = [
        (vehicle("沪A1234"), "vehicle.plate"),
        (vehicle("XA12345"), "vehicle.plate"),
        (vehicle(vin="LSVAM4186C2184847"), "vehicle.vin"),
        (vehicle(plate_colour=4), "vehicle.plate"),  # a new-energy colour needs a new-energy serial
        (vehicle(kind="truck"), "vehicle"),  # a truck without axles cannot be classed
    ]
    for bad, field in cases:
        r = await client.post(
            f"{ISS}/applications",
            json={"customer_id": customer_id, "vehicle": bad, "card_type": 22},
            headers=keyed(operator),
        )
        body = problem(r, 422, r.json().get("errors", [{}])[0].get("code", ""), field)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in r.text), body
    assert (
        await rows(pool, "SELECT 1 FROM issuance_applications WHERE customer_id = %s", UUID(customer_id))
        == []
    )


async def test_a_self_operated_outlet_types_no_bank_card_and_a_bank_outlet_must(
    client: httpx.AsyncClient, make_staff: StaffFactory, pool: AsyncConnectionPool
) -> None:
    own = await make_staff(Role.OUTLET_OPERATOR, await new_outlet(pool, bank=False))
    teller = await make_staff(Role.BANK_OPERATOR, await new_outlet(pool, bank=True))
    customer_id = await open_customer(client, own)
    typed = bank_card_number("622202")
    r = await client.post(
        f"{ISS}/applications",
        json={
            "customer_id": customer_id,
            "vehicle": vehicle(),
            "card_type": 22,
            "bank_card_number": typed,
            "bank_card_confirm": typed,
        },
        headers=keyed(own),
    )
    problem(r, 422, "bank_card_not_at_self_operated", "bank_card_number")
    r = await client.post(
        f"{ISS}/applications",
        json={"customer_id": customer_id, "vehicle": vehicle(), "card_type": 23},
        headers=keyed(teller),
    )
    problem(r, 422, "bank_card_required", "bank_card_number")
    r = await client.post(
        f"{ISS}/applications",
        json={
            "customer_id": customer_id,
            "vehicle": vehicle(),
            "card_type": 23,
            "bank_card_number": typed,
            "bank_card_confirm": mistyped(typed),
        },
        headers=keyed(teller),
    )
    assert r.status_code == 422, r.text


async def test_another_outlets_application_and_stock_answer_404(
    client: httpx.AsyncClient, make_staff: StaffFactory, pool: AsyncConnectionPool
) -> None:
    outlet_a, outlet_b = await new_outlet(pool, bank=False), await new_outlet(pool, bank=False)
    operator_a, operator_b = (
        await make_staff(Role.OUTLET_OPERATOR, outlet_a),
        await make_staff(Role.OUTLET_OPERATOR, outlet_b),
    )
    keeper_a = await make_staff(Role.OUTLET_SUPERVISOR, outlet_a)
    first = await add_stock(client, keeper_a, "tag", None)
    customer_id = await open_customer(client, operator_a)
    made = await client.post(
        f"{ISS}/applications",
        json={"customer_id": customer_id, "vehicle": vehicle(), "card_type": 22},
        headers=keyed(operator_a),
    )
    application_id = made.json()["id"]
    problem(
        await client.get(f"{ISS}/applications/{application_id}", headers=operator_b),
        404,
        "application_not_found",
    )
    problem(
        await client.post(f"{ISS}/applications/{application_id}/cancel", headers=operator_b),
        404,
        "application_not_found",
    )
    problem(await client.get(f"{ISS}/chips/tag/{first}", headers=operator_b), 404, "chip_not_found")
    moved = await client.post(
        f"{ISS}/stock/moves",
        json={"kind": "tag", "numbers": [first], "to_outlet_id": str(outlet_b)},
        headers=keyed(await make_staff(Role.OUTLET_SUPERVISOR, outlet_b)),
    )
    problem(moved, 404, "chip_not_found", "numbers")
    assert (await client.get(f"{ISS}/chips/tag/{first}", headers=operator_a)).json()["outlet_id"] == str(
        outlet_a
    )


async def test_stock_numbers_are_checked_and_never_used_twice(
    client: httpx.AsyncClient, make_staff: StaffFactory, pool: AsyncConnectionPool
) -> None:
    keeper = await make_staff(Role.OUTLET_SUPERVISOR, await new_outlet(pool, bank=False))
    first = await add_stock(client, keeper, "card", 22)
    again = await client.post(
        f"{ISS}/stock/batches",
        json={"kind": "card", "card_type": 22, "first_number": first, "count": 1},
        headers=keyed(keeper),
    )
    problem(again, 409, "stock_number_taken", "first_number")
    assert first in again.json()["title"] and again.json()["number"] == first
    no_type = await client.post(
        f"{ISS}/stock/batches",
        json={"kind": "card", "first_number": new_chip_number(ChipKind.CARD), "count": 1},
        headers=keyed(keeper),
    )
    problem(no_type, 422, "stock_card_type_required", "card_type")
    foreign = await client.post(
        f"{ISS}/stock/batches",
        json={"kind": "tag", "first_number": "1101000000000001", "count": 1},
        headers=keyed(keeper),
    )
    problem(foreign, 422, "stock_network", "first_number")
    summary = await client.get(f"{ISS}/stock/summary", headers=keeper)
    assert {"kind": "card", "card_type": 22, "status": "in_stock", "count": 3} in summary.json()
