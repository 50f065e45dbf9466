"""The audit log as people read it: a search's filters, its entries (masked) and its pages. No I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from etcwallet.core.schemas import text_fault

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
"""The most entries one page answers: a search reads the newest first and pages on with a cursor."""

ACTOR_TYPES = frozenset({"customer", "staff", "machine", "system", "anonymous"})
"""Who may appear as an entry's actor (``platform.audit.Actor``)."""

ACTION_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?$"
"""An action (``customer.login.password``), or a prefix of one ending in ``.*`` (``customer.login.*``)."""
TARGET_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
CURSOR_PATTERN = r"^[1-9][0-9]{0,18}$"
"""A cursor is the ``seq`` of the last entry of the page before, as decimal digits."""
MAX_ID_LENGTH = 200

_ACTION = re.compile(ACTION_PATTERN)
_TARGET_TYPE = re.compile(TARGET_TYPE_PATTERN)
_CURSOR = re.compile(CURSOR_PATTERN)


class AuditAction(StrEnum):
    """What reading the audit log itself writes to it: reading it is sensitive."""

    SEARCH = "audit.search"


@dataclass(frozen=True)
class AuditFilter:
    """What a search asks for; ``None`` is "any". ``since`` is inclusive, ``until`` exclusive."""

    actor_type: str | None = None
    actor_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    action: str | None = None
    outlet_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def action_prefix(self) -> str | None:
        """The prefix an action ending in ``.*`` stands for (``customer.login.``), else None."""
        if self.action is not None and self.action.endswith(".*"):
            return self.action[:-1]
        return None

    def as_detail(self) -> dict[str, Any]:
        """The filters that were given, as the search's own audit entry records them."""
        given = {
            "actor_type": self.actor_type,
            "actor_id": self.actor_id,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "action": self.action,
            "outlet_id": str(self.outlet_id) if self.outlet_id else None,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }
        return {key: value for key, value in given.items() if value is not None}


def filter_problem(f: AuditFilter) -> tuple[str, str] | None:
    """The first thing wrong with a filter, as (error code, field), or None when it is good."""
    if f.actor_type is not None and f.actor_type not in ACTOR_TYPES:
        return "audit_actor_type_invalid", "actor_type"
    if f.actor_id is not None and f.actor_type is None:
        return "audit_actor_type_required", "actor_type"
    if f.target_type is not None and not _TARGET_TYPE.match(f.target_type):
        return "audit_target_type_invalid", "target_type"
    if f.target_id is not None and f.target_type is None:
        return "audit_target_type_required", "target_type"
    for name, value in (("actor_id", f.actor_id), ("target_id", f.target_id)):
        if value is not None and (not 0 < len(value) <= MAX_ID_LENGTH or text_fault(value) is not None):
            return "audit_id_invalid", name
    if f.action is not None and (len(f.action) > 100 or not _ACTION.match(f.action)):
        return "audit_action_invalid", "action"
    for name, moment in (("since", f.since), ("until", f.until)):
        if moment is not None and moment.tzinfo is None:
            return "audit_timezone_required", name
    if f.since is not None and f.until is not None and f.since > f.until:
        return "audit_time_range_invalid", "since"
    return None


def parse_cursor(text: str | None) -> int | None:
    """The ``seq`` a cursor names, or None for the first page; ValueError when it is no cursor."""
    if text is None:
        return None
    if not _CURSOR.match(text) or int(text) > 2**63 - 1:
        raise ValueError("a cursor is the decimal seq of an audit entry")
    return int(text)


@dataclass(frozen=True)
class AuditEntry:
    """One entry as a reader sees it: personal data in ``detail`` and the ids already masked."""

    seq: int
    at: datetime
    actor_type: str
    actor_id: str | None
    action: str
    outcome: str
    target_type: str | None
    target_id: str | None
    outlet_id: str | None
    ip: str | None
    user_agent: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class AuditPage:
    """One page of a search, newest first; ``next_cursor`` continues it (None: this was the last page)."""

    entries: tuple[AuditEntry, ...]
    next_cursor: int | None
