"""The sessions' slice of identity's error table: {code: (status, zh, en, field)}.

``identity/errors.py`` merges it into ``IDENTITY_ERRORS``; raise ``IdentityError(code)`` as everywhere in
identity (a fresh error per raise). This module imports nothing of identity's, so that merge cannot cycle.
"""

from __future__ import annotations

# code -> (status, zh, en, field the code is about)
SESSION_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "refresh_token_reused": (
        401,
        "该刷新令牌已被使用过，为安全起见会话已结束，请重新登录",
        "this refresh token was already used: the session has been ended for safety, sign in again",
        "refresh_token",
    ),
    "session_not_found": (404, "会话不存在或已结束", "no such session, or it has ended", "session_id"),
}
