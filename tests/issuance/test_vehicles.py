"""The vehicle application's checks: plates of every colour, VINs, engine numbers, classes, dimensions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcwallet.core.errors import InvalidValue
from etcwallet.issuance.codes import PROVINCES, PlateColour, VehicleClass
from etcwallet.issuance.vehicles import (
    classify_vehicle,
    validate_dimensions,
    validate_engine_number,
    validate_plate,
    validate_vin,
)

# --- an independent VIN check digit: ISO 3779's table written out as strings, a weight per position -----

_TRANSLITERATION = {
    "0": "0ABCDEFGH",  # index = value: A..H are 1..8
    "1": "1AJ",
    "2": "2BKS",
    "3": "3CLT",
    "4": "4DMU",
    "5": "5ENV",
    "6": "6FW",
    "7": "7GPX",
    "8": "8HY",
    "9": "9RZ",
}
_VALUE = {char: int(value) for value, chars in _TRANSLITERATION.items() for char in chars}
_WEIGHT = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
VIN_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"


def expected_check(vin16: str) -> str:
    """The check digit for 16 characters (positions 1-8 and 10-17), computed position by position."""
    total = 0
    for position, char in enumerate(vin16[:8] + "0" + vin16[8:]):
        total += _VALUE[char] * _WEIGHT[position]
    return "0123456789X"[total % 11]


class _Refusal:
    """``with _Refusal(code):`` fails unless the block raises InvalidValue with that code and both texts."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        assert isinstance(exc, InvalidValue), f"expected InvalidValue {self.code}, got {exc!r}"
        assert exc.code == self.code, exc.code
        assert exc.zh and exc.en and exc.zh != exc.en
        return True


# --- plates ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "colour", "plate"),
    [
        ("甘A12345", PlateColour.BLUE, "甘A12345"),
        (" 甘a·1b345 ", PlateColour.BLUE, "甘A1B345"),
        ("京ＡＢ１２３４", PlateColour.BLUE, "京AB1234"),  # full-width letters and digits
        ("粤B-12345", PlateColour.YELLOW, "粤B12345"),
        ("甘A1234挂", PlateColour.YELLOW, "甘A1234挂"),
        ("甘A1234学", PlateColour.YELLOW, "甘A1234学"),
        ("粤Z1234港", PlateColour.BLACK, "粤Z1234港"),
        ("粤Z1234澳", PlateColour.BLACK, "粤Z1234澳"),
        ("沪A12345", PlateColour.BLACK, "沪A12345"),
        ("甘A1234警", PlateColour.WHITE, "甘A1234警"),
        ("川O1234警", PlateColour.WHITE, "川O1234警"),
        ("京A1234试", PlateColour.WHITE, "京A1234试"),
        ("京A1234超", PlateColour.YELLOW, "京A1234超"),
        ("甘AD12345", PlateColour.GRADIENT_GREEN, "甘AD12345"),
        ("甘AF1234", PlateColour.GRADIENT_GREEN, None),
        ("沪AFA1234", PlateColour.GRADIENT_GREEN, "沪AFA1234"),
        ("沪AA12345", PlateColour.GRADIENT_GREEN, "沪AA12345"),
        ("粤BK12345", PlateColour.GRADIENT_GREEN, "粤BK12345"),
        ("甘A12345D", PlateColour.YELLOW_GREEN, "甘A12345D"),
        ("甘A12345F", PlateColour.YELLOW_GREEN, "甘A12345F"),
        ("甘A12345", PlateColour.BLUE_WHITE, "甘A12345"),
        ("甘A12345", PlateColour.GREEN, "甘A12345"),
        ("甘A12345", PlateColour.RED, "甘A12345"),
        ("甘A12345", PlateColour.TEMPORARY, "甘A12345"),
        ("甘A123456", PlateColour.TEMPORARY, "甘A123456"),
    ],
)
def test_real_plates_of_every_colour_are_normalized(
    typed: str, colour: PlateColour, plate: str | None
) -> None:
    if plate is None:  # a 5-character serial is not a new-energy plate
        with _Refusal("plate_new_energy_length"):
            validate_plate(typed, colour)
    else:
        assert validate_plate(typed, colour) == plate


def test_every_province_is_accepted_and_nothing_else_is() -> None:
    for province in PROVINCES:
        assert validate_plate(f"{province}B12345", PlateColour.BLUE) == f"{province}B12345"
    for other in "港澳台中":
        with _Refusal("plate_province"):
            validate_plate(f"{other}B12345", PlateColour.BLUE)


