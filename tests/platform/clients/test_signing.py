"""The signing scheme both sides use: what the signature covers, and the target the server rebuilds."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from etcwallet.platform.clients import signing

SECRET = "etcws_test-secret"


def test_the_string_to_sign_is_six_lines() -> None:
    body = b'{"status":"ok"}'
    assert signing.string_to_sign("post", "/api/v1/machine/heartbeat?a=1", 1764806400, "n" * 16, body) == (
        b"ETCW1-HMAC-SHA256\nPOST\n/api/v1/machine/heartbeat?a=1\n1764806400\n"
        + b"n" * 16
        + b"\n"
        + hashlib.sha256(body).hexdigest().encode()
    )


def test_a_known_signature() -> None:
    """A vector a partner can check an implementation against (computed here with the standard library)."""
    message = (
        "ETCW1-HMAC-SHA256\nGET\n/api/v1/machine/whoami\n1764806400\nAAAAAAAAAAAAAAAA\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    expected = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    got = signing.signature(SECRET, "GET", "/api/v1/machine/whoami", 1764806400, "A" * 16, b"")
    assert got == expected and len(got) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"method": "PUT"},
        {"target": "/api/v1/machine/whoami?x=1"},
        {"timestamp": 1764806401},
        {"nonce": "B" * 16},
        {"body": b"{}"},
    ],
)
def test_every_part_is_covered(change: dict[str, object]) -> None:
    base: dict[str, object] = {
        "method": "GET",
        "target": "/api/v1/machine/whoami",
        "timestamp": 1764806400,
        "nonce": "A" * 16,
        "body": b"",
    }
    assert signing.signature(SECRET, **base) != signing.signature(SECRET, **(base | change))  # type: ignore[arg-type]


def test_signature_comparison_accepts_either_case_and_nothing_else() -> None:
    sig = signing.signature(SECRET, "GET", "/", 1, "A" * 16, b"")
    assert signing.signature_matches(sig, sig.upper())
    assert not signing.signature_matches(sig, sig[:-1] + ("0" if sig[-1] != "0" else "1"))


def test_sign_builds_the_four_headers() -> None:
    headers = signing.sign("0195f3a2-7c1e-7000-8000-000000000001", SECRET, "GET", "/p", timestamp=5)
    assert headers[signing.HEADER_CLIENT] == "0195f3a2-7c1e-7000-8000-000000000001"
    assert headers[signing.HEADER_TIMESTAMP] == "5"
    assert signing.NONCE_PATTERN.fullmatch(headers[signing.HEADER_NONCE])
    assert headers[signing.HEADER_SIGNATURE] == signing.signature(
        SECRET, "GET", "/p", 5, headers[signing.HEADER_NONCE], b""
    )
    assert signing.sign("c", SECRET, "GET", "/p")[signing.HEADER_NONCE] != headers[signing.HEADER_NONCE]


@pytest.mark.parametrize(
    ("raw_path", "query", "target"),
    [
        (b"/api/v1/machine/whoami", b"", "/api/v1/machine/whoami"),
        (b"/api/v1/machine/whoami", b"a=1&b=%20", "/api/v1/machine/whoami?a=1&b=%20"),
        (b"/api/v1/machine/whoami?a=1&b=%20", b"a=1&b=%20", "/api/v1/machine/whoami?a=1&b=%20"),  # httpx's
        (b"/api/v1/x%2Fy", b"", "/api/v1/x%2Fy"),  # as sent, not decoded
    ],
)
def test_the_target_is_the_path_and_query_as_sent(raw_path: bytes, query: bytes, target: str) -> None:
    assert signing.request_target(raw_path, query) == target


def test_secrets_carry_their_prefix_and_256_bits() -> None:
    secret = signing.new_secret(signing.HMAC_SECRET_PREFIX)
    assert secret.startswith("etcws_") and len(secret) == 6 + 43
    assert signing.new_secret(signing.BEARER_KEY_PREFIX) != signing.new_secret(signing.BEARER_KEY_PREFIX)
