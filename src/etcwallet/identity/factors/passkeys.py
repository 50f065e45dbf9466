"""Passkeys (WebAuthn, via py_webauthn): registration, password-less login and step-up.

A ceremony starts with options carrying a random challenge, kept in ``webauthn_challenges`` for five
minutes and good for one answer: the challenge is spent (in a transaction of its own) before the answer
is checked, so a failed, replayed or late answer can never be tried again. Registration needs a signed-in
principal and stores the credential's COSE public key; an assertion must verify against that key, for the
relying party and origin the caller names, with user verification (fingerprint, face or device PIN).
The authenticator's signature counter is stored and must grow: when either the stored or the presented
counter is nonzero and the presented one is not larger, the assertion is refused as a possible cloned
authenticator, after its signature has verified (so a forger cannot make that claim) and with nothing
changed.

The relying party id and origin are parameters of every function here; the API derives them from the
request for now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from etcwallet.core.crypto import keyed_hash
from etcwallet.core.deps import Client
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.sessions import service as sessions
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor

CHALLENGE_LIFETIME = timedelta(minutes=5)
RP_NAME = "ETC服务钱包"
MAX_PASSKEYS = 10
NAME_MAX = 64
DEFAULT_NAME = "通行密钥"

CeremonyPurpose = Literal["register", "login", "step_up"]
PrincipalRef = tuple[str, UUID]  # (principal_type, principal_id)

_MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError)


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


class LoginRefused(Exception):
    """A verified passkey whose customer may not sign in (frozen or closed): the refusal and who it was."""

    def __init__(self, error: IdentityError, customer_id: UUID) -> None:
        super().__init__(str(error))
        self.error, self.customer_id = error, customer_id


@dataclass(frozen=True)
class PasskeyLogin:
    """A password-less sign-in: the verified assertion and the new session's tokens."""

    assertion: Assertion
    tokens: sessions.IssuedTokens


# --- refusals --------------------------------------------------------------------------------------------


def too_many() -> IdentityError:
    return IdentityError("passkey_limit", text={"max": MAX_PASSKEYS})


def assertion_invalid(status: int) -> IdentityError:
    """An assertion that does not verify (unknown credential, bad signature, origin, RP or challenge)."""
    return IdentityError("passkey_invalid", status=status)


def counter_regressed(status: int) -> IdentityError:
    """A signature counter that did not grow: the authenticator may have been cloned."""
    return IdentityError("passkey_counter_regressed", status=status)


# --- challenges ------------------------------------------------------------------------------------------


async def _new_challenge(
    conn: AsyncConnection[Any], purpose: CeremonyPurpose, challenge: bytes, principal: PrincipalRef | None
) -> tuple[UUID, datetime]:
    now = datetime.now(UTC)
    # Forget long-dead challenges now and then (cheap: the table only holds minutes of traffic).
    await conn.execute("DELETE FROM webauthn_challenges WHERE expires_at < %s", (now - timedelta(hours=1),))
    challenge_id = uuid4()
    await conn.execute(
        "INSERT INTO webauthn_challenges (id, principal_type, principal_id, purpose, challenge, expires_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (
            challenge_id,
            principal[0] if principal else None,
            principal[1] if principal else None,
            purpose,
            challenge,
            now + CHALLENGE_LIFETIME,
        ),
    )
    return challenge_id, now + CHALLENGE_LIFETIME


async def take_challenge(
    pool: AsyncConnectionPool,
    challenge_id: UUID,
    purpose: CeremonyPurpose,
    principal: PrincipalRef | None,
) -> tuple[bytes, PrincipalRef | None]:
    """Spend a live challenge of this purpose (committed at once, so it can never answer twice).

    ``principal`` must match the one the challenge was issued to when it was issued to one; login
    challenges issued without a phone hint belong to nobody. Returns the challenge and whom it is bound to.
    """
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE webauthn_challenges SET used_at = now() WHERE id = %s AND purpose = %s AND used_at IS NULL "
            "RETURNING challenge, expires_at, principal_type, principal_id",
            (challenge_id, purpose),
        )
        row = await cur.fetchone()
    if row is None or row[1] <= datetime.now(UTC):
        raise IdentityError("webauthn_challenge_invalid")
    bound: PrincipalRef | None = (row[2], row[3]) if row[2] is not None else None
    if principal is not None and bound != principal:
        raise IdentityError("webauthn_challenge_invalid")
    return bytes(row[0]), bound


