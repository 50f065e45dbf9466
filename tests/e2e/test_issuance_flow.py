"""The whole ETC issuance of seed 001 over HTTP with the emulator, as two outlets do it: a stored-value
vehicle at a self-operated outlet and an account-card vehicle at a bank outlet. Stock comes in through
the API, the customer is opened at the counter from real-name data, and every step after is the
operator's: application, 读卡 and 注册 of the card, 标签办理, 标签激活 with the switch pressed, 卡签检测,
and 用户账号查询 from another outlet."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.identity.authz import Role
from etcwallet.identity.staff import service as staff
from etcwallet.issuance.types import ChipKind
from tests.conftest import StaffFactory
from tests.idempotency_keys import keyed
from tests.identity.customer_helpers import new_phone, new_resident_id
from tests.issuance.builders import new_chip_number, new_plate
from tests.payments.builders import card_number as bank_card_number

ISS = "/api/v1/issuance"


class Counter:
    """One operator at an outlet, over HTTP."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    async def call(
        self, method: str, path: str, body: Any = None, *, key: bool = False, expect: int = 200
    ) -> Any:
        headers = keyed(self.headers) if key else self.headers
        answer = await self.client.request(method, path, json=body, headers=headers)
        assert answer.status_code == expect, f"{method} {path}: {answer.text}"
        return answer.json()


async def outlet(pool: AsyncConnectionPool, *, bank: bool) -> Any:
    async with pool.connection() as conn:
        return await staff.create_outlet(
            conn,
            code=f"E-{secrets.token_hex(5)}",
            name="全流程网点",
            kind="bank" if bank else "self_operated",
            bank="gansu_bank" if bank else None,
        )


@pytest.mark.parametrize(
    ("bank", "card_type"),
    [(False, 22), (True, 23)],
    ids=["self-operated, stored-value", "bank, account card"],
)
async def test_a_vehicle_is_issued_its_card_and_tag_and_the_tag_activated_on_the_car(
    client: httpx.AsyncClient, make_staff: StaffFactory, pool: AsyncConnectionPool, bank: bool, card_type: int
) -> None:
    here = await outlet(pool, bank=bank)
    keeper = Counter(client, await make_staff(Role.OUTLET_SUPERVISOR, (await outlet(pool, bank=False)).id))
    desk = Counter(client, await make_staff(Role.BANK_OPERATOR if bank else Role.OUTLET_OPERATOR, here.id))
    elsewhere = Counter(client, await make_staff(Role.OUTLET_OPERATOR, (await outlet(pool, bank=False)).id))

    # Stock: a supervisor receives a card and a tag and sends them to the outlet.
    card, tag = new_chip_number(ChipKind.CARD), new_chip_number(ChipKind.TAG)
    await keeper.call(
        "POST",
        f"{ISS}/stock/batches",
        {"kind": "card", "card_type": card_type, "first_number": card, "count": 1},
        key=True,
        expect=201,
    )
    await keeper.call(
        "POST", f"{ISS}/stock/batches", {"kind": "tag", "first_number": tag, "count": 1}, key=True, expect=201
    )
    for kind, number in (("card", card), ("tag", tag)):
        await keeper.call(
            "POST",
            f"{ISS}/stock/moves",
            {"kind": kind, "numbers": [number], "to_outlet_id": str(here.id)},
            key=True,
        )

    # The customer at the counter, and the vehicle's application.
    phone = new_phone()
    customer = await desk.call(
        "POST", "/api/v1/outlet/customers",
        {"phone": phone, "name": "王五", "id_type": "resident_id", "id_number": new_resident_id()},
        key=True, expect=201,
    )  # fmt: skip
    plate = new_plate()
    vehicle = {
        "plate_colour": 0, "plate": plate, "kind": "passenger", "vin": "LSVAM4187C2184847",
        "engine_number": "EA211-123456", "length_mm": 4800, "width_mm": 1800, "height_mm": 1500, "seats": 5,
    }  # fmt: skip
    typed = bank_card_number("622202") if bank else None
    application_body: dict[str, Any] = {
        "customer_id": customer["id"],
        "vehicle": vehicle,
        "card_type": card_type,
    }
    if typed:
        application_body |= {"bank_card_number": typed, "bank_card_confirm": typed}
    application = (await desk.call("POST", f"{ISS}/applications", application_body, key=True, expect=201))[
        "id"
    ]

    # 用户卡办理
    await desk.call("PUT", f"{ISS}/desk/card", {"number": card})
    await desk.call("POST", f"{ISS}/applications/{application}/card/read", {"mode": "new"})
    register: dict[str, Any] = {"card_number": card, "mode": "new"}
    if typed:
        register |= {"bank_card_number": typed, "bank_card_confirm": typed}
    issued = await desk.call("POST", f"{ISS}/applications/{application}/card/register", register, key=True)
    assert issued["card"]["status"] == "issued"

    # 标签办理
    await desk.call("POST", f"{ISS}/desk/tags", {"number": tag})
    await desk.call("POST", f"{ISS}/applications/{application}/tag/read-card")
    await desk.call(
        "POST", f"{ISS}/applications/{application}/tag/read", {"sn": tag, "sn_confirm": tag, "mode": "new"}
    )
    tagged = await desk.call("POST", f"{ISS}/applications/{application}/tag/register", key=True)
    assert tagged["tag"]["status"] == "issued" and tagged["application"]["status"] == "tag_issued"

    # 标签激活, once the tag is on the windscreen
    await desk.call("POST", f"{ISS}/desk/tags/switch", {"pressed": True})
    activated = await desk.call("POST", f"{ISS}/tags/activate", {"obu_number": tag}, key=True)
    assert activated["tag"]["status"] == "active"

    # 卡签检测
    card_view = await desk.call("POST", f"{ISS}/detection/card")
    assert card_view["verdict"] in ("issued", "active")
    tag_view = await desk.call("POST", f"{ISS}/detection/tag")
    assert tag_view["verdict"] == "active"

    # 用户账号查询, from another outlet: the customer is nobody's outlet's
    found = await elsewhere.call("POST", f"{ISS}/account-query", {"phone": phone})
    assert {(c["kind"], c["number"], c["status"]) for c in found["chips"]} == {
        ("card", card, "issued"),
        ("tag", tag, "active"),
    }
    assert phone not in str(found)
    purposes = {a["purpose"] for a in found["accounts"] if a.get("instance") == card}
    assert purposes == {"card_purse" if card_type == 22 else "account_card_receivable"}
