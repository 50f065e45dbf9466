"""Request bodies and answers of tag issuance (标签办理), tag activation (标签激活) and the emulated tag's
anti-tamper switch. Codes travel as numbers with their names in both languages beside them."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, Field

from etcwallet.core.schemas import RequestModel
from etcwallet.issuance.codes import CardType, PlateColour, VehicleClass
from etcwallet.issuance.schemas import ApplicationOut, ChipOut
from etcwallet.issuance.tags import CardSide, TagCheck, TagSide
from etcwallet.issuance.types import IssuanceMode, TagIssuance, TagIssuanceStatus

SnTyped = Annotated[str, Field(min_length=1, max_length=24, examples=["6201010000000001"])]


class TagIssuanceOut(BaseModel):
    """A tag issuance as it stands: its step, the tag first read, attempts and the last failure."""

    status: TagIssuanceStatus
    mode: IssuanceMode | None
    obu_number: str | None
    attempts: int
    last_error: str | None
    can_register: bool = Field(
        description="读卡成功之前不显示注册按钮: true once the card and the tag are read"
    )

    @classmethod
    def of(cls, issuance: TagIssuance) -> Self:
        return cls(
            status=issuance.status,
            mode=issuance.mode,
            obu_number=issuance.first_read_number,
            attempts=issuance.attempts,
            last_error=issuance.last_error,
            can_register=issuance.status
            in (TagIssuanceStatus.TAG_READ, TagIssuanceStatus.WRITING, TagIssuanceStatus.FAILED),
        )


class TagCardReadOut(BaseModel):
    """读卡 for a tag: the vehicle (plate, colour, card type, class) and the card."""

    application: ApplicationOut
    card_number: str
    plate: str
    plate_colour: PlateColour
    plate_colour_name: dict[str, str]
    card_type: CardType
    card_type_name: dict[str, str]
    vehicle_class: VehicleClass
    vehicle_class_name: dict[str, str]
    issuance: TagIssuanceOut


class TagReadIn(RequestModel):
    """OBU信息录入: the SN on the back of the tag (16 digits) typed twice and the issuance mode."""

    sn: SnTyped
    sn_confirm: SnTyped
    mode: IssuanceMode = IssuanceMode.NEW


class TagReadOut(BaseModel):
    """The tag read for the issuance."""

    application: ApplicationOut
    obu_number: str
    issuance: TagIssuanceOut


class TagRegisteredOut(BaseModel):
    """A registered tag: the application, the tag's platform record and the issuance."""

    application: ApplicationOut
    tag: ChipOut
    issuance: TagIssuanceOut


class CardSideOut(BaseModel):
    """The card in the slot: number, plate and colour."""

    card_number: str
    plate: str
    plate_colour: PlateColour
    plate_colour_name: dict[str, str]

    @classmethod
    def of(cls, side: CardSide) -> Self:
        colour = side.plate_colour
        return cls(
            card_number=side.card_number,
            plate=side.plate,
            plate_colour=colour,
            plate_colour_name={"zh": colour.zh, "en": colour.en},
        )


class TagSideOut(BaseModel):
    """The tag in the field: OBU number, plate, colour, class and the tamper byte (activated or not)."""

    obu_number: str
    plate: str
    plate_colour: PlateColour
    plate_colour_name: dict[str, str]
    vehicle_class: VehicleClass
    activated: bool

    @classmethod
    def of(cls, side: TagSide) -> Self:
        colour = side.plate_colour
        return cls(
            obu_number=side.obu_number,
            plate=side.plate,
            plate_colour=colour,
            plate_colour_name={"zh": colour.zh, "en": colour.en},
            vehicle_class=side.vehicle_class,
            activated=bool(side.tamper),
        )


class TagCheckOut(BaseModel):
    """读卡 + 读标签 at activation: both sides, whether they agree and which fields differ."""

    card: CardSideOut
    tag: TagSideOut
    agree: bool
    differs: list[str]

    @classmethod
    def of(cls, check: TagCheck) -> Self:
        return cls(
            card=CardSideOut.of(check.card),
            tag=TagSideOut.of(check.tag),
            agree=check.agree,
            differs=list(check.differs),
        )


class TagActivateIn(RequestModel):
    """激活: the tag read (the one in the field must still be it)."""

    obu_number: Annotated[str | None, Field(default=None, pattern=r"^[0-9]{16}$")] = None


class TagActivatedOut(BaseModel):
    """An activated tag: what was checked and its platform record."""

    check: TagCheckOut
    tag: ChipOut


class TagSwitchIn(RequestModel):
    """The emulated tag's anti-tamper switch: pressed (on the windscreen) or released (taken off)."""

    pressed: bool


class TagSwitchOut(BaseModel):
    """The answering tag's switch and tamper byte now."""

    obu_number: str
    pressed: bool
    activated: bool