def _options_dict(options: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(options_to_json(options))
    return data


def _timeout_ms() -> int:
    return int(CHALLENGE_LIFETIME.total_seconds() * 1000)


def _descriptor(credential_id: bytes, transports: Sequence[str]) -> PublicKeyCredentialDescriptor:
    known = {t.value for t in AuthenticatorTransport}
    return PublicKeyCredentialDescriptor(
        id=credential_id, transports=[AuthenticatorTransport(t) for t in transports if t in known] or None
    )


# --- registration ----------------------------------------------------------------------------------------


async def registration_options(
    conn: AsyncConnection[Any],
    *,
    principal_type: str,
    principal_id: UUID,
    user_name: str,
    display_name: str,
    rp_id: str,
) -> Ceremony:
    """Options to create a discoverable passkey for a signed-in principal (its own passkeys excluded)."""
    cur = await conn.execute(
        "SELECT credential_id, transports FROM passkeys WHERE principal_type = %s AND principal_id = %s",
        (principal_type, principal_id),
    )
    existing = await cur.fetchall()
    if len(existing) >= MAX_PASSKEYS:
        raise too_many()
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=user_name,
        user_id=principal_id.bytes,  # the user handle: opaque, no personal data
        user_display_name=display_name,
        timeout=_timeout_ms(),
        exclude_credentials=[_descriptor(bytes(r[0]), r[1]) for r in existing],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
    )
    challenge_id, expires = await _new_challenge(
        conn, "register", options.challenge, (principal_type, principal_id)
    )
    return Ceremony(challenge_id, _options_dict(options), expires)


def _passkey(row: Any) -> Passkey:
    return Passkey(row[0], row[1], list(row[2]), row[3], row[4])


_PASSKEY_COLUMNS = "id, name, transports, created_at, last_used_at"


async def verify_registration(
    pool: AsyncConnectionPool,
    *,
    principal_type: str,
    principal_id: UUID,
    challenge_id: UUID,
    credential: dict[str, Any],
    name: str | None,
    rp_id: str,
    origin: str,
    actor: Actor,
) -> Passkey:
    """Check an attestation answering this principal's registration challenge and store the passkey.

    The registration is audited (``factor.passkey.register``, by ``actor``) in the transaction that stores it.
    """
    challenge, _ = await take_challenge(pool, challenge_id, "register", (principal_type, principal_id))
    try:
        parsed: RegistrationCredential = parse_registration_credential_json(credential)
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=True,
        )
    except _MALFORMED:
        raise IdentityError("passkey_registration_invalid") from None
    transports = [t.value for t in parsed.response.transports or []]
    label = (name or "").strip()[:NAME_MAX] or DEFAULT_NAME
    async with pool.connection() as conn, conn.transaction():
        # Serialize a principal's registrations so the limit holds under concurrency.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"passkeys:{principal_id}",)
        )
        cur = await conn.execute(
            "SELECT count(*) FROM passkeys WHERE principal_type = %s AND principal_id = %s",
            (principal_type, principal_id),
        )
        count = await cur.fetchone()
        if count is not None and count[0] >= MAX_PASSKEYS:
            raise too_many()
        cur = await conn.execute(
            "INSERT INTO passkeys (id, principal_type, principal_id, credential_id, public_key, sign_count, "
            "transports, name) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (credential_id) DO NOTHING "
            f"RETURNING {_PASSKEY_COLUMNS}",
            (
                uuid4(),
                principal_type,
                principal_id,
                verified.credential_id,
                verified.credential_public_key,
                verified.sign_count,
                transports,
                label,
            ),
        )
        row = await cur.fetchone()
        if row is None:
            raise IdentityError("passkey_exists")
        key = _passkey(row)
        detail = {"passkey_id": str(key.id), "name": key.name, "credential": fingerprint(credential)}
        target = (principal_type, str(principal_id))
        await audit.append(conn, actor.event("factor.passkey.register", target=target, detail=detail))
    return key


