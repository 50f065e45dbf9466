"""The issuance domain's plain types: chips in stock and in life, vehicle applications, issuances (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from uuid import UUID

from etcwallet.issuance.codes import CardType, PlateColour, UserType, VehicleClass


class ChipKind(StrEnum):
    """A user card (陇通卡) or an OBU tag (电子标签)."""

    CARD = "card"
    TAG = "tag"

    @property
    def zh(self) -> str:
        return "用户卡" if self is ChipKind.CARD else "电子标签"


class ChipStatus(StrEnum):
    """Where a card or tag is in its life: in stock → issued → active → lost/cancelled/deregistered/damaged."""

    IN_STOCK = "in_stock"
    ISSUED = "issued"
    ACTIVE = "active"
    LOST = "lost"
    CANCELLED = "cancelled"
    DEREGISTERED = "deregistered"
    DAMAGED = "damaged"
    SUSPECT_DAMAGED = "suspect_damaged"

    @property
    def live(self) -> bool:
        """Whether the chip belongs to a vehicle now (one live card and one live tag per vehicle)."""
        return self in (ChipStatus.ISSUED, ChipStatus.ACTIVE)


CHIP_STATUS_NAMES: dict[ChipStatus, tuple[str, str]] = {
    ChipStatus.IN_STOCK: ("库存", "in stock"),
    ChipStatus.ISSUED: ("已发行", "issued"),
    ChipStatus.ACTIVE: ("已激活", "active"),
    ChipStatus.LOST: ("已挂失", "reported lost"),
    ChipStatus.CANCELLED: ("已注销", "cancelled"),
    ChipStatus.DEREGISTERED: ("已注销（标签）", "deregistered"),
    ChipStatus.DAMAGED: ("已损坏", "damaged"),
    ChipStatus.SUSPECT_DAMAGED: ("疑似损坏", "suspected damaged"),
}


class VehicleKind(StrEnum):
    """The vehicle's kind, which decides how its class is computed (客车, 货车, 专项作业车)."""

    PASSENGER = "passenger"
    TRUCK = "truck"
    SPECIAL = "special"


class ApplicationStatus(StrEnum):
    """A vehicle application: open until its card is issued, then its tag; or cancelled."""

    OPEN = "open"
    CARD_ISSUED = "card_issued"
    TAG_ISSUED = "tag_issued"
    CANCELLED = "cancelled"


class IssuanceMode(StrEnum):
    """办理模式: a first card or tag for the vehicle, a replacement for a lost or damaged one, or a renewal."""

    NEW = "new"
    REPLACEMENT = "replacement"
    RENEWAL = "renewal"


class CardIssuanceStatus(StrEnum):
    """One card's issuance for one application: read, being written (persisted before the chip is
    spoken to), failed (may be retried within the rules), registered."""

    READ = "read"
    WRITING = "writing"
    FAILED = "failed"
    REGISTERED = "registered"


class IssuanceAction(StrEnum):
    """The audit actions of issuance (``issuance.<what>.<why>``)."""

    STOCK_ADD = "issuance.stock.add"
    STOCK_MOVE = "issuance.stock.move"
    APPLICATION_CREATE = "issuance.application.create"
    APPLICATION_CANCEL = "issuance.application.cancel"
    CARD_READ = "issuance.card.read"
    CARD_REGISTER = "issuance.card.register"
    CARD_FAILED = "issuance.card.failed"
    # tags (tags.py)
    TAG_CARD_READ = "issuance.tag.card_read"
    TAG_READ = "issuance.tag.read"
    TAG_REGISTER = "issuance.tag.register"
    TAG_FAILED = "issuance.tag.failed"
    TAG_CHECK = "issuance.tag.check"
    TAG_ACTIVATE = "issuance.tag.activate"

    # detection, loss and cancellation (detection.py)
    CARD_DETECT = "issuance.card.detect"
    CARD_ACTIVATE = "issuance.card.activate"
    TAG_DETECT = "issuance.tag.detect"
    TAG_DEREGISTER = "issuance.tag.deregister"
    CARD_REPORT_LOST = "issuance.card.report_lost"
    CARD_CANCEL = "issuance.card.cancel"

    # account services (services.py)
    ACCOUNT_QUERY = "issuance.account.query"
    BANK_CARD_CHANGE_START = "issuance.bank_card.change_start"
    BANK_CARD_CHANGE = "issuance.bank_card.change"
    INFO_CHANGE_FIND = "issuance.info_change.find"
    INFO_CHANGE = "issuance.info_change.change"


