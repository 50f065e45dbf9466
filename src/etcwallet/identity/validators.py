"""Validators for what people type: mobile numbers, resident ID numbers, passwords, payment PINs, bank cards.

Each returns the normalized value or raises :class:`InvalidValue` with a stable code and a reason in
zh-CN and English, which the API turns into a 422 problem naming the field.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from importlib.resources import files
from typing import Literal
from zoneinfo import ZoneInfo

from etcwallet.core.errors import InvalidValue

_TZ = ZoneInfo("Asia/Shanghai")
_SEPARATORS = re.compile(r"[\s\-]+")


def _today() -> date:
    return datetime.now(_TZ).date()


def _compact(value: str) -> str:
    """Full-width forms folded (NFKC), spaces and hyphens removed."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", value))


def _ascii_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()


# --- mobile --------------------------------------------------------------------------------------------

_MOBILE = re.compile(r"1[3-9][0-9]{9}")
MOBILE_PATTERN = r"^(?:\+86)?1[3-9][0-9]{9}$"
"""Mobile numbers :func:`validate_mobile` surely takes, for a schema (it also takes 0086 or 86 before the
number, spaces, hyphens and full-width digits)."""


def validate_mobile(phone: str) -> str:
    """A mainland China mobile number as its 11 digits; '+86', '0086' or '86' and spaces/hyphens are tolerated."""
    value = _compact(phone)
    if value.startswith("+86"):
        value = value[3:]
    elif value.startswith("0086"):
        value = value[4:]
    elif value.startswith("86") and len(value) == 13:
        value = value[2:]
    if not _ascii_digits(value) or len(value) != 11:
        raise InvalidValue("mobile_format", "手机号应为11位数字", "a mobile number has 11 digits")
    if not _MOBILE.fullmatch(value):
        raise InvalidValue(
            "mobile_prefix", "手机号应以13–19开头", "a mainland China mobile number starts with 13 to 19"
        )
    return value


# --- resident ID (GB 11643-1999) -------------------------------------------------------------------------

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"
PROVINCE_PREFIXES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46}
    | {50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
)


@dataclass(frozen=True)
class ResidentId:
    """A checked resident ID number and what it encodes."""

    number: str
    birth_date: date
    sex: Literal["male", "female"]
    region_code: str


def id_check_char(body: str) -> str:
    """The GB 11643-1999 check character (0-9 or X) for a 17-digit body."""
    if len(body) != 17 or not _ascii_digits(body):
        raise ValueError("the body of a resident ID number is 17 digits")
    return ID_CHECK_CHARS[sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True)) % 11]


def validate_resident_id(number: str, *, today: date | None = None) -> ResidentId:
    """An 18-character resident ID number checked for format, region, birth date and check character."""
    value = _compact(number).upper()
    if len(value) != 18:
        raise InvalidValue("id_length", "身份证号码应为18位", "a resident ID number has 18 characters")
    body, check = value[:17], value[17]
    if not _ascii_digits(body) or check not in "0123456789X":
        raise InvalidValue(
            "id_format",
            "身份证号码应为17位数字加1位数字或X",
            "a resident ID number is 17 digits followed by a digit or X",
        )
    if int(body[:2]) not in PROVINCE_PREFIXES:
        raise InvalidValue(
            "id_region", "身份证号码的地区码无效", "the region code of the ID number is not valid"
        )
    try:
        birth = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise InvalidValue(
            "id_birth_date",
            "身份证号码中的出生日期无效",
            "the birth date in the ID number is not a real date",
        ) from None
    if birth.year < 1900 or birth > (today or _today()):
        raise InvalidValue(
            "id_birth_date",
            "身份证号码中的出生日期不合理",
            "the birth date in the ID number is in the future or before 1900",
        )
    if id_check_char(body) != check:
        raise InvalidValue(
            "id_check_digit", "身份证号码校验位不正确，请核对", "the check digit of the ID number is wrong"
        )
    return ResidentId(
        number=value,
        birth_date=birth,
        sex="male" if int(body[16]) % 2 else "female",
        region_code=body[:6],
    )


# --- login password ----------------------------------------------------------------------------------------

