"""Builders of the detection tests: an issued (and an activated) tag written straight to the emulated OBU
with ``obu_host.issue`` and recorded on the platform with the store's own functions, so tag detection and
deregistration are tested before tag issuance (tags.py) exists; and a card whose 0015 dates lie in the past."""

from __future__ import annotations

from datetime import date, timedelta

from etcwallet.issuance import store
from etcwallet.issuance.chip import obu_host
from etcwallet.issuance.chip.files import (
    CardIssueFile,
    ObuNumber,
    ObuSystemFile,
    ObuVehicleFile,
    TamperStatus,
)
from etcwallet.issuance.types import Application, ApplicationStatus, ChipChange, ChipKind, ChipStatus
from tests.issuance.builders import Counter

CONTRACT_TYPE, CONTRACT_VERSION = 1, 0x40


async def issue_tag(desk: Counter, application: Application, *, activate: bool = False) -> str:
    """A tag from the outlet's stock written for the application's vehicle (system and vehicle files) and
    recorded issued (or active, its switch pressed and tamper byte 01), the application ``tag_issued``."""
    (number,) = await desk.stock(ChipKind.TAG)
    vehicle = application.vehicle
    today = date.today()
    system = ObuSystemFile(
        desk.context.issuer.id,
        CONTRACT_TYPE,
        CONTRACT_VERSION,
        ObuNumber.parse(number),
        today,
        desk.context.issuer.expiry_from(today),
        TamperStatus.REMOVED,
    )
    file = ObuVehicleFile(
        vehicle.plate,
        vehicle.plate_colour,
        vehicle.vehicle_class,
        vehicle.user_type,
        vehicle.length_mm,
        vehicle.width_mm,
        vehicle.height_mm,
        0,
        0,
        vehicle.gross_mass_kg or 0,
        vehicle.seats or 0,
        vehicle.vin,
    )
    _card, field = desk.desk
    field.insert(number)
    await obu_host.issue(field, desk.context.keys, system, file, issuer=desk.context.issuer.id)
    status = ChipStatus.ISSUED
    if activate:
        desk.tag(number).press_switch()
        identity = obu_host.obu_identity(desk.context.issuer.id, system.obu_number)
        await obu_host.activate(field, desk.context.keys, identity)
        status = ChipStatus.ACTIVE
    async with desk.pool.connection() as conn, conn.transaction():
        chip = await store.get_chip_or_raise(conn, ChipKind.TAG, number)
        now = chip.updated_at + timedelta(seconds=1)
        owner = (application.id, application.customer_id, vehicle.plate, vehicle.plate_colour)
        await store.update_chip(conn, chip.id, now=now, status=status, owner=owner)
        await store.add_history(
            conn,
            [
                ChipChange(
                    chip.id, chip.status, status, chip.outlet_id, chip.outlet_id, "tag_issued", "test", now
                )
            ],
        )
        await store.set_application_status(conn, application.id, ApplicationStatus.TAG_ISSUED, now=now)
    return number


def age_card(desk: Counter, number: str, *, start: date, expiry: date) -> None:
    """Write 0015's start and expiry dates straight into the emulated card (a card issued long ago)."""
    card = desk.card(number)
    issue = CardIssueFile.from_bytes(card.state.issue_file)
    raw = bytearray(card.state.issue_file)
    raw[20:28] = CardIssueFile(
        issue.issuer,
        issue.card_type,
        issue.card_version,
        issue.card_number,
        start,
        expiry,
        issue.plate,
        issue.user_type,
        issue.plate_colour,
        issue.vehicle_class,
    ).to_bytes()[20:28]
    card.state.issue_file = bytes(raw)
    card.save()
