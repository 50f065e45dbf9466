"""Issuance's routes: the outlet's stock, the operator's desk (emulated readers), vehicle applications and
user card issuance. A thin router over the issuance services: parse, authorize (one gate each), call,
shape the answer. Every holder of ``issuance.operate`` or ``issuance.stock`` is placed at an outlet and
sees only its records: another outlet's answers 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, status

from etcwallet.core.deps import ClientDep, KeysDep, LedgerDep, PoolDep, UnitOfWorkDep
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Permission, Principal, actor_of, forbidden, require
from etcwallet.identity.customers.types import OutletOperator
from etcwallet.issuance import applications, cards, stock
from etcwallet.issuance import schemas as s
from etcwallet.issuance.chip.emulator import EmulatedReader
from etcwallet.issuance.chip.reader import ReaderError
from etcwallet.issuance.codes import PlateColour
from etcwallet.issuance.context import IssuanceContext, IssuanceDep
from etcwallet.issuance.errors import IssuanceError
from etcwallet.issuance.types import ApplicationStatus, CardIssuance, ChipKind, ChipStatus
from etcwallet.platform.audit import Actor
from etcwallet.platform.idempotency import idempotent

router = APIRouter(prefix="/api/v1/issuance", tags=["issuance"])

Operator = Annotated[Principal, Depends(require(Permission.ISSUANCE_OPERATE))]
KeyedOperator = Annotated[Principal, Depends(idempotent(require(Permission.ISSUANCE_OPERATE)))]
Stockkeeper = Annotated[Principal, Depends(require(Permission.ISSUANCE_STOCK))]
KeyedStockkeeper = Annotated[Principal, Depends(idempotent(require(Permission.ISSUANCE_STOCK)))]


def _placed(principal: Principal, permission: Permission) -> OutletOperator:
    """The staff member and their outlet (every holder of an issuance permission is placed at one)."""
    if principal.outlet_id is None:
        raise forbidden(permission.value)
    return OutletOperator(principal.id, principal.outlet_id)


def _operator(principal: Principal) -> OutletOperator:
    return _placed(principal, Permission.ISSUANCE_OPERATE)


def _actor(principal: Principal, client: ClientDep) -> Actor:
    return actor_of(principal, client)


# --- stock -----------------------------------------------------------------------------------------------


@router.post(
    "/stock/batches",
    status_code=status.HTTP_201_CREATED,
    response_model=s.StockBatchOut,
    responses=problems(404, 409, 422),
)
async def add_stock(
    staff: KeyedStockkeeper, body: s.StockBatchIn, uow: UnitOfWorkDep, context: IssuanceDep, client: ClientDep
) -> s.StockBatchOut:
    """Blank cards or tags numbered from ``first_number`` into the caller's outlet's stock, all or none
    (409 ``stock_number_taken`` naming the first number already used)."""
    keeper = _placed(staff, Permission.ISSUANCE_STOCK)
    if body.outlet_id is not None and body.outlet_id != keeper.outlet_id:
        raise IssuanceError("outlet_not_found", field="outlet_id")
    batch = await stock.add_stock(
        uow,
        issuer=context.issuer,
        kind=body.kind,
        card_type=body.card_type,
        outlet_id=keeper.outlet_id,
        first_number=body.first_number,
        count=body.count,
        actor=_actor(staff, client),
        factory=context.factory,
    )
    return s.StockBatchOut.of(batch)


@router.post("/stock/moves", response_model=list[s.ChipOut], responses=problems(404, 409, 422))
async def move_stock(
    staff: KeyedStockkeeper, body: s.StockMoveIn, uow: UnitOfWorkDep, client: ClientDep
) -> list[s.ChipOut]:
    """Chips in the caller's outlet's stock moved to another outlet, all or none."""
    keeper = _placed(staff, Permission.ISSUANCE_STOCK)
    moved = await stock.move_stock(
        uow,
        kind=body.kind,
        numbers=body.numbers,
        from_outlet=keeper.outlet_id,
        to_outlet=body.to_outlet_id,
        actor=_actor(staff, client),
    )
    return [s.ChipOut.of(chip) for chip in moved]


@router.get("/stock", response_model=s.ChipPage)
async def list_stock(
    staff: Operator,
    pool: PoolDep,
    kind: ChipKind | None = None,
    chip_status: Annotated[ChipStatus | None, Query(alias="status")] = ChipStatus.IN_STOCK,
    after: Annotated[str | None, Query(pattern=r"^[0-9]{16}([0-9]{4})?$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> s.ChipPage:
    """The outlet's chips in number order (in stock unless ``status`` says otherwise)."""
    operator = _operator(staff)
    async with pool.connection() as conn:
        chips = await stock.list_stock(
            conn, outlet_id=operator.outlet_id, kind=kind, status=chip_status, after=after, limit=limit + 1
        )
    page = chips[:limit]
    return s.ChipPage(
        items=[s.ChipOut.of(chip) for chip in page],
        next_cursor=page[-1].number if len(chips) > limit else None,
    )


