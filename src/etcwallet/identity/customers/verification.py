"""What makes a customer verified, and the two ways it is written (issue 17).

A customer is *verified* when their real-name profile is: ``customer_profiles.verified_at`` with the
method in ``verified_by`` (:class:`VerificationMethod`):

- ``outlet_id_check``: an operator at an outlet checked the ID document the customer showed (opening the
  account at the outlet from that document counts; :mod:`.outlet` writes it);
- ``bank_card``: a bank verified one of the customer's cards with the profile's name, ID number and the
  phone together (:func:`mark_verified_by_bank_card`, which the payments domain calls).

Changing the real-name data (a new name or ID) clears it: the store's ``put_profile`` writes both back to
NULL. The wallet's tiers read it with :func:`verification_of` or :func:`is_verified`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.identity.customers import store
from etcwallet.identity.customers.errors import closed_error
from etcwallet.identity.customers.types import (
    CUSTOMER,
    CustomerAction,
    CustomerStatus,
    Verification,
    VerificationMethod,
)
from etcwallet.identity.errors import IdentityError
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

Conn = AsyncConnection[Any]


async def verification_of(conn: Conn, *, customer_id: UUID) -> Verification | None:
    """When and how the customer was verified; None while unverified (or with no real-name profile)."""
    found = await store.get_verification(conn, customer_id)
    return None if found is None else Verification(found[0], VerificationMethod(found[1]))


async def is_verified(conn: Conn, *, customer_id: UUID) -> bool:
    """Whether the customer's real-name profile is verified (by an outlet's ID check or a bank card)."""
    return await verification_of(conn, customer_id=customer_id) is not None


async def verify_in(unit: Unit, *, customer_id: UUID, method: VerificationMethod) -> Verification:
    """Mark the customer verified by ``method`` at the unit's time, inside ``unit``: the customer's row is
    locked; a closed account is refused, and one with no real-name profile is 409 ``profile_required``."""
    customer = await store.lock_customer(unit.conn, customer_id)
    if customer.status is CustomerStatus.CLOSED:
        raise closed_error()
    if not await store.set_verified(unit.conn, customer_id, method=method.value, now=unit.now):
        raise IdentityError("profile_required")
    return Verification(unit.now, method)


def check_card_last4(card_last4: str) -> str:
    """The last four digits of a card number; 422 ``card_last4_format`` naming ``card_last4`` otherwise."""
    if len(card_last4) != 4 or not (card_last4.isascii() and card_last4.isdigit()):
        raise IdentityError("card_last4_format")
    return card_last4


async def mark_verified_by_bank_card(
    uow: UnitOfWork, *, customer_id: UUID, card_last4: str, actor: Actor
) -> Verification:
    """Record that a bank verified a card of the customer's with the profile's name, ID number and phone
    (the payments domain calls this once its bank says the four match); audited with ``actor`` and the
    card's last four digits. Refusals (no such customer, no profile, closed, a malformed ``card_last4``)
    write nothing."""
    last4 = check_card_last4(card_last4)

    async def step(unit: Unit) -> Verification:
        verification = await verify_in(unit, customer_id=customer_id, method=VerificationMethod.BANK_CARD)
        detail = {"method": VerificationMethod.BANK_CARD.value, "card_last4": last4}
        unit.audit(actor.event(CustomerAction.VERIFY, target=(CUSTOMER, str(customer_id)), detail=detail))
        return verification

    return await uow.run(step)
