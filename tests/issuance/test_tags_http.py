"""Tag issuance (标签办理) and activation (标签激活) over HTTP with the emulator: stock through the API, card
and tag put on the operator's desk through the desk routes, the whole issuance and activation, the seed's
rules answered in Chinese and English, and the anti-tamper switch pressed through its desk route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.identity.authz import Role
from etcwallet.issuance.chip.desk import PcscDesks
from etcwallet.issuance.context import IssuanceContext
from etcwallet.issuance.types import ChipKind
from etcwallet.ledger.service import Ledger
from tests.idempotency_keys import keyed
from tests.issuance.builders import Counter, counter, new_chip_number, new_plate

ISS = "/api/v1/issuance"
EN = {"Accept-Language": "en"}


@dataclass
class Desk:
    """An outlet's supervisor at the counter (they hold issuance.operate and issuance.stock) over HTTP."""

    client: httpx.AsyncClient
    headers: dict[str, str]
    counter: Counter

    async def post(self, path: str, body: Any = None, *, key: bool = False, **more: str) -> httpx.Response:
        headers = {**(keyed(self.headers) if key else self.headers), **more}
        return await self.client.post(f"{ISS}{path}", json=body if body is not None else {}, headers=headers)

    async def stock(self, kind: ChipKind) -> str:
        first = new_chip_number(kind)
        body: dict[str, Any] = {"kind": kind.value, "first_number": first, "count": 1}
        if kind is ChipKind.CARD:
            body["card_type"] = 22
        answer = await self.post("/stock/batches", body, key=True)
        assert answer.status_code == 201, answer.text
        return first

    async def put_card(self, number: str) -> None:
        answer = await self.client.put(f"{ISS}/desk/card", json={"number": number}, headers=self.headers)
        assert answer.status_code == 200, answer.text

    async def put_tag(self, number: str, *, alone: bool = True) -> None:
        answer = await self.post("/desk/tags", {"number": number, "alone": alone})
        assert answer.status_code == 200, answer.text

    async def issue_card(self) -> tuple[str, str]:
        """An application (a new car) with its card issued and still in the slot: (application id, card)."""
        card = await self.stock(ChipKind.CARD)
        vehicle = {
            "plate_colour": 0,
            "plate": new_plate(),
            "kind": "passenger",
            "vin": "LSVAM4187C2184847",
            "engine_number": "EA211-123456",
            "length_mm": 4800,
            "width_mm": 1800,
            "height_mm": 1500,
            "seats": 5,
        }
        body = {"customer_id": str(self.counter.customer_id), "vehicle": vehicle, "card_type": 22}
        created = await self.post("/applications", body, key=True)
        assert created.status_code == 201, created.text
        application = created.json()["id"]
        await self.put_card(card)
        assert (await self.post(f"/applications/{application}/card/read")).status_code == 200
        registered = await self.post(
            f"/applications/{application}/card/register", {"card_number": card}, key=True
        )
        assert registered.status_code == 200, registered.text
        return application, card


DeskFactory = Callable[[], Awaitable[Desk]]


@pytest.fixture
def make_desk(
    client: httpx.AsyncClient,
    make_staff: Callable[..., Awaitable[dict[str, str]]],
    pool: AsyncConnectionPool,
    keys: Keys,
    ledger: Ledger,
    settings: Settings,
    tmp_path: Path,
) -> DeskFactory:
    async def make() -> Desk:
        place = await counter(pool, keys, ledger, settings, tmp_path)  # an outlet and a customer
        headers = await make_staff(Role.OUTLET_SUPERVISOR, place.outlet.id)
        return Desk(client, headers, place)

    return make


@pytest.fixture
async def desk(make_desk: DeskFactory) -> Desk:
    return await make_desk()


def problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == code, body
    return body


async def test_a_tag_is_issued_and_activated_over_http(desk: Desk) -> None:
    application, card = await desk.issue_card()
    tag = await desk.stock(ChipKind.TAG)
    await desk.put_tag(tag)

    read = await desk.post(f"/applications/{application}/tag/read-card")
    assert read.status_code == 200, read.text
    shown = read.json()
    assert shown["card_number"] == card and shown["card_type"] == 22 and shown["vehicle_class"] == 1
    assert shown["plate_colour_name"]["zh"] == "蓝" and shown["issuance"]["can_register"] is False

    entered = await desk.post(f"/applications/{application}/tag/read", {"sn": tag, "sn_confirm": tag})
    assert entered.status_code == 200, entered.text
    assert entered.json()["issuance"] == {
        "status": "tag_read",
        "mode": "new",
        "obu_number": tag,
        "attempts": 0,
        "last_error": None,
        "can_register": True,
    }

    registered = await desk.post(f"/applications/{application}/tag/register", key=True)
    assert registered.status_code == 200, registered.text
    body = registered.json()
    assert body["tag"]["status"] == "issued" and body["application"]["status"] == "tag_issued"
    assert body["tag"]["vehicle"] == f"{shown['plate']}_0"

    checked = await desk.post("/tags/activation/read")
    assert checked.status_code == 200, checked.text
    seen = checked.json()
    assert seen["agree"] is True and seen["differs"] == []
    assert seen["card"]["card_number"] == card and seen["tag"]["obu_number"] == tag
    assert seen["tag"]["plate"] == shown["plate"] and seen["tag"]["activated"] is False

    refused = await desk.post("/tags/activate", {"obu_number": tag}, key=True)
    assert problem(refused, 409, "tag_switch_released")["title"] == "请将标签安装在车上并按下防拆按钮"
    refused_en = await desk.post("/tags/activate", {"obu_number": tag}, key=True, **EN)
    assert "anti-tamper button" in problem(refused_en, 409, "tag_switch_released")["title"]

    pressed = await desk.post("/desk/tags/switch", {"pressed": True})
    assert pressed.json() == {"obu_number": tag, "pressed": True, "activated": False}
    activated = await desk.post("/tags/activate", {"obu_number": tag}, key=True)
    assert activated.status_code == 200, activated.text
    assert activated.json()["tag"]["status"] == "active" and activated.json()["check"]["tag"]["activated"]
    again = await desk.post("/tags/activate", {"obu_number": tag}, key=True)  # 标签激活操作可多次进行
    assert again.status_code == 200

    released = await desk.post("/desk/tags/switch", {"pressed": False})
    assert released.json() == {"obu_number": tag, "pressed": False, "activated": False}