@router.get("/stock/summary", response_model=list[s.StockCount])
async def stock_summary(staff: Operator, pool: PoolDep) -> list[s.StockCount]:
    """How many cards and tags of each type and status the outlet holds."""
    operator = _operator(staff)
    async with pool.connection() as conn:
        counts = await stock.stock_summary(conn, outlet_id=operator.outlet_id)
    return [
        s.StockCount(kind=kind, card_type=card_type, status=chip_status, count=count)
        for (kind, card_type, chip_status), count in sorted(counts.items(), key=lambda item: str(item[0]))
    ]


@router.get("/chips/{kind}/{number}", response_model=s.ChipDetailOut, responses=problems(404))
async def read_chip(
    staff: Operator, kind: ChipKind, number: Annotated[str, s.ChipNumberPath], pool: PoolDep
) -> s.ChipDetailOut:
    """A card or tag of the outlet, with its life (another outlet's answers 404)."""
    operator = _operator(staff)
    async with pool.connection() as conn:
        chip = await stock.get_chip_or_raise(conn, kind=kind, number=number, outlet_id=operator.outlet_id)
        history = await stock.chip_history(conn, chip=chip)
    return s.ChipDetailOut(
        **s.ChipOut.of(chip).model_dump(), history=[s.ChipChangeOut.of(change) for change in history]
    )


# --- the desk: emulated readers ----------------------------------------------------------------------------


def _emulated(context: IssuanceContext, operator: OutletOperator) -> tuple[EmulatedReader, EmulatedReader]:
    desks = context.emulated
    if desks is None:
        raise IssuanceError("emulator_only")
    return desks.readers(operator.staff_id)


def _desk(card: EmulatedReader, tag: EmulatedReader) -> s.DeskOut:
    return s.DeskOut(
        card=None if card.chip is None else card.chip.number, tags=[chip.number for chip in tag.chips]
    )


@router.get("/desk", response_model=s.DeskOut, responses=problems(409))
async def read_desk(staff: Operator, context: IssuanceDep) -> s.DeskOut:
    """What is in the operator's emulated card slot and tag field."""
    return _desk(*_emulated(context, _operator(staff)))


def _put(reader: EmulatedReader, number: str, *, alone: bool) -> None:
    try:
        reader.insert(number) if alone else reader.enter(number)
    except ReaderError:
        raise IssuanceError("chip_not_found") from None


@router.put("/desk/card", response_model=s.DeskOut, responses=problems(404, 409))
async def insert_card(staff: Operator, body: s.DeskChipIn, context: IssuanceDep) -> s.DeskOut:
    """Put a card taken from the drawer (or handed over by a customer) in the operator's slot, by number."""
    card, tag = _emulated(context, _operator(staff))
    if len(body.number) != 20:
        raise IssuanceError("chip_not_found")
    _put(card, body.number, alone=True)
    return _desk(card, tag)


@router.delete("/desk/card", response_model=s.DeskOut, responses=problems(409))
async def remove_card(staff: Operator, context: IssuanceDep) -> s.DeskOut:
    """Take the card out of the operator's slot."""
    card, tag = _emulated(context, _operator(staff))
    card.remove()
    return _desk(card, tag)


@router.post("/desk/tags", response_model=s.DeskOut, responses=problems(404, 409))
async def insert_tag(staff: Operator, body: s.DeskChipIn, context: IssuanceDep) -> s.DeskOut:
    """Bring a tag into the operator's antenna field, alone or beside the tags there (``alone: false``)."""
    card, tag = _emulated(context, _operator(staff))
    if len(body.number) != 16:
        raise IssuanceError("chip_not_found")
    _put(tag, body.number, alone=body.alone)
    return _desk(card, tag)


@router.delete("/desk/tags", response_model=s.DeskOut, responses=problems(409))
async def remove_tags(staff: Operator, context: IssuanceDep) -> s.DeskOut:
    """Take every tag out of the operator's field."""
    card, tag = _emulated(context, _operator(staff))
    tag.remove()
    return _desk(card, tag)


# --- applications ----------------------------------------------------------------------------------------


@router.post(
    "/applications",
    status_code=status.HTTP_201_CREATED,
    response_model=s.ApplicationOut,
    responses=problems(404, 409, 422),
)
async def create_application(
    staff: KeyedOperator, body: s.ApplicationIn, uow: UnitOfWorkDep, keys: KeysDep, client: ClientDep
) -> s.ApplicationOut:
    """A vehicle application at the operator's outlet (the only source issuance accepts)."""
    created = await applications.create_application(
        uow,
        keys=keys,
        operator=_operator(staff),
        customer_id=body.customer_id,
        vehicle=body.vehicle.to_vehicle(),
        card_type=body.card_type,
        bank_card=body.bank_card(),
        actor=_actor(staff, client),
    )
    return s.ApplicationOut.of(created)


