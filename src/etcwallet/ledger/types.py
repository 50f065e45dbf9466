"""The ledger's value types: what a caller asks for, what the ledger stores, and an account's state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple
from uuid import UUID


class TransferKind(StrEnum):
    """Why a transfer row exists: an immediate move, a hold, or the second phase of a hold."""

    SINGLE = "single"
    PENDING = "pending"
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"


class LedgerAction(StrEnum):
    """What the audit log calls each write made through the ledger's own API."""

    ACCOUNT_OPENED = "ledger.account_opened"
    ACCOUNT_FROZEN = "ledger.account_frozen"
    ACCOUNT_UNFROZEN = "ledger.account_unfrozen"
    OWNER_FROZEN = "ledger.owner_frozen"  # every account of an owner, and those opened later
    OWNER_UNFROZEN = "ledger.owner_unfrozen"
    TRANSFER_CREATED = "ledger.transfer_created"
    LINKED_CREATED = "ledger.linked_created"
    BATCH_SUBMITTED = "ledger.batch_submitted"


class PendingState(StrEnum):
    OPEN = "open"
    POSTED = "posted"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(slots=True)
class TransferRequest:
    """One transfer to create. For post/void, accounts and currency come from the pending transfer.

    ``amount`` None on a post means the whole pending amount. ``linked`` chains this transfer to the
    next one in the same submission: the chain commits or fails as one.
    """

    id: UUID
    kind: TransferKind = TransferKind.SINGLE
    debit_account_id: UUID | None = None
    credit_account_id: UUID | None = None
    amount: int | None = None
    currency: str | None = None
    code: str | None = None
    pending_id: UUID | None = None
    timeout_seconds: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    linked: bool = False


def chained(requests: Sequence[TransferRequest], linked: bool = True) -> list[TransferRequest]:
    """``requests`` as one linked chain (each linked to the next, the last to nothing), or, with
    ``linked=False``, as independent transfers. Where the flag must change the request is copied: the
    caller's objects stay as they were sent."""
    last = len(requests) - 1
    return [
        r if r.linked == (linked and i < last) else replace(r, linked=linked and i < last)
        for i, r in enumerate(requests)
    ]


class Transfer(NamedTuple):
    """A stored, immutable transfer, with both accounts' posted totals just after it.

    A named tuple rather than a dataclass: bulk calls build thousands per batch, and a tuple is cheap.
    """

    id: UUID
    seq: int | None
    kind: TransferKind
    debit_account_id: UUID
    credit_account_id: UUID
    amount: int
    currency: str
    code: str
    pending_id: UUID | None
    timeout_seconds: int | None
    expires_at: datetime | None
    metadata: dict[str, Any]
    created_at: datetime
    debit_debits_after: int
    debit_credits_after: int
    credit_debits_after: int
    credit_credits_after: int


@dataclass(slots=True)
class Account:
    """An account with its four totals; credit-normal unless it is debit-constrained."""

    id: UUID
    currency: str
    code: str
    owner: str
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    frozen: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    metadata: dict[str, Any]
    created_at: datetime

    @property
    def credit_normal(self) -> bool:
        return not self.credits_must_not_exceed_debits

    @property
    def balance(self) -> int:
        """Posted balance on the account's normal side."""
        diff = self.credits_posted - self.debits_posted
        return diff if self.credit_normal else -diff

    @property
    def available(self) -> int:
        """What may still leave the account: the balance less outgoing holds."""
        if self.credit_normal:
            return self.balance - self.debits_pending
        return self.balance - self.credits_pending
