"""Request and response bodies of the customer API: registration, sign-in, sessions, profile, PIN, freezing,
closure, an outlet's counter and the customer's ledger accounts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field

from etcwallet.core.errors import InvalidValue
from etcwallet.core.money import SignedMoney
from etcwallet.core.schemas import RequestModel
from etcwallet.identity.customers.types import Profile, VerificationMethod
from etcwallet.identity.sessions.schemas import SessionOut
from etcwallet.identity.staff.schemas import NewPassword, Password
from etcwallet.identity.validators import (
    MOBILE_PATTERN,
    validate_mobile,
)
from etcwallet.ledger.types import Account


def _six_digits(code: str, what: str, zh: str, en: str) -> str:
    value = code.strip()
    if len(value) != 6 or not (value.isascii() and value.isdigit()):
        raise InvalidValue(f"{what}_format", zh, en)
    return value


def _sms_code(code: str) -> str:
    return _six_digits(code, "sms_code", "验证码应为6位数字", "the verification code is 6 digits")


def _pin(pin: str) -> str:
    return _six_digits(pin, "pin", "支付密码应为6位数字", "the payment password is 6 digits")


# Patterns and lengths that the validators enforce with their own reasons (mobile_prefix, pin_format,
# password_too_short, ...) are given to the schema only (json_schema_extra), so the reasons stay precise.
SIX_DIGITS = {"pattern": r"^\s*[0-9]{6}\s*$", "description": "6 digits"}
Phone = Annotated[
    str,
    Field(
        min_length=1,
        max_length=20,
        json_schema_extra={
            "pattern": MOBILE_PATTERN,
            "description": "a mainland China mobile number: 11 digits from 13 to 19; '+86', spaces and hyphens allowed",
        },
    ),
    AfterValidator(validate_mobile),
]
SmsCode = Annotated[
    str, Field(min_length=1, max_length=12, json_schema_extra=SIX_DIGITS), AfterValidator(_sms_code)
]
Pin = Annotated[str, Field(min_length=1, max_length=12, json_schema_extra=SIX_DIGITS), AfterValidator(_pin)]
IdType = Literal["resident_id", "passport", "hk_macao_permit", "taiwan_permit", "military_id"]
IdNumber = Annotated[str, Field(min_length=1, max_length=32)]
Reason = Annotated[str, Field(min_length=1, max_length=200)]

VerifiedBy = VerificationMethod
PublicSmsPurpose = Literal["register", "login", "reset_password", "unfreeze"]
OwnSmsPurpose = Literal["reset_payment_password", "profile_change"]


# --- SMS codes -------------------------------------------------------------------------------------------


class SmsCodeRequest(RequestModel):
    """Ask for a code to a phone number (before signing in)."""

    phone: Phone
    purpose: PublicSmsPurpose


class OwnSmsCodeRequest(RequestModel):
    """Ask for a code to the signed-in customer's own phone."""

    purpose: OwnSmsPurpose


class SmsCodeSentOut(BaseModel):
    """Always the same shape, whether or not the number is registered."""

    phone_masked: str
    purpose: str
    expires_at: datetime
    resend_after: datetime


# --- registration and sign-in ----------------------------------------------------------------------------


class RegisterRequest(RequestModel):
    phone: Phone
    password: NewPassword
    sms_code: SmsCode


class LoginRequest(RequestModel):
    phone: Phone
    password: Password


class SmsLoginRequest(RequestModel):
    phone: Phone
    sms_code: SmsCode


LoginTicket = Annotated[str, Field(min_length=10, max_length=128)]
"""The ticket a password sign-in answers while a second factor is still owed."""


class SecondFactorRequest(RequestModel):
    ticket: LoginTicket
    code: Annotated[str, Field(min_length=6, max_length=16)]


class CustomerOut(BaseModel):
    id: UUID
    phone_masked: str
    status: str
    created_at: datetime


TokensOut = SessionOut


class RegisterOut(TokensOut):
    customer: CustomerOut


class LoginOut(BaseModel):
    """Signed in (tokens), or the password was right and a second factor is owed (ticket and factors)."""

    status: Literal["signed_in", "second_factor_required"]
    access_token: str | None = None
    refresh_token: str | None = None
    csrf_token: str | None = None
    token_type: Literal["Bearer"] | None = None
    expires_at: datetime | None = None
    absolute_expires_at: datetime | None = None
    ticket: str | None = None
    ticket_expires_at: datetime | None = None
    factors: list[str] = Field(default_factory=list)


# --- passwords -------------------------------------------------------------------------------------------


class ForgotPasswordRequest(RequestModel):
    phone: Phone
    sms_code: SmsCode
    new_password: NewPassword


class ChangePasswordRequest(RequestModel):
    old_password: Password
    new_password: NewPassword


class PasswordChangedOut(BaseModel):
    sessions_ended: int


# --- sessions (devices) ----------------------------------------------------------------------------------


class SessionItemOut(BaseModel):
    id: UUID
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    absolute_expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool
    device_id: str | None = Field(
        default=None, description="the device id the app sent (X-Device-Id) when it opened the session"
    )


# --- real-name profile -----------------------------------------------------------------------------------


