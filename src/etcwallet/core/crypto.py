"""Secrets at rest: AES-256-GCM field encryption with key rotation, keyed look-up hashes, opaque tokens.

A ciphertext blob is ``version (1 byte) || key id (1 byte) || nonce (12 bytes) || ciphertext+tag``.
The header and a caller-chosen *context* (the table and column, e.g. ``b"customer_profile.id_number"``)
are the associated data, so a blob cannot be swapped into another column or relabelled with another key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
_HEADER_SIZE = 2
MIN_BLOB_SIZE = _HEADER_SIZE + NONCE_SIZE + TAG_SIZE
MIN_LOOKUP_KEY_SIZE = 32
DEFAULT_KEY_ID = 1
KEYS_FILE = "keys.json"

ENV_ENCRYPTION_KEY = "ETCW_ENCRYPTION_KEY"
ENV_OLD_KEYS = "ETCW_ENCRYPTION_OLD_KEYS"
ENV_LOOKUP_KEY = "ETCW_LOOKUP_KEY"


class DecryptionError(Exception):
    """A blob that cannot be opened: tampered, truncated, or sealed under another key or context."""


class FieldCipher:
    """AES-256-GCM for one column value at a time; encrypts with the primary key, decrypts with any known key."""

    def __init__(
        self, primary: bytes, *, key_id: int = DEFAULT_KEY_ID, old_keys: Mapping[int, bytes] | None = None
    ) -> None:
        _check_key_id(key_id)
        _check_key(primary, key_id)
        keys: dict[int, AESGCM] = {key_id: AESGCM(primary)}
        for old_id, old_key in (old_keys or {}).items():
            _check_key_id(old_id)
            _check_key(old_key, old_id)
            if old_id == key_id:
                if not hmac.compare_digest(old_key, primary):
                    raise ValueError(f"key id {key_id} names both the primary key and a different old key")
                continue
            keys[old_id] = AESGCM(old_key)
        self._primary_id = key_id
        self._keys = keys

    @property
    def primary_key_id(self) -> int:
        """The key id new ciphertexts carry, so a re-encryption job can tell which rows are stale."""
        return self._primary_id

    @property
    def key_ids(self) -> frozenset[int]:
        """Every key id this cipher can decrypt."""
        return frozenset(self._keys)

    def encrypt(self, plaintext: str, *, context: bytes) -> bytes:
        """Seal a value for storage in the column named by ``context``, under the primary key."""
        _check_context(context)
        header = bytes((FORMAT_VERSION, self._primary_id))
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._keys[self._primary_id].encrypt(nonce, plaintext.encode("utf-8"), header + context)
        return header + nonce + sealed

    def decrypt(self, blob: bytes, *, context: bytes) -> str:
        """Open a blob read from the column named by ``context``; raises DecryptionError if it does not verify."""
        _check_context(context)
        key_id = key_id_of(blob)
        aead = self._keys.get(key_id)
        if aead is None:
            raise DecryptionError(f"ciphertext names key id {key_id}, which is not configured")
        header = bytes(blob[:_HEADER_SIZE])
        nonce = bytes(blob[_HEADER_SIZE : _HEADER_SIZE + NONCE_SIZE])
        try:
            plain = aead.decrypt(nonce, bytes(blob[_HEADER_SIZE + NONCE_SIZE :]), header + context)
        except InvalidTag:
            raise DecryptionError(
                "ciphertext failed authentication (tampered, wrong key, or wrong context)"
            ) from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError("decrypted value is not UTF-8 text") from None

    def needs_rotation(self, blob: bytes) -> bool:
        """Whether a stored blob was sealed under an older key and should be re-encrypted."""
        return key_id_of(blob) != self._primary_id

    def __repr__(self) -> str:  # never show key material
        return f"FieldCipher(primary_key_id={self._primary_id}, key_ids={sorted(self._keys)})"


def key_id_of(blob: bytes) -> int:
    """The key id a blob names, after checking its format version and length."""
    if len(blob) < MIN_BLOB_SIZE:
        raise DecryptionError(f"ciphertext too short ({len(blob)} bytes, at least {MIN_BLOB_SIZE} expected)")
    if blob[0] != FORMAT_VERSION:
        raise DecryptionError(f"unknown ciphertext format version {blob[0]}")
    return blob[1]


def _check_key_id(key_id: int) -> None:
    if not 0 <= key_id <= 255:
        raise ValueError(f"key id must fit one byte (0-255), got {key_id}")


def _check_key(key: bytes, key_id: int) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"key {key_id} must be {KEY_SIZE} bytes for AES-256, got {len(key)}")


def _check_context(context: bytes) -> None:
    if not context:
        raise ValueError("an encryption context (e.g. b'table.column') is required")


def normalize_for_lookup(value: str) -> str:
    """The form keyed_hash hashes: NFKC, no whitespace, upper case (so 'x' and 'X' check digits match)."""
    text = unicodedata.normalize("NFKC", value)
    return "".join(text.split()).upper()


def keyed_hash(value: str, key: bytes) -> bytes:
    """HMAC-SHA256 of the normalized value, so an encrypted column can be searched by equality."""
    if len(key) < MIN_LOOKUP_KEY_SIZE:
        raise ValueError(f"lookup key must be at least {MIN_LOOKUP_KEY_SIZE} bytes")
    return hmac.new(key, normalize_for_lookup(value).encode("utf-8"), hashlib.sha256).digest()


def hash_token(token: str) -> bytes:
    """SHA-256 of an opaque token, so a leaked table of sessions holds nothing a client could present."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token(nbytes: int = 32) -> str:
    """A fresh unguessable URL-safe token (session, refresh, ticket)."""
    return secrets.token_urlsafe(nbytes)


