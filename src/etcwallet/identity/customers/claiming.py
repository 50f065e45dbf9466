"""Claiming an account an outlet opened: its owner proves the phone with an SMS code (registering it)
and sets the first password. Kept apart so that registration (:mod:`.service`) and the outlet's use cases
(:mod:`.outlet`) can both reach it without importing each other."""

from __future__ import annotations

from etcwallet.identity.customers import store
from etcwallet.identity.customers.errors import status_refusal
from etcwallet.identity.customers.types import Customer
from etcwallet.identity.errors import IdentityError
from etcwallet.platform.unit import Unit


async def claim_in(
    unit: Unit, *, phone: str, password_hash: str
) -> tuple[Customer | None, IdentityError | None]:
    """Inside ``unit`` (the caller has checked the SMS code for ``phone``): set the first password of the
    unclaimed account with this phone. Answers the claimed customer, or the refusal with nothing written:
    ``phone_registered`` when the account is claimed already, the freeze or closure when it is not active.
    """
    found = await store.lock_credentials_by_phone(unit.conn, phone)
    if found is None or found[1] is not None:
        return None, IdentityError("phone_registered")
    refusal = status_refusal(found[0])
    if refusal is not None:
        return None, refusal
    return await store.claim_customer(unit.conn, phone, password_hash=password_hash, now=unit.now), None
