"""The password check every password sign-in shares (sign-in, self-unfreeze): lockout, same cost for
unknown phones, the refusal of a frozen or closed account."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from etcwallet.identity import lockout
from etcwallet.identity.customers import store
from etcwallet.identity.customers.errors import status_refusal
from etcwallet.identity.customers.types import Customer
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.passwords import dummy_hash, verify_secret_async


async def check_password(
    conn: AsyncConnection[Any], *, phone: str, password: str, now: datetime | None = None
) -> tuple[Customer | None, IdentityError | None]:
    """Phone and password, with lockout: (customer if known, refusal or None). Same cost for unknown phones.

    The customer's row stays locked until the caller's transaction ends, so concurrent sign-ins for one
    phone are checked and counted one after another (as staff sign-in is): at most five failures before
    the lock, and an attempt after the lock point is refused even with the right password.
    """
    found = await store.lock_credentials_by_phone(conn, phone)
    if found is None:
        locked = await lockout.unknown_lock_in_force(conn, table="customers", identifier=phone, now=now)
        if locked is not None:
            return None, locked
        await verify_secret_async(dummy_hash(), password)
        until = await lockout.record_unknown_failure(conn, table="customers", identifier=phone, now=now)
        return None, lockout.failed("invalid_credentials", until)
    customer, stored = found
    locked = lockout.lock_in_force(customer.locked_until, now=now)
    if locked is not None:
        return customer, locked
    # An account an outlet opened has no password until its owner claims it: no password matches (checked
    # against the dummy hash, at the same cost), and the failure counts like any other.
    if stored is None:
        await verify_secret_async(dummy_hash(), password)
    if stored is None or not await verify_secret_async(stored, password):
        until = await lockout.record_failure(conn, table="customers", principal_id=customer.id, now=now)
        return customer, lockout.failed("invalid_credentials", until)
    return customer, status_refusal(customer)
