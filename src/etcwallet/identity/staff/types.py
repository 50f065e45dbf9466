"""The staff domain's plain types: outlets, staff members, sign-in steps and privileged changes (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal
from uuid import UUID

from etcwallet.identity.authz import Role
from etcwallet.identity.factors.totp import Enrollment
from etcwallet.identity.sessions.service import IssuedTokens

BANKS: dict[str, tuple[str, str]] = {
    "lanzhou_bank": ("兰州银行", "Bank of Lanzhou"),
    "gansu_bank": ("甘肃银行", "Bank of Gansu"),
    "icbc": ("工商银行", "ICBC"),
    "abc": ("农业银行", "Agricultural Bank of China"),
    "rural_credit": ("农信联社", "Rural Credit Union"),
    "ccb": ("建设银行", "China Construction Bank"),
    "psbc": ("邮储银行", "Postal Savings Bank of China"),
}
TICKET_LIFETIME = timedelta(minutes=5)
TICKET_ATTEMPTS = 5
ENROLLMENT_CODE_LIFETIME = timedelta(days=3)
"""How long a TOTP enrollment code stays good: long enough to hand over, short enough to go stale."""

PRIVILEGED_ROLES = frozenset({Role.FINANCE, Role.ADMINISTRATOR})
"""Roles whose granting or taking waits for a second administrator."""

ChangeStatus = Literal["pending", "approved", "rejected"]
ChangeKind = Literal["create", "role"]


class StaffAction(StrEnum):
    """The audit actions of the staff domain (``staff.<why>``, ``outlet.<why>``)."""

    OUTLET_CREATE = "outlet.create"
    CREATE = "staff.create"
    UPDATE = "staff.update"
    ENROLLMENT_CODE_ISSUE = "staff.enrollment_code.issue"
    CHANGE_REQUEST = "staff.change.request"
    CHANGE_APPROVE = "staff.change.approve"
    CHANGE_REJECT = "staff.change.reject"
    LOGIN_PASSWORD = "staff.login.password"
    LOGIN_TOTP = "staff.login.totp"
    SESSION_REFRESH = "staff.session.refresh"
    LOGOUT = "staff.logout"


@dataclass(frozen=True)
class Outlet:
    id: UUID
    code: str
    name: str
    kind: str
    bank: str | None
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class StaffMember:
    id: UUID
    username: str
    display_name: str
    role: Role
    outlet_id: UUID | None
    status: str
    created_at: datetime


@dataclass(frozen=True)
class LoginStep:
    """The answer to a correct password: a ticket, and an enrollment when TOTP is not set up yet."""

    ticket: str
    expires_at: datetime
    enrollment: Enrollment | None


@dataclass(frozen=True)
class EnrollmentCode:
    """A one-time TOTP enrollment code, shown once to whoever issued it (only its hash is kept)."""

    staff_id: UUID
    code: str
    expires_at: datetime


@dataclass(frozen=True)
class StaffLogin:
    tokens: IssuedTokens
    staff: StaffMember
    recovery_codes: list[str] | None


@dataclass(frozen=True)
class StaffChange:
    """A privileged change of one staff member, and who requested and decided it."""

    id: UUID
    staff_id: UUID
    kind: ChangeKind
    role_from: Role | None
    role_to: Role
    outlet_id: UUID | None
    status: ChangeStatus
    requested_by: UUID
    requested_at: datetime
    decided_by: UUID | None
    decided_at: datetime | None


@dataclass(frozen=True)
class Outcome:
    """What an administrator's request did: ``change`` is set when it waits for approval (the member is
    then as before), otherwise it took effect (``before`` is None for a creation)."""

    before: StaffMember | None
    member: StaffMember
    change: StaffChange | None = None


def needs_approval(before: Role | None, after: Role) -> bool:
    """Whether going from ``before`` (None: a new member) to ``after`` grants or takes a privileged role."""
    return before != after and (before in PRIVILEGED_ROLES or after in PRIVILEGED_ROLES)
