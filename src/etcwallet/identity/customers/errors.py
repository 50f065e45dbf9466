"""The customer slice of identity's refusal table, and the refusals built from it with their details.

``IdentityError`` (:mod:`etcwallet.identity.errors`) merges this table with the others; each refusal is
built fresh at each raise (never a shared instance), by :class:`IdentityError` or by the functions here.
"""

from __future__ import annotations

from datetime import UTC

from etcwallet.identity.customers.types import Customer, CustomerStatus
from etcwallet.identity.errors import Entry, IdentityError

CUSTOMER_ERRORS: dict[str, Entry] = {
    "customer_not_found": (404, "客户不存在", "customer not found", "customer_id"),
    "phone_registered": (
        409,
        "该手机号已注册，请直接登录",
        "this phone number is already registered: sign in",
        "phone",
    ),
    "old_password_wrong": (403, "原密码错误", "the current password is wrong", "old_password"),
    "password_not_set": (
        409,
        "尚未设置登录密码，请通过“忘记密码”用短信验证码设置",
        "no password is set yet: set one with forgot password (an SMS code)",
        "old_password",
    ),
    "password_unchanged": (
        422,
        "新密码不能与原密码相同",
        "the new password must differ from the current one",
        "new_password",
    ),
    "account_frozen@customer": (
        403,
        "账户已冻结（原因：{frozen_reason}），可凭密码和短信验证码自助解冻",
        "the account is frozen (reason: {frozen_reason}); unfreeze it yourself with your password and an SMS code",
        None,
    ),
    "account_frozen@staff": (
        403,
        "账户已冻结（原因：{frozen_reason}），解冻请联系客服或到网点办理",
        "the account is frozen (reason: {frozen_reason}); to unfreeze it, contact customer service or visit an outlet",
        None,
    ),
    "account_frozen@passkey": (
        403,
        "账户已冻结，无法登录，请联系客服",
        "the account is frozen and cannot sign in: contact support",
        None,
    ),
    "account_closed": (403, "账户已注销", "the account has been closed", None),
    "account_closed@passkey": (403, "账户已注销，无法登录", "the account is closed and cannot sign in", None),
    # closing an account (customers/closure.py)
    "account_already_closed": (409, "账户已注销", "the account is already closed", None),
    "closure_balance_left": (
        409,
        "{name_zh}尚有余额 {amount_yuan} 元，请先将余额转回绑定的银行卡再注销",
        "your {name_en} still holds {amount_yuan} yuan: move it to your bound bank card before closing",
        None,
    ),
    "closure_debt_left": (
        409,
        "{name_zh}尚欠 {amount_yuan} 元，请先还清再注销",
        "you still owe {amount_yuan} yuan on your {name_en}: settle it before closing",
        None,
    ),
    "closure_pending": (
        409,
        "账户（{purpose}）有尚未完成的支付或冻结款项，请待其完成后再注销",
        "the {purpose} account has a payment or hold still pending: close the account once it has settled",
        None,
    ),
    "closure_needs_payment_password": (
        422,
        "注销账户需要输入支付密码",
        "closing the account needs your payment password",
        "pin",
    ),
    "account_not_frozen": (409, "账户未冻结", "the account is not frozen", None),
    "unfreeze_needs_staff": (
        403,
        "该账户由客服或风控冻结，解冻需由工作人员办理，请联系客服或到网点",
        "this account was frozen by staff: unfreezing it needs staff; contact customer service or visit an outlet",
        None,
    ),
    "unfreeze_needs_sms_code": (
        403,
        "自助解冻需要短信验证码（用途 unfreeze）",
        "to unfreeze your account, add an SMS code (purpose unfreeze)",
        "sms_code",
    ),
    "profile_missing": (404, "尚未完成实名登记", "no real-name profile on file yet", None),
    "profile_required": (409, "请先完成实名登记", "register your real name and ID first", None),
    "id_number_registered": (
        409,
        "该证件号码已被其他账户登记",
        "this ID number is registered to another account",
        "id_number",
    ),
    "id_number_mismatch": (
        422,
        "证件号码与实名登记信息不符",
        "the ID number does not match the real-name profile",
        "id_number",
    ),
    "customer_phone_exists": (
        409,
        "该手机号已有客户账户，请按手机号查找",
        "a customer with this phone number exists: find them by phone",
        "phone",
    ),
    "customer_id_number_exists": (
        409,
        "该证件号码已有客户账户，请按证件号码查找",
        "a customer with this ID number exists: find them by ID number",
        "id_number",
    ),
    "card_last4_format": (
        422,
        "银行卡号后四位应为4位数字",
        "the card's last four are 4 digits",
        "card_last4",
    ),
    "payment_password_not_set": (409, "尚未设置支付密码", "no payment password has been set", "pin"),
    "payment_password_exists": (
        409,
        "支付密码已设置；如需更改请使用重置（短信验证码加证件号码）",
        "a payment password is already set: reset it with an SMS code and your ID number",
        "pin",
    ),
    "payment_password_wrong": (
        403,
        "支付密码错误，还可尝试 {remaining_attempts} 次",
        "wrong payment password: {remaining_attempts} tries left",
        "pin",
    ),
    "payment_password_locked": (
        423,
        "支付密码错误次数过多，已锁定；请通过短信验证码和证件号码重置",
        "too many wrong payment passwords: it is locked; reset it with an SMS code and your ID number",
        "pin",
    ),
}


def customer_not_found() -> IdentityError:
    """No customer has this id."""
    return IdentityError("customer_not_found")


def pin_wrong(remaining: int) -> IdentityError:
    """A wrong payment password, saying how many tries are left before it locks."""
    return IdentityError("payment_password_wrong", remaining_attempts=remaining)


def pin_locked() -> IdentityError:
    """The payment password is locked after too many wrong tries."""
    return IdentityError("payment_password_locked", remaining_attempts=0)


def frozen_error(customer: Customer) -> IdentityError:
    """The refusal for a frozen account: the reason, since when, by whom (customer or staff), and how to undo it."""
    by = customer.frozen_by_kind or "customer"
    frozen_at = (
        customer.frozen_at.astimezone(UTC).isoformat(timespec="seconds") if customer.frozen_at else None
    )
    return IdentityError(
        f"account_frozen@{by}",
        frozen_reason=customer.frozen_reason or "—",
        frozen_by=by,
        frozen_at=frozen_at,
        unfreeze_by="customer_sms" if by == "customer" else "staff",
    )


def closed_error() -> IdentityError:
    """The account has been closed."""
    return IdentityError("account_closed")


def status_refusal(customer: Customer) -> IdentityError | None:
    """Why this account may not sign in (frozen or closed), or None while it is active."""
    if customer.status is CustomerStatus.FROZEN:
        return frozen_error(customer)
    if customer.status is CustomerStatus.CLOSED:
        return closed_error()
    return None
