"""Bank card numbers: the Luhn check, the BIN table shipped with the package, and the check of a typed
number that both bind at the counter and in the wallet use.

The table (``bin_table.csv``) is configuration data, illustrative until a deployment replaces it with the
bank's own; it is read once per process with :mod:`importlib.resources`, so it works from a wheel too.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

from etcwallet.payments.errors import PaymentsError
from etcwallet.payments.types import MAX_CARD_LENGTH, MIN_CARD_LENGTH, Bank, BinEntry, CardType

TABLE_FILE = "bin_table.csv"
MIN_PREFIX = 6
MAX_PREFIX = 8
_GAPS = re.compile(r"[ \-]")


@dataclass(frozen=True)
class BinTable:
    """The BIN table: entries by prefix, and the banks they name by code."""

    entries: dict[str, BinEntry]
    banks: dict[str, Bank]

    def lookup(self, number: str) -> BinEntry | None:
        """The entry of the longest prefix (8 digits down to 6) that ``number`` starts with; None if none."""
        for size in range(MAX_PREFIX, MIN_PREFIX - 1, -1):
            entry = self.entries.get(number[:size])
            if entry is not None:
                return entry
        return None


def parse_table(text: str) -> BinTable:
    """A BIN table from its CSV text (``#`` lines are comments); raises ValueError on a malformed row."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    entries: dict[str, BinEntry] = {}
    banks: dict[str, Bank] = {}
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        prefix, length = row["prefix"].strip(), int(row["length"])
        if not (prefix.isdigit() and MIN_PREFIX <= len(prefix) <= MAX_PREFIX):
            raise ValueError(f"BIN prefix {prefix!r} must be {MIN_PREFIX} to {MAX_PREFIX} digits")
        if not MIN_CARD_LENGTH <= length <= MAX_CARD_LENGTH or prefix in entries:
            raise ValueError(f"BIN prefix {prefix}: bad length {length} or a second row")
        bank = Bank(row["bank_code"].strip(), row["bank_zh"].strip(), row["bank_en"].strip())
        if banks.setdefault(bank.code, bank) != bank:
            raise ValueError(f"bank {bank.code} is named two ways")
        entries[prefix] = BinEntry(prefix, bank, CardType(row["card_type"].strip()), length)
    return BinTable(entries, banks)


@cache
def bin_table() -> BinTable:
    """The table shipped with the package, read once."""
    return parse_table((files("etcwallet.payments") / TABLE_FILE).read_text(encoding="utf-8"))


def bank(code: str) -> Bank:
    """The bank named by ``code`` in the table; a bank the table no longer lists keeps its code as names."""
    return bin_table().banks.get(code) or Bank(code, code, code)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn (mod 10) check, as every bank card number does."""
    return len(digits) > 1 and digits.isdigit() and luhn_check_digit(digits[:-1]) == digits[-1]


def luhn_check_digit(body: str) -> str:
    """The digit that, appended to ``body``, makes a Luhn-valid number."""
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:  # doubled: the digits right of it hold the check digit, one apart
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str(-total % 10)


def normalize_card_number(raw: str) -> str:
    """A typed number without the spaces and hyphens people group its digits with."""
    return _GAPS.sub("", raw.strip())


def check_card_number(raw: str, *, field: str = "card_number") -> tuple[str, BinEntry]:
    """The number (normalized) and its BIN entry, or the refusal naming ``field``: not digits, not 13 to 19
    long, failing Luhn, of no known BIN, or not the length its BIN has."""
    number = normalize_card_number(raw)
    if number and not (number.isascii() and number.isdigit()):
        raise PaymentsError("card_number_not_digits", field=field)
    if not MIN_CARD_LENGTH <= len(number) <= MAX_CARD_LENGTH:
        raise PaymentsError("card_number_length", field=field)
    if not luhn_valid(number):
        raise PaymentsError("card_number_checksum", field=field)
    entry = bin_table().lookup(number)
    if entry is None:
        raise PaymentsError("card_bin_unknown", field=field)
    if len(number) != entry.length:
        text = {"length": entry.length, "bank_zh": entry.bank.zh, "bank_en": entry.bank.en}
        raise PaymentsError("card_length_for_bank", field=field, text=text)
    return number, entry
