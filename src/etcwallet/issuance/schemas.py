"""Request bodies and answers of issuance: stock, the desk, applications and card issuance.

Codes travel as the spec's numbers (card type 22/23, plate colour, vehicle class) with their names in
both languages beside them in answers. Vehicle fields are checked here (:mod:`etcwallet.issuance.vehicles`),
so a plate or VIN that fails its checks is a 422 naming the field before any service runs.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Self
from uuid import UUID

from fastapi import Path
from pydantic import AfterValidator, BaseModel, Field, ValidationInfo, field_validator, model_validator

from etcwallet.core.schemas import RequestModel
from etcwallet.issuance import vehicles
from etcwallet.issuance.codes import CardType, PlateColour, UserType, VehicleClass
from etcwallet.issuance.types import (
    CHIP_STATUS_NAMES,
    Application,
    ApplicationStatus,
    CardIssuance,
    CardIssuanceStatus,
    Chip,
    ChipChange,
    ChipKind,
    ChipStatus,
    IssuanceMode,
    StockBatch,
    Vehicle,
    VehicleKind,
)

ChipNumber = Annotated[str, Field(pattern=r"^[0-9]{16}([0-9]{4})?$", examples=["62010101000000000001"])]
"""A card number (20 digits) or an OBU number (16)."""
ChipNumberPath = Path(pattern=r"^[0-9]{16}([0-9]{4})?$")
"""A card or OBU number in a URL path."""
BankCardTyped = Annotated[str, Field(min_length=1, max_length=40)]


def _code_names(code: CardType | PlateColour | VehicleClass | UserType) -> dict[str, str]:
    return {"zh": code.zh, "en": code.en}


# --- stock -----------------------------------------------------------------------------------------------


class StockBatchIn(RequestModel):
    """Blank chips numbered from ``first_number`` into an outlet's stock (the caller's own outlet unless a
    central role names one)."""

    kind: ChipKind
    card_type: CardType | None = Field(default=None, description="22 储值卡 or 23 记账卡; cards only")
    first_number: ChipNumber
    count: int = Field(ge=1, le=10_000)
    outlet_id: UUID | None = None


class StockBatchOut(BaseModel):
    """A batch as stored."""

    id: UUID
    kind: ChipKind
    card_type: CardType | None
    outlet_id: UUID
    first_number: str
    count: int
    created_at: datetime

    @classmethod
    def of(cls, batch: StockBatch) -> Self:
        return cls(
            id=batch.id,
            kind=batch.kind,
            card_type=batch.card_type,
            outlet_id=batch.outlet_id,
            first_number=batch.first_number,
            count=batch.count,
            created_at=batch.created_at,
        )


class StockMoveIn(RequestModel):
    """Chips in the caller's stock moved to another outlet, all or none."""

    kind: ChipKind
    numbers: list[ChipNumber] = Field(min_length=1, max_length=1000)
    to_outlet_id: UUID


class ChipOut(BaseModel):
    """A card or tag as the platform knows it."""

    kind: ChipKind
    number: str
    card_type: CardType | None
    status: ChipStatus
    status_zh: str
    status_en: str
    outlet_id: UUID
    failures: int
    vehicle: str | None
    expires_on: date | None
    updated_at: datetime

    @classmethod
    def of(cls, chip: Chip) -> Self:
        zh, en = CHIP_STATUS_NAMES[chip.status]
        vehicle = None if chip.plate is None else f"{chip.plate}_{int(chip.plate_colour or 0)}"
        return cls(
            kind=chip.kind,
            number=chip.number,
            card_type=chip.card_type,
            status=chip.status,
            status_zh=zh,
            status_en=en,
            outlet_id=chip.outlet_id,
            failures=chip.failures,
            vehicle=vehicle,
            expires_on=chip.expires_on,
            updated_at=chip.updated_at,
        )


class ChipChangeOut(BaseModel):
    """One entry of a chip's life."""

    from_status: ChipStatus | None
    to_status: ChipStatus
    from_outlet: UUID | None
    to_outlet: UUID
    reason: str
    actor: str
    at: datetime

    @classmethod
    def of(cls, change: ChipChange) -> Self:
        return cls(
            from_status=change.from_status,
            to_status=change.to_status,
            from_outlet=change.from_outlet,
            to_outlet=change.to_outlet,
            reason=change.reason,
            actor=change.actor,
            at=change.at,
        )


