"""The byte layouts of the user card's and the OBU's files (spec §1, §2, §8) and the identifiers in them.

Each file is a frozen dataclass that checks its fields when built, so ``to_bytes`` cannot fail and
``from_bytes(x.to_bytes()) == x``. A value that does not fit, or bytes that do not decode, raise
:class:`InvalidField` naming the field. Dates and times are the card's local (China) time, naive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import IntEnum
from typing import Self, TypeVar

from etcwallet.issuance.chip.encoding import (
    InvalidField,
    ascii_decode,
    ascii_encode,
    bcd_date,
    bcd_decode,
    bcd_encode,
    bcd_time,
    date_bcd,
    digits,
    gbk_decode,
    gbk_encode,
    require_int,
    require_length,
    time_bcd,
    uint_bytes,
)
from etcwallet.issuance.chip.keys import CardIdentity
from etcwallet.issuance.codes import (
    PROVINCE_CODES,
    CardType,
    PlateColour,
    TransactionType,
    UserType,
    VehicleClass,
)

_Code = TypeVar("_Code", bound=IntEnum)


def _code(field: str, kind: type[_Code], value: int) -> _Code:
    """``value`` as a member of ``kind``, or a refusal naming the field."""
    try:
        return kind(value)
    except ValueError:
        raise InvalidField(field, "unknown_code", f"未知的代码 {value}", f"unknown code {value}") from None


def _network(field: str, value: str) -> str:
    digits(field, value, 4)
    if int(value[:2]) not in PROVINCE_CODES:
        raise InvalidField(
            field,
            "unknown_network",
            "网络编号应以省级行政区代码开头",
            "a network number starts with a province code",
        )
    return value


def _whole_seconds(field: str, value: datetime) -> datetime:
    if value.microsecond:
        raise InvalidField(
            field, "fractional_seconds", "时间只能精确到秒", "a card time has whole seconds only"
        )
    return value


# --- identifiers -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardNumber:
    """卡片表面号: the 20-digit card number, network number (4) + CPU card internal number (16)."""

    network: str
    internal: str

    def __post_init__(self) -> None:
        _network("card_number", self.network)
        digits("card_number", self.internal, 16)

    @classmethod
    def parse(cls, value: str) -> Self:
        """A card number from its 20 digits (spaces tolerated)."""
        compact = "".join(value.split())
        digits("card_number", compact, 20)
        return cls(compact[:4], compact[4:])

    def __str__(self) -> str:
        return self.network + self.internal


@dataclass(frozen=True, slots=True)
class ObuNumber:
    """The OBU contract serial (the SN an operator types): 16 digits starting with the network number."""

    value: str

    def __post_init__(self) -> None:
        digits("obu_number", self.value, 16)
        _network("obu_number", self.value[:4])

    @classmethod
    def parse(cls, value: str) -> Self:
        """An OBU number from its 16 digits (spaces tolerated)."""
        return cls("".join(value.split()))

    @property
    def network(self) -> str:
        return self.value[:4]

    def to_bytes(self) -> bytes:
        return bcd_encode("obu_number", self.value, 8)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls(bcd_decode("obu_number", require_length("obu_number", data, 8)))

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class IssuerId:
    """发行方标识 (8 bytes): GBK of the two-character province name + 8 BCD digits, e.g. 甘肃 62010001."""

    name: str
    code: str

    def __post_init__(self) -> None:
        if len(gbk_encode("issuer", self.name, 4).rstrip(b"\x00")) != 4:
            raise InvalidField(
                "issuer", "issuer_name", "发行方名称应为两个汉字", "the issuer name is two Chinese characters"
            )
        digits("issuer", self.code, 8)

    def to_bytes(self) -> bytes:
        return gbk_encode("issuer", self.name, 4) + bcd_encode("issuer", self.code, 4)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        require_length("issuer", data, 8)
        return cls(gbk_decode("issuer", data[:4]), bcd_decode("issuer", data[4:]))

    @property
    def diversification_factor(self) -> bytes:
        """The PSAM/issuer diversification factor: the identifier's first 4 bytes, twice."""
        return self.to_bytes()[:4] * 2