def _cursor(value: str | None) -> tuple[datetime, UUID] | None:
    if value is None:
        return None
    at, _, ident = value.partition("_")
    try:
        return datetime.fromisoformat(at), UUID(ident)
    except ValueError:
        raise IssuanceError("cursor_invalid") from None


@router.get("/applications", response_model=s.ApplicationPage, responses=problems(422))
async def list_applications(
    staff: Operator,
    pool: PoolDep,
    plate: Annotated[str | None, Query(max_length=16)] = None,
    plate_colour: PlateColour | None = None,
    application_status: Annotated[ApplicationStatus | None, Query(alias="status")] = None,
    cursor: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> s.ApplicationPage:
    """The outlet's applications, newest first, found by plate and colour or listed to pick from."""
    async with pool.connection() as conn:
        found = await applications.list_applications(
            conn,
            operator=_operator(staff),
            plate=None if plate is None else plate.strip().upper(),
            plate_colour=plate_colour,
            status=application_status,
            before=_cursor(cursor),
            limit=limit + 1,
        )
    page = found[:limit]
    last = page[-1] if page and len(found) > limit else None
    return s.ApplicationPage(
        items=[s.ApplicationOut.of(a) for a in page],
        next_cursor=None if last is None else f"{last.created_at.isoformat()}_{last.id}",
    )


@router.get("/applications/{application_id}", response_model=s.ApplicationOut, responses=problems(404))
async def read_application(staff: Operator, application_id: UUID, pool: PoolDep) -> s.ApplicationOut:
    """One of the outlet's applications (another outlet's answers 404)."""
    async with pool.connection() as conn:
        found = await applications.get_application_or_raise(
            conn, operator=_operator(staff), application_id=application_id
        )
    return s.ApplicationOut.of(found)


@router.post(
    "/applications/{application_id}/cancel", response_model=s.ApplicationOut, responses=problems(404, 409)
)
async def cancel_application(
    staff: Operator, application_id: UUID, uow: UnitOfWorkDep, client: ClientDep
) -> s.ApplicationOut:
    """Cancel an open application of the outlet (again: answered as it is)."""
    cancelled = await applications.cancel_application(
        uow, operator=_operator(staff), application_id=application_id, actor=_actor(staff, client)
    )
    return s.ApplicationOut.of(cancelled)


# --- card issuance ---------------------------------------------------------------------------------------


def _issuance_out(issuance: CardIssuance) -> s.CardIssuanceOut:
    return s.CardIssuanceOut.of(issuance, retries_per_card=cards.RETRIES_PER_CARD)


@router.post(
    "/applications/{application_id}/card/read",
    response_model=s.CardReadOut,
    responses=problems(404, 409, 422, 503),
)
async def read_card(
    staff: Operator,
    application_id: UUID,
    body: s.CardReadIn,
    uow: UnitOfWorkDep,
    context: IssuanceDep,
    client: ClientDep,
) -> s.CardReadOut:
    """读卡: read the card in the operator's slot for this application."""
    read = await cards.read_card(
        uow,
        context=context,
        operator=_operator(staff),
        application_id=application_id,
        mode=body.mode,
        actor=_actor(staff, client),
    )
    return s.CardReadOut(
        application=s.ApplicationOut.of(read.application),
        card_number=read.card_number,
        card_type=read.card_type,
        card_type_name={"zh": read.card_type.zh, "en": read.card_type.en},
        balance=read.balance,
        issuance=_issuance_out(read.issuance),
    )


@router.post(
    "/applications/{application_id}/card/register",
    response_model=s.CardRegisteredOut,
    responses=problems(404, 409, 422, 503),
)
async def register_card(
    staff: KeyedOperator,
    application_id: UUID,
    body: s.CardRegisterIn,
    uow: UnitOfWorkDep,
    context: IssuanceDep,
    keys: KeysDep,
    ledger: LedgerDep,
    client: ClientDep,
) -> s.CardRegisteredOut:
    """注册: write the card read for this application and record it issued, with its ledger account."""
    registered = await cards.register_card(
        uow,
        context=context,
        keys=keys,
        ledger=ledger,
        operator=_operator(staff),
        application_id=application_id,
        card_number=body.card_number,
        mode=body.mode,
        bank_card=body.bank_card(),
        actor=_actor(staff, client),
    )
    return s.CardRegisteredOut(
        application=s.ApplicationOut.of(registered.application),
        card=s.ChipOut.of(registered.chip),
        issuance=_issuance_out(registered.issuance),
        account_id=registered.account_id,
    )
