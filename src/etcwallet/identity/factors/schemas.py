"""Request and response bodies of the second-factor and step-up routes.

The two bodies of a passkey as a sign-in's second step (``TicketIn``, ``TicketAssertionIn``) stay in ``api.py``:
they carry the customers' ``LoginTicket``, and customers' schemas import this module (through staff's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, Field

from etcwallet.core.schemas import RequestModel
from etcwallet.identity.factors import passkeys
from etcwallet.identity.factors.types import Enrollment, StepUpStatus
from etcwallet.identity.fields import LoginTicket


class TotpEnrollmentOut(BaseModel):
    otpauth_uri: str
    secret: str
    qr_svg: str
    qr_png_base64: str

    @classmethod
    def of(cls, enrollment: Enrollment) -> TotpEnrollmentOut:
        return cls(
            otpauth_uri=enrollment.otpauth_uri,
            secret=enrollment.secret,
            qr_svg=enrollment.qr_svg,
            qr_png_base64=enrollment.qr_png_base64,
        )


class CodeIn(RequestModel):
    code: Annotated[str, Field(min_length=6, max_length=16)]


class RecoveryCodesOut(BaseModel):
    """Shown once: store them somewhere safe; each works once."""

    recovery_codes: list[str]


class CeremonyOut(BaseModel):
    """Pass ``public_key`` to ``navigator.credentials.create/get``; send the answer with ``challenge_id``."""

    challenge_id: UUID
    expires_at: datetime
    public_key: dict[str, Any]

    @classmethod
    def of(cls, ceremony: passkeys.Ceremony) -> CeremonyOut:
        return cls(
            challenge_id=ceremony.challenge_id, expires_at=ceremony.expires_at, public_key=ceremony.options
        )


class PasskeyRegisterIn(RequestModel):
    challenge_id: UUID
    credential: dict[str, Any]
    name: Annotated[str | None, Field(max_length=passkeys.NAME_MAX)] = None


class PasskeyAssertionIn(RequestModel):
    challenge_id: UUID
    credential: dict[str, Any]


class TicketIn(RequestModel):
    """The second step of a password sign-in: the ticket whose customer's passkey will answer."""

    ticket: LoginTicket


class TicketAssertionIn(PasskeyAssertionIn):
    """A passkey assertion finishing the password sign-in that answered ``ticket``."""

    ticket: LoginTicket


class PasskeyLoginOptionsIn(RequestModel):
    phone: Annotated[str | None, Field(max_length=20)] = None


class PasskeyOut(BaseModel):
    id: UUID
    name: str
    transports: list[str]
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: passkeys.Passkey) -> PasskeyOut:
        return cls(
            id=key.id,
            name=key.name,
            transports=key.transports,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
        )


class StepUpOut(BaseModel):
    accepted_factors: list[str]
    stepped_up: bool
    stepped_up_at: datetime | None
    factor: str | None
    valid_until: datetime | None

    @classmethod
    def of(cls, status: StepUpStatus) -> StepUpOut:
        return cls(
            accepted_factors=status.accepted_factors,
            stepped_up=status.stepped_up,
            stepped_up_at=status.stepped_up_at,
            factor=status.factor,
            valid_until=status.valid_until,
        )


class SmsSentOut(BaseModel):
    phone: str
    expires_at: datetime
    resend_after: datetime