class ChipDetailOut(ChipOut):
    """A chip and its history."""

    history: list[ChipChangeOut]


class ChipPage(BaseModel):
    """A page of chips in number order; ``next_cursor`` is the ``after`` of the next page."""

    items: list[ChipOut]
    next_cursor: str | None


class StockCount(BaseModel):
    """How many chips of one kind, card type and status."""

    kind: ChipKind
    card_type: CardType | None
    status: ChipStatus
    count: int


# --- the desk (emulated readers) -------------------------------------------------------------------------


class DeskChipIn(RequestModel):
    """A card or tag taken from the drawer and put in the operator's reader, by its number."""

    number: ChipNumber
    alone: bool = Field(
        default=True, description="tags: false brings it into the field beside the tags already there"
    )


class DeskOut(BaseModel):
    """What is in the operator's emulated card slot and tag field now."""

    card: str | None
    tags: list[str]


# --- applications ----------------------------------------------------------------------------------------


class VehicleIn(RequestModel):
    """The vehicle as its registration certificate (行驶证) gives it; the class follows from its kind.
    The plate is checked against its colour, so the colour comes first."""

    plate_colour: PlateColour
    plate: str = Field(min_length=1, max_length=16, examples=["甘A12345"])
    kind: VehicleKind
    vin: Annotated[str, Field(min_length=1, max_length=32), AfterValidator(vehicles.validate_vin)]
    engine_number: Annotated[
        str, Field(min_length=1, max_length=32), AfterValidator(vehicles.validate_engine_number)
    ]
    length_mm: int = Field(ge=1, le=30_000)
    width_mm: int = Field(ge=1, le=5_000)
    height_mm: int = Field(ge=1, le=6_000)
    seats: int | None = Field(default=None, ge=1, le=100)
    axles: int | None = Field(default=None, ge=2, le=12)
    gross_mass_kg: int | None = Field(default=None, ge=1, le=200_000)
    user_type: UserType = UserType.NORMAL

    @field_validator("plate")
    @classmethod
    def _plate(cls, plate: str, info: ValidationInfo) -> str:
        colour = info.data.get("plate_colour")
        return plate if colour is None else vehicles.validate_plate(plate, colour)

    @field_validator("height_mm")
    @classmethod
    def _dimensions(cls, height: int, info: ValidationInfo) -> int:
        length, width = info.data.get("length_mm"), info.data.get("width_mm")
        if length is not None and width is not None:
            vehicles.validate_dimensions(length, width, height)
        return height

    @model_validator(mode="after")
    def _classified(self) -> Self:
        self.to_vehicle()  # a kind without the figures its class needs is refused here, naming the vehicle
        return self

    def to_vehicle(self) -> Vehicle:
        """The vehicle with its class computed (JT/T 489-2019)."""
        return Vehicle(
            plate=self.plate,
            plate_colour=self.plate_colour,
            kind=self.kind,
            vehicle_class=vehicles.classify_vehicle(
                kind=self.kind.value,
                seats=self.seats,
                axles=self.axles,
                length_mm=self.length_mm,
                gross_mass_kg=self.gross_mass_kg,
            ),
            vin=self.vin,
            engine_number=self.engine_number,
            length_mm=self.length_mm,
            width_mm=self.width_mm,
            height_mm=self.height_mm,
            seats=self.seats,
            axles=self.axles,
            gross_mass_kg=self.gross_mass_kg,
            user_type=self.user_type,
        )


class BankCardTyping(RequestModel):
    """A bank card number typed twice at a bank outlet (a self-operated outlet skips the step)."""

    bank_card_number: BankCardTyped | None = None
    bank_card_confirm: BankCardTyped | None = None

    def bank_card(self) -> tuple[str, str] | None:
        """The bank card typed twice, or None when neither typing came."""
        if self.bank_card_number is None and self.bank_card_confirm is None:
            return None
        return (self.bank_card_number or "", self.bank_card_confirm or "")


