"""A tag's life across the slices: issued and activated (tags.py), deregistered (detection.py), and a new
tag issued on the same application, with the vehicle holding one live tag throughout."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.issuance import detection
from etcwallet.issuance.detection import DeregistrationReason
from etcwallet.issuance.types import ApplicationStatus, ChipKind
from etcwallet.ledger.service import Ledger
from tests.issuance.builders import Counter, counter
from tests.issuance.test_cards import refused, rows
from tests.issuance.test_tags import activate, card_read, issue_tag, register, tag_read


@pytest.fixture
async def desk(
    pool: AsyncConnectionPool, keys: Keys, ledger: Ledger, settings: Settings, tmp_path: Path
) -> Counter:
    return await counter(pool, keys, ledger, settings, tmp_path)


async def test_a_deregistered_tag_frees_the_vehicle_for_a_new_tag_on_the_same_application(
    desk: Counter, pool: AsyncConnectionPool
) -> None:
    first = await issue_tag(desk)
    desk.tag(first.tag).press_switch()
    await activate(desk)
    (replacement,) = await desk.stock(ChipKind.TAG)
    desk.desk[1].insert(replacement)
    await card_read(desk, first.application)
    await refused(tag_read(desk, first.application, replacement), "vehicle_has_live_tag")

    await detection.deregister_tag(
        desk.uow,
        operator=desk.operator,
        obu_number=first.tag,
        reason=DeregistrationReason.TAG_DAMAGED,
        note="标签进水",
        actor=desk.actor,
    )
    await card_read(desk, first.application)
    await tag_read(desk, first.application, replacement)
    registered = await register(desk, first.application)
    assert (
        registered.chip.number == replacement
        and registered.application.status is ApplicationStatus.TAG_ISSUED
    )
    live = await rows(
        pool,
        "SELECT number, status FROM issuance_chips WHERE kind = 'tag' AND plate = %s ORDER BY status",
        first.vehicle.plate,
    )
    assert live == [(first.tag, "deregistered"), (replacement, "issued")]
    statuses = await rows(
        pool,
        "SELECT status FROM issuance_tag_issuances WHERE application_id = %s ORDER BY created_at",
        first.application.id,
    )
    assert [s for (s,) in statuses] == ["deregistered", "registered"]
