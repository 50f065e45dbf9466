"""What a customer is, as the rest of the code sees it: plain frozen values and the enums naming their
states and audit actions. No I/O: :mod:`.store` builds these from rows, :mod:`.service` hands them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from etcwallet.core.masking import mask_free_text
from etcwallet.identity.sessions.service import IssuedTokens

CUSTOMER = "customer"
"""The principal type (sessions, factors) and the audit's actor and target type of a customer."""
TICKET_LIFETIME = timedelta(minutes=5)
"""How long a login ticket (a correct password, a second factor still owed) stays good."""
TICKET_ATTEMPTS = 5
PIN_MAX_FAILURES = 5
"""Wrong payment passwords in a row that lock it (until a reset with an SMS code and the ID number)."""
SELF_FREEZE_REASON = "本人申请冻结"
"""The reason kept when a customer freezes their own account without giving one."""
NAME_CONTEXT = b"customer_profiles.name"
ID_NUMBER_CONTEXT = b"customer_profiles.id_number"


class CustomerStatus(StrEnum):
    """Where an account stands: signing in works only while it is active."""

    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class IdType(StrEnum):
    """The identity documents a real-name profile may be recorded from."""

    RESIDENT_ID = "resident_id"
    PASSPORT = "passport"
    HK_MACAO_PERMIT = "hk_macao_permit"
    TAIWAN_PERMIT = "taiwan_permit"
    MILITARY_ID = "military_id"


ID_TYPES = tuple(t.value for t in IdType)


class CustomerAction(StrEnum):
    """The audit log's actions on a customer's account (``customer.<why>``)."""

    SMS_CODE_REQUEST = "customer.sms_code.request"
    REGISTER = "customer.register"
    LOGIN_PASSWORD = "customer.login.password"
    LOGIN_SMS = "customer.login.sms"
    LOGIN_SECOND_FACTOR = "customer.login.second_factor"
    SESSION_REFRESH = "customer.session.refresh"
    LOGOUT = "customer.logout"
    SESSION_END = "customer.session.end"
    PASSWORD_RESET = "customer.password.reset"
    PASSWORD_CHANGE = "customer.password.change"
    PROFILE_SET = "customer.profile.set"
    PAYMENT_PASSWORD_SET = "customer.payment_password.set"
    PAYMENT_PASSWORD_VERIFY = "customer.payment_password.verify"
    PAYMENT_PASSWORD_RESET = "customer.payment_password.reset"
    FREEZE = "customer.freeze"
    UNFREEZE = "customer.unfreeze"
    UNFREEZE_SELF = "customer.unfreeze.self"
    READ = "customer.read"
    ACCOUNTS_READ = "customer.accounts.read"
    OUTLET_FIND = "customer.outlet.find"
    OUTLET_CREATE = "customer.outlet.create"
    OUTLET_CHANGE = "customer.outlet.change"
    OUTLET_CODE = "customer.outlet.sms_code"
    VERIFY = "customer.verify"
    CLOSE = "customer.close"
    ANONYMIZE = "customer.anonymize"


class VerificationMethod(StrEnum):
    """What verified a customer's real-name profile (``customer_profiles.verified_by``)."""

    OUTLET_ID_CHECK = "outlet_id_check"
    """An operator at an outlet checked the ID document the customer showed against the profile."""
    BANK_CARD = "bank_card"
    """A bank verified a card of the customer's with the profile's name, ID number and the phone."""


@dataclass(frozen=True)
class Verification:
    """A verified profile: since when and how. Changing the real-name data clears it."""

    verified_at: datetime
    method: VerificationMethod

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", VerificationMethod(self.method))


@dataclass(frozen=True)
class OutletOperator:
    """Staff serving a customer at an outlet's counter: who (the audit's actor) and where (its outlet)."""

    staff_id: UUID
    outlet_id: UUID


@dataclass(frozen=True)
class Customer:
    """An account: its phone (the sign-in name), its state, and who froze it, when and why."""

    id: UUID
    phone: str
    status: CustomerStatus
    frozen_reason: str | None
    frozen_by: str | None
    frozen_at: datetime | None
    locked_until: datetime | None
    created_at: datetime
    claimed: bool = True
    """False for an account an outlet opened that its owner has not claimed yet (no password set)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", CustomerStatus(self.status))
        # The freeze reason is free text shown to the customer and staff: phone and ID numbers in it are
        # masked (stored masked since issue 15; masked here too for reasons stored before).
        if self.frozen_reason:
            object.__setattr__(self, "frozen_reason", mask_free_text(self.frozen_reason))

    @property
    def frozen_by_kind(self) -> str | None:
        """Who froze the account, as answers name it: ``customer`` or ``staff`` (None when not frozen)."""
        if self.frozen_by is None:
            return None
        return "staff" if self.frozen_by.startswith("staff") else CUSTOMER

    @property
    def self_frozen(self) -> bool:
        """Frozen by its owner: the one freeze the owner may lift with a password and an SMS code."""
        return self.status is CustomerStatus.FROZEN and self.frozen_by == CUSTOMER


@dataclass(frozen=True)
class SignIn:
    """A correct first factor: tokens, or (when a second factor is owed) a ticket and the factors accepted."""

    customer_id: UUID
    tokens: IssuedTokens | None
    ticket: str | None = None
    ticket_expires_at: datetime | None = None
    factors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    """The real-name profile as anyone outside the database sees it: masked."""

    name_masked: str
    id_type: str
    id_number_masked: str
    birth_date: date | None
    verified_at: datetime | None
    updated_at: datetime
    verified_by: str | None = None
    """How the profile was verified (a :class:`VerificationMethod` value), None while unverified."""


@dataclass(frozen=True)
class PinState:
    """Whether a payment password is set, locked, and how many wrong tries it has seen."""

    set: bool
    locked: bool
    failed_attempts: int

    @property
    def remaining_attempts(self) -> int:
        return 0 if self.locked or not self.set else max(0, PIN_MAX_FAILURES - self.failed_attempts)


@dataclass(frozen=True)
class TwoFactorState:
    """Which second factors a customer has: TOTP, how many passkeys, how many recovery codes are left."""

    totp: bool
    passkeys: int
    recovery_codes_left: int


@dataclass(frozen=True)
class CustomerDetail:
    """Everything the customer (or support staff) may see about an account, masked."""

    customer: Customer
    profile: Profile | None
    pin: PinState
    two_factor: TwoFactorState
    live_sessions: int


@dataclass(frozen=True)
class Closure:
    """A closed account: when, how many sessions the closure ended, which ledger accounts it froze."""

    customer_id: UUID
    closed_at: datetime
    sessions_ended: int
    accounts_frozen: tuple[UUID, ...]