# --- user card -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardIssueFile:
    """0015 card issue file (50 bytes), written at issuance and readable without security."""

    SIZE = 50

    issuer: IssuerId
    card_type: CardType
    card_version: int
    card_number: CardNumber
    start_date: date
    expiry_date: date
    plate: str
    user_type: UserType
    plate_colour: PlateColour
    vehicle_class: VehicleClass
    reserved: bytes = bytes(7)

    def __post_init__(self) -> None:
        _code("card_type", CardType, self.card_type)
        require_int("card_version", self.card_version, 1)
        gbk_encode("plate", self.plate, 12)
        _code("user_type", UserType, self.user_type)
        _code("plate_colour", PlateColour, self.plate_colour)
        _code("vehicle_class", VehicleClass, self.vehicle_class)
        require_length("reserved", self.reserved, 7)

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                self.issuer.to_bytes(),
                bytes((self.card_type, self.card_version)),
                bcd_encode("card_number", self.card_number.network, 2),
                bcd_encode("card_number", self.card_number.internal, 8),
                date_bcd("start_date", self.start_date),
                date_bcd("expiry_date", self.expiry_date),
                gbk_encode("plate", self.plate, 12),
                bytes((self.user_type, self.plate_colour, self.vehicle_class)),
                self.reserved,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = require_length("card_issue_file", data, cls.SIZE)
        return cls(
            issuer=IssuerId.from_bytes(data[0:8]),
            card_type=_code("card_type", CardType, data[8]),
            card_version=data[9],
            card_number=CardNumber(
                bcd_decode("card_number", data[10:12]), bcd_decode("card_number", data[12:20])
            ),
            start_date=bcd_date("start_date", data[20:24]),
            expiry_date=bcd_date("expiry_date", data[24:28]),
            plate=gbk_decode("plate", data[28:40]),
            user_type=_code("user_type", UserType, data[40]),
            plate_colour=_code("plate_colour", PlateColour, data[41]),
            vehicle_class=_code("vehicle_class", VehicleClass, data[42]),
            reserved=data[43:50],
        )


IDENTITY_SIZE = 20  # 0015 bytes 0..19: issuer, card type, version, network, internal number


@dataclass(frozen=True, slots=True)
class IssueFileContents:
    """0015 as a card in any state holds it: the identity set at manufacture (bytes 0..19) always, the
    personalised part (bytes 20..49) only once written. :meth:`CardIssueFile.from_bytes` refuses a blank
    card's zero dates; this reads both."""

    issuer: IssuerId
    card_type: CardType
    card_version: int
    card_number: CardNumber
    personalised: CardIssueFile | None

    @property
    def identity(self) -> CardIdentity:
        """What the card's keys are diversified by (issuer id, application serial)."""
        return CardIdentity(
            issuer_id=self.issuer.to_bytes(),
            application_serial=bcd_encode("card_number", self.card_number.internal, 8),
        )


def identity_bytes(
    *, issuer: IssuerId, card_type: CardType, card_version: int, card_number: CardNumber
) -> bytes:
    """0015 bytes 0..19 (issuer id, card type, card version, network BCD, internal number BCD), written at
    manufacture (一发)."""
    return b"".join(
        (
            issuer.to_bytes(),
            bytes((int(card_type), card_version)),
            bcd_encode("card_number", card_number.network, 2),
            bcd_encode("card_number", card_number.internal, 8),
        )
    )


def read_issue_file(data: bytes) -> IssueFileContents:
    """A 0015 file read from a card, blank or issued; an issued part that does not decode raises
    :class:`InvalidField`, as does a malformed identity."""
    data = require_length("card_issue_file", data, CardIssueFile.SIZE)
    try:
        card_type = CardType(data[8])
    except ValueError:
        raise InvalidField(
            "card_type", "unknown_code", f"未知的卡片类型 {data[8]}", f"unknown card type {data[8]}"
        ) from None
    personalised = None if not any(data[IDENTITY_SIZE:]) else CardIssueFile.from_bytes(data)
    return IssueFileContents(
        issuer=IssuerId.from_bytes(data[0:8]),
        card_type=card_type,
        card_version=data[9],
        card_number=CardNumber(
            bcd_decode("card_number", data[10:12]), bcd_decode("card_number", data[12:20])
        ),
        personalised=personalised,
    )


