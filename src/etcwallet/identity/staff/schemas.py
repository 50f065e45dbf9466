"""Request and response bodies of the staff and outlet API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from etcwallet.core.schemas import RequestModel
from etcwallet.identity.authz import Role
from etcwallet.identity.factors.schemas import TotpEnrollmentOut
from etcwallet.identity.fields import (
    NewPassword as NewPassword,
)  # re-exported: customers' schemas import it here
from etcwallet.identity.fields import Password as Password
from etcwallet.identity.sessions.schemas import SessionOut

Username = Annotated[str, Field(min_length=3, max_length=32, pattern=r"^[a-z][a-z0-9_.\-]*$")]
BankCode = Literal["lanzhou_bank", "gansu_bank", "icbc", "abc", "rural_credit", "ccb", "psbc"]


class OutletCreate(RequestModel):
    code: Annotated[str, Field(min_length=2, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")]
    name: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Literal["self_operated", "bank"]
    bank: BankCode | None = None


class OutletOut(BaseModel):
    id: UUID
    code: str
    name: str
    kind: str
    bank: str | None
    bank_name: str | None
    active: bool
    created_at: datetime


class StaffCreate(RequestModel):
    username: Username
    display_name: Annotated[str, Field(min_length=1, max_length=64)]
    password: NewPassword
    role: Role
    outlet_id: UUID | None = None


class StaffUpdate(RequestModel):
    role: Role | None = None
    outlet_id: UUID | None = None
    status: Literal["active", "disabled"] | None = None


class StaffOut(BaseModel):
    id: UUID
    username: str
    display_name: str
    role: Role
    role_name: str
    outlet_id: UUID | None
    status: str
    created_at: datetime


class StaffChangeOut(BaseModel):
    """A privileged change (granting or taking finance or administrator): who asked, who decided."""

    id: UUID
    kind: Literal["create", "role"]
    status: Literal["pending", "approved", "rejected"]
    staff: StaffOut = Field(description="the staff member as they are now (unchanged while pending)")
    role_from: Role | None
    role_to: Role
    outlet_id: UUID | None
    requested_by: UUID
    requested_at: datetime
    decided_by: UUID | None
    decided_at: datetime | None


class EnrollmentCodeOut(BaseModel):
    """Shown once: hand it to the staff member, who signs in with it and their password to enroll TOTP."""

    staff_id: UUID
    enrollment_code: str
    expires_at: datetime


class StaffPasswordLogin(RequestModel):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Password
    enrollment_code: Annotated[
        str | None,
        Field(
            min_length=16,
            max_length=128,
            description="first sign-in only: the one-time TOTP enrollment code another administrator issued",
        ),
    ] = None


class LoginStepOut(BaseModel):
    """Password accepted: send the TOTP code with this ticket (enroll first if ``totp_enrollment`` is set)."""

    status: Literal["totp_required", "totp_enrollment_required"]
    ticket: str
    expires_at: datetime
    totp_enrollment: TotpEnrollmentOut | None = None


class SecondFactorLogin(RequestModel):
    ticket: Annotated[str, Field(min_length=10, max_length=128)]
    code: Annotated[str, Field(min_length=6, max_length=16)]


class StaffSessionOut(SessionOut):
    staff: StaffOut
    recovery_codes: list[str] | None = None
