"""A software WebAuthn authenticator for tests: EC P-256 (ES256) keys, "none" attestation, user verified.

``create`` answers registration options as ``navigator.credentials.create()`` would (RegistrationResponseJSON)
and ``get`` answers authentication options (AuthenticationResponseJSON), signing
``authenticatorData || SHA-256(clientDataJSON)`` and counting each signature. Credentials are discoverable
(they keep the user handle), so ``get`` works with an empty allow list.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP, FLAG_UV, FLAG_AT = 0x01, 0x04, 0x40
AAGUID = bytes(16)


def b64url(data: bytes) -> str:
    """Unpadded base64url, as WebAuthn JSON uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _options(options_json: str | dict[str, Any]) -> dict[str, Any]:
    data = json.loads(options_json) if isinstance(options_json, str) else options_json
    return data.get("public_key", data)  # accept the API's {challenge_id, public_key} wrapper too


@dataclass
class Credential:
    """One credential the authenticator holds."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
        # COSE_Key: kty EC2 (2), alg ES256 (-7), crv P-256 (1), x, y
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: x, -3: y})


@dataclass
class SoftwareAuthenticator:
    """A platform authenticator in memory; ``counter_step`` 0 imitates authenticators that never count."""

    counter_step: int = 1
    user_verified: bool = True
    credentials: dict[bytes, Credential] = field(default_factory=dict)

    def clone(self) -> SoftwareAuthenticator:
        """A copy with the same keys and counters (a cloned authenticator)."""
        return SoftwareAuthenticator(
            self.counter_step,
            self.user_verified,
            {k: copy.copy(v) for k, v in self.credentials.items()},
        )

    def _flags(self, *extra: int) -> int:
        flags = FLAG_UP | (FLAG_UV if self.user_verified else 0)
        for f in extra:
            flags |= f
        return flags

    def create(
        self, options_json: str | dict[str, Any], origin: str, *, credential_id: bytes | None = None
    ) -> dict[str, Any]:
        """Make a new credential for the options' RP and user; answers RegistrationResponseJSON.

        ``credential_id`` forces the new credential's id (to test a duplicate registration).
        """
        opts = _options(options_json)
        rp_id = opts["rp"]["id"]
        excluded = {unb64url(c["id"]) for c in opts.get("excludeCredentials") or []}
        if excluded & set(self.credentials):
            raise RuntimeError(
                "InvalidStateError: a credential in excludeCredentials is on this authenticator"
            )
        cred = Credential(
            credential_id or os.urandom(32),
            ec.generate_private_key(ec.SECP256R1()),
            rp_id,
            unb64url(opts["user"]["id"]),
        )
        self.credentials[cred.credential_id] = cred
        client_data = json.dumps(
            {
                "type": "webauthn.create",
                "challenge": opts["challenge"],
                "origin": origin,
                "crossOrigin": False,
            },
            separators=(",", ":"),
        ).encode()
        attested = (
            AAGUID + struct.pack(">H", len(cred.credential_id)) + cred.credential_id + cred.cose_public_key()
        )
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + bytes([self._flags(FLAG_AT)])
            + struct.pack(">I", cred.sign_count)
            + attested
        )
        attestation_object = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(cred.credential_id),
            "rawId": b64url(cred.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": ["internal", "hybrid"],
            },
        }

    def get(
        self,
        options_json: str | dict[str, Any],
        origin: str,
        *,
        credential_id: bytes | None = None,
        rp_id: str | None = None,
    ) -> dict[str, Any]:
        """Sign the options' challenge with a credential for its RP; answers AuthenticationResponseJSON."""
        opts = _options(options_json)
        rp = rp_id or opts["rpId"]
        allowed = [unb64url(c["id"]) for c in opts.get("allowCredentials") or []]
        candidates = [
            c
            for c in self.credentials.values()
            if c.rp_id == rp
            and (not allowed or c.credential_id in allowed)
            and (credential_id is None or c.credential_id == credential_id)
        ]
        if not candidates:
            raise RuntimeError("NotAllowedError: no credential for this RP on this authenticator")
        cred = candidates[0]
        cred.sign_count += self.counter_step
        client_data = json.dumps(
            {"type": "webauthn.get", "challenge": opts["challenge"], "origin": origin, "crossOrigin": False},
            separators=(",", ":"),
        ).encode()
        auth_data = (
            hashlib.sha256(rp.encode()).digest() + bytes([self._flags()]) + struct.pack(">I", cred.sign_count)
        )
        signature = cred.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(cred.credential_id),
            "rawId": b64url(cred.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(cred.user_handle),
            },
        }


# --- customers and sessions for the identity tests (made directly, not through the sign-up flow) ---------


def random_phone() -> str:
    """A random mainland mobile number, so tests never collide."""
    return "139" + f"{int.from_bytes(os.urandom(4), 'big') % 10**8:08d}"


async def make_customer(pool: Any, *, status: str = "active") -> tuple[Any, str]:
    """Insert a customer (id, phone) with a password hash; frozen when ``status`` says so."""
    from uuid import uuid4

    from etcwallet.identity.passwords import hash_secret

    customer_id, phone = uuid4(), random_phone()
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO customers (id, phone, password_hash, status) VALUES (%s, %s, %s, %s)",
            (customer_id, phone, hash_secret("Pass-word-2026"), status),
        )
    return customer_id, phone


async def open_session(
    pool: Any, customer_id: Any, *, stepped_up: bool = False
) -> tuple[dict[str, str], Any]:
    """A fresh session for the customer: (Authorization headers, session id)."""
    from etcwallet.core.deps import Client
    from etcwallet.identity.sessions import service as sessions

    async with pool.connection() as conn:
        tokens = await sessions.issue(
            conn, principal_type="customer", principal_id=customer_id, client=Client("10.0.0.1", "pytest")
        )
        if stepped_up:
            await sessions.record_step_up(conn, session_id=tokens.session_id, factor="test")
    return {"Authorization": f"Bearer {tokens.access_token}"}, tokens.session_id