@dataclass(frozen=True, slots=True)
class CardholderFile:
    """0016 cardholder file (55 bytes): who holds the card."""

    SIZE = 55

    holder_flag: int
    staff_flag: int
    name: str
    id_number: str
    id_type: int = 0  # 0 resident ID

    def __post_init__(self) -> None:
        require_int("holder_flag", self.holder_flag, 1)
        require_int("staff_flag", self.staff_flag, 1)
        gbk_encode("name", self.name, 20)
        ascii_encode("id_number", self.id_number, 32)
        require_int("id_type", self.id_type, 1)

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                bytes((self.holder_flag, self.staff_flag)),
                gbk_encode("name", self.name, 20),
                ascii_encode("id_number", self.id_number, 32),
                bytes((self.id_type,)),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = require_length("cardholder_file", data, cls.SIZE)
        return cls(
            holder_flag=data[0],
            staff_flag=data[1],
            name=gbk_decode("name", data[2:22]),
            id_number=ascii_decode("id_number", data[22:54]),
            id_type=data[54],
        )


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """One 23-byte record of 0018, the cyclic transaction log (record 1 the newest)."""

    SIZE = 23

    serial: int
    overdraw_limit: int
    amount: int
    transaction_type: TransactionType
    terminal_id: bytes
    at: datetime

    def __post_init__(self) -> None:
        require_int("serial", self.serial, 2)
        require_int("overdraw_limit", self.overdraw_limit, 3)
        require_int("amount", self.amount, 4)
        _code("transaction_type", TransactionType, self.transaction_type)
        require_length("terminal_id", self.terminal_id, 6)
        _whole_seconds("at", self.at)

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                uint_bytes("serial", self.serial, 2),
                uint_bytes("overdraw_limit", self.overdraw_limit, 3),
                uint_bytes("amount", self.amount, 4),
                bytes((self.transaction_type,)),
                self.terminal_id,
                date_bcd("at", self.at.date()),
                time_bcd("at", self.at.time()),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = require_length("transaction_record", data, cls.SIZE)
        return cls(
            serial=int.from_bytes(data[0:2], "big"),
            overdraw_limit=int.from_bytes(data[2:5], "big"),
            amount=int.from_bytes(data[5:9], "big"),
            transaction_type=_code("transaction_type", TransactionType, data[9]),
            terminal_id=data[10:16],
            at=datetime.combine(bcd_date("at", data[16:20]), bcd_time("at", data[20:23])),
        )


class LaneStatus(IntEnum):
    """How the lane that wrote a 0019 record saw the vehicle."""

    MTC_ENTRY = 1
    MTC_EXIT = 2
    ETC_ENTRY = 3
    ETC_EXIT = 4


ENTRY_EXIT_HEADER = bytes.fromhex("AA2900")


@dataclass(frozen=True, slots=True)
class EntryExitRecord:
    """0019 entry/exit record, 2014 layout: ``AA 29 00`` + 40 bytes (the 2019 gantry layout is not public)."""

    SIZE = 43

    entry_network: str
    station: int
    lane: int
    entry_time: datetime
    vehicle_class: VehicleClass
    lane_status: LaneStatus
    flag_stations: bytes
    collector: int
    shift: int
    plate: str
    reserved: bytes = bytes(4)

    def __post_init__(self) -> None:
        digits("entry_network", self.entry_network, 4)
        require_int("station", self.station, 2)
        require_int("lane", self.lane, 1)
        if self.entry_time.tzinfo is None:
            raise InvalidField(
                "entry_time", "naive_time", "入口时间必须带时区", "the entry time must carry a UTC offset"
            )
        _whole_seconds("entry_time", self.entry_time)
        require_int("entry_time", int(self.entry_time.timestamp()), 4)
        _code("vehicle_class", VehicleClass, self.vehicle_class)
        _code("lane_status", LaneStatus, self.lane_status)
        require_length("flag_stations", self.flag_stations, 9)
        require_int("collector", self.collector, 3)
        require_int("shift", self.shift, 1)
        gbk_encode("plate", self.plate, 12)
        require_length("reserved", self.reserved, 4)

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                ENTRY_EXIT_HEADER,
                bcd_encode("entry_network", self.entry_network, 2),
                uint_bytes("station", self.station, 2),
                bytes((self.lane,)),
                uint_bytes("entry_time", int(self.entry_time.timestamp()), 4),
                bytes((self.vehicle_class, self.lane_status)),
                self.flag_stations,
                uint_bytes("collector", self.collector, 3),
                bytes((self.shift,)),
                gbk_encode("plate", self.plate, 12),
                self.reserved,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = require_length("entry_exit_record", data, cls.SIZE)
        if data[:3] != ENTRY_EXIT_HEADER:
            raise InvalidField(
                "entry_exit_record", "bad_header", "记录头应为 AA 29 00", "the record starts with AA 29 00"
            )
        return cls(
            entry_network=bcd_decode("entry_network", data[3:5]),
            station=int.from_bytes(data[5:7], "big"),
            lane=data[7],
            entry_time=datetime.fromtimestamp(int.from_bytes(data[8:12], "big"), UTC),
            vehicle_class=_code("vehicle_class", VehicleClass, data[12]),
            lane_status=_code("lane_status", LaneStatus, data[13]),
            flag_stations=data[14:23],
            collector=int.from_bytes(data[23:26], "big"),
            shift=data[26],
            plate=gbk_decode("plate", data[27:39]),
            reserved=data[39:43],
        )


