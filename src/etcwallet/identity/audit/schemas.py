"""Answers of the audit routes."""

from __future__ import annotations

from pydantic import BaseModel, Field


class AuditChainOut(BaseModel):
    ok: bool
    rows: int
    first_broken_seq: int | None
    reason: str | None
    head_seq: int | None = Field(description="the last row that verified: record it with head_hash elsewhere")
    head_hash: str | None