# --- authentication --------------------------------------------------------------------------------------


def decoy_credential_id(lookup_key: bytes, phone: str) -> bytes:
    """A stable, made-up credential id for a phone with no passkeys, so the answer does not tell."""
    return keyed_hash(f"passkey-decoy:{phone}", lookup_key)


async def authentication_options(
    conn: AsyncConnection[Any],
    *,
    purpose: Literal["login", "step_up"],
    rp_id: str,
    principal: PrincipalRef | None = None,
    decoy_ids: Sequence[bytes] = (),
) -> Ceremony:
    """Options to assert a passkey: any discoverable one (no principal), or the principal's own.

    With a principal the challenge is bound to it and the options list its credentials; when it has
    none, ``decoy_ids`` are listed instead, so a phone hint does not reveal whether the number is
    registered (a principal-less login with decoys is the same as one with an unknown phone).
    """
    allow: list[PublicKeyCredentialDescriptor] = []
    if principal is not None:
        cur = await conn.execute(
            "SELECT credential_id, transports FROM passkeys WHERE principal_type = %s AND principal_id = %s "
            "ORDER BY created_at",
            principal,
        )
        allow = [_descriptor(bytes(r[0]), r[1]) for r in await cur.fetchall()]
    if not allow:
        allow = [_descriptor(d, ["internal", "hybrid"]) for d in decoy_ids]
    options = generate_authentication_options(
        rp_id=rp_id,
        timeout=_timeout_ms(),
        allow_credentials=allow,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    challenge_id, expires = await _new_challenge(conn, purpose, options.challenge, principal)
    return Ceremony(challenge_id, _options_dict(options), expires)


async def verify_assertion(
    conn: AsyncConnection[Any],
    *,
    challenge: bytes,
    credential: dict[str, Any],
    rp_id: str,
    origin: str,
    principal: PrincipalRef | None,
    principal_type: str | None = None,
    refusal_status: int = 401,
) -> Assertion:
    """Verify an assertion against a spent challenge and record the new counter (in the caller's transaction).

    ``principal`` restricts the answer to that principal's passkeys, ``principal_type`` to one kind of
    principal. Any failure raises with nothing written; the caller's transaction must roll back on it.
    """
    invalid = assertion_invalid(refusal_status)
    try:
        parsed: AuthenticationCredential = parse_authentication_credential_json(credential)
    except _MALFORMED:
        raise invalid from None
    cur = await conn.execute(
        "SELECT id, principal_type, principal_id, public_key, sign_count FROM passkeys "
        "WHERE credential_id = %s FOR UPDATE",
        (parsed.raw_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise invalid
    passkey_id, owner_type, owner_id, public_key, stored_count = row
    if principal is not None and (owner_type, owner_id) != principal:
        raise invalid
    if principal_type is not None and owner_type != principal_type:
        raise invalid
    user_handle = parsed.response.user_handle
    if user_handle is not None and user_handle != owner_id.bytes:
        raise invalid
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=bytes(public_key),
            # The counter is checked below, after the signature, to name a clone as such.
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except _MALFORMED:
        raise invalid from None
    new_count = verified.new_sign_count
    if (new_count > 0 or stored_count > 0) and new_count <= stored_count:
        raise counter_regressed(refusal_status)
    await conn.execute(
        "UPDATE passkeys SET sign_count = %s, last_used_at = now() WHERE id = %s", (new_count, passkey_id)
    )
    return Assertion(owner_type, owner_id, passkey_id, new_count)


async def login(
    pool: AsyncConnectionPool,
    *,
    challenge_id: UUID,
    credential: dict[str, Any],
    rp_id: str,
    origin: str,
    client: Client,
) -> PasskeyLogin:
    """Sign a customer in with a passkey: verify, refuse frozen or closed accounts, open a session.

    The new session counts as stepped up (a user-verified passkey is two factors in one), and the sign-in
    is audited (``customer.login.passkey``) in the transaction that opens it. Raises IdentityError when the
    assertion does not verify, LoginRefused when its customer may not sign in.
    """
    challenge, bound = await take_challenge(pool, challenge_id, "login", None)
    async with pool.connection() as conn, conn.transaction():
        assertion = await verify_assertion(
            conn,
            challenge=challenge,
            credential=credential,
            rp_id=rp_id,
            origin=origin,
            principal=bound,
            principal_type="customer",
        )
        cur = await conn.execute("SELECT status FROM customers WHERE id = %s", (assertion.principal_id,))
        row = await cur.fetchone()
        if row is None:
            raise assertion_invalid(401)
        if row[0] != "active":
            refusal = IdentityError(
                "account_frozen@passkey" if row[0] == "frozen" else "account_closed@passkey"
            )
            raise LoginRefused(refusal, assertion.principal_id)
        tokens = await sessions.issue(
            conn, principal_type="customer", principal_id=assertion.principal_id, client=client
        )
        await sessions.mark_stepped_up(conn, tokens.session_id, "passkey")
        customer = ("customer", str(assertion.principal_id))
        detail: dict[str, object] = {
            "passkey_id": str(assertion.passkey_id),
            "session_id": str(tokens.session_id),
        }
        detail |= tokens.audit_detail()
        event = Actor(*customer, client.ip, client.user_agent).event(
            "customer.login.passkey", target=customer, detail=detail
        )
        await audit.append(conn, event)
    return PasskeyLogin(assertion, tokens)


# --- the principal's passkeys ----------------------------------------------------------------------------


async def list_passkeys(conn: AsyncConnection[Any], principal_type: str, principal_id: UUID) -> list[Passkey]:
    """A principal's passkeys, oldest first."""
    cur = await conn.execute(
        f"SELECT {_PASSKEY_COLUMNS} FROM passkeys WHERE principal_type = %s AND principal_id = %s "
        "ORDER BY created_at, id",
        (principal_type, principal_id),
    )
    return [_passkey(r) for r in await cur.fetchall()]


async def has_passkey(conn: AsyncConnection[Any], principal_type: str, principal_id: UUID) -> bool:
    """Whether the principal has at least one passkey."""
    cur = await conn.execute(
        "SELECT 1 FROM passkeys WHERE principal_type = %s AND principal_id = %s LIMIT 1",
        (principal_type, principal_id),
    )
    return await cur.fetchone() is not None


async def delete_passkey(
    conn: AsyncConnection[Any], principal_type: str, principal_id: UUID, passkey_id: UUID
) -> Passkey:
    """Remove one of the principal's own passkeys; someone else's (or no such) id is a 404."""
    cur = await conn.execute(
        f"DELETE FROM passkeys WHERE id = %s AND principal_type = %s AND principal_id = %s "
        f"RETURNING {_PASSKEY_COLUMNS}",
        (passkey_id, principal_type, principal_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise IdentityError("passkey_not_found")
    return _passkey(row)


def credential_fingerprint(credential_id: bytes) -> str:
    """A short, non-secret label for a credential id in audit details."""
    return hashlib.sha256(credential_id).hexdigest()[:16]


def fingerprint(credential: Mapping[str, Any]) -> str | None:
    """The :func:`credential_fingerprint` of the credential id a client's JSON names, None when malformed."""
    raw = credential_id_of(credential)
    return credential_fingerprint(raw) if raw is not None else None


def credential_id_of(credential: Mapping[str, Any]) -> bytes | None:
    """The raw credential id a client's JSON names, or None when it is malformed."""
    raw = credential.get("rawId")
    if not isinstance(raw, str):
        return None
    try:
        return base64url_to_bytes(raw)
    except _MALFORMED:
        return None