class IssuanceEvent(StrEnum):
    """The events issuance emits for the wallet and tolling (the outbox's ``type``)."""

    CARD_ISSUED = "issuance.card_issued"
    TAG_ISSUED = "issuance.tag_issued"
    TAG_ACTIVATED = "issuance.tag_activated"
    CARD_REPORTED_LOST = "issuance.card_reported_lost"
    CARD_CANCELLED = "issuance.card_cancelled"
    TAG_DEREGISTERED = "issuance.tag_deregistered"
    # detection (detection.py)
    CARD_ACTIVATED = "issuance.card_activated"


@dataclass(frozen=True)
class Vehicle:
    """A vehicle as an application describes it; ``plate`` + ``plate_colour`` is its key (甘A12345_0)."""

    plate: str
    plate_colour: PlateColour
    kind: VehicleKind
    vehicle_class: VehicleClass
    vin: str
    engine_number: str
    length_mm: int
    width_mm: int
    height_mm: int
    seats: int | None = None
    axles: int | None = None
    gross_mass_kg: int | None = None
    user_type: UserType = UserType.NORMAL

    @property
    def key(self) -> str:
        """The vehicle key of data exchange: plate, underscore, colour code."""
        return f"{self.plate}_{int(self.plate_colour)}"


@dataclass(frozen=True)
class Application:
    """A vehicle application created at an outlet by an operator: the only source issuance accepts."""

    id: UUID
    outlet_id: UUID
    operator_id: UUID
    customer_id: UUID
    vehicle: Vehicle
    card_type: CardType
    bank_card_id: UUID | None
    status: ApplicationStatus
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StockBatch:
    """Blank cards or tags brought into an outlet's stock together, numbered consecutively."""

    id: UUID
    kind: ChipKind
    card_type: CardType | None
    outlet_id: UUID
    first_number: str
    count: int
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class Chip:
    """A user card or an OBU tag as the platform knows it: number, stock, status and, once issued, owner."""

    id: UUID
    kind: ChipKind
    number: str
    card_type: CardType | None
    batch_id: UUID
    outlet_id: UUID
    status: ChipStatus
    failures: int
    application_id: UUID | None
    customer_id: UUID | None
    plate: str | None
    plate_colour: PlateColour | None
    expires_on: date | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ChipChange:
    """One entry of a chip's history: a status or an outlet changed, why, and by whom."""

    chip_id: UUID
    from_status: ChipStatus | None
    to_status: ChipStatus
    from_outlet: UUID | None
    to_outlet: UUID
    reason: str
    actor: str
    at: datetime


@dataclass(frozen=True)
class CardIssuance:
    """One card's issuance for one application, with the seed's retry counters."""

    id: UUID
    application_id: UUID
    chip_id: UUID
    outlet_id: UUID
    operator_id: UUID
    mode: IssuanceMode
    status: CardIssuanceStatus
    attempts: int
    failures: int
    issue_content: bytes | None
    holder_content: bytes | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


# --- detection (detection.py) ------------------------------------------------------------------------------


class CardActivationStatus(StrEnum):
    """A card activation (卡片激活): persisted before the card is written, done once recorded."""

    WRITING = "writing"
    DONE = "done"


@dataclass(frozen=True)
class CardActivation:
    """One activation or renewal of a card: the start and expiry dates written to 0015 bytes 20..27."""

    id: UUID
    chip_id: UUID
    outlet_id: UUID
    operator_id: UUID
    renewal: bool
    start_date: date
    expiry_date: date
    status: CardActivationStatus
    created_at: datetime
    updated_at: datetime


# --- tags (tags.py) ---------------------------------------------------------------------------------------


class TagIssuanceStatus(StrEnum):
    """One tag issuance for an application: the card read, the tag read (its SN confirmed), being written
    (persisted before the tag is spoken to), failed (the tag refused a write), registered, and ended by
    the tag's deregistration (标签注销), after which the application may issue a new tag."""

    CARD_READ = "card_read"
    TAG_READ = "tag_read"
    WRITING = "writing"
    FAILED = "failed"
    REGISTERED = "registered"
    DEREGISTERED = "deregistered"


@dataclass(frozen=True)
class TagIssuance:
    """A tag issuance: the application, its issued card, the tag first read and the files to write."""

    id: UUID
    application_id: UUID
    card_chip_id: UUID
    chip_id: UUID | None
    outlet_id: UUID
    operator_id: UUID
    mode: IssuanceMode | None
    first_read_number: str | None
    status: TagIssuanceStatus
    attempts: int
    last_error: str | None
    system_content: bytes | None
    vehicle_content: bytes | None
    created_at: datetime
    updated_at: datetime
