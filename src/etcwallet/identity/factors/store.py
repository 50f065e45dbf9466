"""The only module naming the tables of second factors: ``totp_factors``, ``recovery_codes``, and the step-up
columns of a session (``sessions.stepped_up_at``, ``step_up_factor``) as step-up reads them.

Rows in, types out; nothing here decides a rule. The ``passkeys`` and ``webauthn_challenges`` tables are
still named by :mod:`etcwallet.identity.factors.passkeys` (see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.identity.factors.types import SessionStepUp


@dataclass(frozen=True)
class TotpRow:
    """A principal's TOTP factor as stored: the encrypted secret, when confirmed, the last step used."""

    secret_enc: bytes
    confirmed_at: datetime | None
    last_used_step: int | None


@dataclass(frozen=True)
class FactorsOnFile:
    """Which second factors a principal has on file."""

    totp: bool
    passkey: bool
    unused_recovery_codes: bool


async def lock_totp(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> TotpRow | None:
    """The principal's TOTP factor, locked (FOR UPDATE) for the caller's transaction; None when there is none."""
    cur = await conn.execute(
        "SELECT secret_enc, confirmed_at, last_used_step FROM totp_factors "
        "WHERE principal_type = %s AND principal_id = %s FOR UPDATE",
        (principal_type, principal_id),
    )
    row = await cur.fetchone()
    return None if row is None else TotpRow(bytes(row[0]), row[1], row[2])


async def get_totp_pending_or_confirmed(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID
) -> bool:
    """Whether the principal has a TOTP factor at all (confirmed or awaiting its first code)."""
    cur = await conn.execute(
        "SELECT 1 FROM totp_factors WHERE principal_type = %s AND principal_id = %s",
        (principal_type, principal_id),
    )
    return await cur.fetchone() is not None


async def is_totp_confirmed(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> bool:
    """Whether the principal has a confirmed TOTP factor."""
    cur = await conn.execute(
        "SELECT 1 FROM totp_factors WHERE principal_type = %s AND principal_id = %s AND confirmed_at IS NOT NULL",
        (principal_type, principal_id),
    )
    return await cur.fetchone() is not None


async def put_totp_secret(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, secret_enc: bytes
) -> None:
    """Store a new unconfirmed secret (replacing an unconfirmed one, which forgets its last used step)."""
    await conn.execute(
        "INSERT INTO totp_factors (principal_type, principal_id, secret_enc) VALUES (%s, %s, %s) "
        "ON CONFLICT (principal_type, principal_id) DO UPDATE SET secret_enc = EXCLUDED.secret_enc, "
        "last_used_step = NULL, created_at = now()",
        (principal_type, principal_id, secret_enc),
    )


async def spend_totp_step(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, step: int, at: datetime
) -> None:
    """Record ``step`` as the last one used (no code of it or before works again); confirm if unconfirmed."""
    await conn.execute(
        "UPDATE totp_factors SET last_used_step = %s, confirmed_at = coalesce(confirmed_at, %s) "
        "WHERE principal_type = %s AND principal_id = %s",
        (step, at, principal_type, principal_id),
    )


async def delete_totp(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> bool:
    """Remove the principal's TOTP factor and its recovery codes; whether there was a factor."""
    cur = await conn.execute(
        "DELETE FROM totp_factors WHERE principal_type = %s AND principal_id = %s",
        (principal_type, principal_id),
    )
    await conn.execute(
        "DELETE FROM recovery_codes WHERE principal_type = %s AND principal_id = %s",
        (principal_type, principal_id),
    )
    return cur.rowcount > 0


async def replace_recovery_codes(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, hashes: list[bytes]
) -> None:
    """Replace the principal's recovery codes by these keyed hashes."""
    await conn.execute(
        "DELETE FROM recovery_codes WHERE principal_type = %s AND principal_id = %s",
        (principal_type, principal_id),
    )
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO recovery_codes (principal_type, principal_id, code_hash) VALUES (%s, %s, %s)",
            [(principal_type, principal_id, code_hash) for code_hash in hashes],
        )


async def spend_recovery_code(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, code_hash: bytes
) -> bool:
    """Mark one unused recovery code used; whether there was one with this hash."""
    cur = await conn.execute(
        "UPDATE recovery_codes SET used_at = now() WHERE principal_type = %s AND principal_id = %s "
        "AND code_hash = %s AND used_at IS NULL",
        (principal_type, principal_id, code_hash),
    )
    return cur.rowcount == 1


async def list_legacy_recovery_codes(conn: AsyncConnection[Any]) -> list[tuple[str, UUID, bytes]]:
    """Recovery codes still stored as an unsalted SHA-256 (32 bytes): (principal type, id, hash)."""
    cur = await conn.execute(
        "SELECT principal_type, principal_id, code_hash FROM recovery_codes WHERE length(code_hash) = 32"
    )
    return [(str(row[0]), row[1], bytes(row[2])) for row in await cur.fetchall()]


async def rewrite_recovery_code(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, old_hash: bytes, new_hash: bytes
) -> None:
    """Replace one stored recovery-code hash by another (the rekeying of legacy hashes)."""
    await conn.execute(
        "UPDATE recovery_codes SET code_hash = %s WHERE principal_type = %s AND principal_id = %s AND code_hash = %s",
        (new_hash, principal_type, principal_id, old_hash),
    )


async def factors_on_file(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID
) -> FactorsOnFile:
    """Which second factors the principal has on file, in one query."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM totp_factors WHERE principal_type = %(t)s AND principal_id = %(i)s "
        "AND confirmed_at IS NOT NULL), "
        "EXISTS (SELECT 1 FROM passkeys WHERE principal_type = %(t)s AND principal_id = %(i)s), "
        "EXISTS (SELECT 1 FROM recovery_codes WHERE principal_type = %(t)s AND principal_id = %(i)s "
        "AND used_at IS NULL)",
        {"t": principal_type, "i": principal_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return FactorsOnFile(bool(row[0]), bool(row[1]), bool(row[2]))


async def get_session_step_up(conn: AsyncConnection[Any], *, session_id: UUID) -> SessionStepUp:
    """When the session last proved a second factor and which (both None for no session or no step-up)."""
    cur = await conn.execute(
        "SELECT stepped_up_at, step_up_factor FROM sessions WHERE id = %s", (session_id,)
    )
    row = await cur.fetchone()
    return SessionStepUp(row[0], row[1]) if row else SessionStepUp(None, None)
