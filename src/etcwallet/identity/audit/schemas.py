"""Answers of the audit routes: chain verification and search pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from etcwallet.identity.audit.types import AuditEntry, AuditPage


class AuditChainOut(BaseModel):
    ok: bool
    rows: int
    first_broken_seq: int | None
    reason: str | None
    head_seq: int | None = Field(description="the last row that verified: record it with head_hash elsewhere")
    head_hash: str | None


class AuditEntryOut(BaseModel):
    """One audit entry, with personal data in its ids and detail masked."""

    seq: int
    at: datetime
    actor_type: str
    actor_id: str | None
    action: str
    outcome: str = Field(description="success | refused | failure")
    target_type: str | None
    target_id: str | None
    outlet_id: str | None = Field(description="the outlet the entry names (its detail's outlet_id), if any")
    ip: str | None
    user_agent: str | None
    detail: dict[str, Any] = Field(description="masked: phone, ID and card numbers and names never whole")

    @classmethod
    def of(cls, e: AuditEntry) -> AuditEntryOut:
        return cls(
            seq=e.seq,
            at=e.at,
            actor_type=e.actor_type,
            actor_id=e.actor_id,
            action=e.action,
            outcome=e.outcome,
            target_type=e.target_type,
            target_id=e.target_id,
            outlet_id=e.outlet_id,
            ip=e.ip,
            user_agent=e.user_agent,
            detail=dict(e.detail),
        )


class AuditPageOut(BaseModel):
    """A page of a search, newest first."""

    items: list[AuditEntryOut]
    next_cursor: str | None = Field(description="send it as `after` for the next page; null on the last page")

    @classmethod
    def of(cls, page: AuditPage) -> AuditPageOut:
        return cls(
            items=[AuditEntryOut.of(e) for e in page.entries],
            next_cursor=str(page.next_cursor) if page.next_cursor is not None else None,
        )