@pytest.mark.parametrize(
    ("typed", "colour", "code"),
    [
        ("", PlateColour.BLUE, "plate_missing"),
        (" · ", PlateColour.BLUE, "plate_missing"),
        ("甘112345", PlateColour.BLUE, "plate_authority"),
        ("甘I12345", PlateColour.BLUE, "plate_authority"),
        ("甘O12345", PlateColour.BLUE, "plate_authority"),
        ("甘", PlateColour.BLUE, "plate_authority"),
        ("甘AI2345", PlateColour.BLUE, "plate_i_or_o"),
        ("甘A12O45", PlateColour.BLUE, "plate_i_or_o"),
        ("甘A12_45", PlateColour.BLUE, "plate_characters"),
        ("甘A12甘45", PlateColour.BLUE, "plate_characters"),
        ("甘A1234", PlateColour.BLUE, "plate_length"),
        ("甘A123456", PlateColour.BLUE, "plate_length"),
        ("甘AD12345", PlateColour.BLUE, "plate_length"),
        ("甘A1234", PlateColour.YELLOW, "plate_length"),
        ("甘A1234567", PlateColour.TEMPORARY, "plate_length"),
        ("甘A12345挂", PlateColour.YELLOW, "plate_length"),
        ("甘A1234挂", PlateColour.BLUE, "plate_suffix_colour"),
        ("甘A1234学", PlateColour.WHITE, "plate_suffix_colour"),
        ("甘A1234警", PlateColour.BLUE, "plate_suffix_colour"),
        ("粤Z1234港", PlateColour.BLUE, "plate_suffix_colour"),
        ("甘A1234试", PlateColour.GRADIENT_GREEN, "plate_suffix_colour"),
        ("甘A12345", PlateColour.GRADIENT_GREEN, "plate_new_energy_length"),
        ("甘A1234567", PlateColour.YELLOW_GREEN, "plate_new_energy_length"),
        ("甘AL12345", PlateColour.GRADIENT_GREEN, "plate_new_energy_serial"),
        ("甘AD1234A", PlateColour.GRADIENT_GREEN, "plate_new_energy_serial"),
        ("甘A12345A", PlateColour.YELLOW_GREEN, "plate_new_energy_serial"),
        ("甘AD12345", PlateColour.YELLOW_GREEN, "plate_new_energy_serial"),
        ("甘A1A345D", PlateColour.YELLOW_GREEN, "plate_new_energy_serial"),
        ("使014001", PlateColour.BLACK, "plate_out_of_scope"),
        ("沪A1234领", PlateColour.BLACK, "plate_out_of_scope"),
        ("VA12345", PlateColour.WHITE, "plate_out_of_scope"),
        ("WJ甘12345", PlateColour.WHITE, "plate_out_of_scope"),
        ("军A12345", PlateColour.WHITE, "plate_out_of_scope"),
        ("A12345", PlateColour.BLUE, "plate_province"),
    ],
)
def test_wrong_plates_say_why(typed: str, colour: PlateColour, code: str) -> None:
    with _Refusal(code):
        validate_plate(typed, colour)


# --- VIN -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vin",
    [
        "LSVAM4187C2184847",  # a Shanghai-Volkswagen VIN
        "1M8GDM9AXKP042788",  # the check-digit example used in NHTSA's and ISO 3779's descriptions: X
        "JHMCM56557C404453",  # a published Honda Accord VIN
        "11111111111111111",
    ],
)
def test_published_vins_are_accepted(vin: str) -> None:
    assert expected_check(vin[:8] + vin[9:]) == vin[8]
    assert validate_vin(vin) == vin
    assert validate_vin(f" {vin.lower()[:8]} {vin.lower()[8:]}\n") == vin


@pytest.mark.parametrize(
    ("vin", "code"),
    [
        ("", "vin_length"),
        ("LSVAM4187C218484", "vin_length"),
        ("LSVAM4187C21848470", "vin_length"),
        ("LSVAM4187C218484O", "vin_i_o_q"),
        ("ISVAM4187C2184847", "vin_i_o_q"),
        ("QSVAM4187C2184847", "vin_i_o_q"),
        ("LSVAM4187C218484-", "vin_characters"),
        ("LSVAM4187C218484é", "vin_characters"),
        ("LSVAM4186C2184847", "vin_check_digit"),
        ("LSVAM418XC2184847", "vin_check_digit"),
        ("LSVAM418AC2184847", "vin_check_digit"),
        ("LFV2A21K8A4123456", "vin_check_digit"),
    ],
)
def test_wrong_vins_say_why(vin: str, code: str) -> None:
    with _Refusal(code):
        validate_vin(vin)


def test_a_wrong_check_digit_does_not_reveal_the_right_one() -> None:
    with pytest.raises(InvalidValue) as refusal:
        validate_vin("LSVAM4180C2184847")
    assert "7" not in refusal.value.zh and "7" not in refusal.value.en


@given(st.text(alphabet=VIN_ALPHABET, min_size=16, max_size=16), st.sampled_from("0123456789X"))
def test_a_vin_is_accepted_exactly_when_its_check_digit_is_right(vin16: str, digit: str) -> None:
    vin = vin16[:8] + digit + vin16[8:]
    if digit == expected_check(vin16):
        assert validate_vin(vin) == vin
    else:
        with _Refusal("vin_check_digit"):
            validate_vin(vin)


@given(st.text(alphabet=VIN_ALPHABET, min_size=16, max_size=16))
def test_every_vin_with_its_check_digit_is_accepted(vin16: str) -> None:
    vin = vin16[:8] + expected_check(vin16) + vin16[8:]
    assert validate_vin(vin) == vin


