"""Card numbers: the Luhn check, the BIN table, and each refusal of a typed number naming its field."""

from __future__ import annotations

import pytest

from etcwallet.core.errors import DomainError
from etcwallet.identity.staff.types import BANKS
from etcwallet.payments.bins import (
    bank,
    bin_table,
    check_card_number,
    luhn_check_digit,
    luhn_valid,
    parse_table,
)
from etcwallet.payments.errors import PAYMENTS_ERRORS, PaymentsError
from etcwallet.payments.types import CardType
from tests.payments.builders import card_number


@pytest.mark.parametrize(
    "number", ["79927398713", "4111111111111111", "5555555555554444", "6222021234567890128", "0000000000000"]
)
def test_known_good_numbers_pass_luhn(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    "number", ["79927398710", "4111111111111112", "5555555555554443", "6222021234567890129", "", "7", "12a4"]
)
def test_known_bad_numbers_fail_luhn(number: str) -> None:
    assert not luhn_valid(number)


def test_a_single_mistyped_digit_or_swap_is_caught() -> None:
    good = "6222021234567890128"
    for i in range(len(good)):
        for digit in "0123456789":
            if digit != good[i]:
                assert not luhn_valid(good[:i] + digit + good[i + 1 :])
    assert not luhn_valid("6222021234567891028")  # two neighbours swapped


def test_the_check_digit_completes_a_valid_number() -> None:
    assert luhn_check_digit("7992739871") == "3"
    assert luhn_check_digit("622202123456789012") == "8"


def test_the_longest_prefix_wins() -> None:
    table = bin_table()
    plain = table.lookup("6222021234567890128")
    longer = table.lookup("622202101234567892")
    assert plain is not None and plain.prefix == "622202" and plain.length == 19
    assert longer is not None and longer.prefix == "62220210" and longer.length == 18
    seven = table.lookup("6217000123456789019")
    assert seven is not None and seven.bank.code == "ccb" and seven.prefix == "6217000"
    assert table.lookup("9999991234567890") is None
    assert table.lookup("62220") is None


def test_a_bin_names_bank_and_card_type() -> None:
    credit = bin_table().lookup("4367281234567890")
    assert credit is not None and credit.bank.code == "ccb" and credit.card_type is CardType.CREDIT
    debit = bin_table().lookup("6228481234567890123")
    assert debit is not None and (debit.bank.zh, debit.card_type) == ("农业银行", CardType.DEBIT)


def test_every_outlet_bank_is_in_the_table_under_its_own_code_and_name() -> None:
    """The seven banks of seed 001's outlets, named as identity names them; each with a debit BIN."""
    banks = bin_table().banks
    for code, (zh, en) in BANKS.items():
        assert (banks[code].zh, banks[code].en) == (zh, en)
        assert any(
            e.bank.code == code and e.card_type is CardType.DEBIT for e in bin_table().entries.values()
        )
    assert bank("no_such_bank").zh == "no_such_bank"


@pytest.mark.parametrize(
    "row",
    [
        "12345,icbc,工商银行,ICBC,debit,19",  # 5-digit prefix
        "123456789,icbc,工商银行,ICBC,debit,19",  # 9-digit prefix
        "622202,icbc,工商银行,ICBC,debit,12",  # too short a card
        "622202,icbc,工商银行,ICBC,prepaid,19",  # unknown type
    ],
)
def test_a_malformed_table_is_refused(row: str) -> None:
    with pytest.raises(ValueError):
        parse_table(f"# comment\nprefix,bank_code,bank_zh,bank_en,card_type,length\n{row}\n")


def test_spaces_and_hyphens_between_groups_are_dropped() -> None:
    number = card_number("622848")
    grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    assert check_card_number(grouped)[0] == number
    assert check_card_number(number[:6] + "-" + number[6:])[0] == number


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("62220212345678901x8", "card_number_not_digits"),
        ("６２２２０２１２３４５６７８９０１２８", "card_number_not_digits"),  # full-width digits
        ("", "card_number_length"),
        ("622202123456", "card_number_length"),  # 12
        ("62220212345678901234", "card_number_length"),  # 20
        ("6222021234567890129", "card_number_checksum"),
        ("4111111111111111", "card_bin_unknown"),
        ("622202123456789012", "card_length_for_bank"),  # Luhn-valid, 18 digits, of a 19-digit BIN
    ],
)
def test_each_bad_number_is_refused_naming_the_field(typed: str, code: str) -> None:
    with pytest.raises(PaymentsError) as caught:
        check_card_number(typed)
    error = caught.value
    assert (error.code, error.status, error.field) == (code, 422, "card_number")
    assert error.zh and error.en and "{" not in error.zh + error.en


def test_the_field_may_be_named_by_the_caller() -> None:
    with pytest.raises(PaymentsError) as caught:
        check_card_number("12", field="new_card_number")
    assert caught.value.field == "new_card_number"


@pytest.mark.parametrize("code", sorted(PAYMENTS_ERRORS))
def test_every_refusal_builds_fresh_from_the_table(code: str) -> None:
    text = {"length": 19, "bank_zh": "工商银行", "bank_en": "ICBC"}
    first, second = PaymentsError(code, text=text), PaymentsError(code, text=text)
    assert first is not second and isinstance(first, DomainError)
    status, _zh, _en, field = PAYMENTS_ERRORS[code]
    assert (first.status, first.field) == (status, field)
    assert 400 <= first.status < 500 and "{" not in first.zh + first.en
