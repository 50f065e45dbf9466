"""The ETC code tables (spec §9), the provinces and the figures the vehicle checks use.

Each code carries its zh-CN and English name. The checks of what an operator types about a vehicle
(plate, VIN, engine number, class, dimensions) are in :mod:`etcwallet.issuance.vehicles`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Self

from etcwallet.core.i18n import Lang, pick


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


# --- vehicle class and VIN figures (the checks are in issuance/vehicles.py) --------------------------------

SHORT_VEHICLE_MM = 6000
LIGHT_VEHICLE_KG = 4500


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
