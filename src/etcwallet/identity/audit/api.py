"""Routes of the audit log as people read it: search (masked, scoped by outlet) and chain verification.

Both gate on ``audit.read`` (administrators and risk officers). The routes parse, call the service and
shape the answer; the service audits each search.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from etcwallet.core.deps import ClientDep, PoolDep, UnitOfWorkDep
from etcwallet.identity.audit import schemas as s
from etcwallet.identity.audit import service
from etcwallet.identity.audit.types import (
    ACTION_PATTERN,
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    MAX_ID_LENGTH,
    MAX_LIMIT,
    TARGET_TYPE_PATTERN,
    parse_cursor,
)
from etcwallet.identity.authz import Permission, Principal, actor_of, require
from etcwallet.identity.errors import IdentityError
from etcwallet.platform import audit

admin = APIRouter(prefix="/api/v1/admin", tags=["administration"])

ANCHOR_PATTERN = r"^\s*[0-9]{1,19}:[0-9A-Fa-f]{64}\s*$"
"""An audit anchor, ``SEQ:HASH`` (as ``etcwallet audit verify`` prints it), for the schema."""

AuditReader = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]
ActorType = Annotated[
    str | None, Query(pattern=r"^(customer|staff|machine|system|anonymous)$", description="who acted")
]
ActorId = Annotated[str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, description="needs actor_type")]
TargetType = Annotated[str | None, Query(pattern=TARGET_TYPE_PATTERN, description="what was acted on")]
TargetId = Annotated[
    str | None, Query(min_length=1, max_length=MAX_ID_LENGTH, description="needs target_type")
]
Action = Annotated[
    str | None,
    Query(
        pattern=ACTION_PATTERN,
        max_length=100,
        description="an action, or a prefix ending in .* (customer.login.*)",
    ),
]


@admin.get("/audit", response_model=s.AuditPageOut)
async def search_audit(
    uow: UnitOfWorkDep,
    client: ClientDep,
    me: AuditReader,
    actor_type: ActorType = None,
    actor_id: ActorId = None,
    target_type: TargetType = None,
    target_id: TargetId = None,
    action: Action = None,
    outlet_id: Annotated[UUID | None, Query(description="entries naming this outlet")] = None,
    since: Annotated[
        datetime | None, Query(description="entries at or after this time (with its zone)")
    ] = None,
    until: Annotated[datetime | None, Query(description="entries before this time (with its zone)")] = None,
    after: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="the next_cursor of the page before")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> s.AuditPageOut:
    """Search the audit log, newest first, with every filter given (all together); page on with ``after``.

    Details are masked (phone, ID and card numbers, names, numbers in free text). Staff placed at an outlet
    see only their outlet's entries. The search is itself audited (``audit.search``).
    """
    try:
        cursor = parse_cursor(after)
    except ValueError:
        raise IdentityError("audit_cursor_invalid") from None
    page = await service.search_audit(
        uow,
        viewer=me,
        actor=actor_of(me, client),
        actor_type=actor_type,
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        action=action,
        outlet_id=outlet_id,
        since=since,
        until=until,
        after=cursor,
        limit=limit,
    )
    return s.AuditPageOut.of(page)


@admin.get("/audit/verify", response_model=s.AuditChainOut)
async def verify_audit(
    pool: PoolDep,
    me: AuditReader,
    anchor: Annotated[
        list[Annotated[str, Field(json_schema_extra={"pattern": ANCHOR_PATTERN})]] | None,
        Query(description="SEQ:HASH of a row recorded earlier (repeatable)", max_length=100),
    ] = None,
) -> s.AuditChainOut:
    """Walk the audit chain and name the first broken row, if any; answer the head to anchor next time."""
    try:
        anchors = [audit.Anchor.parse(text) for text in anchor or []]
    except ValueError:
        raise IdentityError("invalid_anchor") from None
    report = await service.verify_chain(pool, anchors=anchors)
    return s.AuditChainOut(
        ok=report.ok,
        rows=report.rows,
        first_broken_seq=report.first_broken_seq,
        reason=report.reason,
        head_seq=report.head_seq,
        head_hash=report.head_hash,
    )
