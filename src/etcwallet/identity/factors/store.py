"""The only module naming the tables of second factors: ``totp_factors``, ``recovery_codes``, ``passkeys``,
``webauthn_challenges``, and the step-up columns of a session (``sessions.stepped_up_at``,
``step_up_factor``) as step-up reads them.

Rows in, types out; nothing here decides a rule. Times come from the caller's clock, never SQL ``now()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.identity.factors.types import CeremonyPurpose, FactorCounts, Passkey, PrincipalRef


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
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, secret_enc: bytes, now: datetime
) -> None:
    """Store a new unconfirmed secret (replacing an unconfirmed one, which forgets its last used step)."""
    await conn.execute(
        "INSERT INTO totp_factors (principal_type, principal_id, secret_enc, created_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (principal_type, principal_id) DO UPDATE SET secret_enc = EXCLUDED.secret_enc, "
        "last_used_step = NULL, created_at = EXCLUDED.created_at",
        (principal_type, principal_id, secret_enc, now),
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
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, code_hash: bytes, now: datetime
) -> bool:
    """Mark one unused recovery code used; whether there was one with this hash."""
    cur = await conn.execute(
        "UPDATE recovery_codes SET used_at = %s WHERE principal_type = %s AND principal_id = %s "
        "AND code_hash = %s AND used_at IS NULL",
        (now, principal_type, principal_id, code_hash),
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


async def count_factors(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID
) -> FactorCounts:
    """How many second factors the principal has (a confirmed TOTP, passkeys, unused recovery codes)."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM totp_factors WHERE principal_type = %(t)s AND principal_id = %(i)s "
        "AND confirmed_at IS NOT NULL), "
        "(SELECT count(*) FROM passkeys WHERE principal_type = %(t)s AND principal_id = %(i)s), "
        "(SELECT count(*) FROM recovery_codes WHERE principal_type = %(t)s AND principal_id = %(i)s "
        "AND used_at IS NULL)",
        {"t": principal_type, "i": principal_id},
    )
    row = await cur.fetchone()
    assert row is not None
    return FactorCounts(bool(row[0]), int(row[1]), int(row[2]))


async def delete_factors(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> None:
    """Delete every second factor of the principal: TOTP, recovery codes, passkeys."""
    params = {"t": principal_type, "i": principal_id}
    for table in ("totp_factors", "recovery_codes", "passkeys"):
        await conn.execute(
            f"DELETE FROM {table} WHERE principal_type = %(t)s AND principal_id = %(i)s", params
        )


# --- passkeys and their challenges -------------------------------------------------------------------------


@dataclass(frozen=True)
class SpentChallenge:
    """A challenge just marked used: its bytes, when it expired, and whom it was issued to (if anyone)."""

    challenge: bytes
    expires_at: datetime
    principal: PrincipalRef | None


@dataclass(frozen=True)
class StoredPasskey:
    """A passkey as an assertion checks it: owner, public key and signature counter."""

    id: UUID
    principal_type: str
    principal_id: UUID
    public_key: bytes
    sign_count: int


_PASSKEY_COLUMNS = "id, name, transports, created_at, last_used_at"


def _passkey(row: Any) -> Passkey:
    return Passkey(row[0], row[1], list(row[2]), row[3], row[4])


async def delete_challenges_expired_before(conn: AsyncConnection[Any], *, before: datetime) -> None:
    """Forget challenges that expired before ``before`` (the table only holds minutes of traffic)."""
    await conn.execute("DELETE FROM webauthn_challenges WHERE expires_at < %s", (before,))


async def insert_challenge(
    conn: AsyncConnection[Any],
    *,
    challenge_id: UUID,
    purpose: CeremonyPurpose,
    challenge: bytes,
    principal: PrincipalRef | None,
    expires_at: datetime,
) -> None:
    """Store a new ceremony challenge, bound to ``principal`` when given."""
    await conn.execute(
        "INSERT INTO webauthn_challenges (id, principal_type, principal_id, purpose, challenge, expires_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (
            challenge_id,
            principal[0] if principal else None,
            principal[1] if principal else None,
            purpose,
            challenge,
            expires_at,
        ),
    )


