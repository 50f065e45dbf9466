"""Reading the audit log: searches scoped by who asks and masked before they leave, and chain verification.

Reading the log is itself sensitive, so every search is audited (``audit.search``: who searched for what,
and how many entries it answered) in the search's own transaction. A refused search (a bad filter or
cursor) reads and writes nothing. Staff placed at an outlet see only the entries that name their outlet
(``detail.outlet_id``); bank-wide roles see every entry and may filter by outlet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from etcwallet.core.deps import Client
from etcwallet.core.masking import mask_card_numbers, mask_free_text, mask_mapping, mask_name
from etcwallet.identity.audit import store
from etcwallet.identity.audit.types import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    AuditAction,
    AuditEntry,
    AuditFilter,
    AuditPage,
    filter_problem,
)
from etcwallet.identity.authz import OUTLET_ROLES, Permission, Principal, actor_of
from etcwallet.identity.errors import IdentityError
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

_PERSON_NAME_KEYS = frozenset(
    {
        "name",
        "display_name",
        "real_name",
        "full_name",
        "legal_name",
        "holder_name",
        "cardholder_name",
        "customer_name",
        "staff_name",
        "old_name",
        "new_name",
    }
)
"""Keys whose value is a person's name wherever they appear in a detail (a bare ``name`` included: an
outlet's or a passkey's name masked as a person's costs little, a person's name shown costs much)."""


async def search_audit(
    uow: UnitOfWork,
    *,
    viewer: Principal,
    actor: Actor | None = None,
    actor_type: str | None = None,
    actor_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    outlet_id: UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> AuditPage:
    """One page of the entries matching every given filter, newest first, masked, within ``viewer``'s
    outlet scope; ``after`` is the ``next_cursor`` of the page before. Audited as ``actor`` (``viewer``
    from nowhere when not given). A bad filter, cursor or limit is a 422 naming it, and nothing is written.
    """
    if viewer.kind != "staff":  # the route's gate admits staff only; a customer never reads the log
        raise IdentityError("forbidden", permission=Permission.AUDIT_READ.value)
    wanted = AuditFilter(actor_type, actor_id, target_type, target_id, action, outlet_id, since, until)
    problem = filter_problem(wanted)
    if problem is not None:
        code, field = problem
        raise IdentityError(code, field=field)
    if after is not None and not 0 < after < 2**63:
        raise IdentityError("audit_cursor_invalid")
    if not 0 < limit <= MAX_LIMIT:
        raise IdentityError("audit_limit_invalid")
    who = actor or actor_of(viewer, Client(None, None))
    scoped = viewer.role in OUTLET_ROLES
    outlet = viewer.outlet_id if scoped else outlet_id

    async def step(unit: Unit) -> AuditPage:
        if scoped and (outlet is None or outlet_id not in (None, outlet)):
            found: list[AuditEntry] = []  # another outlet's entries are not there for this viewer
        else:
            found = await store.search(unit.conn, wanted, outlet_id=outlet, before_seq=after, limit=limit + 1)
        page = found[:limit]
        detail: dict[str, Any] = {"filters": wanted.as_detail(), "limit": limit, "answered": len(page)}
        if after is not None:
            detail["after"] = after
        if scoped:
            detail["outlet_id"] = str(outlet) if outlet else None  # the search happened at the outlet
        unit.audit(who.event(AuditAction.SEARCH, target=("audit_log", None), detail=detail))
        next_cursor = page[-1].seq if len(found) > limit else None
        return AuditPage(tuple(masked(entry) for entry in page), next_cursor)

    return await uow.run(step)


async def verify_chain(
    pool: AsyncConnectionPool, *, anchors: Sequence[audit.Anchor] = ()
) -> audit.ChainReport:
    """Walk the whole chain (and check ``anchors``): the first row that does not hold, and the head."""
    async with pool.connection() as conn:
        return await audit.verify(conn, anchors=anchors)


# --- masking ----------------------------------------------------------------------------------------------


def masked(entry: AuditEntry) -> AuditEntry:
    """``entry`` as a reader may see it: phone numbers, ID numbers, card numbers and names in its detail,
    ids and user agent masked (keyed fields by their key, everything else as free text); never the raw
    values, whatever the writer stored."""
    return replace(
        entry,
        actor_id=_masked_id(entry.actor_id),
        target_id=_masked_id(entry.target_id),
        outlet_id=_masked_id(entry.outlet_id),
        user_agent=_masked_text(entry.user_agent) if entry.user_agent else entry.user_agent,
        detail=_masked_detail(entry.detail),
    )


def _masked_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    # Numbers in free text first (an ID number in a sentence is masked as one, not as a card number), then
    # phones, ID numbers, cards, names and secrets by their key, then the other keys naming a person.
    texts = _each_text(detail, lambda key, text: _masked_text(text))
    keyed = mask_mapping(texts)
    return _each_text(keyed, lambda key, text: mask_name(text) if key in _PERSON_NAME_KEYS else text)


def _each_text(detail: Mapping[str, Any], change: Callable[[str | None, str], str]) -> dict[str, Any]:
    """A copy of ``detail`` with ``change(key, text)`` applied to every string in it, however deep (a
    string in a list goes with the list's key)."""

    def walk(key: str | None, value: Any) -> Any:
        if isinstance(value, str):
            return change(key, value)
        if isinstance(value, Mapping):
            return {k: walk(k.lower() if isinstance(k, str) else None, v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(key, v) for v in value]
        return value

    return {k: walk(k.lower(), v) for k, v in detail.items()}


def _masked_text(text: str) -> str:
    """Free text with the numbers in it masked; an id (a UUID) is left whole, being no personal data."""
    if _is_uuid(text):
        return text
    return mask_card_numbers(mask_free_text(text))


def _masked_id(value: str | None) -> str | None:
    return _masked_text(value) if value is not None else None


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return len(text) == 36
