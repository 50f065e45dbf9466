"""Masks for personal data in every response and log line, and a structlog processor applying them.

Conventions: ID numbers keep the first and last 4 characters, phones the first 3 and last 4 digits, bank
cards the first and last 4 digits, names the surname (first character). Short values show less, never all.
Key material and cryptograms (passwords, tokens, codes, master keys ``mk_*``, KEKs, MACs and TACs of the
card protocol, HMAC signatures, client secrets) are replaced by ``***`` whole. In log lines, card numbers
(16 to 19 digits) are also masked where they appear in free text: the message and unclassified values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from functools import lru_cache
from typing import Any

STARS = "***"
_SEPARATORS = re.compile(r"[\s\-]+")


def _stars(value: str, head: int, tail: int) -> str:
    n = len(value)
    if head + tail >= n:  # too short to show anything safely
        return "*" * n
    return value[:head] + "*" * (n - head - tail) + (value[n - tail :] if tail else "")


def mask_id_number(number: str) -> str:
    """An ID number with only its first and last 4 characters visible (fewer when it is short)."""
    value = _SEPARATORS.sub("", number)
    keep = 4 if len(value) >= 12 else len(value) // 4
    return _stars(value, keep, keep)


def mask_phone(phone: str) -> str:
    """A phone number with the first 3 and last 4 characters visible: 138****5678."""
    value = _SEPARATORS.sub("", phone)
    if len(value) >= 11:
        return _stars(value, 3, 4)
    keep = len(value) // 4
    return _stars(value, keep, keep)


def mask_bank_card(number: str) -> str:
    """A bank card number as '6222 **** **** 0123': first and last 4 digits, in groups."""
    value = _SEPARATORS.sub("", number)
    if len(value) >= 12:
        return f"{value[:4]} **** **** {value[-4:]}"
    tail = len(value) // 4
    return "****" + (f" {value[-tail:]}" if tail else "")


def mask_name(name: str) -> str:
    """A person's name with only the surname (first character) visible: 张三丰 -> 张**, 张三 -> 张*."""
    value = name.strip()
    if len(value) <= 1:
        return "*" * len(value)
    return value[0] + "*" * (len(value) - 1)


# --- free text ---------------------------------------------------------------------------------------

# Full-width digits, letters, space and hyphen read as their ASCII forms, one character for one, so a
# match's span in the folded text is its span in the original.
_FOLD = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_GAP = r"[ \-]?"  # numbers are written with single spaces or hyphens between groups
_NUMBER_IN_TEXT = re.compile(
    r"(?<![0-9])(?:"
    rf"(?P<phone>(?:(?:\+|00)?86{_GAP})?1[3-9][0-9](?:{_GAP}[0-9]){{8}})(?![0-9])"  # mainland mobile
    rf"|(?P<long>[0-9](?:{_GAP}[0-9]){{11,18}}(?:{_GAP}[Xx])?)(?![0-9A-Za-z])"  # ID numbers, bank cards
    r"|(?<![A-Za-z])(?P<permit>[A-Za-z]{1,2}[0-9]{7,10})(?![0-9A-Za-z])"  # passports, permits
    r")"
)


def mask_free_text(text: str) -> str:
    """Free text (a freeze reason, a note) with phone numbers, ID numbers, passport and permit numbers and
    bank card numbers in it masked as their fields are; the rest is left as written. Idempotent."""
    folded = text.translate(_FOLD)
    parts: list[str] = []
    end = 0
    for match in _NUMBER_IN_TEXT.finditer(folded):
        value = _SEPARATORS.sub("", match.group(0))
        parts += [
            text[end : match.start()],
            mask_phone(value) if match.group("phone") else mask_id_number(value),
        ]
        end = match.end()
    return "".join(parts) + text[end:] if parts else text


# A card number written in free text: 16 to 19 digits (bank cards), or 20 (an ETC user card: a 4-digit
# network number and 16 digits), perhaps grouped by single spaces or hyphens, and not part of a longer token
# (an id, a UUID's segments, a file name), so that only numbers standing alone match.
_CARD_IN_TEXT = re.compile(r"(?<![0-9A-Za-z_.\-])[0-9](?:[ \-]?[0-9]){15,19}(?![0-9A-Za-z_\-])")


def mask_card_numbers(text: str) -> str:
    """Free text with every card number in it (16-20 digits standing alone) masked as a bank card field is."""
    folded = text.translate(_FOLD)
    parts: list[str] = []
    end = 0
    for match in _CARD_IN_TEXT.finditer(folded):
        parts += [text[end : match.start()], mask_bank_card(match.group(0))]
        end = match.end()
    return "".join(parts) + text[end:] if parts else text


# --- log processor -----------------------------------------------------------------------------------

