"""Closing a customer's account, and anonymizing it once the retention period has passed.

**Closing** (:func:`close_account`), in one unit of work: lock the customer, freeze their ledger accounts
for debits (which locks them, so no money moves while the checks read), run every closure check
(:mod:`.closure_checks`: identity's own, no money and nothing pending, then those other domains
registered), end every session, mark the customer ``closed`` (``closed_at``, ``closed_by``) and audit
``customer.close``. A refusal rolls all of it back and is audited on its own. The customer closes their own
account after a fresh step-up and, when one is set, their payment password (:func:`close_own_account`);
staff who may freeze customers (risk officers) close one on the customer's request, after
their own fresh step-up, with a reason (:func:`close_for_customer`).

A closed account keeps its record: it cannot sign in (``account_closed``), and its phone number and ID
number stay bound to it (registering the phone again, or recording the ID on another account, is refused
as for any registered customer) until it is anonymized.

**Anonymizing** (:func:`anonymize_closed`, the ``identity.anonymize_closed`` job): customers closed longer
than ``ETCW_CUSTOMER_RETENTION_DAYS`` get the phone ``closed:<uuid>`` (the number may register again, as a
new customer), an unusable password hash, no freeze reason; their real-name profile (name, ID number and
its hash: the ID may register again), payment password, second factors and login tickets are deleted, and
their sessions' ip, user agent and device id are cleared. The customer row (id, status, dates), the ledger
accounts and their history (owned by ``customer:<uuid>``, no personal data) and the audit log
(append-only, masked) stay. Each customer is anonymized in a unit of its own, audited
``customer.anonymize`` as the system; running it again finds nothing to do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError
from etcwallet.core.masking import mask_free_text
from etcwallet.identity.authz import Principal
from etcwallet.identity.customers import accounts, closure_checks, store
from etcwallet.identity.customers.actions import record
from etcwallet.identity.customers.closure_checks import ClosureChecks, ClosureRefused
from etcwallet.identity.customers.profile import check_payment_password
from etcwallet.identity.customers.types import CUSTOMER, Closure, CustomerAction, CustomerStatus
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import service as factors
from etcwallet.identity.factors.service import require_fresh
from etcwallet.identity.sessions import service as sessions
from etcwallet.platform.audit import Actor, AuditEvent
from etcwallet.platform.jobs import JOBS_ACTOR
from etcwallet.platform.unit import Unit, UnitOfWork

log = logging.getLogger(__name__)

SELF_CLOSE_REASON = "本人申请注销"
"""The reason kept when a customer closes their own account without giving one."""
SESSION_END_REASON = "closed"
ANONYMIZE_BATCH = 100

__all__ = [
    "ANONYMIZE_BATCH",
    "SELF_CLOSE_REASON",
    "ClosureChecks",
    "ClosureRefused",
    "anonymize_closed",
    "close_account",
    "close_for_customer",
    "close_own_account",
]


def _target(customer_id: UUID) -> tuple[str, str]:
    return (CUSTOMER, str(customer_id))


def _refused(
    actor: Actor, customer_id: UUID, detail: dict[str, object]
) -> Callable[[DomainError], AuditEvent]:
    """The audit entry of a refused closure (recorded on its own: the refusal changed nothing)."""

    def entry(error: DomainError) -> AuditEvent:
        extra = {"refusals": error.extra["refusals"]} if "refusals" in error.extra else {}
        target = _target(customer_id)
        return actor.refused(CustomerAction.CLOSE, error.code, target=target, detail=detail | extra)

    return entry


async def close_account(
    *,
    uow: UnitOfWork,
    checks: ClosureChecks,
    customer_id: UUID,
    actor: Actor,
    reason: str,
) -> Closure:
    """Close the account, or refuse and change nothing (404 unknown, 409 already closed, 409 a check's
    refusal naming its domain and reason). ``actor`` is who closes (the customer or staff, with where from).

    The caller has checked who may close (step-up, payment password, permission): see
    :func:`close_own_account` and :func:`close_for_customer`."""
    reason = mask_free_text(reason)
    closed_by = CUSTOMER if actor.type == CUSTOMER else f"{actor.type}:{actor.id}"

    async def step(unit: Unit) -> Closure:
        customer = await store.lock_customer(unit.conn, customer_id)
        if customer.status is CustomerStatus.CLOSED:
            raise IdentityError("account_already_closed")
        frozen = await accounts.freeze_accounts(unit, customer_id=customer_id, frozen=True, actor=actor)
        refusals = await checks.run(unit, customer_id)
        if refusals:
            raise ClosureRefused(refusals)
        ended = await sessions.end_all_sessions(
            unit.conn,
            principal_type=CUSTOMER,
            principal_id=customer_id,
            reason=SESSION_END_REASON,
            now=unit.now,
        )
        await store.set_closed(unit.conn, customer_id, closed_by=closed_by, now=unit.now)
        detail = {
            "reason": reason,
            "status_before": customer.status.value,
            "sessions_ended": ended,
            "accounts_frozen": [str(account_id) for account_id in frozen],
            "checks": checks.names,
        }
        unit.audit(actor.event(CustomerAction.CLOSE, target=_target(customer_id), detail=detail))
        return Closure(customer_id, unit.now, ended, tuple(frozen))

    return await uow.run(step, refusal=_refused(actor, customer_id, {"requested_reason": reason}))


async def close_own_account(
    *,
    uow: UnitOfWork,
    checks: ClosureChecks,
    principal: Principal,
    pin: str | None,
    reason: str | None,
    client: Client,
) -> Closure:
    """The customer closes their own account: a fresh step-up (403 ``step_up_required``), then the payment
    password when one is set (422 ``closure_needs_payment_password`` without it; a wrong one counts as any
    wrong try), then :func:`close_account`. Each refusal is audited and changes nothing else."""
    customer_id = principal.id
    actor = Actor(CUSTOMER, str(customer_id), client.ip, client.user_agent)
    try:
        async with uow.pool.connection() as conn:
            await require_fresh(conn, principal=principal, now=uow.clock())
            pin_set = (await store.get_pin_state(conn, customer_id)).set
        if pin_set:
            if pin is None:
                raise IdentityError("closure_needs_payment_password")
            await check_payment_password(
                uow=uow, customer_id=customer_id, pin=pin, client=client, purpose="close"
            )
    except DomainError as error:
        await record(uow, _refused(actor, customer_id, {})(error))
        raise
    return await close_account(
        uow=uow, checks=checks, customer_id=customer_id, actor=actor, reason=reason or SELF_CLOSE_REASON
    )


async def close_for_customer(
    *,
    uow: UnitOfWork,
    checks: ClosureChecks,
    staff: Principal,
    customer_id: UUID,
    reason: str,
    client: Client,
) -> Closure:
    """Staff close a customer's account on the customer's request: their own fresh step-up (403
    ``step_up_required``), then :func:`close_account` with the reason given."""
    actor = Actor("staff", str(staff.id), client.ip, client.user_agent)
    try:
        async with uow.pool.connection() as conn:
            await require_fresh(conn, principal=staff, now=uow.clock())
    except DomainError as error:
        await record(uow, _refused(actor, customer_id, {"requested_reason": mask_free_text(reason)})(error))
        raise
    return await close_account(uow=uow, checks=checks, customer_id=customer_id, actor=actor, reason=reason)


async def anonymize_closed(
    *,
    uow: UnitOfWork,
    retention: timedelta,
    batch: int = ANONYMIZE_BATCH,
    actor: Actor = JOBS_ACTOR,
) -> int:
    """Anonymize every customer closed more than ``retention`` ago (by the unit's clock), ``batch`` at a
    time, each in a unit of its own; answers how many. Idempotent: an anonymized customer is not found
    again. A customer whose accounts hold money or a hold again (a credit that arrived after the closure)
    is skipped and the refusal audited, every run, until someone settles it: the bank must still know
    whom it owes."""
    done = 0
    after: tuple[datetime, UUID] | None = None
    cutoff = uow.clock() - retention
    while True:
        async with uow.pool.connection() as conn:
            due = await store.closed_before(conn, before=cutoff, limit=batch, after=after)
        for _, customer_id in due:
            done += await _anonymize_one(uow, customer_id, retention, actor)
        if len(due) < batch:
            return done
        after = due[-1]


async def _anonymize_one(uow: UnitOfWork, customer_id: UUID, retention: timedelta, actor: Actor) -> bool:
    async def step(unit: Unit) -> bool:
        customer = await store.lock_customer(unit.conn, customer_id)
        state = await store.get_closure_state(unit.conn, customer_id)
        due = (
            customer.status is CustomerStatus.CLOSED
            and state.anonymized_at is None
            and state.closed_at is not None
            and state.closed_at < unit.now - retention
        )
        if not due:
            return False
        held = await closure_checks.no_money_left(unit, customer_id) or await closure_checks.nothing_pending(
            unit, customer_id
        )
        if held is not None:
            log.warning(
                "closed customer still holds money; not anonymized", extra={"customer_id": str(customer_id)}
            )
            unit.audit(
                actor.refused(
                    CustomerAction.ANONYMIZE, held.code, target=_target(customer_id), detail=dict(held.detail)
                )
            )
            return False
        await store.anonymize_customer(unit.conn, customer_id, now=unit.now)
        await factors.forget_principal(unit.conn, principal_type=CUSTOMER, principal_id=customer_id)
        await sessions.forget_devices(unit.conn, principal_type=CUSTOMER, principal_id=customer_id)
        assert state.closed_at is not None
        detail = {"closed_at": state.closed_at.isoformat(), "retention_days": retention.days}
        unit.audit(actor.event(CustomerAction.ANONYMIZE, target=_target(customer_id), detail=detail))
        return True

    return await uow.run(step)
