"""Request and response bodies of the second-factor routes."""

from __future__ import annotations

from pydantic import BaseModel


class TotpEnrollmentOut(BaseModel):
    otpauth_uri: str
    secret: str
    qr_svg: str
    qr_png_base64: str
