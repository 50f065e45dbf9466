"""The ETC code tables (spec §9) and the checks of what an operator types about a vehicle.

Each code carries its zh-CN and English name. The vehicle class follows JT/T 489-2019; the thresholds of
the special-purpose classes (专项作业车) are taken to be the trucks' **[?]**, as no public text settles them.
The plate and VIN checks return the normalized value or raise :class:`InvalidField` naming why.
"""

from __future__ import annotations

import re
import unicodedata
from enum import IntEnum, StrEnum
from typing import Self

from etcwallet.core.i18n import Lang, pick
from etcwallet.issuance.chip.encoding import InvalidField


class LabelledCode(IntEnum):
    """An integer code with its name in zh-CN and English (``Member = value, "中文", "English"``)."""

    zh: str
    en: str

    def __new__(cls, value: int, zh: str = "", en: str = "") -> Self:
        member = int.__new__(cls, value)
        member._value_ = value
        member.zh = zh
        member.en = en
        return member

    def text(self, lang: Lang) -> str:
        """The code's name in the caller's language."""
        return pick(lang, self.zh, self.en)


class PlateColour(LabelledCode):
    """车牌颜色: the plate colour code, half of a vehicle's key."""

    BLUE = 0, "蓝", "blue"
    YELLOW = 1, "黄", "yellow"
    BLACK = 2, "黑", "black"
    WHITE = 3, "白", "white"
    GRADIENT_GREEN = 4, "渐变绿", "gradient green (small new-energy)"
    YELLOW_GREEN = 5, "黄绿双拼", "yellow-green (large new-energy)"
    BLUE_WHITE = 6, "蓝白渐变", "blue-white gradient"
    TEMPORARY = 7, "临时牌照", "temporary plate"
    GREEN = 11, "绿", "green"
    RED = 12, "红", "red"


NEW_ENERGY_COLOURS = frozenset({PlateColour.GRADIENT_GREEN, PlateColour.YELLOW_GREEN})


class CardType(LabelledCode):
    """卡片类型: a stored-value card carries its balance on the chip; an account card is charged later."""

    STORED_VALUE = 22, "储值卡", "stored-value card"
    ACCOUNT = 23, "记账卡", "account card"


class UserType(LabelledCode):
    """用户类型 written to the card and the OBU (0015 offset 40)."""

    NORMAL = 0, "普通", "normal"
    GOVERNMENT = 6, "公务车", "government"
    MILITARY_POLICE = 8, "军警车", "military or police"
    EMERGENCY = 10, "紧急车", "emergency"
    FREE = 12, "免费", "toll-free"
    FLEET = 14, "车队", "fleet"


class VehicleClass(LabelledCode):
    """收费车型 (JT/T 489-2019): the same decimal value in records and on the card."""

    PASSENGER_1 = 1, "一类客车", "passenger class 1"
    PASSENGER_2 = 2, "二类客车", "passenger class 2"
    PASSENGER_3 = 3, "三类客车", "passenger class 3"
    PASSENGER_4 = 4, "四类客车", "passenger class 4"
    TRUCK_1 = 11, "一类货车", "truck class 1"
    TRUCK_2 = 12, "二类货车", "truck class 2"
    TRUCK_3 = 13, "三类货车", "truck class 3"
    TRUCK_4 = 14, "四类货车", "truck class 4"
    TRUCK_5 = 15, "五类货车", "truck class 5"
    TRUCK_6 = 16, "六类货车", "truck class 6"
    SPECIAL_1 = 21, "一类专项作业车", "special-purpose class 1"
    SPECIAL_2 = 22, "二类专项作业车", "special-purpose class 2"
    SPECIAL_3 = 23, "三类专项作业车", "special-purpose class 3"
    SPECIAL_4 = 24, "四类专项作业车", "special-purpose class 4"
    SPECIAL_5 = 25, "五类专项作业车", "special-purpose class 5"
    SPECIAL_6 = 26, "六类专项作业车", "special-purpose class 6"


class TransactionType(LabelledCode):
    """交易类型 of the e-purse (0018 records, GET TRANSACTION PROVE)."""

    LOAD = 2, "圈存", "e-purse load"
    UNLOAD = 3, "圈提", "e-purse unload"
    PURCHASE = 6, "消费", "e-purse purchase"
    UPDATE_OVERDRAW = 7, "修改透支限额", "update overdraw limit"
    CAPP_PURCHASE = 9, "复合消费", "compound (CAPP) purchase"


class StatusListReason(LabelledCode):
    """状态名单 reasons (2019 onwards) for cards and tags."""

    NORMAL = 1, "正常", "normal"
    OBU_LOST = 6, "标签挂失", "OBU reported lost"
    CANCELLED = 101, "核销", "cancelled"
    SUSPENDED = 102, "挂起", "suspended"
    NO_PAYMENT_CHANNEL = 103, "未关联扣款渠道", "no payment channel"
    OVERDRAWN = 104, "账户透支", "account overdrawn"
    RESTRICTED = 105, "支付机构限制使用", "restricted by the payment institution"