_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "passphrase", "pin", "secret", "secrets", "token", "tokens", "otp",
        "totp", "cvv", "cvv2", "cvn", "apikey", "credential", "credentials", "authorization", "cookie",
        "signature", "csrf",
        # card and terminal key material and cryptograms (PBOC / ETC load and purchase: MAC1-3, TAC)
        "mac", "mac1", "mac2", "mac3", "tac", "hmac", "kek", "dek", "zmk", "tmk", "zpk", "tpk", "mak", "pik",
        "pinblock", "track1", "track2", "track3",
        "dlk", "dpk", "dtk",  # an ETC card's load, purchase and TAC keys
    }
)  # fmt: skip
_SECRET_KEY_SUFFIXES = (
    "api_key", "private_key", "secret_key", "encryption_key", "lookup_key", "access_key", "master_key",
    "session_key", "load_key", "purchase_key", "derived_key", "card_key", "transport_key", "mac_key",
    "pin_key", "data_key", "signing_key", "hmac_key", "client_key", "machine_key", "root_key",
    "maintenance_key", "issuer_key",
)  # fmt: skip
_SECRET_KEY_PREFIXES = frozenset({"mk"})  # mk_dcc, mk_load, mkPurchase: card master keys
# "code" alone is a one-time code; these prefixes make "<prefix>_code" one too ("status_code" is not).
_SECRET_CODE_PREFIXES = frozenset(
    {
        "sms", "otp", "totp", "verify", "verification", "auth", "authorization", "captcha", "login",
        "recovery", "backup", "reset", "activation", "confirm", "confirmation", "security", "pay",
        "payment", "one_time",
    }
)  # fmt: skip
# A trailing word that makes the key describe the value rather than hold it ("token_expires_at").
_METADATA_SUFFIXES = frozenset(
    {"id", "ids", "count", "type", "kind", "len", "length", "at", "expires", "expiry", "policy", "rule",
     "address"}  # a lane's mac_address is no MAC
)  # fmt: skip
_ID_KEYS = (
    "id_number", "idnumber", "id_no", "id_card", "idcard", "id_card_no", "id_card_number", "resident_id",
    "resident_id_number", "identity_number", "identity_card", "cert_no", "certificate_number",
)  # fmt: skip
_CARD_KEYS = (
    "bank_card", "bankcard", "bank_card_no", "bank_card_number", "card_pan", "pan", "card_no", "cardno",
    "card_number", "card_num", "bank_account_no", "bank_account_number",
)  # fmt: skip
_PHONE_WORDS = frozenset({"phone", "mobile", "msisdn", "tel", "telephone"})
_NAME_KEYS = frozenset(
    {"real_name", "full_name", "legal_name", "holder_name", "cardholder_name", "customer_name"}
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _words(key: str) -> list[str]:
    return [w for w in re.split(r"[_\-.\s]+", _CAMEL.sub("_", key).lower()) if w]


def _ends_with(joined: str, names: tuple[str, ...] | frozenset[str]) -> bool:
    return any(joined == n or joined.endswith("_" + n) for n in names)


@lru_cache(maxsize=2048)
def _masker(key: str) -> str | None:
    """Which mask a log key calls for: 'secret', 'id', 'card', 'phone', 'name', or None."""
    words = _words(key)
    if not words:
        return None
    joined = "_".join(words)
    if _ends_with(joined, _ID_KEYS):
        return "id"
    if _ends_with(joined, _CARD_KEYS):
        return "card"
    if len(words) > 1 and words[-1] in _METADATA_SUFFIXES:
        return None
    if any(w in _SECRET_WORDS for w in words) or _ends_with(joined, _SECRET_KEY_SUFFIXES):
        return "secret"
    if words[0] in _SECRET_KEY_PREFIXES:
        return "secret"
    if words[-1] == "code" and (len(words) == 1 or _ends_with("_".join(words[:-1]), _SECRET_CODE_PREFIXES)):
        return "secret"
    if any(w in _PHONE_WORDS for w in words):
        return "phone"
    if joined in _NAME_KEYS:
        return "name"
    return None


def _apply(kind: str, value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Mapping):
        return {k: _apply(kind, v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_apply(kind, v) for v in value]
    if kind == "secret":
        return STARS
    text = str(value)
    if kind == "id":
        return mask_id_number(text)
    if kind == "phone":
        return mask_phone(text)
    if kind == "card":
        return mask_bank_card(text)
    return mask_name(text)


def mask_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with sensitive keys masked, nested mappings and lists included."""
    return {key: _mask_value(key, value) for key, value in data.items()}


def _mask_value(key: Any, value: Any) -> Any:
    kind = _masker(key) if isinstance(key, str) else None
    if kind is not None:
        return _apply(kind, value)
    if isinstance(value, str):
        return mask_card_numbers(value)
    if isinstance(value, Mapping):
        return mask_mapping(value)
    if isinstance(value, list | tuple):
        return [_mask_value(None, v) for v in value]
    return value


def mask_secrets_processor(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask ID numbers, phones, bank cards, names; replace passwords, tokens, codes and
    key material with ***; mask card numbers written in the message or in other text."""
    for key in list(event_dict):
        value = event_dict[key]
        if key == "event":
            event_dict[key] = mask_card_numbers(value) if isinstance(value, str) else value
            continue
        event_dict[key] = _mask_value(key, value)
    return event_dict
