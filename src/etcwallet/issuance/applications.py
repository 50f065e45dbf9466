"""Vehicle applications (申请): created at an outlet by an operator, the only source issuance accepts.

Seed 001: "其数据来源必须是通过ETC移动发行手持机申请，其他数据来源现不支持办理". An application names the
customer (found or created at the counter through identity), the vehicle (checked by
:mod:`etcwallet.issuance.vehicles` in the request schema), the card type wanted and, at a bank outlet, the
bank card to bind (bound through ``payments``, typed twice). A vehicle has at most one open application
and, while it holds a live card, gets no application for a new one (一车一卡一签): the index on open
applications and the check on live chips refuse the second.

Each outlet sees only its own applications: another outlet's answers 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, errors

from etcwallet.core.crypto import Keys
from etcwallet.identity.customers import service as customers
from etcwallet.identity.customers.types import OutletOperator
from etcwallet.identity.staff import service as staff
from etcwallet.issuance import store
from etcwallet.issuance.codes import CardType, PlateColour
from etcwallet.issuance.errors import IssuanceError
from etcwallet.issuance.types import (
    Application,
    ApplicationStatus,
    ChipKind,
    IssuanceAction,
    Vehicle,
)
from etcwallet.payments import service as payments
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

Conn = AsyncConnection[Any]


def application_detail(application: Application) -> dict[str, Any]:
    """What the audit records of an application (no personal data: the customer by id)."""
    vehicle = application.vehicle
    return {
        "customer_id": str(application.customer_id),
        "vehicle": vehicle.key,
        "vehicle_class": int(vehicle.vehicle_class),
        "card_type": int(application.card_type),
        "bank_card_id": None if application.bank_card_id is None else str(application.bank_card_id),
    }


async def _bank_card_for(
    uow: UnitOfWork,
    *,
    keys: Keys,
    operator: OutletOperator,
    customer_id: UUID,
    bank_card: tuple[str, str] | None,
    actor: Actor,
) -> UUID | None:
    """Bind the bank card typed twice at a bank outlet (none at a self-operated one) and answer its id."""
    async with uow.pool.connection() as conn:
        outlet = await staff.find_outlet(conn, outlet_id=operator.outlet_id)
    if outlet is None:
        raise IssuanceError("outlet_not_found", field="outlet_id")
    if outlet.kind != "bank":
        if bank_card is not None:
            raise IssuanceError("bank_card_not_at_self_operated")
        return None
    if bank_card is None:
        raise IssuanceError("bank_card_required")
    number, confirm = bank_card
    card = await payments.bind_card(
        uow,
        keys=keys,
        customer_id=customer_id,
        card_number=number,
        confirm_number=confirm,
        actor=actor,
        bound_at_outlet=operator.outlet_id,
    )
    return card.id


async def create_application(
    uow: UnitOfWork,
    *,
    keys: Keys,
    operator: OutletOperator,
    customer_id: UUID,
    vehicle: Vehicle,
    card_type: CardType,
    bank_card: tuple[str, str] | None,
    actor: Actor,
) -> Application:
    """Create an application at the operator's outlet for a customer's vehicle.

    Refused with nothing written: an unknown or closed customer (identity's answer), a bank outlet with no
    bank card or a self-operated one with one, a vehicle with an open application (409
    ``application_open_exists``) or with a live card (409 ``vehicle_has_live_card``). At a bank outlet the
    bank card is bound first (its own unit: binding it again later is a no-op)."""
    async with uow.pool.connection() as conn:
        await customers.get_customer_or_raise(conn, customer_id=customer_id)
    bank_card_id = await _bank_card_for(
        uow, keys=keys, operator=operator, customer_id=customer_id, bank_card=bank_card, actor=actor
    )

    async def step(unit: Unit) -> Application:
        await customers.hold_open_customer(unit.conn, customer_id=customer_id)
        await _refuse_taken_vehicle(unit.conn, vehicle.plate, vehicle.plate_colour)
        application = Application(
            id=uuid.uuid4(),
            outlet_id=operator.outlet_id,
            operator_id=operator.staff_id,
            customer_id=customer_id,
            vehicle=vehicle,
            card_type=card_type,
            bank_card_id=bank_card_id,
            status=ApplicationStatus.OPEN,
            created_at=unit.now,
            updated_at=unit.now,
        )
        try:
            async with unit.conn.transaction():
                await store.insert_application(unit.conn, application)
        except errors.UniqueViolation:
            raise IssuanceError("application_open_exists") from None
        target = ("issuance_application", str(application.id))
        unit.audit(
            actor.event(
                IssuanceAction.APPLICATION_CREATE, target=target, detail=application_detail(application)
            )
        )
        return application

    return await uow.run(
        step,
        refusal=lambda error: actor.refused(
            IssuanceAction.APPLICATION_CREATE,
            error.code,
            target=("customer", str(customer_id)),
            detail={"vehicle": vehicle.key},
        ),
    )


async def _refuse_taken_vehicle(conn: Conn, plate: str, plate_colour: PlateColour) -> None:
    if await store.open_application_of_vehicle(conn, plate, plate_colour) is not None:
        raise IssuanceError("application_open_exists")
    live = await store.live_chips_of_vehicle(conn, plate, plate_colour)
    if any(chip.kind is ChipKind.CARD for chip in live):
        raise IssuanceError("vehicle_has_live_card")


async def cancel_application(
    uow: UnitOfWork, *, operator: OutletOperator, application_id: UUID, actor: Actor
) -> Application:
    """Cancel an open application of the operator's outlet (a card or tag issued for it stays as it is);
    cancelling it again answers it as it is; a completed one is 409 ``application_not_open``."""

    async def step(unit: Unit) -> Application:
        application = await store.lock_application(unit.conn, application_id, outlet_id=operator.outlet_id)
        if application.status is ApplicationStatus.CANCELLED:
            return application
        if application.status is not ApplicationStatus.OPEN:
            raise IssuanceError("application_not_open")
        await store.set_application_status(
            unit.conn, application_id, ApplicationStatus.CANCELLED, now=unit.now
        )
        target = ("issuance_application", str(application_id))
        unit.audit(
            actor.event(
                IssuanceAction.APPLICATION_CANCEL, target=target, detail=application_detail(application)
            )
        )
        return await store.get_application_or_raise(unit.conn, application_id, outlet_id=operator.outlet_id)

    return await uow.run(step)


async def get_application_or_raise(
    conn: Conn, *, operator: OutletOperator, application_id: UUID
) -> Application:
    """One of the operator's outlet's applications; another outlet's is a 404."""
    return await store.get_application_or_raise(conn, application_id, outlet_id=operator.outlet_id)


async def list_applications(
    conn: Conn,
    *,
    operator: OutletOperator,
    plate: str | None = None,
    plate_colour: PlateColour | None = None,
    status: ApplicationStatus | None = None,
    before: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> list[Application]:
    """The outlet's applications, newest first: the list an operator picks a vehicle from, or finds one
    in by plate and colour."""
    return await store.list_applications(
        conn,
        outlet_id=operator.outlet_id,
        plate=plate,
        plate_colour=plate_colour,
        status=status,
        before=before,
        limit=limit,
    )
