"""The card and OBU file layouts: fixed bytes, round trips, and refusals naming the field."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcwallet.issuance.chip.encoding import InvalidField, bcd_date, gbk_encode
from etcwallet.issuance.chip.files import (
    TAMPER_OFFSET,
    CardholderFile,
    CardIssueFile,
    CardNumber,
    EntryExitRecord,
    IssuerId,
    LaneStatus,
    ObuNumber,
    ObuSystemFile,
    ObuVehicleFile,
    TamperStatus,
    TransactionRecord,
)
from etcwallet.issuance.codes import (
    PROVINCE_CODES,
    CardType,
    PlateColour,
    TransactionType,
    UserType,
    VehicleClass,
)

GANSU = IssuerId("甘肃", "62010001")


def _issue_file(**changes: object) -> CardIssueFile:
    values: dict[str, object] = {
        "issuer": GANSU,
        "card_type": CardType.STORED_VALUE,
        "card_version": 0x40,
        "card_number": CardNumber.parse("62010123456789012345"),
        "start_date": date(2024, 1, 1),
        "expiry_date": date(2034, 12, 31),
        "plate": "甘A12345",
        "user_type": UserType.NORMAL,
        "plate_colour": PlateColour.BLUE,
        "vehicle_class": VehicleClass.PASSENGER_1,
    }
    values.update(changes)
    return CardIssueFile(**values)  # type: ignore[arg-type]


def test_issuer_identifier_is_gbk_province_then_bcd() -> None:
    assert GANSU.to_bytes() == bytes.fromhex("B8CACBE062010001")
    assert IssuerId.from_bytes(bytes.fromhex("B8CACBE062010001")) == GANSU
    assert GANSU.diversification_factor == bytes.fromhex("B8CACBE0B8CACBE0")


def test_card_issue_file_bytes_at_their_offsets() -> None:
    raw = _issue_file().to_bytes()
    assert len(raw) == 50
    assert raw[0:8] == bytes.fromhex("B8CACBE062010001")
    assert raw[8:10] == bytes.fromhex("1640")
    assert raw[10:20] == bytes.fromhex("62010123456789012345")
    assert raw[20:28] == bytes.fromhex("2024010120341231")
    assert raw[28:40] == "甘A12345".encode("gbk") + bytes(4)
    assert raw[40:43] == bytes((0, 0, 1)) and raw[43:] == bytes(7)
    assert CardIssueFile.from_bytes(raw) == _issue_file()


def test_cardholder_transaction_and_entry_exit_bytes() -> None:
    holder = CardholderFile(0, 0, "张三", "620102199001011234", 0)
    raw = holder.to_bytes()
    assert len(raw) == 55 and raw[2:6] == "张三".encode("gbk") and raw[22:40] == b"620102199001011234"
    record = TransactionRecord(
        1, 0, 10000, TransactionType.LOAD, bytes.fromhex("112233445566"), datetime(2024, 1, 1, 12)
    )
    assert record.to_bytes() == bytes.fromhex("0001000000000027100211223344556620240101120000")
    entry = EntryExitRecord(
        "6201",
        0x0102,
        3,
        datetime(2024, 1, 1, tzinfo=UTC),
        VehicleClass.TRUCK_1,
        LaneStatus.ETC_ENTRY,
        bytes(9),
        7,
        1,
        "甘A12345",
    )
    raw = entry.to_bytes()
    assert len(raw) == 43 and raw[:3] == bytes.fromhex("AA2900") and raw[3:8] == bytes.fromhex("6201010203")
    assert raw[8:12] == (1704067200).to_bytes(4, "big") and raw[12:14] == bytes((11, 3))


def test_obu_files_bytes_at_their_offsets() -> None:
    system = ObuSystemFile(
        GANSU,
        1,
        0x40,
        ObuNumber("6201000012345678"),
        date(2024, 1, 1),
        date(2034, 1, 1),
        TamperStatus.ACTIVATED,
    )
    raw = system.to_bytes()
    assert len(raw) == 99 and raw[10:18] == bytes.fromhex("6201000012345678") and raw[TAMPER_OFFSET] == 1
    vehicle = ObuVehicleFile(
        "甘A12345",
        PlateColour.YELLOW,
        VehicleClass.TRUCK_2,
        UserType.NORMAL,
        7000,
        2300,
        3000,
        5000,
        4000,
        9000,
        3,
        "1M8GDM9AXKP042788",
    )
    raw = vehicle.to_bytes()
    assert len(raw) == 79 and raw[12:16] == bytes((0, 1, 12, 0))
    assert raw[16:18] == (7000).to_bytes(2, "big") and raw[32:49] == b"1M8GDM9AXKP042788"


@pytest.mark.parametrize(
    ("build", "field", "code"),
    [
        (lambda: CardNumber.parse("6201012345"), "card_number", "not_digits"),
        (lambda: CardNumber.parse("99010123456789012345"), "card_number", "unknown_network"),
        (lambda: ObuNumber("620100001234567X"), "obu_number", "not_digits"),
        (lambda: IssuerId("甘", "62010001"), "issuer", "issuer_name"),
        (lambda: _issue_file(plate="甘A123456789012"), "plate", "too_long"),
        (lambda: _issue_file(plate="甘A😀"), "plate", "not_gbk"),
        (lambda: _issue_file(card_type=21), "card_type", "unknown_code"),
        (lambda: _issue_file(card_version=256), "card_version", "out_of_range"),
        (lambda: _issue_file(reserved=bytes(6)), "reserved", "wrong_length"),
        (lambda: CardholderFile(0, 0, "张三", "身份证", 0), "id_number", "not_ascii"),
        (
            lambda: TransactionRecord(70000, 0, 1, TransactionType.LOAD, bytes(6), datetime(2024, 1, 1)),
            "serial",
            "out_of_range",
        ),
        (lambda: CardIssueFile.from_bytes(bytes(49)), "card_issue_file", "wrong_length"),
        (lambda: TransactionRecord.from_bytes(bytes(23)), "transaction_type", "unknown_code"),
        (lambda: EntryExitRecord.from_bytes(bytes(43)), "entry_exit_record", "bad_header"),
        (lambda: bcd_date("start_date", bytes.fromhex("20241301")), "start_date", "bad_date"),
        (lambda: bcd_date("start_date", bytes.fromhex("2024A101")), "start_date", "not_bcd"),
    ],
)
def test_bad_values_are_refused_naming_the_field(build: object, field: str, code: str) -> None:
    with pytest.raises(InvalidField) as refused:
        build()  # type: ignore[operator]
    assert (refused.value.field, refused.value.code) == (field, code)
    assert refused.value.error().field == field


# --- round trips -----------------------------------------------------------------------------------------

_networks = st.builds(
    lambda p, n: f"{p:02d}{n:02d}", st.sampled_from(sorted(PROVINCE_CODES)), st.integers(0, 99)
)
_card_numbers = st.builds(CardNumber, _networks, st.from_regex(r"\A[0-9]{16}\Z"))
_obu_numbers = st.builds(lambda n, rest: ObuNumber(n + rest), _networks, st.from_regex(r"\A[0-9]{12}\Z"))
_issuers = st.builds(
    IssuerId, st.sampled_from(["甘肃", "北京", "新疆", "内蒙"]), st.from_regex(r"\A[0-9]{8}\Z")
)
_dates = st.dates(date(1990, 1, 1), date(2099, 12, 31))
_card_times = st.datetimes(datetime(1990, 1, 1), datetime(2099, 12, 31)).map(
    lambda t: t.replace(microsecond=0)
)


def _gbk_text(size: int) -> st.SearchStrategy[str]:
    chars = st.sampled_from("甘肃陇通卡张三李四ABCxyz0123-·")
    return st.text(chars, max_size=size).filter(lambda s: len(s.encode("gbk")) <= size)


@given(
    st.builds(
        CardIssueFile,
        issuer=_issuers,
        card_type=st.sampled_from(CardType),
        card_version=st.integers(0, 255),
        card_number=_card_numbers,
        start_date=_dates,
        expiry_date=_dates,
        plate=_gbk_text(12),
        user_type=st.sampled_from(UserType),
        plate_colour=st.sampled_from(PlateColour),
        vehicle_class=st.sampled_from(VehicleClass),
        reserved=st.binary(min_size=7, max_size=7),
    )
)
def test_card_issue_file_round_trips(file: CardIssueFile) -> None:
    assert CardIssueFile.from_bytes(file.to_bytes()) == file


@given(
    st.builds(
        CardholderFile,
        st.integers(0, 255),
        st.integers(0, 255),
        _gbk_text(20),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=32),
        st.integers(0, 255),
    )
)
def test_cardholder_file_round_trips(file: CardholderFile) -> None:
    assert CardholderFile.from_bytes(file.to_bytes()) == file


@given(
    st.builds(
        TransactionRecord,
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.sampled_from(TransactionType),
        st.binary(min_size=6, max_size=6),
        _card_times,
    )
)
def test_transaction_record_round_trips(record: TransactionRecord) -> None:
    assert TransactionRecord.from_bytes(record.to_bytes()) == record


@given(
    st.builds(
        EntryExitRecord,
        st.from_regex(r"\A[0-9]{4}\Z"),
        st.integers(0, 0xFFFF),
        st.integers(0, 255),
        st.integers(0, 0xFFFFFFFF).map(lambda s: datetime.fromtimestamp(s, UTC)),
        st.sampled_from(VehicleClass),
        st.sampled_from(LaneStatus),
        st.binary(min_size=9, max_size=9),
        st.integers(0, 0xFFFFFF),
        st.integers(0, 255),
        _gbk_text(12),
        st.binary(min_size=4, max_size=4),
    )
)
def test_entry_exit_record_round_trips(record: EntryExitRecord) -> None:
    assert EntryExitRecord.from_bytes(record.to_bytes()) == record


@given(
    st.builds(
        ObuSystemFile,
        _issuers,
        st.integers(0, 255),
        st.integers(0, 255),
        _obu_numbers,
        _dates,
        _dates,
        st.sampled_from(TamperStatus),
        st.binary(min_size=72, max_size=72),
    )
)
def test_obu_system_file_round_trips(file: ObuSystemFile) -> None:
    assert ObuSystemFile.from_bytes(file.to_bytes()) == file


@given(
    st.builds(
        ObuVehicleFile,
        _gbk_text(12),
        st.sampled_from(PlateColour),
        st.sampled_from(VehicleClass),
        st.sampled_from(UserType),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFF),
        st.integers(0, 0xFFFFFF),
        st.integers(0, 0xFFFFFF),
        st.integers(0, 255),
        st.from_regex(r"\A[A-HJ-NPR-Z0-9]{0,17}\Z"),
        _gbk_text(16),
        st.binary(min_size=14, max_size=14),
    )
)
def test_obu_vehicle_file_round_trips(file: ObuVehicleFile) -> None:
    assert ObuVehicleFile.from_bytes(file.to_bytes()) == file


def test_gbk_fields_are_zero_padded() -> None:
    assert gbk_encode("plate", "甘A1", 6) == "甘A1".encode("gbk") + bytes(2)