async def spend_challenge(
    conn: AsyncConnection[Any], *, challenge_id: UUID, purpose: CeremonyPurpose, now: datetime
) -> SpentChallenge | None:
    """Mark an unused challenge of this purpose used at ``now``; None when there is no such unused one."""
    cur = await conn.execute(
        "UPDATE webauthn_challenges SET used_at = %s WHERE id = %s AND purpose = %s AND used_at IS NULL "
        "RETURNING challenge, expires_at, principal_type, principal_id",
        (now, challenge_id, purpose),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return SpentChallenge(bytes(row[0]), row[1], (row[2], row[3]) if row[2] is not None else None)


async def list_credentials(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID
) -> list[tuple[bytes, list[str]]]:
    """The principal's credential ids and transports, oldest first."""
    cur = await conn.execute(
        "SELECT credential_id, transports FROM passkeys WHERE principal_type = %s AND principal_id = %s "
        "ORDER BY created_at",
        (principal_type, principal_id),
    )
    return [(bytes(r[0]), list(r[1])) for r in await cur.fetchall()]


async def lock_principal_passkeys(conn: AsyncConnection[Any], *, principal_id: UUID) -> None:
    """Serialize a principal's registrations (a transaction-scoped advisory lock) so the limit holds."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"passkeys:{principal_id}",))


async def count_passkeys(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> int:
    """How many passkeys the principal has."""
    cur = await conn.execute(
        "SELECT count(*) FROM passkeys WHERE principal_type = %s AND principal_id = %s",
        (principal_type, principal_id),
    )
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def insert_passkey(
    conn: AsyncConnection[Any],
    *,
    passkey_id: UUID,
    principal_type: str,
    principal_id: UUID,
    credential_id: bytes,
    public_key: bytes,
    sign_count: int,
    transports: list[str],
    name: str,
    now: datetime,
) -> Passkey | None:
    """Store a passkey; None when its credential id is registered already."""
    cur = await conn.execute(
        "INSERT INTO passkeys (id, principal_type, principal_id, credential_id, public_key, sign_count, "
        "transports, name, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (credential_id) DO NOTHING RETURNING {_PASSKEY_COLUMNS}",
        (
            passkey_id,
            principal_type,
            principal_id,
            credential_id,
            public_key,
            sign_count,
            transports,
            name,
            now,
        ),
    )
    row = await cur.fetchone()
    return None if row is None else _passkey(row)


async def lock_passkey_by_credential(
    conn: AsyncConnection[Any], *, credential_id: bytes
) -> StoredPasskey | None:
    """The passkey with this credential id, locked (FOR UPDATE); None when unknown."""
    cur = await conn.execute(
        "SELECT id, principal_type, principal_id, public_key, sign_count FROM passkeys "
        "WHERE credential_id = %s FOR UPDATE",
        (credential_id,),
    )
    row = await cur.fetchone()
    return None if row is None else StoredPasskey(row[0], row[1], row[2], bytes(row[3]), row[4])


async def record_passkey_use(
    conn: AsyncConnection[Any], *, passkey_id: UUID, sign_count: int, now: datetime
) -> None:
    """Store a passkey's new signature counter and when it was used."""
    await conn.execute(
        "UPDATE passkeys SET sign_count = %s, last_used_at = %s WHERE id = %s", (sign_count, now, passkey_id)
    )


async def list_passkeys(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID
) -> list[Passkey]:
    """A principal's passkeys, oldest first."""
    cur = await conn.execute(
        f"SELECT {_PASSKEY_COLUMNS} FROM passkeys WHERE principal_type = %s AND principal_id = %s "
        "ORDER BY created_at, id",
        (principal_type, principal_id),
    )
    return [_passkey(r) for r in await cur.fetchall()]


async def has_passkey(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> bool:
    """Whether the principal has at least one passkey."""
    cur = await conn.execute(
        "SELECT 1 FROM passkeys WHERE principal_type = %s AND principal_id = %s LIMIT 1",
        (principal_type, principal_id),
    )
    return await cur.fetchone() is not None


async def delete_passkey(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, passkey_id: UUID
) -> Passkey | None:
    """Remove one of the principal's own passkeys; None when it has no passkey with this id."""
    cur = await conn.execute(
        "DELETE FROM passkeys WHERE id = %s AND principal_type = %s AND principal_id = %s "
        f"RETURNING {_PASSKEY_COLUMNS}",
        (passkey_id, principal_type, principal_id),
    )
    row = await cur.fetchone()
    return None if row is None else _passkey(row)
