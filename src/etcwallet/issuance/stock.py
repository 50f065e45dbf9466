"""An outlet's stock of blank user cards and OBU tags: batches in, moves between outlets, counts.

Blank chips come into an outlet's stock in numbered batches (``etcwallet issuance stock add`` or the
API): numbers run consecutively from the first, a card number has 20 digits and an OBU number 16, both
starting with the issuer's network number, and no number is ever used twice. A batch is one unit of
work: all its chips or none. Chips in stock move between outlets in one unit too; an issued chip never
moves. Every change goes into the chip's history.

With emulated chips, a batch's blank cards and tags are made in the chip store after the batch commits
(a number already there is left as it is), so a card taken from the drawer is the one the stock names.
``progress(phase, done)`` hears the rows written (``rows``), then the emulated chips made (``chips``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.identity.staff import service as staff
from etcwallet.issuance import store
from etcwallet.issuance.chip.factory import EmulatedFactory
from etcwallet.issuance.codes import CardType
from etcwallet.issuance.context import Issuer
from etcwallet.issuance.errors import IssuanceError
from etcwallet.issuance.types import (
    CHIP_STATUS_NAMES,
    Chip,
    ChipChange,
    ChipKind,
    ChipStatus,
    IssuanceAction,
    StockBatch,
)
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

Conn = AsyncConnection[Any]

MAX_BATCH = 10_000
MAX_MOVE = 1_000
NUMBER_LENGTH = {ChipKind.CARD: 20, ChipKind.TAG: 16}


def batch_numbers(*, kind: ChipKind, first_number: str, count: int, issuer: Issuer) -> list[str]:
    """The numbers of a batch, checked: the right length of digits, the issuer's network, 1..10,000 of
    them, none running past the last number of its length."""
    length = NUMBER_LENGTH[kind]
    if not (first_number.isascii() and first_number.isdigit() and len(first_number) == length):
        raise IssuanceError("stock_number_format")
    if not first_number.startswith(issuer.network):
        raise IssuanceError("stock_network", text={"network": issuer.network})
    if not 1 <= count <= MAX_BATCH:
        raise IssuanceError("stock_count")
    start = int(first_number)
    last = start + count - 1
    if len(str(last)) > length or not str(last).zfill(length).startswith(issuer.network):
        raise IssuanceError("stock_overflow")
    return [str(n).zfill(length) for n in range(start, last + 1)]


def _who(actor: Actor) -> str:
    return f"{actor.type}:{actor.id}"


async def add_stock(
    uow: UnitOfWork,
    *,
    issuer: Issuer,
    kind: ChipKind,
    card_type: CardType | None,
    outlet_id: UUID,
    first_number: str,
    count: int,
    actor: Actor,
    factory: EmulatedFactory | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> StockBatch:
    """Bring a batch of blank chips into an outlet's stock, all or none; ``progress(phase, done)`` hears
    the rows written and the emulated chips made so far (the command line's progress bar).

    Refused with nothing written: a malformed first number or count (422), a card batch without a card
    type, an unknown or inactive outlet (404), a number already used (409 ``stock_number_taken`` naming
    the first such number).
    """
    if kind is ChipKind.CARD and card_type is None:
        raise IssuanceError("stock_card_type_required")
    numbers = batch_numbers(kind=kind, first_number=first_number, count=count, issuer=issuer)
    batch_card_type = card_type if kind is ChipKind.CARD else None

    async def step(unit: Unit) -> StockBatch:
        outlet = await staff.find_outlet(unit.conn, outlet_id=outlet_id)
        if outlet is None or not outlet.active:
            raise IssuanceError("outlet_not_found", field="outlet_id")
        taken = await store.numbers_taken(unit.conn, kind, numbers)
        if taken:
            raise IssuanceError("stock_number_taken", text={"number": taken[0]}, number=taken[0])
        batch = StockBatch(
            id=uuid.uuid4(),
            kind=kind,
            card_type=batch_card_type,
            outlet_id=outlet_id,
            first_number=first_number,
            count=count,
            created_by=_who(actor),
            created_at=unit.now,
        )
        await store.insert_batch(unit.conn, batch)
        ids = [(uuid.uuid4(), number) for number in numbers]
        rows = None if progress is None else (lambda done: progress("rows", done))
        await store.copy_stock(unit.conn, batch, ids, actor=_who(actor), progress=rows)
        detail = {
            "kind": kind.value,
            "card_type": None if batch_card_type is None else int(batch_card_type),
            "outlet_id": str(outlet_id),
            "first_number": first_number,
            "last_number": numbers[-1],
            "count": count,
        }
        unit.audit(
            actor.event(
                IssuanceAction.STOCK_ADD, target=("issuance_stock_batch", str(batch.id)), detail=detail
            )
        )
        return batch

    batch = await uow.run(
        step,
        refusal=lambda error: actor.refused(
            IssuanceAction.STOCK_ADD,
            error.code,
            detail={"kind": kind.value, "first_number": first_number, "count": count},
        ),
    )
    if factory is not None:
        made = None if progress is None else (lambda done: progress("chips", done))
        await asyncio.to_thread(
            factory.make_blanks, kind.value, numbers, card_type=batch_card_type, progress=made
        )
    return batch


async def move_stock(
    uow: UnitOfWork,
    *,
    kind: ChipKind,
    numbers: Sequence[str],
    from_outlet: UUID | None,
    to_outlet: UUID,
    actor: Actor,
) -> list[Chip]:
    """Move chips in stock to another outlet, all or none. ``from_outlet``: the mover's outlet (its staff
    move only their own stock; None for a central role). Refused: a number not found or at another outlet
    (404, naming it), one not in stock (409), the destination unknown, inactive or the same outlet."""
    unique = sorted(set(numbers))
    if not 1 <= len(unique) <= MAX_MOVE:
        raise IssuanceError("stock_count", field="numbers")

    async def step(unit: Unit) -> list[Chip]:
        destination = await staff.find_outlet(unit.conn, outlet_id=to_outlet)
        if destination is None or not destination.active:
            raise IssuanceError("outlet_not_found")
        chips = await store.lock_chips_by_number(unit.conn, kind, unique)
        found = {chip.number: chip for chip in chips}
        for number in unique:
            chip = found.get(number)
            if chip is None or (from_outlet is not None and chip.outlet_id != from_outlet):
                raise IssuanceError("chip_not_found", field="numbers", number=number)
            if chip.status is not ChipStatus.IN_STOCK:
                zh, en = CHIP_STATUS_NAMES[chip.status]
                names = {"status_zh": zh, "status_en": en}
                raise IssuanceError("chip_not_in_stock", field="numbers", text=names, number=number)
            if chip.outlet_id == to_outlet:
                raise IssuanceError("stock_same_outlet")
        await store.move_chips(unit.conn, [chip.id for chip in chips], to_outlet=to_outlet, now=unit.now)
        await store.add_history(
            unit.conn,
            [
                ChipChange(
                    chip.id,
                    chip.status,
                    chip.status,
                    chip.outlet_id,
                    to_outlet,
                    "stock_move",
                    _who(actor),
                    unit.now,
                )
                for chip in chips
            ],
        )
        detail = {"kind": kind.value, "numbers": unique, "to_outlet": str(to_outlet)}
        unit.audit(actor.event(IssuanceAction.STOCK_MOVE, target=("outlet", str(to_outlet)), detail=detail))
        return [await store.get_chip_or_raise(unit.conn, kind, number) for number in unique]

    return await uow.run(step)


async def list_stock(
    conn: Conn,
    *,
    outlet_id: UUID,
    kind: ChipKind | None = None,
    status: ChipStatus | None = ChipStatus.IN_STOCK,
    after: str | None = None,
    limit: int = 50,
) -> list[Chip]:
    """An outlet's chips in number order (the drawer, as a list), after a number (the cursor)."""
    return await store.list_chips(
        conn, outlet_id=outlet_id, kind=kind, status=status, after=after, limit=limit
    )


async def stock_summary(
    conn: Conn, *, outlet_id: UUID
) -> dict[tuple[ChipKind, CardType | None, ChipStatus], int]:
    """How many chips of each kind, card type and status the outlet holds."""
    return await store.count_stock(conn, outlet_id)


async def get_chip_or_raise(conn: Conn, *, kind: ChipKind, number: str, outlet_id: UUID | None) -> Chip:
    """A chip by number as an outlet sees it (chips at or issued by another outlet answer 404), or as a
    central role sees it (``outlet_id`` None)."""
    chip = await store.get_chip(conn, kind, number)
    if chip is None or (outlet_id is not None and chip.outlet_id != outlet_id):
        raise IssuanceError("chip_not_found")
    return chip


async def chip_history(conn: Conn, *, chip: Chip) -> list[ChipChange]:
    """A chip's life, oldest first."""
    return await store.chip_history(conn, chip.id)
