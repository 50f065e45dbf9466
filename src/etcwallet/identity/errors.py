"""Identity's refusal codes, each with its HTTP status, a sentence in zh-CN and English, and its field.

Every refusal is built fresh from this table when it is raised (:class:`IdentityError`), never kept in a
module-level instance: an exception object raised twice keeps the frames of every raise on its traceback,
and with them the locals of earlier requests (a failed sign-in's password among them).

A few codes are answered with different sentences in different places (a customer signs in with a phone
number, staff with a username); those are keyed ``code@where``, and the answer's code is the part before
the ``@``. A sentence may name a value in braces (``{retry_after}``): it is filled from the error's extra
fields (which the answer carries too) or from ``text`` (which it does not).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from etcwallet.core.errors import DomainError

Entry = tuple[int, str, str, str | None]
"""(status, zh, en, field the code is about)"""

SHARED_ERRORS: dict[str, Entry] = {
    # --- authentication and authorization
    "unauthenticated": (
        401, "请先登录（令牌缺失、无效或已过期）", "sign in first: the token is missing, invalid or expired", "Authorization",
    ),
    "forbidden": (403, "无权执行此操作", "you are not allowed to do this", None),
    "csrf_failed": (403, "CSRF 校验失败", "CSRF token missing or wrong", "X-CSRF-Token"),
    "rate_limited": (
        429, "请求过于频繁，请 {retry_after} 秒后再试", "too many attempts; try again in {retry_after} s", None,
    ),
    "account_locked": (
        423, "登录失败次数过多，账户已锁定至 {locked_until}", "too many failed sign-ins: locked until {locked_until}", None,
    ),
    "invalid_credentials": (401, "手机号或密码错误", "wrong phone number or password", "password"),
    "invalid_credentials@staff": (401, "用户名或密码错误", "wrong username or password", "password"),
    "login_ticket_invalid": (
        401, "登录已过期，请重新输入密码", "the sign-in has expired: enter the password again", "ticket",
    ),
    "second_factor_invalid": (401, "动态验证码或恢复码错误或已使用", "wrong or already used code", "code"),
    "totp_invalid": (401, "动态验证码错误或已使用", "wrong or already used code", "code"),
    "enrollment_code_required": (
        401, "首次登录须同时提供动态验证码绑定码（由另一位管理员发放）",
        "the first sign-in needs the TOTP enrollment code too (issued by another administrator)", "enrollment_code",
    ),
    "enrollment_code_invalid": (
        401, "绑定码错误、已使用或已过期", "the enrollment code is wrong, used or expired", "enrollment_code",
    ),
    # --- SMS codes
    "sms_cooldown": (
        429, "验证码发送过于频繁，请 {retry_after} 秒后再试", "wait {retry_after} s before asking for another code", "phone",
    ),
    "sms_code_invalid": (422, "验证码错误", "wrong verification code", "sms_code"),
    "sms_code_expired": (
        422, "验证码已过期或已使用，请重新获取", "the code has expired or was used: ask for a new one", "sms_code",
    ),
    "sms_code_required": (
        422, "修改已登记的实名信息需要短信验证码（用途 profile_change）",
        "changing real-name data on file needs an SMS code (purpose profile_change)", "sms_code",
    ),
    "invalid_anchor": (
        422, "锚点格式应为 序号:64位十六进制哈希", "an anchor is SEQ:HASH, the hash 64 hex digits", "anchor",
    ),
}  # fmt: skip


@cache
def error_table() -> Mapping[str, Entry]:
    """The shared codes above merged with each sub-package's slice (its ``errors.py``).

    Merged on first use, not at import: a slice's module builds its refusals with :class:`IdentityError`,
    so importing the slices here would be circular.
    """
    from etcwallet.identity.audit.errors import AUDIT_ERRORS
    from etcwallet.identity.customers.errors import CUSTOMER_ERRORS
    from etcwallet.identity.factors.errors import FACTOR_ERRORS
    from etcwallet.identity.sessions.errors import SESSION_ERRORS
    from etcwallet.identity.staff.errors import STAFF_ERRORS

    slices = (CUSTOMER_ERRORS, STAFF_ERRORS, FACTOR_ERRORS, SESSION_ERRORS, AUDIT_ERRORS)
    table = dict(SHARED_ERRORS)
    for part in slices:
        assert not table.keys() & part.keys(), "a code is defined twice"
        table.update(part)
    return table


class _MergedTable(Mapping[str, Entry]):
    """:func:`error_table` as a mapping that merges on first use: identity's whole table of codes."""

    def __getitem__(self, key: str) -> Entry:
        return error_table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(error_table())

    def __len__(self) -> int:
        return len(error_table())


IDENTITY_ERRORS: Mapping[str, Entry] = _MergedTable()
"""Every identity refusal code: the shared ones and each sub-package's slice."""


class IdentityError(DomainError):
    """A refusal from :func:`error_table`, built fresh for each raise.

    ``field`` names another field than the table's, ``status`` another status (a passkey refused during
    step-up is a 422, at sign-in a 401); ``extra`` goes into the answer, ``text`` only into its sentences.
    """

    def __init__(
        self,
        key: str,
        *,
        field: str | None = None,
        status: int | None = None,
        text: Mapping[str, object] | None = None,
        **extra: Any,
    ) -> None:
        default_status, zh, en, default_field = error_table()[key]
        values = {**extra, **(text or {})}
        if values:
            zh, en = zh.format_map(values), en.format_map(values)
        code = key.partition("@")[0]
        super().__init__(code, status or default_status, zh, en, field=field or default_field, extra=extra)
