"""The refusals of second factors and step-up: identity's error table's slice for this sub-package.

``identity/errors.py`` keeps :class:`~etcwallet.identity.errors.IdentityError` and merges this table into
its own; a refusal is raised as ``IdentityError(code)``, built fresh each time. Keys ``code@where`` answer
the code before the ``@`` with a sentence for that place.
"""

from __future__ import annotations

# code -> (status, zh, en, field the code is about)
FACTOR_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "step_up_required": (
        403,
        "此操作需要再次验证身份（动态验证码、通行密钥或短信验证码）",
        "this action needs a fresh second factor (authenticator code, passkey or SMS code)",
        None,
    ),
    "factor_not_accepted": (
        409,
        "不能使用该方式验证身份",
        "{factor} cannot be used for step-up here",
        "factor",
    ),
    "totp_invalid@step_up": (
        422,
        "动态验证码错误或已使用",
        "wrong or already used authenticator code",
        "code",
    ),
    "recovery_code_invalid": (422, "恢复码错误或已使用", "wrong or already used recovery code", "code"),
    "totp_already_enrolled": (
        409,
        "已开启动态验证码，如需更换请先关闭",
        "TOTP is already enabled: turn it off first to replace it",
        None,
    ),
    "totp_not_enrolled": (409, "尚未开启动态验证码", "TOTP is not enabled", None),
    "totp_not_pending": (409, "请先开始绑定动态验证码", "start TOTP enrollment first", "code"),
    "passkeys_not_configured": (503, "通行密钥尚未配置", "passkeys are not configured on this server", None),
    "webauthn_challenge_invalid": (
        400,
        "验证请求已过期或已使用，请重新开始",
        "the passkey challenge has expired or was already used: start again",
        "challenge_id",
    ),
    "passkey_registration_invalid": (
        422,
        "通行密钥注册验证失败",
        "the passkey registration could not be verified",
        "credential",
    ),
    "passkey_exists": (409, "该通行密钥已注册", "this passkey is already registered", "credential"),
    "passkey_limit": (409, "最多可注册 {max} 个通行密钥", "at most {max} passkeys can be registered", None),
    "passkey_not_found": (404, "通行密钥不存在", "passkey not found", "passkey_id"),
    "passkey_invalid": (401, "通行密钥验证失败", "the passkey could not be verified", "credential"),
    "passkey_counter_regressed": (
        401,
        "通行密钥签名计数异常（可能被复制），已拒绝",
        "the passkey's signature counter went backwards (possibly a cloned authenticator): refused",
        "credential",
    ),
}
