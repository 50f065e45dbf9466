"""Every SQL statement on issuance's tables, as functions of a connection: the caller owns the transaction.

``get_x`` answers None when there is none, ``get_x_or_raise`` raises the refusal, ``lock_x`` takes rows
``FOR UPDATE`` in id order. Times come from the caller (the unit's clock), never from ``now()`` in SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.issuance.codes import CardType, PlateColour, UserType, VehicleClass
from etcwallet.issuance.errors import IssuanceError
from etcwallet.issuance.types import (
    Application,
    ApplicationStatus,
    CardActivation,
    CardActivationStatus,
    CardIssuance,
    CardIssuanceStatus,
    Chip,
    ChipChange,
    ChipKind,
    ChipStatus,
    IssuanceMode,
    StockBatch,
    TagIssuance,
    TagIssuanceStatus,
    Vehicle,
    VehicleKind,
)

Conn = AsyncConnection[Any]

# --- chips and stock ----------------------------------------------------------------------------------

_CHIP_COLUMNS = (
    "id, kind, number, card_type, batch_id, outlet_id, status, failures, application_id, customer_id, "
    "plate, plate_colour, expires_on, created_at, updated_at"
)


def _chip(row: Any) -> Chip:
    return Chip(
        id=row[0],
        kind=ChipKind(row[1]),
        number=row[2],
        card_type=None if row[3] is None else CardType(row[3]),
        batch_id=row[4],
        outlet_id=row[5],
        status=ChipStatus(row[6]),
        failures=row[7],
        application_id=row[8],
        customer_id=row[9],
        plate=row[10],
        plate_colour=None if row[11] is None else PlateColour(row[11]),
        expires_on=row[12],
        created_at=row[13],
        updated_at=row[14],
    )


async def insert_batch(conn: Conn, batch: StockBatch) -> None:
    """A batch of blank chips coming into an outlet's stock."""
    await conn.execute(
        "INSERT INTO issuance_stock_batches (id, kind, card_type, outlet_id, first_number, count, created_by, "
        "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            batch.id,
            batch.kind.value,
            None if batch.card_type is None else int(batch.card_type),
            batch.outlet_id,
            batch.first_number,
            batch.count,
            batch.created_by,
            batch.created_at,
        ),
    )


async def numbers_taken(conn: Conn, kind: ChipKind, numbers: Sequence[str]) -> list[str]:
    """Which of these numbers a chip of this kind already has, sorted."""
    cur = await conn.execute(
        "SELECT number FROM issuance_chips WHERE kind = %s AND number = ANY(%s) ORDER BY number",
        (kind.value, list(numbers)),
    )
    return [row[0] for row in await cur.fetchall()]


async def copy_stock(
    conn: Conn,
    batch: StockBatch,
    ids_and_numbers: Sequence[tuple[UUID, str]],
    *,
    actor: str,
    progress: Callable[[int], None] | None = None,
) -> None:
    """The batch's chips, in stock at its outlet, and their first history entries, by COPY (a batch of
    10,000 is one round trip per table); ``progress`` hears how many rows went so far."""
    card_type = None if batch.card_type is None else int(batch.card_type)
    async with conn.cursor().copy(
        "COPY issuance_chips (id, kind, number, card_type, batch_id, outlet_id, status, created_at, "
        "updated_at) FROM STDIN"
    ) as copy:
        for done, (chip_id, number) in enumerate(ids_and_numbers, 1):
            await copy.write_row(
                (
                    chip_id,
                    batch.kind.value,
                    number,
                    card_type,
                    batch.id,
                    batch.outlet_id,
                    ChipStatus.IN_STOCK.value,
                    batch.created_at,
                    batch.created_at,
                )
            )
            if progress is not None and done % 500 == 0:
                progress(done)
    async with conn.cursor().copy(
        "COPY issuance_chip_history (chip_id, to_status, to_outlet, reason, actor, at) FROM STDIN"
    ) as copy:
        for chip_id, _number in ids_and_numbers:
            await copy.write_row(
                (chip_id, ChipStatus.IN_STOCK.value, batch.outlet_id, "stock_add", actor, batch.created_at)
            )
    if progress is not None:
        progress(len(ids_and_numbers))


