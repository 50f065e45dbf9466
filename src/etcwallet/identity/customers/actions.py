"""The audit entries of actions on a customer's account: who acted (the customer once proved, staff, or
anonymous), on which customer, and how it ended. Built here, appended by the service through its unit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from etcwallet.core.deps import Client
from etcwallet.core.errors import DomainError
from etcwallet.identity.customers.types import CUSTOMER, CustomerAction
from etcwallet.platform.audit import Actor, AuditEvent
from etcwallet.platform.unit import Unit, UnitOfWork

ANONYMOUS: tuple[str, str | None] = ("anonymous", None)


def event(
    client: Client,
    action: CustomerAction,
    *,
    customer_id: UUID | None,
    failure: DomainError | None = None,
    actor: tuple[str, str | None] | None = None,
    detail: Mapping[str, Any] | None = None,
    outcome: str = "success",
) -> AuditEvent:
    """The audit entry for an action on a customer's account: refused when ``failure`` is set, and by the
    customer unless ``actor`` names someone else (anonymous when there is no customer to name).

    It goes with the commit of the unit that made the change, or that counted a refused attempt; a
    refusal that rolls its unit back is recorded on its own.
    """
    actor_type, actor_id = actor or ((CUSTOMER, str(customer_id)) if customer_id is not None else ANONYMOUS)
    who = Actor(actor_type, actor_id, client.ip, client.user_agent)
    target = (CUSTOMER, str(customer_id) if customer_id else None)
    if failure is not None:
        return who.refused(action, failure.code, target=target, detail=detail)
    return who.event(action, target=target, detail=detail, outcome=outcome)


def claimant(customer_id: UUID | None, proven: bool) -> tuple[str, str | None]:
    """Before sign-in the caller is the customer only once they have proved it; until then anonymous."""
    return (CUSTOMER, str(customer_id)) if proven and customer_id is not None else ANONYMOUS


async def record(uow: UnitOfWork, entry: AuditEvent) -> None:
    """Append one audit entry in a unit of its own: a refusal that changed nothing, or a read."""

    async def step(unit: Unit) -> None:
        unit.audit(entry)

    await uow.run(step)
