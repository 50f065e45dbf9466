"""Security headers on every answer, the fast lane's, error answers and unknown paths' 404s included.

:class:`SecurityHeaders` is a pure ASGI middleware placed outermost (around the fast lane,
:class:`~etcwallet.core.http.HotRoutes`), so no answer can leave without its headers:

- ``X-Content-Type-Options: nosniff``: a browser never guesses a type other than the one declared;
- ``Content-Security-Policy: frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (for browsers
  without CSP 2): no page of ours can be framed by another site (clickjacking);
- ``Referrer-Policy: no-referrer``: URLs of ours (which may name ids) never travel to other sites;
- ``Cache-Control: no-store`` on every answer under ``/api/``: the API answers tokens and personal data,
  and the simplest rule that cannot miss one is to let no cache (browser, proxy) keep any API answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIX = "/api/"

ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
NO_STORE: tuple[bytes, bytes] = (b"cache-control", b"no-store")
_ALWAYS_NAMES = frozenset(name for name, _ in ALWAYS)


class SecurityHeaders:
    """Add the security headers to the start of every HTTP answer (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith(API_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(message.get("headers", ()), api=api)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def with_security_headers(headers: Iterable[tuple[bytes, bytes]], *, api: bool) -> list[tuple[bytes, bytes]]:
    """``headers`` (raw ASGI pairs) with ours set: theirs of the same names replaced, and for an API answer
    any ``Cache-Control`` replaced by ``no-store``."""
    replaced = _ALWAYS_NAMES | {NO_STORE[0]} if api else _ALWAYS_NAMES
    kept = [(k, v) for k, v in headers if k.lower() not in replaced]
    kept.extend(ALWAYS)
    if api:
        kept.append(NO_STORE)
    return kept