class ApplicationIn(BankCardTyping):
    """A vehicle application at the operator's outlet: the customer (found or created at the counter
    first), the vehicle, the card type wanted and, at a bank outlet, the bank card typed twice."""

    customer_id: UUID
    vehicle: VehicleIn
    card_type: CardType


class VehicleOut(BaseModel):
    """A vehicle with its codes named."""

    key: str
    plate: str
    plate_colour: PlateColour
    plate_colour_name: dict[str, str]
    kind: VehicleKind
    vehicle_class: VehicleClass
    vehicle_class_name: dict[str, str]
    user_type: UserType
    vin: str
    engine_number: str
    length_mm: int
    width_mm: int
    height_mm: int
    seats: int | None
    axles: int | None
    gross_mass_kg: int | None

    @classmethod
    def of(cls, vehicle: Vehicle) -> Self:
        return cls(
            key=vehicle.key,
            plate=vehicle.plate,
            plate_colour=vehicle.plate_colour,
            plate_colour_name=_code_names(vehicle.plate_colour),
            kind=vehicle.kind,
            vehicle_class=vehicle.vehicle_class,
            vehicle_class_name=_code_names(vehicle.vehicle_class),
            user_type=vehicle.user_type,
            vin=vehicle.vin,
            engine_number=vehicle.engine_number,
            length_mm=vehicle.length_mm,
            width_mm=vehicle.width_mm,
            height_mm=vehicle.height_mm,
            seats=vehicle.seats,
            axles=vehicle.axles,
            gross_mass_kg=vehicle.gross_mass_kg,
        )


class ApplicationOut(BaseModel):
    """An application as its outlet sees it."""

    id: UUID
    outlet_id: UUID
    operator_id: UUID
    customer_id: UUID
    vehicle: VehicleOut
    card_type: CardType
    card_type_name: dict[str, str]
    bank_card_id: UUID | None
    status: ApplicationStatus
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, application: Application) -> Self:
        return cls(
            id=application.id,
            outlet_id=application.outlet_id,
            operator_id=application.operator_id,
            customer_id=application.customer_id,
            vehicle=VehicleOut.of(application.vehicle),
            card_type=application.card_type,
            card_type_name=_code_names(application.card_type),
            bank_card_id=application.bank_card_id,
            status=application.status,
            created_at=application.created_at,
            updated_at=application.updated_at,
        )


class ApplicationPage(BaseModel):
    """A page of applications, newest first; ``next_cursor`` continues it."""

    items: list[ApplicationOut]
    next_cursor: str | None


# --- card issuance ---------------------------------------------------------------------------------------


class CardReadIn(RequestModel):
    """读卡: read the card in the operator's slot for this application, in the issuance mode chosen."""

    mode: IssuanceMode = IssuanceMode.NEW


class CardIssuanceOut(BaseModel):
    """One card's issuance for an application, with what the retry rules leave."""

    status: CardIssuanceStatus
    mode: IssuanceMode
    attempts: int
    failures: int
    retries_left: int
    last_error: str | None

    @classmethod
    def of(cls, issuance: CardIssuance, *, retries_per_card: int) -> Self:
        return cls(
            status=issuance.status,
            mode=issuance.mode,
            attempts=issuance.attempts,
            failures=issuance.failures,
            retries_left=max(0, retries_per_card + 1 - issuance.failures),
            last_error=issuance.last_error,
        )


class CardReadOut(BaseModel):
    """What 读卡 shows: the vehicle, the card number, class and card type, the card's balance."""

    application: ApplicationOut
    card_number: str
    card_type: CardType
    card_type_name: dict[str, str]
    balance: int
    issuance: CardIssuanceOut


class CardRegisterIn(BankCardTyping):
    """注册: the card read (still in the slot), the mode, and at a bank outlet the bank card typed twice."""

    card_number: Annotated[str, Field(pattern=r"^[0-9]{20}$")]
    mode: IssuanceMode = IssuanceMode.NEW


class CardRegisteredOut(BaseModel):
    """A registered card: the application, the card and its ledger account."""

    application: ApplicationOut
    card: ChipOut
    issuance: CardIssuanceOut
    account_id: UUID
