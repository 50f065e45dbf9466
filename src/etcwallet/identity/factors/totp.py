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
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pyotp
import segno
from psycopg import AsyncConnection

from etcwallet.core.crypto import FieldCipher, keyed_hash
from etcwallet.identity.factors import store
from etcwallet.identity.factors.types import Enrollment

ISSUER = "etcwallet"
_CONTEXT = b"totp_factors.secret"
_STEP = 30
RECOVERY_CODES = 10
KEYED = b"\x01"
"""The first byte of a keyed recovery-code hash (33 bytes); a 32-byte value is a legacy unsalted SHA-256."""


__all__ = ["RECOVERY_CODES", "Enrollment"]


def _qr(uri: str) -> tuple[str, str]:
    code = segno.make(uri, error="m")
    svg, png = io.BytesIO(), io.BytesIO()
    code.save(svg, kind="svg", scale=4, xmldecl=False)
    code.save(png, kind="png", scale=4)
    return svg.getvalue().decode(), base64.b64encode(png.getvalue()).decode()


async def enroll(
    conn: AsyncConnection[Any],
    *,
    cipher: FieldCipher,
    principal_type: str,
    principal_id: UUID,
    account_name: str,
    now: datetime | None = None,
) -> Enrollment:
    """Start (or restart, while unconfirmed) TOTP enrollment; refused if a confirmed factor exists."""
    row = await store.lock_totp(conn, principal_type=principal_type, principal_id=principal_id)
    if row is not None and row.confirmed_at is not None:
        raise ValueError("already enrolled")
    secret = pyotp.random_base32()
    secret_enc = cipher.encrypt(secret, context=_CONTEXT)
    await store.put_totp_secret(
        conn,
        principal_type=principal_type,
        principal_id=principal_id,
        secret_enc=secret_enc,
        now=now or datetime.now(UTC),
    )
    uri = pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=ISSUER)
    svg, png = _qr(uri)
    return Enrollment(secret, uri, svg, png)


def _matching_step(secret: str, code: str, now: float) -> int | None:
    if not (len(code) == 6 and code.isascii() and code.isdigit()):  # "١٢٣٤٥٦" is digits, but not ours
        return None
    totp = pyotp.TOTP(secret)
    current = int(now) // _STEP
    for step in (current, current - 1, current + 1):  # one step of clock drift either way
        if hmac.compare_digest(totp.at(step * _STEP), code):
            return step
    return None


async def verify(
    conn: AsyncConnection[Any],
    *,
    cipher: FieldCipher,
    principal_type: str,
    principal_id: UUID,
    code: str,
    confirming: bool = False,
    now: datetime | None = None,
) -> bool:
    """Whether ``code`` is a fresh valid code for the principal's factor (confirmed, or being confirmed) at
    ``now`` (the caller's clock; the system's when not given). A code accepted here is spent: no code of its
    time step or an earlier one works again, for sign-in or step-up alike."""
    at = now or datetime.now(UTC)
    row = await store.lock_totp(conn, principal_type=principal_type, principal_id=principal_id)
    if row is None or (row.confirmed_at is None) != confirming:
        return False
    secret = cipher.decrypt(row.secret_enc, context=_CONTEXT)
    step = _matching_step(secret, code.strip(), at.timestamp())
    if step is None or (row.last_used_step is not None and step <= row.last_used_step):
        return False
    await store.spend_totp_step(
        conn, principal_type=principal_type, principal_id=principal_id, step=step, at=at
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
    conn: AsyncConnection[Any], *, lookup_key: bytes, principal_type: str, principal_id: UUID
) -> list[str]:
    """Replace the principal's recovery codes with ten new ones; only their keyed hashes are kept."""
    codes = [f"{secrets.randbelow(10**10):010d}" for _ in range(RECOVERY_CODES)]
    hashes = [recovery_code_hash(lookup_key, principal_type, principal_id, c) for c in codes]
    await store.replace_recovery_codes(
        conn, principal_type=principal_type, principal_id=principal_id, hashes=hashes
    )
    return [f"{c[:5]}-{c[5:]}" for c in codes]


async def use_recovery_code(
    conn: AsyncConnection[Any],
    *,
    lookup_key: bytes,
    principal_type: str,
    principal_id: UUID,
    code: str,
    now: datetime | None = None,
) -> bool:
    """Spend one recovery code (used at ``now``, the caller's clock); each works once."""
    digits = code.replace("-", "").replace(" ", "")
    code_hash = recovery_code_hash(lookup_key, principal_type, principal_id, digits)
    return await store.spend_recovery_code(
        conn,
        principal_type=principal_type,
        principal_id=principal_id,
        code_hash=code_hash,
        now=now or datetime.now(UTC),
    )


async def rekey_legacy_recovery_codes(conn: AsyncConnection[Any], *, lookup_key: bytes) -> int:
    """Rewrap recovery codes stored as an unsalted SHA-256 (before issue 15) into the keyed form; run at
    start-up. The codes people hold keep working, and no unkeyed hash stays in the table. Returns how many."""
    rows = await store.list_legacy_recovery_codes(conn)
    for principal_type, principal_id, legacy in rows:
        await store.rewrite_recovery_code(
            conn,
            principal_type=principal_type,
            principal_id=principal_id,
            old_hash=legacy,
            new_hash=_rewrap(lookup_key, principal_type, principal_id, legacy),
        )
    return len(rows)


async def is_enrolled(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> bool:
    """Whether the principal has a confirmed TOTP factor."""
    return await store.is_totp_confirmed(conn, principal_type=principal_type, principal_id=principal_id)
