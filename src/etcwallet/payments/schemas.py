"""Request bodies and answers of bank cards, for the routes issuance and the wallet will add."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, Field

from etcwallet.core.schemas import RequestModel
from etcwallet.payments.types import BankCard, CardType


class BindCardIn(RequestModel):
    """A card number typed twice (checked by the service, which names the field that is wrong)."""

    card_number: str = Field(max_length=40, examples=["6222 0212 3456 7890 128"])
    confirm_number: str = Field(max_length=40)


class BankCardOut(BaseModel):
    """A bound card as every answer shows it: masked, with its bank and type."""

    id: UUID
    masked: str
    bank_code: str
    bank_name_zh: str
    bank_name_en: str
    card_type: CardType
    is_default: bool
    bound_at_outlet: UUID | None
    created_at: datetime
    unbound_at: datetime | None

    @classmethod
    def of(cls, card: BankCard) -> BankCardOut:
        return cls(
            id=card.id,
            masked=card.masked,
            bank_code=card.bank.code,
            bank_name_zh=card.bank.zh,
            bank_name_en=card.bank.en,
            card_type=card.card_type,
            is_default=card.is_default,
            bound_at_outlet=card.bound_at_outlet,
            created_at=card.created_at,
            unbound_at=card.unbound_at,
        )