PASSWORD_MIN = 8
PASSWORD_MAX = 128
PASSWORD_PATTERN = r"^[!-~]*(?:[a-z][A-Z0-9]|[A-Z0-9][a-z]|[A-Z][0-9]|[0-9][A-Z])[!-~]{6,}$"
"""Passwords the policy surely takes, for a schema: printable ASCII, at least 8 characters, two classes side
by side (the policy itself counts classes anywhere, and any letters and symbols)."""
PASSWORD_RULES = (
    "8 to 128 characters with at least two of: lower-case letters, upper-case letters, digits, symbols; "
    "not a well-known common password, and not containing the account's phone number"
)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of well-known weak passwords, lower-cased, read once ('# ' lines are comments)."""
    text = (files("etcwallet.identity") / "common_passwords.txt").read_text(encoding="utf-8")
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line.lower() for line in lines if line and not line.startswith("# "))


def _classes(password: str) -> int:
    lower = upper = digit = symbol = False
    for ch in password:
        if ch.isdigit():
            digit = True
        elif ch.islower():
            lower = True
        elif ch.isupper():
            upper = True
        else:
            symbol = True
    return lower + upper + digit + symbol


def validate_password(password: str, *, phone: str | None) -> str:
    """A login password that passes the policy: length, character classes, no phone number, not common."""
    if len(password) < PASSWORD_MIN:
        raise InvalidValue(
            "password_too_short",
            f"密码至少需要{PASSWORD_MIN}个字符",
            f"the password needs at least {PASSWORD_MIN} characters",
        )
    if len(password) > PASSWORD_MAX:
        raise InvalidValue(
            "password_too_long",
            f"密码不能超过{PASSWORD_MAX}个字符",
            f"the password may have at most {PASSWORD_MAX} characters",
        )
    if _classes(password) < 2:
        raise InvalidValue(
            "password_classes",
            "密码需包含小写字母、大写字母、数字、符号中的至少两类",
            "the password needs at least two of: lower-case letters, upper-case letters, digits, symbols",
        )
    if phone:
        digits = "".join(ch for ch in _compact(phone) if _ascii_digits(ch))
        if digits.startswith("86") and len(digits) == 13:
            digits = digits[2:]
        folded = unicodedata.normalize("NFKC", password)
        if len(digits) >= 8 and digits[-8:] in folded:  # the last 8 digits cover the whole number too
            raise InvalidValue(
                "password_contains_phone",
                "密码不能包含手机号",
                "the password must not contain the phone number",
            )
    if password.lower() in common_passwords():
        raise InvalidValue(
            "password_common",
            "密码过于常见，容易被猜到，请换一个",
            "the password is too common and easy to guess; choose another",
        )
    return password


# --- payment PIN -------------------------------------------------------------------------------------------

_ASCENDING = "01234567890"
_DESCENDING = "09876543210"


def validate_payment_password(pin: str, *, birth_date: date | None = None, phone: str | None = None) -> str:
    """A 6-digit payment PIN that is not a repeat, a straight run, a birth date or the phone's tail."""
    if len(pin) != 6 or not _ascii_digits(pin):
        raise InvalidValue("pin_format", "支付密码应为6位数字", "the payment password is 6 digits")
    if len(set(pin)) == 1:
        raise InvalidValue(
            "pin_repeated", "支付密码不能是相同的数字", "the payment password must not repeat one digit"
        )
    if pin in _ASCENDING or pin in _DESCENDING:
        raise InvalidValue(
            "pin_sequential", "支付密码不能是连续的数字", "the payment password must not be a straight run"
        )
    if pin[:2] * 3 == pin or pin[:3] * 2 == pin:
        raise InvalidValue(
            "pin_pattern",
            "支付密码不能是重复的数字组合",
            "the payment password must not repeat a short pattern",
        )
    if birth_date is not None:
        yy, mm, dd = f"{birth_date.year % 100:02d}", f"{birth_date.month:02d}", f"{birth_date.day:02d}"
        if pin in {yy + mm + dd, mm + dd + yy, dd + mm + yy} or (mm + dd) in pin:
            raise InvalidValue(
                "pin_birth_date",
                "支付密码不能包含出生日期",
                "the payment password must not contain the birth date",
            )
    if phone:
        digits = "".join(ch for ch in _compact(phone) if _ascii_digits(ch))
        if len(digits) >= 6 and digits.endswith(pin):
            raise InvalidValue(
                "pin_phone",
                "支付密码不能是手机号后六位",
                "the payment password must not be the last six digits of the phone number",
            )
    return pin


# --- bank card ---------------------------------------------------------------------------------------------


def luhn_ok(number: str) -> bool:
    """Whether a string of digits passes the Luhn (mod 10) check that card numbers carry."""
    if not number or not _ascii_digits(number):
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def validate_bank_card(number: str) -> str:
    """A bank card number as 12-19 digits (spaces and hyphens removed) that passes the Luhn check."""
    value = _compact(number)
    if not _ascii_digits(value) or not 12 <= len(value) <= 19:
        raise InvalidValue(
            "bank_card_format", "银行卡号应为12–19位数字", "a bank card number has 12 to 19 digits"
        )
    if not luhn_ok(value):
        raise InvalidValue(
            "bank_card_luhn",
            "银行卡号校验失败，请核对卡号",
            "the bank card number fails its check digit; check it",
        )
    return value