# --- OBU -------------------------------------------------------------------------------------------------


class TamperStatus(IntEnum):
    """The OBU's tamper byte (offset 26 of the system file) **[?]**: 01 on the car and activated."""

    REMOVED = 0x00
    ACTIVATED = 0x01


TAMPER_OFFSET = 26


@dataclass(frozen=True, slots=True)
class ObuSystemFile:
    """The OBU system information file (MF EF01, 99 bytes)."""

    SIZE = 99

    issuer: IssuerId
    contract_type: int
    contract_version: int
    obu_number: ObuNumber
    signing_date: date
    expiry_date: date
    tamper: TamperStatus
    reserved: bytes = bytes(72)

    def __post_init__(self) -> None:
        require_int("contract_type", self.contract_type, 1)
        require_int("contract_version", self.contract_version, 1)
        _code("tamper", TamperStatus, self.tamper)
        require_length("reserved", self.reserved, 72)

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                self.issuer.to_bytes(),
                bytes((self.contract_type, self.contract_version)),
                self.obu_number.to_bytes(),
                date_bcd("signing_date", self.signing_date),
                date_bcd("expiry_date", self.expiry_date),
                bytes((self.tamper,)),
                self.reserved,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = require_length("obu_system_file", data, cls.SIZE)
        return cls(
            issuer=IssuerId.from_bytes(data[0:8]),
            contract_type=data[8],
            contract_version=data[9],
            obu_number=ObuNumber.from_bytes(data[10:18]),
            signing_date=bcd_date("signing_date", data[18:22]),
            expiry_date=bcd_date("expiry_date", data[22:26]),
            tamper=_code("tamper", TamperStatus, data[TAMPER_OFFSET]),
            reserved=data[27:99],
        )


@dataclass(frozen=True, slots=True)
class ObuVehicleFile:
    """The OBU vehicle information file (DF01 EF01, 79 bytes, 2019 layout), as it reads once decrypted."""

    SIZE = 79

    plate: str
    plate_colour: PlateColour
    vehicle_class: VehicleClass
    user_type: UserType
    length_mm: int
    width_mm: int
    height_mm: int
    rated_load_kg: int
    curb_weight_kg: int
    gross_mass_kg: int
    rated_passengers: int
    vin: str
    description: str = ""
    reserved: bytes = bytes(14)

    def __post_init__(self) -> None:
        gbk_encode("plate", self.plate, 12)
        _code("plate_colour", PlateColour, self.plate_colour)
        _code("vehicle_class", VehicleClass, self.vehicle_class)
        _code("user_type", UserType, self.user_type)
        for name, size in _VEHICLE_SIZES:
            require_int(name, getattr(self, name), size)
        ascii_encode("vin", self.vin, 17)
        gbk_encode("description", self.description, 16)
        require_length("reserved", self.reserved, 14)

    def to_bytes(self) -> bytes:
        return b"".join(
            (
                gbk_encode("plate", self.plate, 12),
                bytes((0, self.plate_colour, self.vehicle_class, self.user_type)),
                *(uint_bytes(name, getattr(self, name), size) for name, size in _VEHICLE_SIZES),
                ascii_encode("vin", self.vin, 17),
                gbk_encode("description", self.description, 16),
                self.reserved,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        data = require_length("obu_vehicle_file", data, cls.SIZE)
        colour = int.from_bytes(data[12:14], "big")
        sizes: dict[str, int] = {}
        offset = 16
        for name, size in _VEHICLE_SIZES:
            sizes[name] = int.from_bytes(data[offset : offset + size], "big")
            offset += size
        return cls(
            plate=gbk_decode("plate", data[0:12]),
            plate_colour=_code("plate_colour", PlateColour, colour),
            vehicle_class=_code("vehicle_class", VehicleClass, data[14]),
            user_type=_code("user_type", UserType, data[15]),
            vin=ascii_decode("vin", data[32:49]),
            description=gbk_decode("description", data[49:65]),
            reserved=data[65:79],
            **sizes,
        )


_VEHICLE_SIZES = (
    ("length_mm", 2),
    ("width_mm", 2),
    ("height_mm", 2),
    ("rated_load_kg", 3),
    ("curb_weight_kg", 3),
    ("gross_mass_kg", 3),
    ("rated_passengers", 1),
)
