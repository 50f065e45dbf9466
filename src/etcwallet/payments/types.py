"""The payments domain's plain types: a bound bank card, its type, and the audit actions (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

CARD_NUMBER_CONTEXT = b"bank_cards.number"
"""The encryption context of a card number: a blob sealed for this column opens nowhere else."""

MIN_CARD_LENGTH = 13
MAX_CARD_LENGTH = 19


class CardType(StrEnum):
    """What a card draws on: the holder's account (借记卡) or a credit line (贷记卡)."""

    DEBIT = "debit"
    CREDIT = "credit"


class CardAction(StrEnum):
    """The audit actions of bank cards (``payments.card.<why>``)."""

    BIND = "payments.card.bind"
    UNBIND = "payments.card.unbind"
    SET_DEFAULT = "payments.card.set_default"


@dataclass(frozen=True)
class Bank:
    """An issuing bank: its code (as outlets name their bank) and its name in both languages."""

    code: str
    zh: str
    en: str


@dataclass(frozen=True)
class BinEntry:
    """One row of the BIN table: the cards starting with ``prefix`` are ``bank``'s, of this type and length."""

    prefix: str
    bank: Bank
    card_type: CardType
    length: int


@dataclass(frozen=True)
class BankCard:
    """A card bound to a customer, as everything outside the store sees it: masked, never in clear."""

    id: UUID
    customer_id: UUID
    masked: str
    bank: Bank
    card_type: CardType
    is_default: bool
    bound_at_outlet: UUID | None
    created_at: datetime
    unbound_at: datetime | None

    @property
    def live(self) -> bool:
        """Bound now (not unbound)."""
        return self.unbound_at is None
