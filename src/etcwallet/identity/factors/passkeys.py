"""Passkeys (WebAuthn, via py_webauthn): registration, password-less login and step-up.

A ceremony starts with options carrying a random challenge, kept for five minutes and good for one answer:
the challenge is spent (in a unit of work of its own) before the answer is checked, so a failed, replayed
or late answer can never be tried again. Registration needs a signed-in principal and stores the
credential's COSE public key; an assertion must verify against that key, for the relying party and origin
the caller names, with user verification (fingerprint, face or device PIN). The authenticator's signature
counter is stored and must grow: when either the stored or the presented counter is nonzero and the
presented one is not larger, the assertion is refused as a possible cloned authenticator, after its
signature has verified (so a forger cannot make that claim) and with nothing changed.

The tables are named only by :mod:`etcwallet.identity.factors.store`; writes run as steps of the unit of
work, audited in the change's transaction, and time is the unit's clock (``now`` where a caller passes
its own). The relying party id and origin are parameters of every function here; the API derives them
from the request for now.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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

from etcwallet.core.clock import Clock, system_clock
from etcwallet.core.crypto import keyed_hash
from etcwallet.core.deps import Client
from etcwallet.identity.errors import IdentityError
from etcwallet.identity.factors import store
from etcwallet.identity.factors.types import Assertion as Assertion  # re-exported: callers name passkeys.X
from etcwallet.identity.factors.types import Ceremony as Ceremony
from etcwallet.identity.factors.types import CeremonyPurpose as CeremonyPurpose
from etcwallet.identity.factors.types import Passkey as Passkey
from etcwallet.identity.factors.types import PrincipalRef as PrincipalRef
from etcwallet.identity.sessions import service as sessions
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork

CHALLENGE_LIFETIME = timedelta(minutes=5)
RP_NAME = "ETC服务钱包"
MAX_PASSKEYS = 10
NAME_MAX = 64
DEFAULT_NAME = "通行密钥"

_MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError)

PoolOrUnit = AsyncConnectionPool | UnitOfWork
"""Where a ceremony's writes run: the unit of work (its clock), or a bare pool (the system clock)."""


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


def _unit_of_work(source: PoolOrUnit, now: datetime | None = None) -> UnitOfWork:
    if isinstance(source, UnitOfWork):
        return source if now is None else UnitOfWork(source.pool, clock=lambda: now)
    clock: Clock = system_clock if now is None else (lambda: now)
    return UnitOfWork(source, clock=clock)


async def _new_challenge(
    conn: AsyncConnection[Any],
    purpose: CeremonyPurpose,
    challenge: bytes,
    principal: PrincipalRef | None,
    now: datetime,
) -> tuple[UUID, datetime]:
    # Forget long-dead challenges now and then (cheap: the table only holds minutes of traffic).
    await store.delete_challenges_expired_before(conn, before=now - timedelta(hours=1))
    challenge_id = uuid4()
    expires_at = now + CHALLENGE_LIFETIME
    await store.insert_challenge(
        conn,
        challenge_id=challenge_id,
        purpose=purpose,
        challenge=challenge,
        principal=principal,
        expires_at=expires_at,
    )
    return challenge_id, expires_at


