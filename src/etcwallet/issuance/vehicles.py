"""The checks an operator's vehicle application goes through before a card or tag is issued for it.

Every check is pure (no I/O): it returns the normalized value or raises
:class:`~etcwallet.core.errors.InvalidValue` with a stable code and a reason in zh-CN and English. Where a
public rule was unclear the check is permissive, so that no real vehicle is refused; those places are
marked **[?]**.

Plates (GA 36-2018 and the Ministry of Public Security's later extensions of the new-energy series):

- Input is folded (NFKC: full-width letters and digits become half-width), separators (spaces, ``·``,
  ``•``, ``-``, ``.``) are removed and Latin letters upper-cased: ``甘ａ·１２３４５`` becomes ``甘A12345``.
- First character: one of the 31 mainland province abbreviations (京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘
  晋蒙陕吉闽贵粤青藏川宁琼).
- Second: the issuing authority's letter A-Z without I and O. **[?]** ``O`` is accepted on police (``警``)
  plates only, as older police plates used it.
- Then the serial, letters and digits without I and O:
  - ordinary plates (blue, yellow, black, white, blue-white, green, red): 5 characters, or 4 followed by
    one of the suffixes below;
  - small new-energy plates (gradient green): 6 characters; the first is D, A, B, C or E (battery
    electric) or F, G, H, J or K (other new energy), the second a letter or digit, the last four digits;
  - large new-energy plates (yellow-green): 6 characters, five digits then D or F;
  - temporary plates: 5 or 6 characters **[?]** (the layout of temporary plates varies by year).
- A yellow plate is therefore always 6 characters or more after the province.
- Suffixes, in place of the fifth serial character: 学 (driving-school car) and 挂 (trailer) on yellow
  plates, 警 (police) on white plates, 港 and 澳 (cross-border Hong Kong and Macau cars) on black plates,
  试 (test vehicle) and 超 (over-dimension vehicle) on any plate that is not new energy **[?]**.
- Out of scope, refused with ``plate_out_of_scope``: embassy (使) and consular (领) plates, military plates
  (two Latin letters and five digits, or an old military-region character such as 军 or 空) and armed-police plates
  (``WJ``); these vehicles are not issued here.

VINs (ISO 3779, GB 16735): 17 characters, letters and digits without I, O and Q; a Chinese VIN always
carries the check digit at position 9 (weights 8 7 6 5 4 3 2 10 0 9 8 7 6 5 4 3 2, letters transliterated,
sum modulo 11, 10 written ``X``). A wrong check digit is refused without revealing the expected one.

Vehicle class (JT/T 489-2019, spec §9): passenger vehicles under 6 m are class 1 up to 9 seats and class 2
with 10-19 seats; from 6 m, class 3 up to 39 seats and class 4 from 40 (a vehicle under 6 m with 20 or more
seats, which the standard does not foresee, is classed by its seats, as :func:`codes.vehicle_class`
does). Trucks: 2 axles, under 6 m and under 4.5 t gross mass class 1; any other 2-axle class 2; 3, 4, 5
and 6 or more axles classes 3-6. Special-purpose vehicles use the trucks' thresholds **[?]**.

Dimensions (GB 1589-2016): positive, width at most 2600 mm (2550 mm for most vehicles, 2600 for
refrigerated ones), height at most 4000 mm, length at most 22000 mm (the longest combination the standard
allows, the centre-axle car-transporter train; a single articulated bus is at most 18 m) **[?]**: the
application gives one length for what it registers, so the check refuses only the impossible.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from etcwallet.core.errors import InvalidValue
from etcwallet.issuance.codes import (
    LIGHT_VEHICLE_KG,
    NEW_ENERGY_COLOURS,
    PROVINCES,
    SHORT_VEHICLE_MM,
    VIN_VALUES,
    VIN_WEIGHTS,
    PlateColour,
    VehicleClass,
)

# --- plates ----------------------------------------------------------------------------------------------

_PLATE_SEPARATORS = re.compile(r"[\s·•‧∙・\-.]+")
_SERIAL_CHARS = frozenset("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789")
_AUTHORITY_LETTERS = frozenset("ABCDEFGHJKLMNPQRSTUVWXYZ")
_MILITARY_REGIONS = frozenset("军北南广沈兰成济空海")
_MILITARY = re.compile(r"[A-Z]{2}[0-9]{5}")  # the 2002 military series: two letters, five digits

SMALL_NEW_ENERGY_FIRST = frozenset("DABCEFGHJK")
"""The first serial character of a small new-energy plate: D, A, B, C, E battery electric; F, G, H, J, K
other new energy (D and F first, the others as a city's series run out)."""
LARGE_NEW_ENERGY_LAST = frozenset("DF")
"""The last serial character of a large new-energy plate: D battery electric, F other new energy."""

_ANY_ORDINARY = frozenset(PlateColour) - NEW_ENERGY_COLOURS
PLATE_SUFFIXES: dict[str, frozenset[PlateColour]] = {
    "学": frozenset({PlateColour.YELLOW}),
    "挂": frozenset({PlateColour.YELLOW}),
    "警": frozenset({PlateColour.WHITE}),
    "港": frozenset({PlateColour.BLACK}),
    "澳": frozenset({PlateColour.BLACK}),
    "试": _ANY_ORDINARY,
    "超": _ANY_ORDINARY,
}
"""The characters that may end a plate, in place of the fifth serial character, and the colours they go
with."""


def _normalize_plate(plate: str) -> str:
    return _PLATE_SEPARATORS.sub("", unicodedata.normalize("NFKC", plate)).upper()


def _refuse_out_of_scope(value: str) -> None:
    """Embassy, consular, military and armed-police plates are not issued here: say so plainly."""
    if "使" in value or value.endswith("领"):
        raise InvalidValue(
            "plate_out_of_scope",
            "使馆、领馆车辆号牌不在本系统办理范围内",
            "embassy and consulate plates are not issued here",
        )
    if value.startswith("WJ") or value[0] in _MILITARY_REGIONS or _MILITARY.fullmatch(value):
        raise InvalidValue(
            "plate_out_of_scope",
            "军队、武警车辆号牌不在本系统办理范围内",
            "military and armed-police plates are not issued here",
        )


def _check_serial_characters(serial: str) -> None:
    if any(char in "IO" for char in serial):
        raise InvalidValue("plate_i_or_o", "车牌号不使用字母I和O", "plates never use the letters I and O")
    if any(char not in _SERIAL_CHARS for char in serial):
        raise InvalidValue(
            "plate_characters",
            "车牌号码只能包含字母和数字（可带学、挂、警、港、澳、试、超结尾）",
            "a plate holds letters and digits only (it may end in 学, 挂, 警, 港, 澳, 试 or 超)",
        )


def _check_new_energy_serial(serial: str, colour: PlateColour) -> None:
    if len(serial) != 6:
        raise InvalidValue(
            "plate_new_energy_length",
            "新能源车牌在发牌机关字母后有6位",
            "a new-energy plate has 6 characters after the authority's letter",
        )
    if colour is PlateColour.GRADIENT_GREEN:
        if serial[0] not in SMALL_NEW_ENERGY_FIRST or not serial[2:].isdigit():
            raise InvalidValue(
                "plate_new_energy_serial",
                "小型新能源车牌序号应以D、A、B、C、E（纯电动）或F、G、H、J、K（非纯电动）开头，后四位为数字",
                "a small new-energy serial starts with D, A, B, C, E (electric) or F, G, H, J, K (other) "
                "and ends in four digits",
            )
    elif serial[-1] not in LARGE_NEW_ENERGY_LAST or not serial[:5].isdigit():
        raise InvalidValue(
            "plate_new_energy_serial",
            "大型新能源车牌序号应为5位数字后接D（纯电动）或F（非纯电动）",
            "a large new-energy serial is five digits followed by D (electric) or F (other)",
        )


def _check_ordinary_serial(serial: str, colour: PlateColour) -> None:
    lengths = (5, 6) if colour is PlateColour.TEMPORARY else (5,)
    if len(serial) not in lengths:
        raise InvalidValue(
            "plate_length",
            "该颜色的车牌在发牌机关字母后有5位（新能源车牌为6位，请核对车牌颜色）",
            "a plate of this colour has 5 characters after the authority's letter "
            "(6 is a new-energy plate: check the colour)",
        )


def validate_plate(plate: str, colour: PlateColour) -> str:
    """A mainland plate normalized (``甘A12345``, ``甘AD12345``, ``甘A1234挂``), or why it is refused.

    The rules, and where they are permissive, are in the module's docstring.
    """
    value = _normalize_plate(plate)
    if not value:
        raise InvalidValue("plate_missing", "请输入车牌号", "a plate number is required")
    _refuse_out_of_scope(value)
    if value[0] not in PROVINCES:
        raise InvalidValue(
            "plate_province",
            f"车牌应以省份简称开头，「{value[0]}」不是",
            f"a plate starts with a province abbreviation; '{value[0]}' is not one",
        )
    suffix = value[-1] if value[-1] in PLATE_SUFFIXES else ""
    authority = value[1:2]
    police_o = authority == "O" and suffix == "警"
    if authority not in _AUTHORITY_LETTERS and not police_o:
        raise InvalidValue(
            "plate_authority",
            "省份简称后应为发牌机关字母（A–Z，不含I和O）",
            "the province is followed by the issuing authority's letter (A-Z without I and O)",
        )
    serial = value[2 : len(value) - len(suffix)]
    _check_serial_characters(serial)
    if suffix:
        if colour not in PLATE_SUFFIXES[suffix]:
            raise InvalidValue(
                "plate_suffix_colour",
                f"以「{suffix}」结尾的车牌颜色不应为{colour.zh}",
                f"a plate ending in '{suffix}' is not {colour.en}",
            )
        if len(serial) != 4:
            raise InvalidValue(
                "plate_length",
                f"以「{suffix}」结尾的车牌在发牌机关字母后有4位再加「{suffix}」",
                f"a plate ending in '{suffix}' has 4 characters after the authority's letter, then '{suffix}'",
            )
    elif colour in NEW_ENERGY_COLOURS:
        _check_new_energy_serial(serial, colour)
    else:
        _check_ordinary_serial(serial, colour)
    return value


# --- VIN (ISO 3779, GB 16735) ----------------------------------------------------------------------------


def _vin_check_digit(vin: str) -> str:
    # position 9 carries weight 0, so whatever it holds does not change the sum
    remainder = sum(VIN_VALUES[char] * weight for char, weight in zip(vin, VIN_WEIGHTS, strict=True)) % 11
    return "X" if remainder == 10 else str(remainder)


def validate_vin(vin: str) -> str:
    """A vehicle identification number upper-cased, or why it is refused (length, I/O/Q, check digit)."""
    value = re.sub(r"\s+", "", unicodedata.normalize("NFKC", vin)).upper()
    if len(value) != 17:
        raise InvalidValue("vin_length", "车辆识别代号（VIN）应为17位", "a VIN has 17 characters")
    forbidden = sorted({char for char in value if char in "IOQ"})
    if forbidden:
        raise InvalidValue(
            "vin_i_o_q",
            f"车辆识别代号不使用字母I、O、Q（含有 {'、'.join(forbidden)}）",
            f"a VIN never uses the letters I, O and Q (found {', '.join(forbidden)})",
        )
    if any(char not in VIN_VALUES for char in value):
        raise InvalidValue(
            "vin_characters", "车辆识别代号只能包含字母和数字", "a VIN holds letters and digits only"
        )
    if value[8] != _vin_check_digit(value):
        raise InvalidValue(
            "vin_check_digit",
            "车辆识别代号校验位（第9位）不正确，请对照行驶证核对",
            "the VIN's check digit (position 9) is wrong: compare it with the registration certificate",
        )
    return value


# --- engine number ---------------------------------------------------------------------------------------

ENGINE_NUMBER_MAX = 20
_DASHES = re.compile(r"[‐‑‒–—―−]")
_ENGINE_NUMBER = re.compile(r"[A-Z0-9-]+")


def validate_engine_number(value: str) -> str:
    """An engine number upper-cased, spaces removed and dashes folded to ``-``: 1-20 letters, digits, ``-``."""
    folded = _DASHES.sub("-", re.sub(r"\s+", "", unicodedata.normalize("NFKC", value))).upper()
    if not folded.strip("-"):
        raise InvalidValue("engine_number_missing", "请输入发动机号", "an engine number is required")
    if len(folded) > ENGINE_NUMBER_MAX:
        raise InvalidValue(
            "engine_number_too_long",
            f"发动机号最多{ENGINE_NUMBER_MAX}位",
            f"an engine number has at most {ENGINE_NUMBER_MAX} characters",
        )
    if not folded.isascii() or not _ENGINE_NUMBER.fullmatch(folded):
        raise InvalidValue(
            "engine_number_characters",
            "发动机号只能包含字母、数字和连字符",
            "an engine number holds letters, digits and hyphens only",
        )
    return folded


# --- vehicle class (JT/T 489-2019) -----------------------------------------------------------------------

_FIELD_NAMES = {
    "seats": ("核定载人数", "the number of seats"),
    "axles": ("轴数", "the number of axles"),
    "length": ("车长", "the length"),
    "gross_mass": ("总质量", "the gross mass"),
    "width": ("车宽", "the width"),
    "height": ("车高", "the height"),
}


def _positive(name: str, value: int | None) -> int:
    """``value`` when it is a positive integer; ``<name>_missing`` or ``<name>_not_positive`` otherwise."""
    zh, en = _FIELD_NAMES[name]
    if value is None:
        raise InvalidValue(f"{name}_missing", f"缺少{zh}，无法确定车型", f"{en} is needed to find the class")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidValue(
            f"{name}_not_positive", f"{zh}必须是正整数", f"{en} must be a positive whole number"
        )
    return value


def _passenger_class(seats: int | None, length_mm: int | None) -> VehicleClass:
    seat_count = _positive("seats", seats)
    length = _positive("length", length_mm)
    if length < SHORT_VEHICLE_MM and seat_count <= 19:
        return VehicleClass.PASSENGER_1 if seat_count <= 9 else VehicleClass.PASSENGER_2
    return VehicleClass.PASSENGER_3 if seat_count <= 39 else VehicleClass.PASSENGER_4


def _axle_class(
    base: int, axles: int | None, length_mm: int | None, gross_mass_kg: int | None
) -> VehicleClass:
    axle_count = _positive("axles", axles)
    if axle_count < 2:
        raise InvalidValue(
            "axles_too_few", "货车和专项作业车至少有2根轴", "a truck or special vehicle has 2 axles or more"
        )
    if axle_count > 2:
        return VehicleClass(base + min(axle_count, 6) - 1)
    length = _positive("length", length_mm)
    mass = _positive("gross_mass", gross_mass_kg)
    return VehicleClass(base if length < SHORT_VEHICLE_MM and mass < LIGHT_VEHICLE_KG else base + 1)


def classify_vehicle(
    *,
    kind: Literal["passenger", "truck", "special"],
    seats: int | None = None,
    axles: int | None = None,
    length_mm: int | None = None,
    gross_mass_kg: int | None = None,
) -> VehicleClass:
    """The toll class (JT/T 489-2019) from the registration data, or which datum is missing or impossible.

    A passenger vehicle needs its seats and length; a truck or special vehicle its axles, and with 2 axles
    also its length and gross mass (the rules are in the module's docstring).
    """
    if kind == "passenger":
        return _passenger_class(seats, length_mm)
    if kind == "truck":
        return _axle_class(VehicleClass.TRUCK_1, axles, length_mm, gross_mass_kg)
    if kind == "special":
        return _axle_class(VehicleClass.SPECIAL_1, axles, length_mm, gross_mass_kg)
    raise InvalidValue(
        "vehicle_kind",
        "车辆种类应为客车、货车或专项作业车",
        "the vehicle kind is passenger, truck or special",
    )


# --- dimensions (GB 1589-2016) ---------------------------------------------------------------------------

LENGTH_MAX_MM = 22000
WIDTH_MAX_MM = 2600
HEIGHT_MAX_MM = 4000


def _within(name: str, value: int, limit: int) -> int:
    zh, en = _FIELD_NAMES[name]
    value = _positive(name, value)
    if value > limit:
        raise InvalidValue(
            f"{name}_over_limit",
            f"{zh}超过国家标准限值 {limit} 毫米，请核对（单位为毫米）",
            f"{en} exceeds the legal limit of {limit} mm: check it (the unit is millimetres)",
        )
    return value


def validate_dimensions(length_mm: int, width_mm: int, height_mm: int) -> tuple[int, int, int]:
    """Length, width and height in millimetres, each positive and within GB 1589-2016's limits."""
    return (
        _within("length", length_mm, LENGTH_MAX_MM),
        _within("width", width_mm, WIDTH_MAX_MM),
        _within("height", height_mm, HEIGHT_MAX_MM),
    )
