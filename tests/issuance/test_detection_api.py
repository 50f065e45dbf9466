"""Detection over HTTP with the runtime's emulated desks: card detection and activation, loss and
cancellation with Idempotency-Key, cancellation refused to an operator without ``issuance.supervise``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.identity.authz import Role
from etcwallet.ledger.service import Ledger
from tests.conftest import StaffFactory
from tests.issuance.builders import Counter, counter

ISS = "/api/v1/issuance"


@pytest.fixture
async def desk(
    pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path, app: FastAPI
) -> Counter:
    made = await counter(pool, keys, ledger, settings, tmp_path)
    made.context = app.state.runtime.issuance  # the cards it issues are in the drawer the routes use
    return made


def keyed(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": str(uuid.uuid4())}


async def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def test_card_detection_and_activation_over_http(
    desk: Counter, client: httpx.AsyncClient, make_staff: StaffFactory
) -> None:
    _application, number = await desk.issue_card()
    operator = await make_staff(Role.OUTLET_OPERATOR)  # another outlet: customers belong to none
    await ok(await client.put(f"{ISS}/desk/card", json={"number": number}, headers=operator))
    found = await ok(await client.post(f"{ISS}/detection/card", headers=operator))
    assert found["verdict"] == "issued" and found["activation_offered"] is True
    assert found["card"]["card_number"] == number and found["balance"] == 0
    assert found["holder"]["name"] == desk.customer_name[0] + "**"
    assert desk.customer_id_number not in str(found)
    assert found["platform"]["chip"]["status"] == "issued"
    assert found["platform"]["customer_id"] == str(desk.customer_id)

    done = await ok(
        await client.post(
            f"{ISS}/detection/card/activate", json={"card_number": number}, headers=keyed(operator)
        )
    )
    assert done["card"]["status"] == "active" and done["renewal"] is False
    again = await ok(await client.post(f"{ISS}/detection/card", headers=operator))
    assert again["verdict"] == "active" and again["activation_offered"] is False
    refused = await client.post(
        f"{ISS}/detection/card/activate", json={"card_number": number}, headers=keyed(operator)
    )
    assert refused.status_code == 409 and refused.json()["code"] == "card_already_active"


async def test_an_empty_slot_or_field_is_409(client: httpx.AsyncClient, make_staff: StaffFactory) -> None:
    operator = await make_staff(Role.OUTLET_OPERATOR)
    card = await client.post(f"{ISS}/detection/card", headers=operator)
    assert card.status_code == 409 and card.json()["code"] == "no_card_in_reader"
    tag = await client.post(f"{ISS}/detection/tag", headers=operator)
    assert tag.status_code == 409 and tag.json()["code"] == "no_tag_in_field"


async def test_loss_then_cancellation_over_http_idempotent(
    desk: Counter, client: httpx.AsyncClient, make_staff: StaffFactory
) -> None:
    _application, number = await desk.issue_card()
    operator = await make_staff(Role.OUTLET_OPERATOR)
    supervisor = await make_staff(Role.OUTLET_SUPERVISOR)
    loss_headers = keyed(operator)
    lost = await ok(
        await client.post(f"{ISS}/cards/{number}/loss", json={"reason": "遗失"}, headers=loss_headers)
    )
    assert lost["status"] == "lost"
    replay = await ok(
        await client.post(f"{ISS}/cards/{number}/loss", json={"reason": "遗失"}, headers=loss_headers)
    )
    assert replay == lost
    fresh = await client.post(f"{ISS}/cards/{number}/loss", json={"reason": "遗失"}, headers=keyed(operator))
    assert fresh.status_code == 409 and fresh.json()["code"] == "card_not_live"

    forbidden = await client.post(
        f"{ISS}/cards/{number}/cancellation", json={"reason": "客户申请"}, headers=keyed(operator)
    )
    assert forbidden.status_code == 403
    cancel_headers = keyed(supervisor)
    cancelled = await ok(
        await client.post(
            f"{ISS}/cards/{number}/cancellation", json={"reason": "客户申请"}, headers=cancel_headers
        )
    )
    assert cancelled["card"]["status"] == "cancelled" and cancelled["balance"] == 0
    replay = await ok(
        await client.post(
            f"{ISS}/cards/{number}/cancellation", json={"reason": "客户申请"}, headers=cancel_headers
        )
    )
    assert replay == cancelled
    unknown = await client.post(
        f"{ISS}/cards/62010101999999990000/loss", json={"reason": "x"}, headers=keyed(operator)
    )
    assert unknown.status_code == 404


async def test_deregistration_needs_a_known_reason(
    client: httpx.AsyncClient, make_staff: StaffFactory
) -> None:
    operator = await make_staff(Role.OUTLET_OPERATOR)
    bad = await client.post(
        f"{ISS}/tags/6201999999990000/deregistration", json={"reason": "bored"}, headers=keyed(operator)
    )
    assert bad.status_code == 422
    long = await client.post(
        f"{ISS}/tags/6201999999990000/deregistration",
        json={"reason": "other", "note": "长" * 101},
        headers=keyed(operator),
    )
    assert long.status_code == 422
    missing = await client.post(
        f"{ISS}/tags/6201999999990000/deregistration", json={"reason": "info_error"}, headers=keyed(operator)
    )
    assert missing.status_code == 404