async def take_challenge(
    source: PoolOrUnit,
    *,
    challenge_id: UUID,
    purpose: CeremonyPurpose,
    principal: PrincipalRef | None,
    now: datetime | None = None,
) -> tuple[bytes, PrincipalRef | None]:
    """Spend a live challenge of this purpose (committed at once, so it can never answer twice).

    ``principal`` must match the one the challenge was issued to when it was issued to one; login
    challenges issued without a phone hint belong to nobody. Returns the challenge and whom it is bound to.
    Time is ``now``, else the unit of work's clock (the system clock for a bare pool).
    """
    uow = _unit_of_work(source, now)

    async def step(unit: Unit) -> tuple[store.SpentChallenge | None, datetime]:
        spent = await store.spend_challenge(
            unit.conn, challenge_id=challenge_id, purpose=purpose, now=unit.now
        )
        return spent, unit.now

    spent, at = await uow.run(step)  # committed even when the answer is then refused
    if spent is None or spent.expires_at <= at:
        raise IdentityError("webauthn_challenge_invalid")
    if principal is not None and spent.principal != principal:
        raise IdentityError("webauthn_challenge_invalid")
    return spent.challenge, spent.principal


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
    now: datetime | None = None,
) -> Ceremony:
    """Options to create a discoverable passkey for a signed-in principal (its own passkeys excluded)."""
    existing = await store.list_credentials(conn, principal_type=principal_type, principal_id=principal_id)
    if len(existing) >= MAX_PASSKEYS:
        raise too_many()
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=user_name,
        user_id=principal_id.bytes,  # the user handle: opaque, no personal data
        user_display_name=display_name,
        timeout=_timeout_ms(),
        exclude_credentials=[
            _descriptor(credential_id, transports) for credential_id, transports in existing
        ],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
    )
    challenge_id, expires = await _new_challenge(
        conn, "register", options.challenge, (principal_type, principal_id), now or system_clock()
    )
    return Ceremony(challenge_id, _options_dict(options), expires)


