"""The audit reader's slice of identity's error table: {code: (status, zh, en, field)}.

``identity/errors.py`` merges it into ``IDENTITY_ERRORS``; raise them as ``IdentityError(code)`` (built
fresh for each raise). Every refusal of a search names the field that was wrong and writes nothing.
"""

from __future__ import annotations

AUDIT_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "audit_actor_type_invalid": (
        422,
        "操作者类型应为 customer、staff、machine、system 或 anonymous",
        "actor_type is one of customer, staff, machine, system, anonymous",
        "actor_type",
    ),
    "audit_actor_type_required": (
        422,
        "按操作者编号查询时须同时指定操作者类型",
        "actor_id needs actor_type too",
        "actor_type",
    ),
    "audit_target_type_invalid": (
        422,
        "对象类型应为小写字母、数字和下划线",
        "target_type is lower-case letters, digits and underscores",
        "target_type",
    ),
    "audit_target_type_required": (
        422,
        "按对象编号查询时须同时指定对象类型",
        "target_id needs target_type too",
        "target_type",
    ),
    "audit_id_invalid": (422, "编号长度应为 1 到 200 个字符", "an id is 1 to 200 characters", None),
    "audit_action_invalid": (
        422,
        "操作名称格式应为 domain.action，或以 .* 结尾的前缀（如 customer.login.*）",
        "action is domain.action, or a prefix ending in .* (customer.login.*)",
        "action",
    ),
    "audit_timezone_required": (
        422,
        "时间须带时区（如 2026-12-03T08:00:00+08:00）",
        "a time needs its time zone (2026-12-03T08:00:00+08:00)",
        None,
    ),
    "audit_time_range_invalid": (
        422,
        "起始时间不能晚于结束时间",
        "since cannot be later than until",
        "since",
    ),
    "audit_cursor_invalid": (
        422,
        "翻页游标无效，请使用上一页返回的 next_cursor",
        "not a cursor: send the next_cursor of the page before",
        "after",
    ),
    "audit_limit_invalid": (
        422,
        "每页条数应为 1 到 200",
        "limit is 1 to 200",
        "limit",
    ),
}
