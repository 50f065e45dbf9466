"""Validators for mobile numbers, resident IDs, passwords, payment PINs and bank cards."""

from __future__ import annotations

from datetime import date, timedelta
from importlib.resources import files

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcwallet.core.errors import InvalidValue
from etcwallet.identity.validators import (
    PROVINCE_PREFIXES,
    ResidentId,
    common_passwords,
    id_check_char,
    luhn_ok,
    validate_bank_card,
    validate_mobile,
    validate_password,
    validate_payment_password,
    validate_resident_id,
)

WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def reference_check(body: str) -> str:
    """The check character straight from the standard, independent of the module under test."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11]


def with_check(body: str) -> str:
    return body + reference_check(body)


def code_of(exc: pytest.ExceptionInfo[InvalidValue]) -> str:
    return exc.value.code


# --- mobile ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "13812345678",
        "+8613812345678",
        "+86 138 1234 5678",
        "86-138-1234-5678",
        "008613812345678",
        " 138 1234 5678 ",
        "１３８１２３４５６７８",
    ],
)
def test_mobile_normalized(raw: str) -> None:
    assert validate_mobile(raw) == "13812345678"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("1381234567", "mobile_format"),
        ("138123456789", "mobile_format"),
        ("1381234567a", "mobile_format"),
        ("", "mobile_format"),
        ("12812345678", "mobile_prefix"),
        ("23812345678", "mobile_prefix"),
        ("+8612812345678", "mobile_prefix"),
    ],
)
def test_mobile_refused(raw: str, code: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        validate_mobile(raw)
    assert code_of(exc) == code
    assert exc.value.zh and exc.value.en and exc.value.zh != exc.value.en


# --- resident ID -----------------------------------------------------------------------------------------


def test_well_known_valid_id() -> None:
    rid = validate_resident_id("11010519491231002X")
    assert rid == ResidentId(
        number="11010519491231002X", birth_date=date(1949, 12, 31), sex="female", region_code="110105"
    )


def test_lower_case_x_and_spaces_are_normalized() -> None:
    assert validate_resident_id(" 110105 19491231 002x ").number == "11010519491231002X"


@pytest.mark.parametrize(
    ("body", "sex"),
    [
        ("44030119900307123", "male"),
        ("62010219900101123", "male"),
        ("31011519851130004", "female"),
        ("65010220001229567", "male"),
        ("81000019700101008", "female"),
        ("91000020200229001", "male"),  # leap day
    ],
)
def test_computed_valid_ids(body: str, sex: str) -> None:
    number = with_check(body)
    rid = validate_resident_id(number)
    assert rid.number == number
    assert rid.sex == sex
    assert rid.region_code == body[:6]
    assert rid.birth_date == date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    assert id_check_char(body) == reference_check(body)


def test_wrong_check_digit() -> None:
    with pytest.raises(InvalidValue) as exc:
        validate_resident_id("110105194912310021")
    assert code_of(exc) == "id_check_digit"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("11010519491231002", "id_length"),
        ("11010519491231002XX", "id_length"),
        ("110105491231002", "id_length"),  # 15-character first-generation IDs are not accepted
        ("1101051949123100AX", "id_format"),
        ("11010519491231002Y", "id_format"),
        ("", "id_length"),
    ],
)
def test_id_shape_refused(raw: str, code: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        validate_resident_id(raw)
    assert code_of(exc) == code


@pytest.mark.parametrize(
    "birth", ["19900230", "19900229", "19901301", "19900001", "19900100", "18991231", "21000101"]
)
def test_bad_birth_dates(birth: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        validate_resident_id(with_check(f"110105{birth}123"))
    assert code_of(exc) == "id_birth_date"


def test_future_birth_date_relative_to_today() -> None:
    today = date(2024, 6, 1)
    tomorrow = today + timedelta(days=1)
    number = with_check(f"110105{tomorrow:%Y%m%d}123")
    with pytest.raises(InvalidValue) as exc:
        validate_resident_id(number, today=today)
    assert code_of(exc) == "id_birth_date"
    assert validate_resident_id(with_check(f"110105{today:%Y%m%d}123"), today=today).birth_date == today
    assert validate_resident_id(number, today=tomorrow).birth_date == tomorrow


@pytest.mark.parametrize(
    "prefix", ["00", "10", "16", "20", "24", "30", "38", "47", "55", "60", "66", "72", "80", "84", "90", "99"]
)
def test_bad_region(prefix: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        validate_resident_id(with_check(f"{prefix}010519900101123"))
    assert code_of(exc) == "id_region"


@pytest.mark.parametrize("prefix", sorted(PROVINCE_PREFIXES))
def test_every_province_prefix_accepted(prefix: int) -> None:
    assert validate_resident_id(with_check(f"{prefix}010519900101123")).region_code == f"{prefix}0105"


bodies = st.builds(
    lambda prov, rest, birth, seq: f"{prov}{rest}{birth:%Y%m%d}{seq}",
    st.sampled_from(sorted(PROVINCE_PREFIXES)),
    st.from_regex(r"[0-9]{4}", fullmatch=True),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2020, 12, 31)),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
)


@given(bodies)
def test_exactly_one_check_character_is_valid(body: str) -> None:
    valid = []
    for ch in "0123456789X":
        try:
            validate_resident_id(body + ch)
        except InvalidValue as exc:
            assert exc.code == "id_check_digit"
        else:
            valid.append(ch)
    assert valid == [reference_check(body)]
    assert validate_resident_id(body + valid[0].lower()).number == body + valid[0]


# --- password --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pw", ["Tr0ub4dor&3x", "correct horse battery", "收费站Etc2024", "zq7!vLp#", "x" * 120 + "Y9"]
)
def test_good_passwords(pw: str) -> None:
    assert validate_password(pw, phone="13812345678") == pw


@pytest.mark.parametrize(
    ("pw", "phone", "code"),
    [
        ("Ab1!", None, "password_too_short"),
        ("Abcde1!", None, "password_too_short"),
        ("Ab1!" * 33, None, "password_too_long"),
        ("abcdefghij", None, "password_classes"),
        ("ABCDEFGHIJ", None, "password_classes"),
        ("2741958306", None, "password_classes"),
        ("!@#$%^&*()", None, "password_classes"),
        ("zz13812345678", "13812345678", "password_contains_phone"),
        ("Qz12345678!", "13812345678", "password_contains_phone"),  # the last 8 digits
        ("Qz12345678!", "+86 138-1234-5678", "password_contains_phone"),
        ("password1", None, "password_common"),
        ("PASSWORD1", None, "password_common"),
        ("P@ssw0rd", None, "password_common"),
        ("woaini1314", None, "password_common"),
        ("a123456789", None, "password_common"),
        ("1qaz2wsx", None, "password_common"),
        ("Qq123456", None, "password_common"),
        ("abc123456", None, "password_common"),
        ("zxcvbnm123", None, "password_common"),
    ],
)
def test_password_rules(pw: str, phone: str | None, code: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        validate_password(pw, phone=phone)
    assert code_of(exc) == code


def test_password_phone_rule_needs_a_phone() -> None:
    assert validate_password("Qz12345678!", phone=None) == "Qz12345678!"
    assert validate_password("Qz1234567!", phone="13812345678") == "Qz1234567!"  # only 7 of the digits


def test_common_password_list_is_package_data() -> None:
    text = (files("etcwallet.identity") / "common_passwords.txt").read_text(encoding="utf-8")
    entries = [line for line in text.splitlines() if line and not line.startswith("# ")]
    assert len(entries) >= 1000
    listed = common_passwords()
    for pw in [
        "123456",
        "a123456",
        "woaini1314",
        "qq123456",
        "1qaz2wsx",
        "zxcvbnm",
        "5201314",
        "iloveyou",
        "password1",
        "abc123456",
    ]:
        assert pw in listed
    assert all(pw == pw.lower() for pw in listed)


@given(st.text(min_size=8, max_size=40))
def test_password_validator_only_raises_invalid_value(pw: str) -> None:
    try:
        assert validate_password(pw, phone="13812345678") == pw
    except InvalidValue as exc:
        assert exc.code.startswith("password_")


# --- payment PIN -----------------------------------------------------------------------------------------


def test_good_pin() -> None:
    assert validate_payment_password("730461", birth_date=date(1990, 3, 7), phone="13812345678") == "730461"


@pytest.mark.parametrize(
    ("pin", "code"),
    [
        ("12345", "pin_format"),
        ("1234567", "pin_format"),
        ("12a456", "pin_format"),
        ("１２３４５６", "pin_format"),
        ("111111", "pin_repeated"),
        ("000000", "pin_repeated"),
        ("123456", "pin_sequential"),
        ("654321", "pin_sequential"),
        ("012345", "pin_sequential"),
        ("567890", "pin_sequential"),
        ("098765", "pin_sequential"),
        ("121212", "pin_pattern"),
        ("520520", "pin_pattern"),
        ("900307", "pin_birth_date"),  # YYMMDD
        ("030790", "pin_birth_date"),  # MMDDYY
        ("070390", "pin_birth_date"),  # DDMMYY
        ("580307", "pin_birth_date"),  # contains MMDD
        ("345678", "pin_sequential"),
        ("245678", "pin_phone"),
    ],
)
def test_pin_rules(pin: str, code: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        validate_payment_password(pin, birth_date=date(1990, 3, 7), phone="13812245678")
    assert code_of(exc) == code


def test_pin_personal_rules_need_personal_data() -> None:
    assert validate_payment_password("900307") == "900307"
    assert validate_payment_password("245678") == "245678"


# --- bank cards ------------------------------------------------------------------------------------------

GOOD_CARDS = [
    "4111111111111111",
    "6222021234567890128",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
]


@pytest.mark.parametrize("number", GOOD_CARDS)
def test_luhn_known_good(number: str) -> None:
    assert luhn_ok(number)
    assert validate_bank_card(number) == number


@pytest.mark.parametrize("number", GOOD_CARDS)
def test_luhn_one_digit_change_fails(number: str) -> None:
    for i in range(len(number)):
        for d in "0123456789":
            if d != number[i]:
                assert not luhn_ok(number[:i] + d + number[i + 1 :])


def test_luhn_odd_inputs() -> None:
    assert not luhn_ok("")
    assert not luhn_ok("4111 1111 1111 1111")
    assert not luhn_ok("４１１１１１１１１１１１１１１１")


def test_bank_card_normalized() -> None:
    assert validate_bank_card("6222 0212 3456 7890 128") == "6222021234567890128"
    assert validate_bank_card("4111-1111-1111-1111") == "4111111111111111"


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("41111111111", "bank_card_format"),
        ("41111111111111111111", "bank_card_format"),
        ("4111x11111111111", "bank_card_format"),
        ("6222021234567890123", "bank_card_luhn"),
        ("4111111111111112", "bank_card_luhn"),
    ],
)
def test_bank_card_refused(number: str, code: str) -> None:
    with pytest.raises(InvalidValue) as exc:
        validate_bank_card(number)
    assert code_of(exc) == code


@given(st.from_regex(r"[0-9]{11,18}", fullmatch=True))
def test_appending_the_luhn_digit_makes_a_valid_card(body: str) -> None:
    valid = [d for d in "0123456789" if luhn_ok(body + d)]
    assert len(valid) == 1
    assert validate_bank_card(body + valid[0]) == body + valid[0]
