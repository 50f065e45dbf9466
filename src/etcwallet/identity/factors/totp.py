"""TOTP second factor (RFC 6238, via pyotp) with replay protection and one-time recovery codes.

Enrollment stores the secret encrypted and unconfirmed, and answers the otpauth URI with its QR code
(SVG and PNG); the first correct code confirms it and yields ten recovery codes, shown once and stored
as a keyed hash (:func:`recovery_code_hash`: HMAC with the look-up key, like SMS codes), so a copy of the
table alone cannot be searched for the codes. A code is accepted once: its time step must be newer than
the last one used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pyotp
import segno
from psycopg import AsyncConnection

from etcwallet.core.crypto import FieldCipher, keyed_hash

ISSUER = "etcwallet"
_CONTEXT = b"totp_factors.secret"
_STEP = 30
RECOVERY_CODES = 10
KEYED = b"\x01"
"""The first byte of a keyed recovery-code hash (33 bytes); a 32-byte value is a legacy unsalted SHA-256."""


@dataclass(frozen=True)
class Enrollment:
    secret: str
    otpauth_uri: str
    qr_svg: str
    qr_png_base64: str


def _qr(uri: str) -> tuple[str, str]:
    code = segno.make(uri, error="m")
    svg, png = io.BytesIO(), io.BytesIO()
    code.save(svg, kind="svg", scale=4, xmldecl=False)
    code.save(png, kind="png", scale=4)
    return svg.getvalue().decode(), base64.b64encode(png.getvalue()).decode()


async def enroll(
    conn: AsyncConnection[Any],
    cipher: FieldCipher,
    principal_type: str,
    principal_id: UUID,
    account_name: str,
) -> Enrollment:
    """Start (or restart, while unconfirmed) TOTP enrollment; refused if a confirmed factor exists."""
    cur = await conn.execute(
        "SELECT confirmed_at FROM totp_factors WHERE principal_type = %s AND principal_id = %s FOR UPDATE",
        (principal_type, principal_id),
    )
    row = await cur.fetchone()
    if row is not None and row[0] is not None:
        raise ValueError("already enrolled")
    secret = pyotp.random_base32()
    await conn.execute(
        "INSERT INTO totp_factors (principal_type, principal_id, secret_enc) VALUES (%s, %s, %s) "
        "ON CONFLICT (principal_type, principal_id) DO UPDATE SET secret_enc = EXCLUDED.secret_enc, "
        "last_used_step = NULL, created_at = now()",
        (principal_type, principal_id, cipher.encrypt(secret, context=_CONTEXT)),
    )
    uri = pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=ISSUER)
    svg, png = _qr(uri)
    return Enrollment(secret, uri, svg, png)


def _matching_step(secret: str, code: str, now: float) -> int | None:
    if not (len(code) == 6 and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now) // _STEP
    for step in (current, current - 1, current + 1):  # one step of clock drift either way
        if hmac.compare_digest(totp.at(step * _STEP), code):
            return step
    return None


async def verify(
    conn: AsyncConnection[Any],
    cipher: FieldCipher,
    principal_type: str,
    principal_id: UUID,
    code: str,
    *,
    confirming: bool = False,
) -> bool:
    """Whether ``code`` is a fresh valid code for the principal's factor (confirmed, or being confirmed)."""
    cur = await conn.execute(
        "SELECT secret_enc, confirmed_at, last_used_step FROM totp_factors "
        "WHERE principal_type = %s AND principal_id = %s FOR UPDATE",
        (principal_type, principal_id),
    )
    row = await cur.fetchone()
    if row is None or (row[1] is None) != confirming:
        return False
    secret = cipher.decrypt(bytes(row[0]), context=_CONTEXT)
    step = _matching_step(secret, code.strip(), time.time())
    if step is None or (row[2] is not None and step <= row[2]):
        return False
    await conn.execute(
        "UPDATE totp_factors SET last_used_step = %s, confirmed_at = coalesce(confirmed_at, now()) "
        "WHERE principal_type = %s AND principal_id = %s",
        (step, principal_type, principal_id),
    )
    return True


def recovery_code_hash(lookup_key: bytes, principal_type: str, principal_id: UUID, digits: str) -> bytes:
    """The stored form of a recovery code: HMAC (look-up key) over the principal and the code's SHA-256.

    Keyed, so ten digits cannot be searched for without the key; bound to the principal, so equal codes of
    two people differ. It hashes the SHA-256 of the digits rather than the digits so that the legacy
    unsalted SHA-256 values can be rewrapped without knowing the codes (:func:`rekey_legacy_recovery_codes`).
    """
    return _rewrap(lookup_key, principal_type, principal_id, hashlib.sha256(digits.encode()).digest())


def _rewrap(lookup_key: bytes, principal_type: str, principal_id: UUID, sha256: bytes) -> bytes:
    return KEYED + keyed_hash(f"recovery_code:{principal_type}:{principal_id}:{sha256.hex()}", lookup_key)


async def issue_recovery_codes(
    conn: AsyncConnection[Any], lookup_key: bytes, principal_type: str, principal_id: UUID
) -> list[str]:
    """Replace the principal's recovery codes with ten new ones; only their keyed hashes are kept."""
    codes = [f"{secrets.randbelow(10**10):010d}" for _ in range(RECOVERY_CODES)]
    await conn.execute(
        "DELETE FROM recovery_codes WHERE principal_type = %s AND principal_id = %s",
        (principal_type, principal_id),
    )
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO recovery_codes (principal_type, principal_id, code_hash) VALUES (%s, %s, %s)",
            [
                (
                    principal_type,
                    principal_id,
                    recovery_code_hash(lookup_key, principal_type, principal_id, c),
                )
                for c in codes
            ],
        )
    return [f"{c[:5]}-{c[5:]}" for c in codes]


async def use_recovery_code(
    conn: AsyncConnection[Any], lookup_key: bytes, principal_type: str, principal_id: UUID, code: str
) -> bool:
    """Spend one recovery code; each works once."""
    digits = code.replace("-", "").replace(" ", "")
    cur = await conn.execute(
        "UPDATE recovery_codes SET used_at = now() WHERE principal_type = %s AND principal_id = %s "
        "AND code_hash = %s AND used_at IS NULL",
        (principal_type, principal_id, recovery_code_hash(lookup_key, principal_type, principal_id, digits)),
    )
    return cur.rowcount == 1


async def rekey_legacy_recovery_codes(conn: AsyncConnection[Any], lookup_key: bytes) -> int:
    """Rewrap recovery codes stored as an unsalted SHA-256 (before issue 15) into the keyed form; run at
    start-up. The codes people hold keep working, and no unkeyed hash stays in the table. Returns how many."""
    cur = await conn.execute(
        "SELECT principal_type, principal_id, code_hash FROM recovery_codes WHERE length(code_hash) = 32"
    )
    rows = await cur.fetchall()
    for principal_type, principal_id, legacy in rows:
        await conn.execute(
            "UPDATE recovery_codes SET code_hash = %s "
            "WHERE principal_type = %s AND principal_id = %s AND code_hash = %s",
            (_rewrap(lookup_key, principal_type, principal_id, bytes(legacy)), principal_type, principal_id,
             legacy),
        )  # fmt: skip
    return len(rows)


async def is_enrolled(conn: AsyncConnection[Any], principal_type: str, principal_id: UUID) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM totp_factors WHERE principal_type = %s AND principal_id = %s AND confirmed_at IS NOT NULL",
        (principal_type, principal_id),
    )
    return await cur.fetchone() is not None