async def verify_registration(
    source: PoolOrUnit,
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

    The registration is a step of the unit of work, audited (``factor.passkey.register``, by ``actor``) in
    the transaction that stores it.
    """
    uow = _unit_of_work(source)
    challenge, _ = await take_challenge(
        uow, challenge_id=challenge_id, purpose="register", principal=(principal_type, principal_id)
    )
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

    async def step(unit: Unit) -> Passkey:
        await store.lock_principal_passkeys(unit.conn, principal_id=principal_id)
        count = await store.count_passkeys(
            unit.conn, principal_type=principal_type, principal_id=principal_id
        )
        if count >= MAX_PASSKEYS:
            raise too_many()
        key = await store.insert_passkey(
            unit.conn,
            passkey_id=uuid4(),
            principal_type=principal_type,
            principal_id=principal_id,
            credential_id=verified.credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=transports,
            name=label,
            now=unit.now,
        )
        if key is None:
            raise IdentityError("passkey_exists")
        detail = {"passkey_id": str(key.id), "name": key.name, "credential": fingerprint(credential)}
        target = (principal_type, str(principal_id))
        unit.audit(actor.event("factor.passkey.register", target=target, detail=detail))
        return key

    return await uow.run(step)


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
    now: datetime | None = None,
) -> Ceremony:
    """Options to assert a passkey: any discoverable one (no principal), or the principal's own.

    With a principal the challenge is bound to it and the options list its credentials; when it has
    none, ``decoy_ids`` are listed instead, so a phone hint does not reveal whether the number is
    registered (a principal-less login with decoys is the same as one with an unknown phone).
    """
    allow: list[PublicKeyCredentialDescriptor] = []
    if principal is not None:
        credentials = await store.list_credentials(
            conn, principal_type=principal[0], principal_id=principal[1]
        )
        allow = [_descriptor(credential_id, transports) for credential_id, transports in credentials]
    if not allow:
        allow = [_descriptor(d, ["internal", "hybrid"]) for d in decoy_ids]
    options = generate_authentication_options(
        rp_id=rp_id,
        timeout=_timeout_ms(),
        allow_credentials=allow,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    challenge_id, expires = await _new_challenge(
        conn, purpose, options.challenge, principal, now or system_clock()
    )
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
    now: datetime | None = None,
) -> Assertion:
    """Verify an assertion against a spent challenge and record the new counter (in the caller's transaction).

    ``principal`` restricts the answer to that principal's passkeys, ``principal_type`` to one kind of
    principal. Any failure raises with nothing written; the caller's transaction must roll back on it.
    The passkey's last use is ``now`` (the caller's clock).
    """
    invalid = assertion_invalid(refusal_status)
    try:
        parsed: AuthenticationCredential = parse_authentication_credential_json(credential)
    except _MALFORMED:
        raise invalid from None
    stored = await store.lock_passkey_by_credential(conn, credential_id=parsed.raw_id)
    if stored is None:
        raise invalid
    if principal is not None and (stored.principal_type, stored.principal_id) != principal:
        raise invalid
    if principal_type is not None and stored.principal_type != principal_type:
        raise invalid
    user_handle = parsed.response.user_handle
    if user_handle is not None and user_handle != stored.principal_id.bytes:
        raise invalid
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=stored.public_key,
            # The counter is checked below, after the signature, to name a clone as such.
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except _MALFORMED:
        raise invalid from None
    new_count = verified.new_sign_count
    if (new_count > 0 or stored.sign_count > 0) and new_count <= stored.sign_count:
        raise counter_regressed(refusal_status)
    await store.record_passkey_use(
        conn, passkey_id=stored.id, sign_count=new_count, now=now or system_clock()
    )
    return Assertion(stored.principal_type, stored.principal_id, stored.id, new_count)


async def login(
    source: PoolOrUnit,
    *,
    challenge_id: UUID,
    credential: dict[str, Any],
    rp_id: str,
    origin: str,
    client: Client,
) -> PasskeyLogin:
    """Sign a customer in with a passkey: verify, refuse frozen or closed accounts, open a session.

    The new session counts as stepped up (a user-verified passkey is two factors in one), and the sign-in
    is a step of the unit of work, audited (``customer.login.passkey``) in the transaction that opens it.
    Raises IdentityError when the assertion does not verify, LoginRefused when its customer may not sign in.
    """
    from etcwallet.identity.customers import store as customers

    uow = _unit_of_work(source)
    challenge, bound = await take_challenge(uow, challenge_id=challenge_id, purpose="login", principal=None)

    async def step(unit: Unit) -> PasskeyLogin:
        assertion = await verify_assertion(
            unit.conn,
            challenge=challenge,
            credential=credential,
            rp_id=rp_id,
            origin=origin,
            principal=bound,
            principal_type="customer",
            now=unit.now,
        )
        customer = await customers.get_customer(unit.conn, assertion.principal_id)
        if customer is None:
            raise assertion_invalid(401)
        if customer.status != "active":
            refusal = IdentityError(
                "account_frozen@passkey" if customer.status == "frozen" else "account_closed@passkey"
            )
            raise LoginRefused(refusal, assertion.principal_id)
        tokens = await sessions.issue(
            unit.conn,
            principal_type="customer",
            principal_id=assertion.principal_id,
            client=client,
            now=unit.now,
        )
        await sessions.record_step_up(unit.conn, session_id=tokens.session_id, factor="passkey", now=unit.now)
        target = ("customer", str(assertion.principal_id))
        detail: dict[str, object] = {
            "passkey_id": str(assertion.passkey_id),
            "session_id": str(tokens.session_id),
        }
        detail |= tokens.audit_detail()
        event = Actor(*target, client.ip, client.user_agent).event(
            "customer.login.passkey", target=target, detail=detail
        )
        unit.audit(event)
        return PasskeyLogin(assertion, tokens)

    return await uow.run(step)


# --- the principal's passkeys ----------------------------------------------------------------------------


async def list_passkeys(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID
) -> list[Passkey]:
    """A principal's passkeys, oldest first."""
    return await store.list_passkeys(conn, principal_type=principal_type, principal_id=principal_id)


async def has_passkey(conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID) -> bool:
    """Whether the principal has at least one passkey."""
    return await store.has_passkey(conn, principal_type=principal_type, principal_id=principal_id)


async def delete_passkey(
    conn: AsyncConnection[Any], *, principal_type: str, principal_id: UUID, passkey_id: UUID
) -> Passkey:
    """Remove one of the principal's own passkeys; someone else's (or no such) id is a 404."""
    key = await store.delete_passkey(
        conn, principal_type=principal_type, principal_id=principal_id, passkey_id=passkey_id
    )
    if key is None:
        raise IdentityError("passkey_not_found")
    return key


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
