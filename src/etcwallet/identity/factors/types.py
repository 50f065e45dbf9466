"""The plain types of second factors and step-up: no I/O, so the rules about them can be tested alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

STEP_UP_WINDOW = timedelta(minutes=5)
"""How long a proven second factor counts as fresh for a sensitive action."""

Factor = Literal["totp", "passkey", "recovery_code", "sms"]


class FactorAction(StrEnum):
    """The audit actions of second factors and step-up (``<domain>.<why>``)."""

    TOTP_ENROLL_START = "factor.totp.enroll_start"
    TOTP_ENROLL = "factor.totp.enroll"
    TOTP_REMOVE = "factor.totp.remove"
    RECOVERY_CODES_REGENERATE = "factor.recovery_codes.regenerate"
    PASSKEY_REGISTER = "factor.passkey.register"
    PASSKEY_REMOVE = "factor.passkey.remove"
    STEP_UP_TOTP = "step_up.totp"
    STEP_UP_RECOVERY_CODE = "step_up.recovery_code"
    STEP_UP_PASSKEY = "step_up.passkey"
    STEP_UP_SMS = "step_up.sms"
    STEP_UP_SMS_SEND = "step_up.sms.send"
    CUSTOMER_LOGIN_PASSKEY = "customer.login.passkey"


@dataclass(frozen=True)
class Enrollment:
    """A TOTP enrollment just started: the secret, its otpauth URI and the URI's QR code (SVG, PNG)."""

    secret: str
    otpauth_uri: str
    qr_svg: str
    qr_png_base64: str


@dataclass(frozen=True)
class FactorCounts:
    """How many second factors a principal has: a confirmed TOTP, passkeys, unused recovery codes."""

    totp: bool
    passkeys: int
    unused_recovery_codes: int


@dataclass(frozen=True)
class SessionStepUp:
    """When a session last proved a second factor, and which."""

    stepped_up_at: datetime | None
    factor: str | None


def is_fresh(stepped_up_at: datetime | None, *, now: datetime, max_age: timedelta = STEP_UP_WINDOW) -> bool:
    """Whether a step-up proven at ``stepped_up_at`` still counts at ``now``."""
    return stepped_up_at is not None and now - stepped_up_at <= max_age


@dataclass(frozen=True)
class StepUpStatus:
    """Which factors a principal can prove, and whether (and until when) the session is stepped up."""

    accepted_factors: list[str]
    stepped_up_at: datetime | None
    factor: str | None
    valid_until: datetime | None
    stepped_up: bool

    @classmethod
    def at(
        cls, factors: list[str], session: SessionStepUp, *, now: datetime, max_age: timedelta = STEP_UP_WINDOW
    ) -> StepUpStatus:
        """The status at ``now`` of a session whose last step-up is ``session``."""
        at = session.stepped_up_at
        valid_until = at + max_age if at is not None else None
        fresh = valid_until is not None and valid_until > now
        return cls(factors, at, session.factor, valid_until, fresh)


# --- passkeys ----------------------------------------------------------------------------------------------

CeremonyPurpose = Literal["register", "login", "step_up"]
PrincipalRef = tuple[str, UUID]
"""(principal_type, principal_id)."""


@dataclass(frozen=True)
class Ceremony:
    """Options for ``navigator.credentials.create/get`` and the id of the challenge they carry."""

    challenge_id: UUID
    options: dict[str, Any]
    expires_at: datetime


@dataclass(frozen=True)
class Passkey:
    """A registered credential as its owner sees it (never the key material)."""

    id: UUID
    name: str
    transports: list[str]
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True)
class Assertion:
    """A verified assertion: whose passkey answered, and its new signature counter."""

    principal_type: str
    principal_id: UUID
    passkey_id: UUID
    sign_count: int