# --- keys from configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """The process's key material: the field cipher and the look-up (HMAC) key."""

    cipher: FieldCipher
    lookup_key: bytes = field(repr=False)
    source: str = "environment"


def generate_key() -> str:
    """A new random 32-byte key as base64, the form the configuration takes."""
    return base64.b64encode(os.urandom(KEY_SIZE)).decode("ascii")


def _b64(value: str, name: str) -> bytes:
    text = value.strip()
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SystemExit(f"{name} is not valid base64") from None


def _parse_key(value: str, name: str, *, default_id: int | None) -> tuple[int, bytes]:
    head, sep, tail = value.strip().partition(":")
    if sep:
        if not head.strip().isdigit() or not 0 <= int(head) <= 255:
            raise SystemExit(f"{name}: key id must be a number from 0 to 255 before the ':'")
        key_id, encoded = int(head), tail
    elif default_id is None:
        raise SystemExit(f"{name}: each old key must be written as id:base64")
    else:
        key_id, encoded = default_id, head
    key = _b64(encoded, name)
    if len(key) != KEY_SIZE:
        raise SystemExit(f"{name}: key {key_id} must decode to {KEY_SIZE} bytes, got {len(key)}")
    return key_id, key


def _parse_old_keys(value: str | None, name: str) -> dict[int, bytes]:
    old: dict[int, bytes] = {}
    for item in (value or "").split(","):
        if item.strip():
            key_id, key = _parse_key(item, name, default_id=None)
            if key_id in old:
                raise SystemExit(f"{name}: key id {key_id} appears twice")
            old[key_id] = key
    return old


def _parse_lookup(value: str, name: str) -> bytes:
    key = _b64(value, name)
    if len(key) < MIN_LOOKUP_KEY_SIZE:
        raise SystemExit(f"{name} must decode to at least {MIN_LOOKUP_KEY_SIZE} bytes, got {len(key)}")
    return key


def create_secret_file_once(path: Path, content: Mapping[str, str]) -> None:
    """Write ``content`` as JSON to ``path`` (mode 0600) unless the file exists; when several workers start
    at once, the first to link its file wins and the others' are dropped, so all read the same keys."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(dict(content), fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use its keys
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_or_create_keys_file(path: Path) -> dict[str, str]:
    """Read ``keys.json``, creating it (mode 0600) first if absent; safe when several workers start at once."""
    if not path.exists():
        create_secret_file_once(
            path, {"encryption_key": f"{DEFAULT_KEY_ID}:{generate_key()}", "lookup_key": generate_key()}
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read the development key file {path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("encryption_key", "lookup_key")
    ):
        raise SystemExit(f"{path} must hold string fields 'encryption_key' and 'lookup_key'")
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str)}


def load_keys(
    settings_value: str | None,
    data_dir: Path,
    production: bool,
    *,
    old_keys: str | None = None,
    lookup_key: str | None = None,
) -> Keys:
    """Build the process's keys from configuration; outside production, missing ones come from <data_dir>/keys.json.

    ``settings_value`` is ``ETCW_ENCRYPTION_KEY`` (base64, or ``id:base64`` to choose the key id, default 1),
    ``old_keys`` is ``ETCW_ENCRYPTION_OLD_KEYS`` (comma-separated ``id:base64``, decrypt only) and
    ``lookup_key`` is ``ETCW_LOOKUP_KEY`` (base64, at least 32 bytes). In production a missing key is a
    startup error (SystemExit); nothing is ever generated there, and key values never appear in messages.
    """
    enc = settings_value if settings_value and settings_value.strip() else None
    look = lookup_key if lookup_key and lookup_key.strip() else None
    source = "environment"
    old_text = old_keys
    if enc is None or look is None:
        if production:
            missing = [n for n, v in ((ENV_ENCRYPTION_KEY, enc), (ENV_LOOKUP_KEY, look)) if v is None]
            raise SystemExit(
                f"missing {' and '.join(missing)}: production needs its keys from configuration "
                f'(base64 of 32 random bytes each; e.g. python -c "import base64,os;'
                f'print(base64.b64encode(os.urandom(32)).decode())")'
            )
        stored = _read_or_create_keys_file(Path(data_dir) / KEYS_FILE)
        enc = enc or stored["encryption_key"]
        look = look or stored["lookup_key"]
        if old_text is None:
            old_text = stored.get("old_keys")
        source = str(Path(data_dir) / KEYS_FILE)
    key_id, primary = _parse_key(enc, ENV_ENCRYPTION_KEY, default_id=DEFAULT_KEY_ID)
    old = _parse_old_keys(old_text, ENV_OLD_KEYS)
    try:
        cipher = FieldCipher(primary, key_id=key_id, old_keys=old)
    except ValueError as exc:
        raise SystemExit(f"{ENV_OLD_KEYS}: {exc}") from None
    return Keys(cipher=cipher, lookup_key=_parse_lookup(look, ENV_LOOKUP_KEY), source=source)