# --- engine number ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "normalized"),
    [
        ("4g15-123456", "4G15-123456"),
        (" EA888 1234567 ", "EA8881234567"),
        ("ＣＡ６ＤＭ２－４２", "CA6DM2-42"),
        ("B—12", "B-12"),
        ("A", "A"),
        ("1" * 20, "1" * 20),
    ],
)
def test_engine_numbers_are_normalized(typed: str, normalized: str) -> None:
    assert validate_engine_number(typed) == normalized


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("", "engine_number_missing"),
        ("  ", "engine_number_missing"),
        ("--", "engine_number_missing"),
        ("1" * 21, "engine_number_too_long"),
        ("AB_12", "engine_number_characters"),
        ("发动机123", "engine_number_characters"),
    ],
)
def test_wrong_engine_numbers_say_why(typed: str, code: str) -> None:
    with _Refusal(code):
        validate_engine_number(typed)


# --- vehicle class ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seats", "length_mm", "expected"),
    [
        (1, 3000, VehicleClass.PASSENGER_1),
        (9, 5999, VehicleClass.PASSENGER_1),
        (10, 5999, VehicleClass.PASSENGER_2),
        (19, 5999, VehicleClass.PASSENGER_2),
        (9, 6000, VehicleClass.PASSENGER_3),
        (19, 6000, VehicleClass.PASSENGER_3),
        (39, 12000, VehicleClass.PASSENGER_3),
        (40, 12000, VehicleClass.PASSENGER_4),
        (20, 5999, VehicleClass.PASSENGER_3),
        (40, 5999, VehicleClass.PASSENGER_4),
    ],
)
def test_passenger_classes_at_each_boundary(seats: int, length_mm: int, expected: VehicleClass) -> None:
    assert classify_vehicle(kind="passenger", seats=seats, length_mm=length_mm) is expected


@pytest.mark.parametrize(
    ("axles", "length_mm", "mass", "truck_class"),
    [
        (2, 5999, 4499, 1),
        (2, 6000, 4499, 2),
        (2, 5999, 4500, 2),
        (2, 9000, 18000, 2),
        (3, None, None, 3),
        (4, 12000, 31000, 4),
        (5, None, None, 5),
        (6, 17000, 49000, 6),
        (7, None, None, 6),
    ],
)
def test_truck_and_special_classes_at_each_boundary(
    axles: int, length_mm: int | None, mass: int | None, truck_class: int
) -> None:
    truck = classify_vehicle(kind="truck", axles=axles, length_mm=length_mm, gross_mass_kg=mass)
    special = classify_vehicle(kind="special", axles=axles, length_mm=length_mm, gross_mass_kg=mass)
    assert truck is VehicleClass(10 + truck_class)
    assert special is VehicleClass(20 + truck_class)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"kind": "passenger", "length_mm": 4500}, "seats_missing"),
        ({"kind": "passenger", "seats": 0, "length_mm": 4500}, "seats_not_positive"),
        ({"kind": "passenger", "seats": -5, "length_mm": 4500}, "seats_not_positive"),
        ({"kind": "passenger", "seats": True, "length_mm": 4500}, "seats_not_positive"),
        ({"kind": "passenger", "seats": 5}, "length_missing"),
        ({"kind": "passenger", "seats": 5, "length_mm": -1}, "length_not_positive"),
        ({"kind": "truck"}, "axles_missing"),
        ({"kind": "truck", "axles": 0}, "axles_not_positive"),
        ({"kind": "special", "axles": 1}, "axles_too_few"),
        ({"kind": "truck", "axles": 2, "gross_mass_kg": 3000}, "length_missing"),
        ({"kind": "truck", "axles": 2, "length_mm": 5000}, "gross_mass_missing"),
        ({"kind": "special", "axles": 2, "length_mm": 5000, "gross_mass_kg": 0}, "gross_mass_not_positive"),
        ({"kind": "tractor", "axles": 2}, "vehicle_kind"),
    ],
)
def test_impossible_or_missing_data_is_named(kwargs: dict[str, object], code: str) -> None:
    with _Refusal(code):
        classify_vehicle(**kwargs)  # type: ignore[arg-type]


# --- dimensions ------------------------------------------------------------------------------------------


def test_legal_dimensions_pass_through() -> None:
    assert validate_dimensions(4700, 1800, 1450) == (4700, 1800, 1450)
    assert validate_dimensions(22000, 2600, 4000) == (22000, 2600, 4000)


@pytest.mark.parametrize(
    ("dimensions", "code"),
    [
        ((0, 1800, 1450), "length_not_positive"),
        ((4700, -1, 1450), "width_not_positive"),
        ((4700, 1800, 0), "height_not_positive"),
        ((22001, 1800, 1450), "length_over_limit"),
        ((4700, 2601, 1450), "width_over_limit"),
        ((4700, 1800, 4001), "height_over_limit"),
        ((4.7, 1800, 1450), "length_not_positive"),
    ],
)
def test_impossible_dimensions_are_refused(dimensions: tuple[int, int, int], code: str) -> None:
    with _Refusal(code):
        validate_dimensions(*dimensions)