class CardListReason(LabelledCode):
    """The older card list (黑名单) types."""

    LOST = 1, "卡挂失", "card reported lost"
    SUSPENDED_WITHOUT_CARD = 2, "无卡挂起", "suspended without the card"
    CANCELLED_WITHOUT_CARD = 3, "无卡注销", "cancelled without the card"
    OVERDRAWN = 4, "账户透支", "account overdrawn"
    PARTNER_BLACKLIST = 5, "合作机构黑名单", "on a partner institution's list"
    CLASS_MISMATCH = 6, "车型不符", "vehicle class mismatch"


class ObuListReason(LabelledCode):
    """The OBU list types."""

    LOST = 1, "标签挂失", "OBU reported lost"
    SUSPENDED_WITHOUT_TAG = 2, "无签挂起", "suspended without the tag"
    CANCELLED_WITHOUT_TAG = 3, "无签注销", "cancelled without the tag"
    CLASS_MISMATCH = 4, "车型不符", "vehicle class mismatch"


# --- provinces -------------------------------------------------------------------------------------------

PROVINCES: dict[str, tuple[int, str]] = {
    "京": (11, "北京"),
    "津": (12, "天津"),
    "冀": (13, "河北"),
    "晋": (14, "山西"),
    "蒙": (15, "内蒙古"),
    "辽": (21, "辽宁"),
    "吉": (22, "吉林"),
    "黑": (23, "黑龙江"),
    "沪": (31, "上海"),
    "苏": (32, "江苏"),
    "浙": (33, "浙江"),
    "皖": (34, "安徽"),
    "闽": (35, "福建"),
    "赣": (36, "江西"),
    "鲁": (37, "山东"),
    "豫": (41, "河南"),
    "鄂": (42, "湖北"),
    "湘": (43, "湖南"),
    "粤": (44, "广东"),
    "桂": (45, "广西"),
    "琼": (46, "海南"),
    "渝": (50, "重庆"),
    "川": (51, "四川"),
    "贵": (52, "贵州"),
    "云": (53, "云南"),
    "藏": (54, "西藏"),
    "陕": (61, "陕西"),
    "甘": (62, "甘肃"),
    "青": (63, "青海"),
    "宁": (64, "宁夏"),
    "新": (65, "新疆"),
}
"""The 31 mainland provinces: plate abbreviation -> (GB/T 2260 code, the first two digits of an ETC
network number; name)."""

PROVINCE_CODES = frozenset(code for code, _ in PROVINCES.values())


# --- vehicle class ---------------------------------------------------------------------------------------


class VehicleKind(StrEnum):
    """Which table of JT/T 489-2019 a vehicle is classed by."""

    PASSENGER = "passenger"
    TRUCK = "truck"
    SPECIAL = "special"


SHORT_VEHICLE_MM = 6000
LIGHT_VEHICLE_KG = 4500


def _positive(field: str, value: int | None) -> int:
    if value is None:
        raise InvalidField(field, "missing", "缺少此项，无法确定车型", "is needed to find the vehicle class")
    if isinstance(value, bool) or value <= 0:
        raise InvalidField(field, "not_positive", "必须是正整数", "must be a positive whole number")
    return value


def vehicle_class(
    *,
    kind: VehicleKind,
    seats: int | None = None,
    axles: int | None = None,
    length_mm: int | None = None,
    gross_mass_kg: int | None = None,
) -> VehicleClass:
    """The toll class of a vehicle from its registration data (JT/T 489-2019).

    Passenger vehicles: under 6 m, up to 9 seats class 1 and 10-19 seats class 2; from 6 m, up to 39
    seats class 3 and 40 or more class 4 (a vehicle under 6 m with 20 or more seats, which the standard
    does not foresee, is classed by its seats: 3, or 4 from 40). Trucks and special-purpose vehicles: 2
    axles under 6 m and under 4.5 t class 1, any other 2-axle class 2, then 3, 4, 5 and 6 or more axles.
    """
    if kind is VehicleKind.PASSENGER:
        seat_count = _positive("seats", seats)
        length = _positive("length_mm", length_mm)
        if length < SHORT_VEHICLE_MM and seat_count <= 19:
            return VehicleClass.PASSENGER_1 if seat_count <= 9 else VehicleClass.PASSENGER_2
        return VehicleClass.PASSENGER_3 if seat_count <= 39 else VehicleClass.PASSENGER_4
    axle_count = _positive("axles", axles)
    if axle_count < 2:
        raise InvalidField("axles", "too_few_axles", "货车至少有2根轴", "a truck has at least 2 axles")
    base = 11 if kind is VehicleKind.TRUCK else 21
    if axle_count == 2:
        length = _positive("length_mm", length_mm)
        mass = _positive("gross_mass_kg", gross_mass_kg)
        light = length < SHORT_VEHICLE_MM and mass < LIGHT_VEHICLE_KG
        return VehicleClass(base if light else base + 1)
    return VehicleClass(base + min(axle_count, 6) - 1)


