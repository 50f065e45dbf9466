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

from collections.abc import Mapping
from typing import Any

from etcwallet.core.errors import DomainError
from etcwallet.identity.sessions.errors import SESSION_ERRORS

# code -> (status, zh, en, field the code is about)
IDENTITY_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
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
    # --- customers
    "customer_not_found": (404, "客户不存在", "customer not found", "customer_id"),
    "phone_registered": (
        409, "该手机号已注册，请直接登录", "this phone number is already registered: sign in", "phone",
    ),
    "old_password_wrong": (403, "原密码错误", "the current password is wrong", "old_password"),
    "password_unchanged": (
        422, "新密码不能与原密码相同", "the new password must differ from the current one", "new_password",
    ),
    "account_frozen@customer": (
        403, "账户已冻结（原因：{frozen_reason}），可凭密码和短信验证码自助解冻",
        "the account is frozen (reason: {frozen_reason}); unfreeze it yourself with your password and an SMS code",
        None,
    ),
    "account_frozen@staff": (
        403, "账户已冻结（原因：{frozen_reason}），解冻请联系客服或到网点办理",
        "the account is frozen (reason: {frozen_reason}); to unfreeze it, contact customer service or visit an outlet",
        None,
    ),
    "account_frozen@passkey": (
        403, "账户已冻结，无法登录，请联系客服", "the account is frozen and cannot sign in: contact support", None,
    ),
    "account_closed": (403, "账户已注销", "the account has been closed", None),
    "account_closed@passkey": (403, "账户已注销，无法登录", "the account is closed and cannot sign in", None),
    "account_not_frozen": (409, "账户未冻结", "the account is not frozen", None),
    "unfreeze_needs_staff": (
        403, "该账户由客服或风控冻结，解冻需由工作人员办理，请联系客服或到网点",
        "this account was frozen by staff: unfreezing it needs staff; contact customer service or visit an outlet",
        None,
    ),
    "unfreeze_needs_sms_code": (
        403, "自助解冻需要短信验证码（用途 unfreeze）", "to unfreeze your account, add an SMS code (purpose unfreeze)",
        "sms_code",
    ),
    "profile_missing": (404, "尚未完成实名登记", "no real-name profile on file yet", None),
    "profile_required": (409, "请先完成实名登记", "register your real name and ID first", None),
    "id_number_registered": (
        409, "该证件号码已被其他账户登记", "this ID number is registered to another account", "id_number",
    ),
    "id_number_mismatch": (
        422, "证件号码与实名登记信息不符", "the ID number does not match the real-name profile", "id_number",
    ),
    "payment_password_not_set": (409, "尚未设置支付密码", "no payment password has been set", "pin"),
    "payment_password_exists": (
        409, "支付密码已设置；如需更改请使用重置（短信验证码加证件号码）",
        "a payment password is already set: reset it with an SMS code and your ID number", "pin",
    ),
    "payment_password_wrong": (
        403, "支付密码错误，还可尝试 {remaining_attempts} 次", "wrong payment password: {remaining_attempts} tries left",
        "pin",
    ),
    "payment_password_locked": (
        423, "支付密码错误次数过多，已锁定；请通过短信验证码和证件号码重置",
        "too many wrong payment passwords: it is locked; reset it with an SMS code and your ID number", "pin",
    ),
    # --- second factors and step-up
    "step_up_required": (
        403, "此操作需要再次验证身份（动态验证码、通行密钥或短信验证码）",
        "this action needs a fresh second factor (authenticator code, passkey or SMS code)", None,
    ),
    "factor_not_accepted": (409, "不能使用该方式验证身份", "{factor} cannot be used for step-up here", "factor"),
    "totp_invalid@step_up": (
        422, "动态验证码错误或已使用", "wrong or already used authenticator code", "code",
    ),
    "recovery_code_invalid": (422, "恢复码错误或已使用", "wrong or already used recovery code", "code"),
    "totp_already_enrolled": (
        409, "已开启动态验证码，如需更换请先关闭", "TOTP is already enabled: turn it off first to replace it", None,
    ),
    "totp_not_enrolled": (409, "尚未开启动态验证码", "TOTP is not enabled", None),
    "totp_not_pending": (409, "请先开始绑定动态验证码", "start TOTP enrollment first", "code"),
    "passkeys_not_configured": (503, "通行密钥尚未配置", "passkeys are not configured on this server", None),
    "webauthn_challenge_invalid": (
        400, "验证请求已过期或已使用，请重新开始", "the passkey challenge has expired or was already used: start again",
        "challenge_id",
    ),
    "passkey_registration_invalid": (
        422, "通行密钥注册验证失败", "the passkey registration could not be verified", "credential",
    ),
    "passkey_exists": (409, "该通行密钥已注册", "this passkey is already registered", "credential"),
    "passkey_limit": (409, "最多可注册 {max} 个通行密钥", "at most {max} passkeys can be registered", None),
    "passkey_not_found": (404, "通行密钥不存在", "passkey not found", "passkey_id"),
    "passkey_invalid": (401, "通行密钥验证失败", "the passkey could not be verified", "credential"),
    "passkey_counter_regressed": (
        401, "通行密钥签名计数异常（可能被复制），已拒绝",
        "the passkey's signature counter went backwards (possibly a cloned authenticator): refused", "credential",
    ),
    # --- outlets and staff
    "outlet_not_found": (404, "网点不存在", "outlet not found", "outlet_id"),
    "staff_not_found": (404, "员工不存在", "staff not found", "staff_id"),
    "outlet_bank_mismatch": (
        422, "银行网点必须指定银行，自营网点不能指定银行", "a bank outlet names its bank; a self-operated outlet has none",
        "bank",
    ),
    "outlet_code_taken": (409, "网点编号已存在", "an outlet with this code exists", "code"),
    "outlet_not_allowed": (422, "该角色不属于网点", "this role does not belong to an outlet", "outlet_id"),
    "outlet_required": (422, "网点角色必须指定网点", "an outlet role needs an outlet", "outlet_id"),
    "bank_outlet_required": (
        422, "银行网点操作员只能属于银行网点", "a bank operator belongs to a bank outlet", "outlet_id",
    ),
    "username_taken": (409, "用户名已存在", "the username is taken", "username"),
    "staff_not_active": (
        409, "该员工未启用（待审批、已拒绝或已停用）",
        "this staff member is not active (awaiting approval, rejected or disabled)", "staff_id",
    ),
    "totp_already_enrolled@staff": (
        409, "该员工已绑定动态验证码", "this staff member has enrolled TOTP already", "staff_id",
    ),
    "enrollment_code_by_password_setter": (
        409, "设置密码的管理员不能为同一员工发放绑定码，请由另一位管理员发放",
        "whoever set the password cannot issue the enrollment code: another administrator must", "staff_id",
    ),
    "invalid_anchor": (
        422, "锚点格式应为 序号:64位十六进制哈希", "an anchor is SEQ:HASH, the hash 64 hex digits", "anchor",
    ),
    # --- two administrators for privileged roles (staff_changes); each call names the field
    "own_role": (409, "不能更改自己的角色", "nobody changes their own role", None),
    "own_status": (409, "不能停用自己的账户", "nobody disables themselves", None),
    "last_administrator": (
        409, "不能停用或降级最后一位在职管理员", "the last active administrator cannot be disabled or demoted", None,
    ),
    "self_approval": (
        409, "不能批准自己提出的变更，须由另一位管理员批准",
        "a change is approved by another administrator, not by whoever requested it", None,
    ),
    "change_not_pending": (409, "该变更已被批准或拒绝", "this change was already approved or rejected", None),
    "change_pending": (409, "该员工已有待批准的变更", "this staff member has a change awaiting approval", None),
    "change_stale": (
        409, "员工的角色在申请后已变更，该变更不再适用", "the staff member's role changed since the request", None,
    ),
    "change_with_status": (
        422, "需要审批的角色变更不能同时更改状态，请分开提交",
        "a role change that needs approval cannot change the status too: send it alone", None,
    ),
    "staff_rejected": (409, "该员工的创建申请已被拒绝", "the creation of this staff member was rejected", None),
    "change_not_found": (404, "变更不存在", "change not found", None),
}  # fmt: skip
IDENTITY_ERRORS |= SESSION_ERRORS  # each sub-package's slice, merged into the one table


class IdentityError(DomainError):
    """A refusal from :data:`IDENTITY_ERRORS`, built fresh for each raise.

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
        default_status, zh, en, default_field = IDENTITY_ERRORS[key]
        values = {**extra, **(text or {})}
        if values:
            zh, en = zh.format_map(values), en.format_map(values)
        code = key.partition("@")[0]
        super().__init__(code, status or default_status, zh, en, field=field or default_field, extra=extra)