async def get_chip(conn: Conn, kind: ChipKind, number: str) -> Chip | None:
    """The card or tag with this number; None when there is none."""
    cur = await conn.execute(
        f"SELECT {_CHIP_COLUMNS} FROM issuance_chips WHERE kind = %s AND number = %s", (kind.value, number)
    )
    row = await cur.fetchone()
    return None if row is None else _chip(row)


async def get_chip_or_raise(conn: Conn, kind: ChipKind, number: str) -> Chip:
    """The card or tag with this number; 404 ``chip_not_found`` when there is none."""
    chip = await get_chip(conn, kind, number)
    if chip is None:
        raise IssuanceError("chip_not_found")
    return chip


async def lock_chip(conn: Conn, chip_id: UUID) -> Chip:
    """A chip's row, locked for the rest of the transaction."""
    cur = await conn.execute(
        f"SELECT {_CHIP_COLUMNS} FROM issuance_chips WHERE id = %s FOR UPDATE", (chip_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise IssuanceError("chip_not_found")
    return _chip(row)


async def lock_chips_by_number(conn: Conn, kind: ChipKind, numbers: Sequence[str]) -> list[Chip]:
    """The chips with these numbers, locked in id order (missing numbers are simply absent)."""
    cur = await conn.execute(
        f"SELECT {_CHIP_COLUMNS} FROM issuance_chips WHERE kind = %s AND number = ANY(%s) ORDER BY id FOR UPDATE",
        (kind.value, list(numbers)),
    )
    return [_chip(row) for row in await cur.fetchall()]


async def list_chips(
    conn: Conn,
    *,
    outlet_id: UUID | None,
    kind: ChipKind | None,
    status: ChipStatus | None,
    after: str | None,
    limit: int,
) -> list[Chip]:
    """Chips in number order after ``after`` (a keyset cursor), filtered by outlet, kind and status."""
    cur = await conn.execute(
        f"SELECT {_CHIP_COLUMNS} FROM issuance_chips "
        "WHERE (%(outlet)s::uuid IS NULL OR outlet_id = %(outlet)s) "
        "AND (%(kind)s::text IS NULL OR kind = %(kind)s) "
        "AND (%(status)s::text IS NULL OR status = %(status)s) "
        "AND (%(after)s::text IS NULL OR number > %(after)s) "
        "ORDER BY number LIMIT %(limit)s",
        {
            "outlet": outlet_id,
            "kind": None if kind is None else kind.value,
            "status": None if status is None else status.value,
            "after": after,
            "limit": limit,
        },
    )
    return [_chip(row) for row in await cur.fetchall()]


async def count_stock(conn: Conn, outlet_id: UUID) -> dict[tuple[ChipKind, CardType | None, ChipStatus], int]:
    """How many chips of each kind, card type and status an outlet holds."""
    cur = await conn.execute(
        "SELECT kind, card_type, status, count(*) FROM issuance_chips WHERE outlet_id = %s "
        "GROUP BY kind, card_type, status",
        (outlet_id,),
    )
    return {
        (ChipKind(kind), None if card_type is None else CardType(card_type), ChipStatus(status)): count
        for kind, card_type, status, count in await cur.fetchall()
    }


async def move_chips(conn: Conn, chip_ids: Sequence[UUID], *, to_outlet: UUID, now: datetime) -> None:
    """Move chips (already locked) to another outlet."""
    await conn.execute(
        "UPDATE issuance_chips SET outlet_id = %s, updated_at = %s WHERE id = ANY(%s)",
        (to_outlet, now, list(chip_ids)),
    )


async def update_chip(
    conn: Conn,
    chip_id: UUID,
    *,
    now: datetime,
    status: ChipStatus | None = None,
    failures: int | None = None,
    owner: tuple[UUID, UUID, str, PlateColour] | None = None,
    expires_on: date | None = None,
) -> None:
    """Change a locked chip's status, failure count, owner (application, customer, plate, colour) or expiry."""
    sets: list[str] = ["updated_at = %s"]
    params: list[object] = [now]
    if status is not None:
        sets.append("status = %s")
        params.append(status.value)
    if failures is not None:
        sets.append("failures = %s")
        params.append(failures)
    if owner is not None:
        sets.append("application_id = %s, customer_id = %s, plate = %s, plate_colour = %s")
        params += [owner[0], owner[1], owner[2], int(owner[3])]
    if expires_on is not None:
        sets.append("expires_on = %s")
        params.append(expires_on)
    await conn.execute(f"UPDATE issuance_chips SET {', '.join(sets)} WHERE id = %s", (*params, chip_id))


async def add_history(conn: Conn, changes: Sequence[ChipChange]) -> None:
    """Append entries to chips' histories."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO issuance_chip_history (chip_id, from_status, to_status, from_outlet, to_outlet, "
            "reason, actor, at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    c.chip_id,
                    None if c.from_status is None else c.from_status.value,
                    c.to_status.value,
                    c.from_outlet,
                    c.to_outlet,
                    c.reason,
                    c.actor,
                    c.at,
                )
                for c in changes
            ],
        )


async def chip_history(conn: Conn, chip_id: UUID) -> list[ChipChange]:
    """A chip's history, oldest first."""
    cur = await conn.execute(
        "SELECT chip_id, from_status, to_status, from_outlet, to_outlet, reason, actor, at "
        "FROM issuance_chip_history WHERE chip_id = %s ORDER BY id",
        (chip_id,),
    )
    return [
        ChipChange(
            chip_id=row[0],
            from_status=None if row[1] is None else ChipStatus(row[1]),
            to_status=ChipStatus(row[2]),
            from_outlet=row[3],
            to_outlet=row[4],
            reason=row[5],
            actor=row[6],
            at=row[7],
        )
        for row in await cur.fetchall()
    ]


async def live_chips_of_vehicle(conn: Conn, plate: str, plate_colour: PlateColour) -> list[Chip]:
    """The vehicle's live card and tag (none, one or both)."""
    cur = await conn.execute(
        f"SELECT {_CHIP_COLUMNS} FROM issuance_chips WHERE plate = %s AND plate_colour = %s "
        "AND status IN ('issued', 'active') ORDER BY kind",
        (plate, int(plate_colour)),
    )
    return [_chip(row) for row in await cur.fetchall()]


async def chips_of_customer(conn: Conn, customer_id: UUID) -> list[Chip]:
    """Every card and tag ever issued to a customer, newest first."""
    cur = await conn.execute(
        f"SELECT {_CHIP_COLUMNS} FROM issuance_chips WHERE customer_id = %s ORDER BY updated_at DESC, id",
        (customer_id,),
    )
    return [_chip(row) for row in await cur.fetchall()]


# --- applications -------------------------------------------------------------------------------------

_APPLICATION_COLUMNS = (
    "id, outlet_id, operator_id, customer_id, plate, plate_colour, vehicle_kind, vehicle_class, user_type, "
    "vin, engine_number, length_mm, width_mm, height_mm, seats, axles, gross_mass_kg, card_type, "
    "bank_card_id, status, created_at, updated_at"
)


def _application(row: Any) -> Application:
    vehicle = Vehicle(
        plate=row[4],
        plate_colour=PlateColour(row[5]),
        kind=VehicleKind(row[6]),
        vehicle_class=VehicleClass(row[7]),
        user_type=UserType(row[8]),
        vin=row[9],
        engine_number=row[10],
        length_mm=row[11],
        width_mm=row[12],
        height_mm=row[13],
        seats=row[14],
        axles=row[15],
        gross_mass_kg=row[16],
    )
    return Application(
        id=row[0],
        outlet_id=row[1],
        operator_id=row[2],
        customer_id=row[3],
        vehicle=vehicle,
        card_type=CardType(row[17]),
        bank_card_id=row[18],
        status=ApplicationStatus(row[19]),
        created_at=row[20],
        updated_at=row[21],
    )


async def insert_application(conn: Conn, application: Application) -> None:
    """A new vehicle application; a second open one for the vehicle is a unique violation."""
    v = application.vehicle
    await conn.execute(
        f"INSERT INTO issuance_applications ({_APPLICATION_COLUMNS}) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            application.id,
            application.outlet_id,
            application.operator_id,
            application.customer_id,
            v.plate,
            int(v.plate_colour),
            v.kind.value,
            int(v.vehicle_class),
            int(v.user_type),
            v.vin,
            v.engine_number,
            v.length_mm,
            v.width_mm,
            v.height_mm,
            v.seats,
            v.axles,
            v.gross_mass_kg,
            int(application.card_type),
            application.bank_card_id,
            application.status.value,
            application.created_at,
            application.updated_at,
        ),
    )


async def get_application(conn: Conn, application_id: UUID, *, outlet_id: UUID | None) -> Application | None:
    """An application by id, seen from an outlet (another outlet's is None) or from anywhere (``None``)."""
    cur = await conn.execute(
        f"SELECT {_APPLICATION_COLUMNS} FROM issuance_applications WHERE id = %s "
        "AND (%s::uuid IS NULL OR outlet_id = %s)",
        (application_id, outlet_id, outlet_id),
    )
    row = await cur.fetchone()
    return None if row is None else _application(row)


async def get_application_or_raise(
    conn: Conn, application_id: UUID, *, outlet_id: UUID | None
) -> Application:
    """An application by id as :func:`get_application` sees it; 404 ``application_not_found`` otherwise."""
    found = await get_application(conn, application_id, outlet_id=outlet_id)
    if found is None:
        raise IssuanceError("application_not_found")
    return found


async def lock_application(conn: Conn, application_id: UUID, *, outlet_id: UUID) -> Application:
    """An outlet's application, locked; 404 for none or another outlet's."""
    cur = await conn.execute(
        f"SELECT {_APPLICATION_COLUMNS} FROM issuance_applications WHERE id = %s AND outlet_id = %s FOR UPDATE",
        (application_id, outlet_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise IssuanceError("application_not_found")
    return _application(row)


async def open_application_of_vehicle(
    conn: Conn, plate: str, plate_colour: PlateColour
) -> Application | None:
    """The vehicle's open application, wherever it was made; None when it has none."""
    cur = await conn.execute(
        f"SELECT {_APPLICATION_COLUMNS} FROM issuance_applications WHERE plate = %s AND plate_colour = %s "
        "AND status = 'open'",
        (plate, int(plate_colour)),
    )
    row = await cur.fetchone()
    return None if row is None else _application(row)


async def list_applications(
    conn: Conn,
    *,
    outlet_id: UUID,
    plate: str | None,
    plate_colour: PlateColour | None,
    status: ApplicationStatus | None,
    before: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Application]:
    """An outlet's applications, newest first, after a (created_at, id) keyset cursor."""
    cur = await conn.execute(
        f"SELECT {_APPLICATION_COLUMNS} FROM issuance_applications WHERE outlet_id = %(outlet)s "
        "AND (%(plate)s::text IS NULL OR plate = %(plate)s) "
        "AND (%(colour)s::smallint IS NULL OR plate_colour = %(colour)s) "
        "AND (%(status)s::text IS NULL OR status = %(status)s) "
        "AND (%(at)s::timestamptz IS NULL OR (created_at, id) < (%(at)s, %(id)s)) "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s",
        {
            "outlet": outlet_id,
            "plate": plate,
            "colour": None if plate_colour is None else int(plate_colour),
            "status": None if status is None else status.value,
            "at": None if before is None else before[0],
            "id": None if before is None else before[1],
            "limit": limit,
        },
    )
    return [_application(row) for row in await cur.fetchall()]


async def applications_of_customer(conn: Conn, customer_id: UUID) -> list[Application]:
    """A customer's applications at every outlet, newest first (the account query)."""
    cur = await conn.execute(
        f"SELECT {_APPLICATION_COLUMNS} FROM issuance_applications WHERE customer_id = %s "
        "ORDER BY created_at DESC, id DESC",
        (customer_id,),
    )
    return [_application(row) for row in await cur.fetchall()]


async def set_application_status(
    conn: Conn, application_id: UUID, status: ApplicationStatus, *, now: datetime
) -> None:
    """Move a locked application on."""
    await conn.execute(
        "UPDATE issuance_applications SET status = %s, updated_at = %s WHERE id = %s",
        (status.value, now, application_id),
    )


# --- card issuances -----------------------------------------------------------------------------------

_CARD_ISSUANCE_COLUMNS = (
    "id, application_id, chip_id, outlet_id, operator_id, mode, status, attempts, failures, issue_content, "
    "holder_content, last_error, created_at, updated_at"
)


def _card_issuance(row: Any) -> CardIssuance:
    return CardIssuance(
        id=row[0],
        application_id=row[1],
        chip_id=row[2],
        outlet_id=row[3],
        operator_id=row[4],
        mode=IssuanceMode(row[5]),
        status=CardIssuanceStatus(row[6]),
        attempts=row[7],
        failures=row[8],
        issue_content=None if row[9] is None else bytes(row[9]),
        holder_content=None if row[10] is None else bytes(row[10]),
        last_error=row[11],
        created_at=row[12],
        updated_at=row[13],
    )


async def lock_card_issuance(conn: Conn, application_id: UUID, chip_id: UUID) -> CardIssuance | None:
    """The issuance of this card for this application, locked; None when the card was never read for it."""
    cur = await conn.execute(
        f"SELECT {_CARD_ISSUANCE_COLUMNS} FROM issuance_card_issuances WHERE application_id = %s "
        "AND chip_id = %s FOR UPDATE",
        (application_id, chip_id),
    )
    row = await cur.fetchone()
    return None if row is None else _card_issuance(row)


async def card_issuances_of(conn: Conn, application_id: UUID) -> list[CardIssuance]:
    """Every card tried for an application, oldest first."""
    cur = await conn.execute(
        f"SELECT {_CARD_ISSUANCE_COLUMNS} FROM issuance_card_issuances WHERE application_id = %s "
        "ORDER BY created_at, id",
        (application_id,),
    )
    return [_card_issuance(row) for row in await cur.fetchall()]


async def insert_card_issuance(conn: Conn, issuance: CardIssuance) -> None:
    """The first read of a card for an application."""
    await conn.execute(
        f"INSERT INTO issuance_card_issuances ({_CARD_ISSUANCE_COLUMNS}) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            issuance.id,
            issuance.application_id,
            issuance.chip_id,
            issuance.outlet_id,
            issuance.operator_id,
            issuance.mode.value,
            issuance.status.value,
            issuance.attempts,
            issuance.failures,
            issuance.issue_content,
            issuance.holder_content,
            issuance.last_error,
            issuance.created_at,
            issuance.updated_at,
        ),
    )


async def update_card_issuance(conn: Conn, issuance: CardIssuance) -> None:
    """Write back a locked card issuance's mutable fields."""
    await conn.execute(
        "UPDATE issuance_card_issuances SET operator_id = %s, mode = %s, status = %s, attempts = %s, "
        "failures = %s, issue_content = %s, holder_content = %s, last_error = %s, updated_at = %s WHERE id = %s",
        (
            issuance.operator_id,
            issuance.mode.value,
            issuance.status.value,
            issuance.attempts,
            issuance.failures,
            issuance.issue_content,
            issuance.holder_content,
            issuance.last_error,
            issuance.updated_at,
            issuance.id,
        ),
    )


# --- account services (services.py) -----------------------------------------------------------------------


async def set_application_bank_card(
    conn: Conn, application_id: UUID, bank_card_id: UUID, *, now: datetime
) -> None:
    """Point an application (and so its card) at another bound bank card (变更银行卡)."""
    await conn.execute(
        "UPDATE issuance_applications SET bank_card_id = %s, updated_at = %s WHERE id = %s",
        (bank_card_id, now, application_id),
    )


async def lock_application_anywhere(conn: Conn, application_id: UUID) -> Application:
    """An application locked whatever outlet made it (a customer's card is served at any outlet); 404 if none."""
    cur = await conn.execute(
        f"SELECT {_APPLICATION_COLUMNS} FROM issuance_applications WHERE id = %s FOR UPDATE",
        (application_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise IssuanceError("application_not_found")
    return _application(row)


# --- detection: card activations and tag deregistration (detection.py) ----------------------------------

_ACTIVATION_COLUMNS = (
    "id, chip_id, outlet_id, operator_id, renewal, start_date, expiry_date, status, created_at, updated_at"
)


def _activation(row: Any) -> CardActivation:
    return CardActivation(
        id=row[0],
        chip_id=row[1],
        outlet_id=row[2],
        operator_id=row[3],
        renewal=row[4],
        start_date=row[5],
        expiry_date=row[6],
        status=CardActivationStatus(row[7]),
        created_at=row[8],
        updated_at=row[9],
    )


async def lock_pending_activation(conn: Conn, chip_id: UUID) -> CardActivation | None:
    """The card's activation persisted but not yet recorded (``writing``), locked; None when there is none."""
    cur = await conn.execute(
        f"SELECT {_ACTIVATION_COLUMNS} FROM issuance_card_activations WHERE chip_id = %s "
        "AND status = 'writing' FOR UPDATE",
        (chip_id,),
    )
    row = await cur.fetchone()
    return None if row is None else _activation(row)


async def lock_activation(conn: Conn, activation_id: UUID) -> CardActivation:
    """An activation by id, locked."""
    cur = await conn.execute(
        f"SELECT {_ACTIVATION_COLUMNS} FROM issuance_card_activations WHERE id = %s FOR UPDATE",
        (activation_id,),
    )
    row = await cur.fetchone()
    assert row is not None, activation_id
    return _activation(row)


async def insert_activation(conn: Conn, activation: CardActivation) -> None:
    """An activation's intent: the dates about to be written to the card."""
    await conn.execute(
        f"INSERT INTO issuance_card_activations ({_ACTIVATION_COLUMNS}) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            activation.id,
            activation.chip_id,
            activation.outlet_id,
            activation.operator_id,
            activation.renewal,
            activation.start_date,
            activation.expiry_date,
            activation.status.value,
            activation.created_at,
            activation.updated_at,
        ),
    )


async def finish_activation(conn: Conn, activation_id: UUID, *, now: datetime) -> None:
    """A locked activation recorded on the platform."""
    await conn.execute(
        "UPDATE issuance_card_activations SET status = 'done', updated_at = %s WHERE id = %s",
        (now, activation_id),
    )


async def activations_of(conn: Conn, chip_id: UUID) -> list[CardActivation]:
    """Every activation of a card, oldest first."""
    cur = await conn.execute(
        f"SELECT {_ACTIVATION_COLUMNS} FROM issuance_card_activations WHERE chip_id = %s "
        "ORDER BY created_at, id",
        (chip_id,),
    )
    return [_activation(row) for row in await cur.fetchall()]


async def end_tag_issuance(conn: Conn, tag_chip_id: UUID, *, now: datetime) -> int:
    """标签注销: the registered issuance of this tag ends (``deregistered``), so the application may register
    another tag; answers how many rows it ended (0 or 1)."""
    cur = await conn.execute(
        "UPDATE issuance_tag_issuances SET status = 'deregistered', updated_at = %s "
        "WHERE chip_id = %s AND status = 'registered'",
        (now, tag_chip_id),
    )
    return cur.rowcount


# --- tags (tags.py): tag issuances ---------------------------------------------------------------------

_TAG_ISSUANCE_COLUMNS = (
    "id, application_id, card_chip_id, chip_id, outlet_id, operator_id, mode, first_read_number, status, "
    "attempts, last_error, system_content, vehicle_content, created_at, updated_at"
)


def _tag_issuance(row: Any) -> TagIssuance:
    return TagIssuance(
        id=row[0],
        application_id=row[1],
        card_chip_id=row[2],
        chip_id=row[3],
        outlet_id=row[4],
        operator_id=row[5],
        mode=None if row[6] is None else IssuanceMode(row[6]),
        first_read_number=row[7],
        status=TagIssuanceStatus(row[8]),
        attempts=row[9],
        last_error=row[10],
        system_content=None if row[11] is None else bytes(row[11]),
        vehicle_content=None if row[12] is None else bytes(row[12]),
        created_at=row[13],
        updated_at=row[14],
    )


async def tag_issuances_of(conn: Conn, application_id: UUID) -> list[TagIssuance]:
    """Every tag issuance of an application, oldest first."""
    cur = await conn.execute(
        f"SELECT {_TAG_ISSUANCE_COLUMNS} FROM issuance_tag_issuances WHERE application_id = %s "
        "ORDER BY created_at, id",
        (application_id,),
    )
    return [_tag_issuance(row) for row in await cur.fetchall()]


async def lock_tag_issuance(conn: Conn, application_id: UUID) -> TagIssuance | None:
    """The application's current (newest) tag issuance, locked; None when its card was never read for a
    tag."""
    cur = await conn.execute(
        f"SELECT {_TAG_ISSUANCE_COLUMNS} FROM issuance_tag_issuances WHERE application_id = %s "
        "ORDER BY created_at DESC, id DESC LIMIT 1 FOR UPDATE",
        (application_id,),
    )
    row = await cur.fetchone()
    return None if row is None else _tag_issuance(row)


async def insert_tag_issuance(conn: Conn, issuance: TagIssuance) -> None:
    """A tag issuance started by reading the application's card."""
    await conn.execute(
        f"INSERT INTO issuance_tag_issuances ({_TAG_ISSUANCE_COLUMNS}) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            issuance.id,
            issuance.application_id,
            issuance.card_chip_id,
            issuance.chip_id,
            issuance.outlet_id,
            issuance.operator_id,
            None if issuance.mode is None else issuance.mode.value,
            issuance.first_read_number,
            issuance.status.value,
            issuance.attempts,
            issuance.last_error,
            issuance.system_content,
            issuance.vehicle_content,
            issuance.created_at,
            issuance.updated_at,
        ),
    )


async def update_tag_issuance(conn: Conn, issuance: TagIssuance) -> None:
    """Write back a locked tag issuance's mutable fields."""
    await conn.execute(
        "UPDATE issuance_tag_issuances SET card_chip_id = %s, chip_id = %s, operator_id = %s, mode = %s, "
        "first_read_number = %s, status = %s, attempts = %s, last_error = %s, system_content = %s, "
        "vehicle_content = %s, updated_at = %s WHERE id = %s",
        (
            issuance.card_chip_id,
            issuance.chip_id,
            issuance.operator_id,
            None if issuance.mode is None else issuance.mode.value,
            issuance.first_read_number,
            issuance.status.value,
            issuance.attempts,
            issuance.last_error,
            issuance.system_content,
            issuance.vehicle_content,
            issuance.updated_at,
            issuance.id,
        ),
    )
