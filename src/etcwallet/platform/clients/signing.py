"""How a machine signs a request, and how the server checks it: the one definition both sides use.

The signature is HMAC-SHA256, under the client's secret, of six lines joined by ``\\n``::

    ETCW1-HMAC-SHA256
    POST                                   (the method, upper case)
    /api/v1/machine/heartbeat?x=1          (the path and query exactly as sent, percent-encoding and all)
    1764806400                             (the timestamp: Unix seconds, X-Etcw-Timestamp)
    3q2-7wEXAMPLEnonce                     (the nonce: 16-64 of A-Z a-z 0-9 _ -, X-Etcw-Nonce)
    e3b0c44298fc1c149afbf4c8996fb924...    (SHA-256 of the body as sent, hex; of nothing for a GET)

sent as 64 hex digits in ``X-Etcw-Signature``, with the client's id in ``X-Etcw-Client``. The server
refuses a timestamp more than :data:`WINDOW_SECONDS` from its clock and a nonce it has seen within the
window, so a captured request can be sent neither later nor twice; every attempt needs a fresh nonce.
No I/O here: payment-provider simulators and the tests sign with :func:`sign`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from uuid import UUID

ALGORITHM = "ETCW1-HMAC-SHA256"
HEADER_CLIENT = "X-Etcw-Client"
HEADER_TIMESTAMP = "X-Etcw-Timestamp"
HEADER_NONCE = "X-Etcw-Nonce"
HEADER_SIGNATURE = "X-Etcw-Signature"
WINDOW_SECONDS = 300
"""How far a request's timestamp may be from the server's clock, either way."""

HMAC_SECRET_PREFIX = "etcws_"
"""Every HMAC secret starts so (and every bearer key with :data:`BEARER_KEY_PREFIX`), so secret scanners
and the gate can tell them from session tokens."""
BEARER_KEY_PREFIX = "etcwk_"

NONCE_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")
TIMESTAMP_PATTERN = re.compile(r"^[0-9]{1,12}$")
SIGNATURE_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")


def new_secret(prefix: str) -> str:
    """A fresh secret or key: the prefix and 256 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def string_to_sign(method: str, target: str, timestamp: int | str, nonce: str, body: bytes) -> bytes:
    """The bytes the signature covers (see the module's docstring)."""
    lines = (ALGORITHM, method.upper(), target, str(timestamp), nonce, hashlib.sha256(body).hexdigest())
    return "\n".join(lines).encode("utf-8")


def signature(secret: str, method: str, target: str, timestamp: int | str, nonce: str, body: bytes) -> str:
    """The request's signature under ``secret``, as 64 lower-case hex digits."""
    message = string_to_sign(method, target, timestamp, nonce, body)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_matches(expected: str, sent: str) -> bool:
    """Whether the sent signature is the expected one, compared in constant time (hex of either case)."""
    return hmac.compare_digest(expected.encode("ascii"), sent.lower().encode("ascii"))


def sign(
    client_id: UUID | str,
    secret: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that sign one request: ``target`` is the path and query as they will be sent."""
    ts = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or secrets.token_urlsafe(18)
    return {
        HEADER_CLIENT: str(client_id),
        HEADER_TIMESTAMP: str(ts),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(secret, method, target, ts, nonce, body),
    }


def request_target(raw_path: bytes, query_string: bytes) -> str:
    """The path and query a request was sent with, as the client signed them.

    ASGI servers disagree on whether ``raw_path`` holds the query (uvicorn's does not, httpx's test
    transport's does), so the query is cut off it and ``query_string`` appended.
    """
    path = raw_path.split(b"?", 1)[0].decode("latin-1")
    return f"{path}?{query_string.decode('latin-1')}" if query_string else path
