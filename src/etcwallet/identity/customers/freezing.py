"""Freezing an account and lifting the freeze: by the customer (lost phone), by risk staff, and the
owner's own unfreeze (password plus SMS code) of an account they froze themselves.

A freeze refuses sign-ins and ends every session, in one unit with its audit entry. Whatever else a
freeze must reach (the customer's ledger accounts) joins the same unit, in :func:`freeze_in` and
:func:`unfreeze_in`, so the account and everything it holds change together or not at all.
"""

from __future__ import annotations

from uuid import UUID

from etcwallet.core.deps import Client
from etcwallet.core.masking import mask_free_text, mask_phone
from etcwallet.identity import sms
from etcwallet.identity.customers import store
from etcwallet.identity.customers.accounts import freeze_accounts
from etcwallet.identity.customers.actions import claimant, event
from etcwallet.identity.customers.credentials import check_password
from etcwallet.identity.customers.types import CUSTOMER, Customer, CustomerAction, CustomerStatus
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.sessions import service as sessions
from etcwallet.identity.sms import Purpose
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork


async def freeze_in(unit: Unit, *, customer: Customer, reason: str, frozen_by: str, actor: Actor) -> None:
    """Freeze an active account inside ``unit`` (the caller holds its row locked), and its ledger accounts
    for debits: a hold taken before still posts or voids, new debits are refused."""
    await store.set_frozen(unit.conn, customer.id, reason=reason, frozen_by=frozen_by, now=unit.now)
    await freeze_accounts(unit, customer_id=customer.id, frozen=True, actor=actor)


async def unfreeze_in(unit: Unit, *, customer: Customer, actor: Actor) -> None:
    """Lift a freeze (and any sign-in lockout) inside ``unit`` (the caller holds its row locked), and release
    its ledger accounts."""
    await store.set_active(unit.conn, customer.id)
    await freeze_accounts(unit, customer_id=customer.id, frozen=False, actor=actor)


async def freeze(
    *,
    uow: UnitOfWork,
    customer_id: UUID,
    reason: str,
    by: tuple[str, UUID],
    client: Client,
) -> tuple[Customer, int]:
    """Freeze an account (by the customer or by staff): logins refused, every session ended. Idempotent.

    Staff freezing an account its owner froze take the freeze over (their reason, ``frozen_by`` staff), so
    that the owner's own unfreeze (password and SMS code, which a thief with the phone may hold) no longer
    lifts it. The reason is kept (and audited, and answered) with phone and ID numbers in it masked."""
    reason = mask_free_text(reason)
    actor_type, actor_id = by
    frozen_by = CUSTOMER if actor_type == CUSTOMER else f"staff:{actor_id}"

    async def step(unit: Unit) -> tuple[Customer, int]:
        before = await store.lock_customer(unit.conn, customer_id)
        changed = before.status is CustomerStatus.ACTIVE
        taken_over = before.status is CustomerStatus.FROZEN and before.self_frozen and actor_type != CUSTOMER
        if changed:
            who = Actor(actor_type, str(actor_id), client.ip, client.user_agent)
            await freeze_in(unit, customer=before, reason=reason, frozen_by=frozen_by, actor=who)
        elif taken_over:  # the ledger accounts are frozen already
            await store.set_frozen(unit.conn, customer_id, reason=reason, frozen_by=frozen_by, now=unit.now)
        ended = await sessions.end_all_sessions(
            unit.conn, principal_type=CUSTOMER, principal_id=customer_id, reason="frozen", now=unit.now
        )
        after = await store.get_customer_or_raise(unit.conn, customer_id)
        unit.audit(
            event(
                client,
                CustomerAction.FREEZE,
                customer_id=customer_id,
                actor=(actor_type, str(actor_id)),
                detail={"reason": reason, "status_before": before.status.value, "sessions_ended": ended},
                outcome="success" if changed or taken_over else "unchanged",
            )
        )
        return after, ended

    return await uow.run(step)


async def unfreeze(*, uow: UnitOfWork, customer_id: UUID, staff_id: UUID, client: Client) -> Customer:
    """Staff lift a freeze (and any login lockout). Unfreezing an active account changes nothing."""

    async def step(unit: Unit) -> Customer:
        before = await store.lock_customer(unit.conn, customer_id)
        changed = before.status is CustomerStatus.FROZEN
        if changed:
            await unfreeze_in(
                unit, customer=before, actor=Actor("staff", str(staff_id), client.ip, client.user_agent)
            )
        after = await store.get_customer_or_raise(unit.conn, customer_id)
        unit.audit(
            event(
                client,
                CustomerAction.UNFREEZE,
                customer_id=customer_id,
                actor=("staff", str(staff_id)),
                detail={"status_before": before.status.value, "frozen_reason_before": before.frozen_reason},
                outcome="success" if changed else "unchanged",
            )
        )
        return after

    return await uow.run(step)


async def request_self_unfreeze(
    *,
    uow: UnitOfWork,
    lookup_key: bytes,
    phone: str,
    password: str,
    sms_code: str | None,
    client: Client,
) -> Customer:
    """Unfreeze an account its owner froze, with the password plus an SMS code (the step-up).

    An account frozen by staff stays frozen: the answer says staff must lift it.
    """

    async def step(unit: Unit) -> tuple[Customer | None, IdentityError | None]:
        customer, failure = await check_password(unit.conn, phone=phone, password=password, now=unit.now)
        proven = customer is not None and (failure is None or failure.code == "account_frozen")
        if proven:
            assert customer is not None
            failure = await _self_unfreeze_refusal(unit, customer, failure, lookup_key, sms_code)
            if failure is None:
                owner = Actor(CUSTOMER, str(customer.id), client.ip, client.user_agent)
                await unfreeze_in(unit, customer=customer, actor=owner)
                customer = await store.get_customer_or_raise(unit.conn, customer.id)
        customer_id = customer.id if customer else None
        unit.audit(
            event(
                client,
                CustomerAction.UNFREEZE_SELF,
                customer_id=customer_id,
                failure=failure,
                actor=claimant(customer_id, proven),
                detail={"phone": mask_phone(phone), "factor": "password+sms"},
            )
        )
        return customer, failure

    customer, failure = await uow.run(step)
    if failure is not None:
        raise failure
    assert customer is not None
    return customer


async def _self_unfreeze_refusal(
    unit: Unit, customer: Customer, failure: IdentityError | None, lookup_key: bytes, sms_code: str | None
) -> IdentityError | None:
    """Why a proven owner may not unfreeze (not frozen, frozen by staff, no or a wrong code), or None."""
    if failure is None:
        return IdentityError("account_not_frozen")
    if not customer.self_frozen:
        return IdentityError("unfreeze_needs_staff", unfreeze_by="staff")
    if sms_code is None:
        return IdentityError("unfreeze_needs_sms_code", unfreeze_by="customer_sms")
    return await sms.check_code(
        unit.conn,
        lookup_key=lookup_key,
        phone=customer.phone,
        purpose=Purpose.UNFREEZE,
        code=sms_code,
        now=unit.now,
    )