class ProfileRequest(RequestModel):
    """Real-name data; changing data already on file also needs an SMS code (purpose profile_change)."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    id_type: IdType
    id_number: IdNumber
    sms_code: SmsCode | None = None


class ProfileOut(BaseModel):
    """Masked only: the full name and number never leave the server."""

    name_masked: str
    id_type: str
    id_number_masked: str
    verified_at: datetime | None
    updated_at: datetime
    verified_by: VerifiedBy | None = Field(
        default=None,
        description="how the profile was verified since verified_at: an ID check at an outlet "
        "(outlet_id_check) or a card its bank verified (bank_card); null while unverified",
    )

    @classmethod
    def of(cls, p: Profile) -> ProfileOut:
        return cls(
            name_masked=p.name_masked,
            id_type=p.id_type,
            id_number_masked=p.id_number_masked,
            verified_at=p.verified_at,
            updated_at=p.updated_at,
            verified_by=VerificationMethod(p.verified_by) if p.verified_by else None,
        )


# --- payment password ------------------------------------------------------------------------------------


class PaymentPasswordSetRequest(RequestModel):
    pin: Pin
    sms_code: SmsCode


class PaymentPasswordVerifyRequest(RequestModel):
    pin: Pin


class PaymentPasswordResetRequest(RequestModel):
    sms_code: SmsCode
    id_number: IdNumber
    new_pin: Pin


class PaymentPasswordOut(BaseModel):
    set: bool
    locked: bool
    failed_attempts: int
    remaining_attempts: int


class PinVerifiedOut(BaseModel):
    verified: Literal[True] = True


# --- account state ---------------------------------------------------------------------------------------


class SelfFreezeRequest(RequestModel):
    reason: Reason | None = None


class StaffFreezeRequest(RequestModel):
    reason: Reason


class SelfUnfreezeRequest(RequestModel):
    """Unfreeze an account you froze yourself: password plus an SMS code (purpose ``unfreeze``)."""

    phone: Phone
    password: Password
    sms_code: SmsCode | None = None


class AccountStateOut(BaseModel):
    id: UUID
    status: str
    frozen_reason: str | None
    frozen_by: str | None
    frozen_at: datetime | None
    sessions_ended: int = 0


class TwoFactorOut(BaseModel):
    totp: bool
    passkeys: int
    recovery_codes_left: int


class MeOut(CustomerOut):
    profile_set: bool
    verified_at: datetime | None = Field(default=None, description="when my real-name profile was verified")
    verified_by: VerifiedBy | None = Field(default=None, description="how it was verified; null while not")
    payment_password: PaymentPasswordOut
    two_factor: TwoFactorOut


class StaffCustomerOut(BaseModel):
    """What support and risk staff see of a customer: masked data only."""

    id: UUID
    phone_masked: str
    status: str
    frozen_reason: str | None
    frozen_by: str | None
    frozen_at: datetime | None
    locked_until: datetime | None
    created_at: datetime
    profile: ProfileOut | None
    payment_password: PaymentPasswordOut
    two_factor: TwoFactorOut
    live_sessions: int
    claimed: bool = Field(
        default=True,
        description="false for an account an outlet opened that its owner has not claimed (no password yet)",
    )


# --- closing an account (customers/closure.py) -----------------------------------------------------------


class SelfCloseRequest(RequestModel):
    """Close my account: the payment password when one is set, and (optionally) why."""

    pin: Pin | None = None
    reason: Reason | None = None


class StaffCloseRequest(RequestModel):
    """Close a customer's account on their request: why (kept, masked, in the audit log)."""

    reason: Reason


class ClosureOut(BaseModel):
    """A closed account: since when, how many sessions ended, how many ledger accounts were frozen."""

    id: UUID
    status: Literal["closed"] = "closed"
    closed_at: datetime
    sessions_ended: int
    accounts_frozen: int


# --- an outlet's counter (outlet_api.py) -----------------------------------------------------------------


class PhoneLookup(RequestModel):
    """The phone a customer gives at the counter (in a body, never in a URL)."""

    phone: Annotated[str, Field(min_length=1, max_length=20, description="the customer's mobile number")]


class IdDocument(RequestModel):
    """The ID document the customer shows at the counter (in a body, never in a URL)."""

    id_type: IdType
    id_number: IdNumber


class OutletCustomerRequest(IdDocument):
    """Open an account from the real-name data the customer shows: no password (they claim it by SMS)."""

    phone: Phone
    name: Annotated[str, Field(min_length=1, max_length=64)]


# --- a customer's ledger accounts (accounts_api.py) ------------------------------------------------------


class CustomerAccountOut(BaseModel):
    """One of a customer's ledger accounts: balances in minor units (fen) with their currency."""

    id: UUID
    purpose: str | None  # ledger.chart.AccountPurpose; None for an account not opened by purpose
    code: str
    currency: str
    frozen: bool
    balance: SignedMoney
    available: SignedMoney
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> CustomerAccountOut:
        purpose = account.metadata.get("purpose")
        return cls(
            id=account.id,
            purpose=purpose if isinstance(purpose, str) else None,
            code=account.code,
            currency=account.currency,
            frozen=account.frozen,
            balance=SignedMoney(amount=account.balance, currency=account.currency),
            available=SignedMoney(amount=account.available, currency=account.currency),
            created_at=account.created_at,
        )
