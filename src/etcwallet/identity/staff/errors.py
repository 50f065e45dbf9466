"""The staff and outlet slice of identity's error table, and builders of its commonest refusals.

``identity/errors.py`` merges this table into ``IDENTITY_ERRORS`` and keeps :class:`IdentityError`,
which builds each refusal fresh from it. This module imports that class only inside its builders, since
``identity/errors.py`` imports this table while it loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etcwallet.identity.errors import IdentityError

# code -> (status, zh, en, field the code is about)
STAFF_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
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


def staff_error(key: str, *, field: str | None = None) -> IdentityError:
    """A fresh refusal from this table (``field`` names another field than the table's)."""
    from etcwallet.identity.errors import IdentityError

    return IdentityError(key, field=field)


def staff_not_found() -> IdentityError:
    """404 ``staff_not_found``: also what outlet staff get for another outlet's member (no hint it exists)."""
    return staff_error("staff_not_found")


def outlet_not_found() -> IdentityError:
    """404 ``outlet_not_found``."""
    return staff_error("outlet_not_found")


def change_not_found() -> IdentityError:
    """404 ``change_not_found``, naming ``change_id``."""
    return staff_error("change_not_found", field="change_id")
