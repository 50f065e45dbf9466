"""Money as integer minor units with an ISO 4217 code; no float ever touches an amount."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from etcwallet.core.errors import DomainError, InvalidValue

MAX_AMOUNT = 2**63 - 1
"""The largest amount a single transfer may carry: PostgreSQL's bigint."""

# ISO 4217 codes the platform settles in, with their minor-unit exponents.
CURRENCIES: dict[str, int] = {
    "CNY": 2,
    "HKD": 2,
    "MOP": 2,
    "TWD": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "KRW": 0,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "NZD": 2,
    "THB": 2,
    "MYR": 2,
    "RUB": 2,
    "KZT": 2,
}


def check_currency(code: str) -> str:
    """Accept a supported ISO 4217 code, refuse anything else with a clear reason."""
    if code not in CURRENCIES:
        raise DomainError(
            "unknown_currency",
            422,
            f"不支持的币种 {code!r}（需为 ISO 4217 代码，如 CNY）",
            f"unsupported currency {code!r} (an ISO 4217 code such as CNY)",
            field="currency",
        )
    return code


def _currency(code: str) -> str:
    if code not in CURRENCIES:
        raise InvalidValue(
            "unknown_currency",
            f"不支持的币种 {code}（需为 ISO 4217 代码，如 CNY）",
            f"unsupported currency {code} (an ISO 4217 code such as CNY)",
        )
    return code


# The list is in the schema too (an enum), so a client sees the supported codes; the validator says why not.
Currency = Annotated[
    str,
    Field(min_length=3, max_length=3, pattern="^[A-Z]{3}$", json_schema_extra={"enum": list(CURRENCIES)}),
    AfterValidator(_currency),
]
PositiveAmount = Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT)]


class Money(BaseModel):
    """``{"amount": 12345, "currency": "CNY"}``: minor units (fen) and the currency code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: PositiveAmount
    currency: Currency


class SignedMoney(BaseModel):
    """A balance, which may be negative for an unconstrained account."""

    model_config = ConfigDict(frozen=True)

    amount: int
    currency: str
