"""Routes of tag issuance (标签办理) and tag activation (标签激活), and the emulated tag's anti-tamper switch
for the console. A thin router over :mod:`etcwallet.issuance.tags`: parse, authorize (``issuance.operate``,
placed at an outlet), call, shape the answer. Another outlet's application answers 404.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends

from etcwallet.core.deps import ClientDep, UnitOfWorkDep
from etcwallet.core.openapi import problems
from etcwallet.identity.authz import Permission, Principal, actor_of, forbidden, require
from etcwallet.identity.customers.types import OutletOperator
from etcwallet.issuance import tags
from etcwallet.issuance import tags_schemas as t
from etcwallet.issuance.chip.obu_emulator import ObuEmulator, TamperSwitch
from etcwallet.issuance.codes import CardType, PlateColour, VehicleClass
from etcwallet.issuance.context import IssuanceDep
from etcwallet.issuance.errors import IssuanceError
from etcwallet.issuance.schemas import ApplicationOut, ChipOut
from etcwallet.platform.audit import Actor
from etcwallet.platform.idempotency import idempotent

router = APIRouter(prefix="/api/v1/issuance", tags=["issuance"])

Operator = Annotated[Principal, Depends(require(Permission.ISSUANCE_OPERATE))]
KeyedOperator = Annotated[Principal, Depends(idempotent(require(Permission.ISSUANCE_OPERATE)))]


def _operator(principal: Principal) -> OutletOperator:
    if principal.outlet_id is None:
        raise forbidden(Permission.ISSUANCE_OPERATE.value)
    return OutletOperator(principal.id, principal.outlet_id)


def _actor(principal: Principal, client: ClientDep) -> Actor:
    return actor_of(principal, client)


def _names(code: CardType | PlateColour | VehicleClass) -> dict[str, str]:
    return {"zh": code.zh, "en": code.en}


# --- 标签办理 ---------------------------------------------------------------------------------------------


@router.post(
    "/applications/{application_id}/tag/read-card",
    response_model=t.TagCardReadOut,
    responses=problems(404, 409, 422, 503),
)
async def read_card_for_tag(
    staff: Operator, application_id: UUID, uow: UnitOfWorkDep, context: IssuanceDep, client: ClientDep
) -> t.TagCardReadOut:
    """读卡: the application's issued card in the slot starts (or continues) its tag issuance
    ("标签办理前请确认已办理成功陇通卡")."""
    read = await tags.read_card(
        uow,
        context=context,
        operator=_operator(staff),
        application_id=application_id,
        actor=_actor(staff, client),
    )
    vehicle = read.application.vehicle
    return t.TagCardReadOut(
        application=ApplicationOut.of(read.application),
        card_number=read.card_number,
        plate=vehicle.plate,
        plate_colour=vehicle.plate_colour,
        plate_colour_name=_names(vehicle.plate_colour),
        card_type=read.card_type,
        card_type_name=_names(read.card_type),
        vehicle_class=read.vehicle_class,
        vehicle_class_name=_names(read.vehicle_class),
        issuance=t.TagIssuanceOut.of(read.issuance),
    )


@router.post(
    "/applications/{application_id}/tag/read",
    response_model=t.TagReadOut,
    responses=problems(404, 409, 422, 503),
)
async def read_tag(
    staff: Operator,
    application_id: UUID,
    body: t.TagReadIn,
    uow: UnitOfWorkDep,
    context: IssuanceDep,
    client: ClientDep,
) -> t.TagReadOut:
    """OBU信息录入: the SN typed twice and the mode; the tag in the field must be that SN, in stock here."""
    read = await tags.read_tag(
        uow,
        context=context,
        operator=_operator(staff),
        application_id=application_id,
        sn=body.sn,
        sn_confirm=body.sn_confirm,
        mode=body.mode,
        actor=_actor(staff, client),
    )
    return t.TagReadOut(
        application=ApplicationOut.of(read.application),
        obu_number=read.obu_number,
        issuance=t.TagIssuanceOut.of(read.issuance),
    )


@router.post(
    "/applications/{application_id}/tag/register",
    response_model=t.TagRegisteredOut,
    responses=problems(404, 409, 422, 503),
)
async def register_tag(
    staff: KeyedOperator, application_id: UUID, uow: UnitOfWorkDep, context: IssuanceDep, client: ClientDep
) -> t.TagRegisteredOut:
    """注册: check the tag in the field is the one first read, write its system and vehicle files and record
    it issued to the vehicle (again after a tear: finishes it)."""
    registered = await tags.register_tag(
        uow,
        context=context,
        operator=_operator(staff),
        application_id=application_id,
        actor=_actor(staff, client),
    )
    return t.TagRegisteredOut(
        application=ApplicationOut.of(registered.application),
        tag=ChipOut.of(registered.chip),
        issuance=t.TagIssuanceOut.of(registered.issuance),
    )


# --- 标签激活 ---------------------------------------------------------------------------------------------


@router.post("/tags/activation/read", response_model=t.TagCheckOut, responses=problems(409, 422, 503))
async def read_for_activation(
    staff: Operator, uow: UnitOfWorkDep, context: IssuanceDep, client: ClientDep
) -> t.TagCheckOut:
    """读卡 + 读标签: the card in the slot and the tag in the field, and whether they describe the same vehicle
    (``differs`` names the fields that do not agree)."""
    check = await tags.check_tag(uow, context=context, operator=_operator(staff), actor=_actor(staff, client))
    return t.TagCheckOut.of(check)


@router.post("/tags/activate", response_model=t.TagActivatedOut, responses=problems(409, 422, 503))
async def activate_tag(
    staff: KeyedOperator, body: t.TagActivateIn, uow: UnitOfWorkDep, context: IssuanceDep, client: ClientDep
) -> t.TagActivatedOut:
    """激活: card and tag agree and are the vehicle's live ones, then the tamper byte is written (may be done
    again; 409 ``tag_switch_released`` while the anti-tamper button is not pressed)."""
    activated = await tags.activate_tag(
        uow,
        context=context,
        operator=_operator(staff),
        obu_number=body.obu_number,
        actor=_actor(staff, client),
    )
    return t.TagActivatedOut(check=t.TagCheckOut.of(activated.check), tag=ChipOut.of(activated.chip))


# --- the desk: the emulated tag's anti-tamper switch ---------------------------------------------------------


@router.post("/desk/tags/switch", response_model=t.TagSwitchOut, responses=problems(409))
async def press_switch(staff: Operator, body: t.TagSwitchIn, context: IssuanceDep) -> t.TagSwitchOut:
    """Press (the tag is mounted on the windscreen) or release the anti-tamper switch of the tag answering in
    the operator's emulated field (409 ``emulator_only`` with real readers)."""
    desks = context.emulated
    if desks is None:
        raise IssuanceError("emulator_only")
    _card, field = desks.readers(_operator(staff).staff_id)
    chip = field.chip
    if not isinstance(chip, ObuEmulator):
        raise IssuanceError("no_tag_in_field")
    chip.press_switch() if body.pressed else chip.release_switch()
    return t.TagSwitchOut(
        obu_number=chip.number,
        pressed=chip.state.switch is TamperSwitch.PRESSED,
        activated=bool(chip.state.tamper),
    )