async def test_the_seed_rules_answer_in_both_languages_and_write_nothing(desk: Desk) -> None:
    open_application = await desk.post(
        "/applications",
        {
            "customer_id": str(desk.counter.customer_id),
            "vehicle": {
                "plate_colour": 0,
                "plate": new_plate(),
                "kind": "passenger",
                "vin": "LSVAM4187C2184847",
                "engine_number": "EA211-123456",
                "length_mm": 4800,
                "width_mm": 1800,
                "height_mm": 1500,
                "seats": 5,
            },
            "card_type": 22,
        },
        key=True,
    )
    no_card = await desk.post(f"/applications/{open_application.json()['id']}/tag/read-card")
    assert "陇通卡" in problem(no_card, 409, "tag_card_not_issued")["title"]

    application, _card = await desk.issue_card()
    tag = await desk.stock(ChipKind.TAG)
    await desk.put_tag(tag)
    early = await desk.post(f"/applications/{application}/tag/register", key=True)
    assert "读卡成功之前不显示注册按钮" in problem(early, 409, "tag_card_not_read")["title"]
    early_en = await desk.post(f"/applications/{application}/tag/register", key=True, **EN)
    assert "read the card first" in problem(early_en, 409, "tag_card_not_read")["title"]

    await desk.post(f"/applications/{application}/tag/read-card")
    typo = tag[:-1] + ("1" if tag[-1] != "1" else "2")
    mistyped = await desk.post(f"/applications/{application}/tag/read", {"sn": tag, "sn_confirm": typo})
    assert problem(mistyped, 422, "tag_sn_mismatch")["field"] == "sn_confirm"
    short = await desk.post(f"/applications/{application}/tag/read", {"sn": "6201", "sn_confirm": "6201"})
    assert short.status_code == 422

    await desk.post(f"/applications/{application}/tag/read", {"sn": tag, "sn_confirm": tag})
    stranger = await desk.stock(ChipKind.TAG)
    await desk.put_tag(stranger, alone=False)  # a second tag nearer the antenna
    changed = await desk.post(f"/applications/{application}/tag/register", key=True)
    body = problem(changed, 409, "tag_changed")
    assert stranger in body["title"] and tag in body["title"]
    changed_en = await desk.post(f"/applications/{application}/tag/register", key=True, **EN)
    assert "not the tag read first" in problem(changed_en, 409, "tag_changed")["title"]
    chip = await desk.client.get(f"{ISS}/chips/tag/{tag}", headers=desk.headers)
    assert chip.json()["status"] == "in_stock"


async def test_another_outlets_application_answers_404_and_its_tag_is_refused(
    desk: Desk, make_desk: DeskFactory
) -> None:
    application, _card = await desk.issue_card()
    other = await make_desk()
    hidden = await other.post(f"/applications/{application}/tag/read-card")
    problem(hidden, 404, "application_not_found")
    theirs = await other.stock(ChipKind.TAG)
    await desk.post(f"/applications/{application}/tag/read-card")
    await desk.put_tag(theirs)
    refused = await desk.post(f"/applications/{application}/tag/read", {"sn": theirs, "sn_confirm": theirs})
    problem(refused, 409, "tag_not_in_outlet_stock")


async def test_the_switch_route_needs_a_tag_in_the_field_and_the_emulator(
    desk: Desk, runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = await desk.post("/desk/tags/switch", {"pressed": True})
    problem(empty, 409, "no_tag_in_field")
    context: IssuanceContext = runtime.issuance
    monkeypatch.setattr(context, "desks", PcscDesks(None, None))
    real = await desk.post("/desk/tags/switch", {"pressed": True})
    problem(real, 409, "emulator_only")


async def test_a_tag_of_another_vehicle_is_refused_at_activation_naming_the_field(desk: Desk) -> None:
    issued: list[tuple[str, str]] = []
    for _ in range(2):
        application, card = await desk.issue_card()
        tag = await desk.stock(ChipKind.TAG)
        await desk.put_tag(tag)
        await desk.post(f"/applications/{application}/tag/read-card")
        await desk.post(f"/applications/{application}/tag/read", {"sn": tag, "sn_confirm": tag})
        assert (await desk.post(f"/applications/{application}/tag/register", key=True)).status_code == 200
        issued.append((card, tag))
    (first_card, _), (_, second_tag) = issued
    await desk.put_card(first_card)
    await desk.put_tag(second_tag)
    await desk.post("/desk/tags/switch", {"pressed": True})
    seen = (await desk.post("/tags/activation/read")).json()
    assert seen["agree"] is False and seen["differs"] == ["plate"]
    refused = await desk.post("/tags/activate", {"obu_number": second_tag}, key=True)
    body = problem(refused, 409, "tag_card_differ")
    assert body["field"] == "plate" and "车牌号" in body["title"]
    chip = await desk.client.get(f"{ISS}/chips/tag/{second_tag}", headers=desk.headers)
    assert chip.json()["status"] == "issued"
