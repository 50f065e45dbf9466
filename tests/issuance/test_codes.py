"""The code tables, the vehicle class boundaries, and the plate and VIN checks."""

from __future__ import annotations

import pytest

from etcwallet.issuance.chip.encoding import InvalidField
from etcwallet.issuance.codes import (
    PROVINCES,
    CardType,
    ObuListReason,
    PlateColour,
    StatusListReason,
    UserType,
    VehicleClass,
    VehicleKind,
    validate_plate,
    validate_vin,
    vehicle_class,
    vehicle_key,
    vin_check_digit,
)


def test_tables_hold_the_spec_codes_with_both_names() -> None:
    assert [int(c) for c in PlateColour] == [0, 1, 2, 3, 4, 5, 6, 7, 11, 12]
    assert PlateColour(4).zh == "渐变绿" and PlateColour.YELLOW_GREEN.en.startswith("yellow-green")
    assert (CardType.STORED_VALUE, CardType.ACCOUNT) == (22, 23) and CardType(22).zh == "储值卡"
    assert [int(u) for u in UserType] == [0, 6, 8, 10, 12, 14]
    assert [int(r) for r in StatusListReason] == [1, 6, 101, 102, 103, 104, 105]
    assert ObuListReason(3).zh == "无签注销"
    assert [int(v) for v in VehicleClass] == [1, 2, 3, 4, *range(11, 17), *range(21, 27)]
    assert (
        VehicleClass.TRUCK_2.text("zh-CN") == "二类货车"
        and VehicleClass.TRUCK_2.text("en") == "truck class 2"
    )
    assert len(PROVINCES) == 31 and PROVINCES["甘"] == (62, "甘肃")


@pytest.mark.parametrize(
    ("seats", "length_mm", "expected"),
    [
        (5, 4800, 1),
        (9, 5999, 1),
        (10, 5999, 2),
        (19, 5999, 2),
        (9, 6000, 3),
        (39, 12000, 3),
        (40, 12000, 4),
        (20, 5900, 3),
        (45, 5900, 4),
    ],
)
def test_passenger_classes_at_their_boundaries(seats: int, length_mm: int, expected: int) -> None:
    assert vehicle_class(kind=VehicleKind.PASSENGER, seats=seats, length_mm=length_mm) == expected


@pytest.mark.parametrize(
    ("axles", "length_mm", "mass", "expected"),
    [
        (2, 5999, 4499, 1),
        (2, 6000, 4499, 2),
        (2, 5999, 4500, 2),
        (3, 9000, 25000, 3),
        (4, 9000, 31000, 4),
        (5, 16000, 43000, 5),
        (6, 18000, 49000, 6),
        (7, 18000, 49000, 6),
    ],
)
def test_truck_and_special_classes_at_their_boundaries(
    axles: int, length_mm: int, mass: int, expected: int
) -> None:
    kwargs = {"axles": axles, "length_mm": length_mm, "gross_mass_kg": mass}
    assert vehicle_class(kind=VehicleKind.TRUCK, **kwargs) == 10 + expected
    assert vehicle_class(kind=VehicleKind.SPECIAL, **kwargs) == 20 + expected


@pytest.mark.parametrize(
    ("kwargs", "field", "code"),
    [
        ({"kind": VehicleKind.PASSENGER, "length_mm": 4000}, "seats", "missing"),
        ({"kind": VehicleKind.PASSENGER, "seats": 0, "length_mm": 4000}, "seats", "not_positive"),
        ({"kind": VehicleKind.TRUCK, "axles": 1}, "axles", "too_few_axles"),
        ({"kind": VehicleKind.TRUCK, "axles": 2, "length_mm": 5000}, "gross_mass_kg", "missing"),
    ],
)
def test_vehicle_class_names_the_missing_or_bad_field(
    kwargs: dict[str, object], field: str, code: str
) -> None:
    with pytest.raises(InvalidField) as refused:
        vehicle_class(**kwargs)  # type: ignore[arg-type]
    assert (refused.value.field, refused.value.code) == (field, code)


@pytest.mark.parametrize(
    ("typed", "colour", "plate"),
    [
        ("甘A12345", PlateColour.BLUE, "甘A12345"),
        ("甘a·1234x", None, "甘A1234X"),
        ("京 AD 12345", PlateColour.GRADIENT_GREEN, "京AD12345"),
        ("粤Ｂ６６６６６", PlateColour.YELLOW, "粤B66666"),
        ("川A12345D", PlateColour.YELLOW_GREEN, "川A12345D"),
    ],
)
def test_good_plates_are_normalized(typed: str, colour: PlateColour | None, plate: str) -> None:
    assert validate_plate(typed, colour) == plate


@pytest.mark.parametrize(
    ("typed", "colour", "code"),
    [
        ("", None, "plate_missing"),
        ("A12345", None, "plate_province"),
        ("港A12345", None, "plate_province"),
        ("甘112345", None, "plate_authority"),
        ("甘", None, "plate_authority"),
        ("甘A1234警", None, "plate_characters"),
        ("甘AI2345", None, "plate_i_or_o"),
        ("甘A12O45", None, "plate_i_or_o"),
        ("甘A1234", None, "plate_length"),
        ("甘A1234567", None, "plate_length"),
        ("甘AD12345", PlateColour.BLUE, "plate_length"),
        ("甘A12345", PlateColour.GRADIENT_GREEN, "plate_new_energy_length"),
    ],
)
def test_bad_plates_say_why(typed: str, colour: PlateColour | None, code: str) -> None:
    with pytest.raises(InvalidField) as refused:
        validate_plate(typed, colour)
    assert refused.value.field == "plate" and refused.value.code == code
    assert refused.value.error().status == 422 and refused.value.error().field == "plate"


def test_vehicle_key_joins_plate_and_colour() -> None:
    assert vehicle_key("甘a12345", PlateColour.YELLOW) == "甘A12345_1"


@pytest.mark.parametrize(
    "vin", ["1M8GDM9AXKP042788", "11111111111111111", "JHMCM56557C404453", "jhmcm56557c404453"]
)
def test_known_good_vins_pass(vin: str) -> None:
    assert validate_vin(vin) == vin.upper()


def test_the_check_digit_is_position_nine() -> None:
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"
    with pytest.raises(InvalidField) as refused:
        validate_vin("1M8GDM9A1KP042788")
    assert refused.value.code == "vin_check_digit" and "X" in refused.value.en


@pytest.mark.parametrize(
    ("vin", "letter"), [("1M8GDM9AXKP04278I", "I"), ("OM8GDM9AXKP042788", "O"), ("1M8GDM9AXKQ042788", "Q")]
)
def test_vins_with_i_o_or_q_are_refused_naming_the_letter(vin: str, letter: str) -> None:
    with pytest.raises(InvalidField) as refused:
        validate_vin(vin)
    assert refused.value.code == "vin_i_o_q" and f"found {letter}" in refused.value.en


@pytest.mark.parametrize(
    ("vin", "code"), [("1M8GDM9AXKP04278", "vin_length"), ("1M8GDM9AXKP04278*", "vin_characters")]
)
def test_vins_of_wrong_shape_are_refused(vin: str, code: str) -> None:
    with pytest.raises(InvalidField) as refused:
        validate_vin(vin)
    assert refused.value.code == code and refused.value.field == "vin"
