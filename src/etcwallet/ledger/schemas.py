"""Request and response bodies of the ledger API. Money is ``{"amount": minor units, "currency": code}``."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationInfo, field_validator

from etcwallet.core.bodies import MIB
from etcwallet.core.errors import InvalidValue
from etcwallet.core.money import Currency, Money, SignedMoney
from etcwallet.core.schemas import RequestModel, text_fault
from etcwallet.ledger.chart import AccountCode
from etcwallet.ledger.service import MAX_BATCH, HistoryEntry
from etcwallet.ledger.types import Account, Transfer, TransferKind, TransferRequest

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.:\-]*$")]
MAX_METADATA_BYTES = 4096
# JSON true or false only: lax parsing would read "yes", "no", "0" or 1 as a flag that moves money.
Flag = Annotated[bool, Field(strict=True)]


def _no_nul(value: str) -> str:
    fault = text_fault(value)
    if fault:
        raise fault
    return value


def _small_metadata(value: dict[str, Any]) -> dict[str, Any]:
    # NaN, Infinity, NUL and lone surrogates parse as JSON here, but PostgreSQL's jsonb refuses them
    fault = text_fault(value)
    if fault:
        raise InvalidValue(fault.code, f"附加信息{fault.zh}", f"metadata {fault.en}")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise InvalidValue(
            "metadata_not_json", "附加信息不能包含 NaN 或 Infinity", "metadata must not hold NaN or Infinity"
        ) from None
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise InvalidValue(
            "metadata_too_large",
            f"附加信息不能超过 {MAX_METADATA_BYTES} 字节",
            f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON",
        )
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_small_metadata)]

_NUMBER = re.compile(r"\s*[-+]?[0-9]+(\.[0-9]*)?\s*")


def _iso_time(value: Any) -> Any:
    # Pydantic reads a bare number as seconds (or, past 2e10, milliseconds) since 1970: refuse the guess
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise InvalidValue(
            "iso_time_required",
            "时间须为带时区的 ISO 8601 格式，如 2026-05-01T08:00:00+08:00，不能是数字",
            "the time must be ISO 8601 with a UTC offset, e.g. 2026-05-01T08:00:00+08:00, not a number",
        )
    return value


AsOf = Annotated[
    datetime,
    BeforeValidator(_iso_time),
    Field(description="ISO 8601 with a UTC offset, e.g. 2026-05-01T08:00:00+08:00"),
]
"""A point in time given by a caller (a query parameter): ISO 8601 with an offset, never a bare number."""


class AccountCreate(RequestModel):
    """Open an account. Send your own ``id`` to make the call safe to retry."""

    id: UUID | None = None
    currency: Currency
    code: AccountCode
    owner: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_nul)]
    debits_must_not_exceed_credits: Flag = False
    credits_must_not_exceed_debits: Flag = False
    metadata: Metadata = Field(default_factory=dict)

    @field_validator("credits_must_not_exceed_debits")
    @classmethod
    def _one_constraint(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("debits_must_not_exceed_credits"):
            raise InvalidValue(
                "conflicting_constraints",
                "账户只能设置一种余额约束",
                "an account takes at most one balance constraint",
            )
        return value


class AccountTotals(BaseModel):
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int


class AccountOut(BaseModel):
    id: UUID
    currency: str
    code: str
    owner: str
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    frozen: bool
    balance: SignedMoney
    available: SignedMoney
    totals: AccountTotals
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, a: Account) -> AccountOut:
        return cls(
            id=a.id,
            currency=a.currency,
            code=a.code,
            owner=a.owner,
            debits_must_not_exceed_credits=a.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=a.credits_must_not_exceed_debits,
            frozen=a.frozen,
            balance=SignedMoney(amount=a.balance, currency=a.currency),
            available=SignedMoney(amount=a.available, currency=a.currency),
            totals=AccountTotals(
                debits_posted=a.debits_posted,
                credits_posted=a.credits_posted,
                debits_pending=a.debits_pending,
                credits_pending=a.credits_pending,
            ),
            metadata=a.metadata,
            created_at=a.created_at,
        )


class FreezeRequest(RequestModel):
    frozen: Flag


class TransferCreate(RequestModel):
    """Move ``amount`` from the debit account to the credit account, now or as a hold (``pending``)."""

    id: UUID
    debit_account_id: UUID
    credit_account_id: UUID
    amount: Money
    code: Code
    pending: Flag = False
    timeout_seconds: Annotated[int | None, Field(strict=True, ge=1, le=366 * 86400)] = None
    metadata: Metadata = Field(default_factory=dict)

    @field_validator("timeout_seconds")
    @classmethod
    def _timeout_needs_pending(cls, value: int | None, info: ValidationInfo) -> int | None:
        # Named on the field itself (a model-level check would be reported against the whole body).
        if value is not None and info.data.get("pending") is False:
            raise InvalidValue(
                "timeout_without_pending",
                "只有待定转账可以设置超时",
                "timeout_seconds applies only to a pending transfer",
            )
        return value

    def request(self, linked: bool = False) -> TransferRequest:
        return TransferRequest(
            id=self.id,
            kind=TransferKind.PENDING if self.pending else TransferKind.SINGLE,
            debit_account_id=self.debit_account_id,
            credit_account_id=self.credit_account_id,
            amount=self.amount.amount,
            currency=self.amount.currency,
            code=self.code,
            timeout_seconds=self.timeout_seconds,
            metadata=self.metadata,
            linked=linked,
        )


class PostPending(RequestModel):
    """Post a hold: all of it, or a smaller ``amount`` (the rest is released)."""

    id: UUID
    amount: Money | None = None
    metadata: Metadata = Field(default_factory=dict)

    def request(self, pending_id: UUID) -> TransferRequest:
        return TransferRequest(
            id=self.id,
            kind=TransferKind.POST_PENDING,
            pending_id=pending_id,
            amount=self.amount.amount if self.amount else None,
            currency=self.amount.currency if self.amount else None,
            metadata=self.metadata,
        )


class VoidPending(RequestModel):
    """Release a hold without moving money."""

    id: UUID
    metadata: Metadata = Field(default_factory=dict)

    def request(self, pending_id: UUID) -> TransferRequest:
        return TransferRequest(
            id=self.id, kind=TransferKind.VOID_PENDING, pending_id=pending_id, metadata=self.metadata
        )


MAX_BATCH_BODY = 8 * MIB
"""A batch's body limit: 8,000 transfers at 1 KiB each. A plain transfer is about 250 bytes of JSON, so that
leaves about 750 bytes of metadata per transfer on average; a batch with more is sent in parts. (At the
4 KiB metadata limit on every transfer, 8,000 would be 35 MB: too much to hold for one request.)"""


class LinkedCreate(RequestModel):
    """Transfers that commit together or not at all."""

    transfers: Annotated[list[TransferCreate], Field(min_length=1, max_length=MAX_BATCH)]


class BatchItem(TransferCreate):
    linked: Flag = False


class BatchCreate(RequestModel):
    """Up to 8,000 independent transfers (``linked`` chains one to the next) in one transaction."""

    transfers: Annotated[list[BatchItem], Field(min_length=1, max_length=MAX_BATCH)]


class TransferOut(BaseModel):
    id: UUID
    kind: TransferKind
    debit_account_id: UUID
    credit_account_id: UUID
    amount: Money
    code: str
    pending_id: UUID | None
    timeout_seconds: int | None
    expires_at: datetime | None
    metadata: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, t: Transfer) -> TransferOut:
        return cls(
            id=t.id,
            kind=t.kind,
            debit_account_id=t.debit_account_id,
            credit_account_id=t.credit_account_id,
            amount=Money(amount=t.amount, currency=t.currency),
            code=t.code,
            pending_id=t.pending_id,
            timeout_seconds=t.timeout_seconds,
            expires_at=t.expires_at,
            metadata=t.metadata,
            created_at=t.created_at,
        )


class LinkedOut(BaseModel):
    transfers: list[TransferOut]


class BatchResult(BaseModel):
    index: int
    status: Literal["ok", "refused"]
    transfer: TransferOut | None = None
    error: dict[str, Any] | None = None


class BatchOut(BaseModel):
    accepted: int
    refused: int
    results: list[BatchResult]


class HistoryItem(BaseModel):
    transfer: TransferOut
    side: Literal["debit", "credit"]
    balance_after: SignedMoney

    @classmethod
    def of(cls, e: HistoryEntry) -> HistoryItem:
        return cls(
            transfer=TransferOut.of(e.transfer),
            side="debit" if e.side == "debit" else "credit",
            balance_after=SignedMoney(amount=e.balance_after, currency=e.transfer.currency),
        )


class HistoryPage(BaseModel):
    items: list[HistoryItem]
    next_cursor: str | None


class BalanceAsOf(BaseModel):
    account_id: UUID
    at: datetime
    balance: SignedMoney
