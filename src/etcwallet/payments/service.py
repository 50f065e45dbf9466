"""Bank cards bound to customers: one keyword-only function per use case, the only place that writes.

Each write is one unit of work: the customer share-locked and refused when closed (identity's
``hold_open_customer``, so a closure and a bind run one after the other), the customer's live cards locked
in id order, the change, and its audit entry, committed together. Audit entries and answers carry the
masked number only; the clear number lives in this module's locals and in the ciphertext.
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.core.crypto import Keys, keyed_hash
from etcwallet.core.masking import mask_bank_card
from etcwallet.identity.customers import service as customers
from etcwallet.payments import store
from etcwallet.payments.bins import check_card_number, normalize_card_number
from etcwallet.payments.errors import PaymentsError
from etcwallet.payments.types import CARD_NUMBER_CONTEXT, BankCard, CardAction
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

Conn = AsyncConnection[Any]


def card_number_hash(number: str, lookup_key: bytes) -> bytes:
    """The keyed hash a card number is found by (labelled, so it never equals another field's hash)."""
    return keyed_hash(f"bank_card:{normalize_card_number(number)}", lookup_key)


def _target(card: BankCard) -> tuple[str, str]:
    return ("bank_card", str(card.id))


def _detail(card: BankCard) -> dict[str, Any]:
    return {
        "customer_id": str(card.customer_id),
        "masked": card.masked,
        "bank_code": card.bank.code,
        "card_type": card.card_type.value,
    }


async def bind_card(
    uow: UnitOfWork,
    *,
    keys: Keys,
    customer_id: UUID,
    card_number: str,
    confirm_number: str,
    actor: Actor,
    bound_at_outlet: UUID | None = None,
) -> BankCard:
    """Bind a card typed twice to a customer; the first card bound becomes the default.

    Refused, with nothing written: a number that fails its checks (422 naming ``card_number``), a second
    typing that differs (422 ``card_number_mismatch`` naming ``confirm_number``), a card live for another
    customer (409 ``card_bound_elsewhere``, audited), a closed customer (403). The same card again for the
    same customer answers the card already bound, and writes nothing.
    """
    number, entry = check_card_number(card_number)
    if normalize_card_number(confirm_number) != number:
        raise PaymentsError("card_number_mismatch")
    digest = card_number_hash(number, keys.lookup_key)
    masked = mask_bank_card(number)

    async def step(unit: Unit) -> BankCard:
        await customers.hold_open_customer(unit.conn, customer_id=customer_id)
        live = await store.lock_live(unit.conn, customer_id)
        holder = await store.find_live_by_hash(unit.conn, digest)
        if holder is not None:
            if holder.customer_id != customer_id:
                raise PaymentsError("card_bound_elsewhere")
            return holder
        card = BankCard(
            id=uuid.uuid4(),
            customer_id=customer_id,
            masked=masked,
            bank=entry.bank,
            card_type=entry.card_type,
            is_default=not live,
            bound_at_outlet=bound_at_outlet,
            created_at=unit.now,
            unbound_at=None,
        )
        sealed = keys.cipher.encrypt(number, context=CARD_NUMBER_CONTEXT)
        await store.insert_card(unit.conn, card, number_enc=sealed, number_hash=digest)
        detail = {**_detail(card), "is_default": card.is_default}
        if bound_at_outlet is not None:
            detail["bound_at_outlet"] = str(bound_at_outlet)
        unit.audit(actor.event(CardAction.BIND, target=_target(card), detail=detail))
        return card

    return await uow.run(
        step,
        refusal=lambda error: actor.refused(
            CardAction.BIND,
            error.code,
            target=("customer", str(customer_id)),
            detail={"masked": masked},
        ),
    )


async def unbind_card(uow: UnitOfWork, *, customer_id: UUID, card_id: UUID, actor: Actor) -> BankCard:
    """Unbind a customer's card (kept as history). The default passes to the earliest bound card left.
    Unbinding it again answers it as it is; another customer's card, or none, is a 404."""

    async def step(unit: Unit) -> BankCard:
        live = await store.lock_live(unit.conn, customer_id)
        card = next((c for c in live if c.id == card_id), None)
        if card is None:
            return await store.get_card_or_raise(unit.conn, card_id, customer_id=customer_id)
        await store.set_unbound(unit.conn, card_id, now=unit.now)
        rest = sorted((c for c in live if c.id != card_id), key=lambda c: (c.created_at, c.id))
        detail = _detail(card)
        if card.is_default and rest:
            await store.move_default(unit.conn, customer_id, rest[0].id)
            detail["new_default"] = str(rest[0].id)
        unit.audit(actor.event(CardAction.UNBIND, target=_target(card), detail=detail))
        return await store.get_card_or_raise(unit.conn, card_id, customer_id=customer_id)

    return await uow.run(step)


async def set_default(uow: UnitOfWork, *, customer_id: UUID, card_id: UUID, actor: Actor) -> BankCard:
    """Make a live card the customer's default (the one charged when none is named). Setting the default
    card again writes nothing; an unbound card is a 409 ``card_unbound``, another customer's a 404."""

    async def step(unit: Unit) -> BankCard:
        live = await store.lock_live(unit.conn, customer_id)
        card = next((c for c in live if c.id == card_id), None)
        if card is None:
            await store.get_card_or_raise(unit.conn, card_id, customer_id=customer_id)
            raise PaymentsError("card_unbound")
        if card.is_default:
            return card
        await store.move_default(unit.conn, customer_id, card_id)
        previous = next((c for c in live if c.is_default), None)
        detail = {**_detail(card), "previous_default": str(previous.id) if previous else None}
        unit.audit(actor.event(CardAction.SET_DEFAULT, target=_target(card), detail=detail))
        return await store.get_card_or_raise(unit.conn, card_id, customer_id=customer_id)

    return await uow.run(step)


# --- reads -------------------------------------------------------------------------------------------------


async def list_cards(conn: Conn, *, customer_id: UUID) -> list[BankCard]:
    """A customer's live cards, masked: the default first, then in the order they were bound."""
    return await store.list_live(conn, customer_id)


async def get_card(conn: Conn, *, customer_id: UUID, card_id: UUID) -> BankCard | None:
    """A customer's card (live or unbound); None when there is none or it is another customer's."""
    return await store.get_card(conn, card_id, customer_id=customer_id)


async def get_card_or_raise(conn: Conn, *, customer_id: UUID, card_id: UUID) -> BankCard:
    """A customer's card (live or unbound); 404 ``card_not_found`` when none or another customer's."""
    return await store.get_card_or_raise(conn, card_id, customer_id=customer_id)


async def find_card_by_number(conn: Conn, *, keys: Keys, card_number: str) -> BankCard | None:
    """The live card with this number, whoever holds it (one keyed-hash look-up, no decryption)."""
    return await store.find_live_by_hash(conn, card_number_hash(card_number, keys.lookup_key))


async def reveal_card_number(conn: Conn, *, keys: Keys, customer_id: UUID, card_id: UUID) -> str:
    """A customer's card number in clear, for the bank it is sent to (a channel, a simulator), never for
    an answer or a log line; 404 when there is no such card."""
    sealed = await store.get_number_enc(conn, card_id, customer_id=customer_id)
    if sealed is None:
        raise PaymentsError("card_not_found")
    return keys.cipher.decrypt(sealed, context=CARD_NUMBER_CONTEXT)