# --- plates ----------------------------------------------------------------------------------------------

_PLATE_SEPARATORS = re.compile(r"[\s·•\-.]+")
_PLATE_BODY = re.compile(r"[A-Z0-9]+")


def validate_plate(plate: str, colour: PlateColour | None = None) -> str:
    """A mainland plate as ``甘A12345`` (or ``甘AD12345`` for new energy), or the reason it is refused.

    The plate is a province abbreviation, the issuing authority's letter, then 5 alphanumerics (6 for a
    new-energy plate, which the gradient-green and yellow-green colours require); I and O never occur.
    Full-width characters, spaces and the ``·`` separator are tolerated; letters are upper-cased.
    """
    value = _PLATE_SEPARATORS.sub("", unicodedata.normalize("NFKC", plate)).upper()
    if not value:
        raise InvalidField("plate", "plate_missing", "请输入车牌号", "a plate number is required")
    if value[0] not in PROVINCES:
        raise InvalidField(
            "plate",
            "plate_province",
            f"车牌应以省份简称开头，「{value[0]}」不是",
            f"a plate starts with a province abbreviation; '{value[0]}' is not one",
        )
    body = value[1:]
    if not body or not ("A" <= body[0] <= "Z") or not body[0].isascii():
        raise InvalidField(
            "plate", "plate_authority", "省份简称后应为发牌机关字母", "the province is followed by a letter"
        )
    if not _PLATE_BODY.fullmatch(body):
        raise InvalidField(
            "plate", "plate_characters", "车牌号只能包含字母和数字", "a plate holds letters and digits only"
        )
    if "I" in body or "O" in body:
        raise InvalidField(
            "plate", "plate_i_or_o", "车牌号不使用字母I和O", "plates never use the letters I and O"
        )
    rest = len(body) - 1
    if colour is not None and colour in NEW_ENERGY_COLOURS and rest != 6:
        raise InvalidField(
            "plate",
            "plate_new_energy_length",
            "新能源车牌在发牌机关字母后有6位",
            "a new-energy plate has 6 characters after the letter",
        )
    if colour is not None and colour not in NEW_ENERGY_COLOURS and rest != 5:
        raise InvalidField(
            "plate",
            "plate_length",
            "该颜色的车牌在发牌机关字母后有5位（6位为新能源车牌）",
            "a plate of this colour has 5 characters after the letter (6 is a new-energy plate)",
        )
    if rest not in (5, 6):
        raise InvalidField(
            "plate",
            "plate_length",
            "发牌机关字母后应有5或6位",
            "a plate has 5 or 6 characters after the letter",
        )
    return value


def vehicle_key(plate: str, colour: PlateColour) -> str:
    """A vehicle's key in data exchange: plate and colour, e.g. ``甘A12345_0``."""
    return f"{validate_plate(plate, colour)}_{int(colour)}"


# --- VIN (ISO 3779, GB 16735) ----------------------------------------------------------------------------

VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
VIN_VALUES: dict[str, int] = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}


def vin_check_digit(vin: str) -> str:
    """The check digit (position 9) a 17-character VIN must carry: ``0``-``9`` or ``X``."""
    total = sum(VIN_VALUES[char] * weight for char, weight in zip(vin, VIN_WEIGHTS, strict=True))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def validate_vin(vin: str) -> str:
    """A vehicle identification number upper-cased, or the reason it is refused (length, I/O/Q, check digit)."""
    value = re.sub(r"\s+", "", unicodedata.normalize("NFKC", vin)).upper()
    if len(value) != 17:
        raise InvalidField("vin", "vin_length", "车辆识别代号应为17位", "a VIN has 17 characters")
    forbidden = sorted({char for char in value if char in "IOQ"})
    if forbidden:
        letters = "、".join(forbidden)
        raise InvalidField(
            "vin",
            "vin_i_o_q",
            f"车辆识别代号不使用字母I、O、Q（含有 {letters}）",
            f"a VIN never uses the letters I, O and Q (found {', '.join(forbidden)})",
        )
    if any(char not in VIN_VALUES for char in value):
        raise InvalidField(
            "vin", "vin_characters", "车辆识别代号只能包含字母和数字", "a VIN holds letters and digits only"
        )
    expected = vin_check_digit(value)
    if value[8] != expected:
        raise InvalidField(
            "vin",
            "vin_check_digit",
            f"车辆识别代号校验位（第9位）应为 {expected}，实为 {value[8]}",
            f"the VIN's check digit (position 9) should be {expected}, not {value[8]}",
        )
    return value
