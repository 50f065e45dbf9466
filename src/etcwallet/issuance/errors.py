"""The issuance domain's refusal codes, each with its HTTP status, a sentence in zh-CN and English, and
its field; :class:`IssuanceError` builds a fresh refusal from the table at each raise.

A sentence may name a value in braces (``{number}``), filled from the error's ``text``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etcwallet.core.errors import DomainError

# code -> (status, zh, en, field the code is about)
ISSUANCE_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    # --- stock ---
    "stock_number_format": (
        422,
        "起始编号格式不正确：用户卡为20位数字，电子标签为16位数字",
        "the first number is malformed: a card number has 20 digits, an OBU number 16",
        "first_number",
    ),
    "stock_network": (
        422,
        "编号应以本发行方的网络编号 {network} 开头",
        "numbers must start with this issuer's network number {network}",
        "first_number",
    ),
    "stock_count": (422, "数量应为 1 至 10000", "the count is 1 to 10,000", "count"),
    "stock_overflow": (
        422,
        "编号超出范围：起始编号加数量超过了编号的位数",
        "the numbers run out of digits: the first number plus the count overflows",
        "count",
    ),
    "stock_card_type_required": (
        422,
        "用户卡入库须指明卡类型（储值卡或记账卡）",
        "cards come into stock with a card type (stored-value or account card)",
        "card_type",
    ),
    "stock_number_taken": (
        409,
        "编号 {number} 已在库存或已发行",
        "number {number} is already in stock or issued",
        "first_number",
    ),
    "chip_not_found": (404, "没有这张卡或这个标签", "no such card or tag", "number"),
    "chip_not_in_stock": (
        409,
        "该卡片或标签不在库存中（当前状态：{status_zh}）",
        "the card or tag is not in stock (it is {status_en})",
        "number",
    ),
    "stock_same_outlet": (
        422,
        "调入网点与当前网点相同",
        "the destination outlet is the one the stock is at",
        "to_outlet_id",
    ),
    "outlet_not_found": (404, "网点不存在或已停用", "no such active outlet", "to_outlet_id"),
    # --- applications ---
    "application_not_found": (404, "申请记录不存在", "no such application", "application_id"),
    "application_open_exists": (
        409,
        "该车辆已有未办结的申请",
        "this vehicle already has an open application",
        "plate",
    ),
    "vehicle_has_live_card": (
        409,
        "该车辆已有在用的用户卡（一车一卡一签）",
        "this vehicle already holds a live card (one vehicle, one card, one tag)",
        "plate",
    ),
    "bank_card_required": (
        422,
        "银行网点办理须绑定银行卡",
        "a bank outlet binds a bank card to the application",
        "bank_card_number",
    ),
    "bank_card_not_at_self_operated": (
        422,
        "自营网点无需绑定银行卡",
        "a self-operated outlet binds no bank card",
        "bank_card_number",
    ),
    "customer_required": (
        422,
        "请指明客户（客户编号，或客户现场出示的实名信息）",
        "name the customer (their id, or the real-name data they show)",
        "customer",
    ),
    "application_not_open": (
        409,
        "该申请已办结或已取消",
        "this application is completed or cancelled",
        "application_id",
    ),
    # --- card issuance ---
    "no_card_in_reader": (
        409,
        "读卡器中没有卡片，请插入用户卡后再读卡",
        "there is no card in the reader: insert the user card and read again",
        None,
    ),
    "card_not_ours": (
        422,
        "该卡片不是本发行方的卡或卡片信息无法识别",
        "this card is not one of this issuer's, or its data cannot be read",
        None,
    ),
    "card_not_in_outlet_stock": (
        409,
        "该卡片不在本网点库存中",
        "this card is not in this outlet's stock",
        "card_number",
    ),
    "card_already_issued": (
        409,
        "该卡片已发行，不能再次办理",
        "this card is already issued and cannot be issued again",
        "card_number",
    ),
    "card_type_mismatch": (
        422,
        "卡类型与申请不符：申请为{wanted_zh}，卡片为{card_zh}",
        "the card type does not match the application: {wanted_en} wanted, the card is a {card_en}",
        "card_number",
    ),
    "card_retry_exhausted": (
        409,
        "同一张卡最多只能重试1次，请换卡重试",
        "a card may be retried once only: take another card and try again",
        "card_number",
    ),
    "card_suspect_damaged": (
        409,
        "该卡片已办理失败3次，可能已损坏，请换卡",
        "this card failed three times and may be damaged: take another card",
        "card_number",
    ),
    "card_not_read": (
        409,
        "请先读卡，读卡成功后才能注册",
        "read the card first: registration comes after a successful read",
        None,
    ),
    "card_changed": (
        409,
        "读卡器中的卡片已不是刚才读取的卡片，请重新读卡",
        "the card in the reader is not the one read: read the card again",
        "card_number",
    ),
    "card_write_failed": (
        409,
        "写卡失败：{reason_zh}。可重试1次，或换卡重试",
        "writing the card failed: {reason_en}. It may be retried once, or take another card",
        None,
    ),
    "bank_card_not_application": (
        422,
        "银行卡号与申请时绑定的银行卡不一致",
        "the bank card number is not the card bound to the application",
        "bank_card_number",
    ),
    "customer_profile_missing": (
        409,
        "客户尚无实名信息，请先在网点核验客户身份",
        "the customer has no real-name profile: check their ID document at the outlet first",
        None,
    ),
    "card_removed": (
        409,
        "卡片已离开读卡器，请重新插入后再试",
        "the card left the reader: put it back and try again",
        None,
    ),
    "reader_unavailable": (
        503,
        "读卡器不可用：{reason_zh}",
        "the card reader is unavailable: {reason_en}",
        None,
    ),
    # --- tags (tags.py) ---
    "tag_card_not_issued": (
        409,
        "标签办理前请确认已办理成功陇通卡：该申请尚未办理用户卡",
        "issue the user card first (标签办理前请确认已办理成功陇通卡): this application has no issued card",
        "application_id",
    ),
    "tag_card_mismatch": (
        409,
        "卡槽中的卡片不是该申请已办理的陇通卡（{what_zh}不符）",
        "the card in the slot is not the card issued for this application (its {what_en} differs)",
        "card_number",
    ),
    "no_tag_in_field": (
        409,
        "读写区域内没有标签，请放置电子标签后再试",
        "there is no tag in the reader's field: place the OBU tag and try again",
        None,
    ),
    "tag_removed": (
        409,
        "标签已离开读写区域，写入未完成，请将同一标签放回后再次点击【注册】或【激活】",
        "the tag left the field before the write finished: put the same tag back and register or activate again",
        None,
    ),
    "tag_sn_format": (422, "SN码应为16位数字", "the SN is 16 digits", "sn"),
    "tag_sn_mismatch": (
        422,
        "两次输入的SN码不一致",
        "the SN and its confirmation differ",
        "sn_confirm",
    ),
    "tag_sn_not_in_field": (
        409,
        "输入的SN码 {typed} 与读写区域内的标签 {found} 不一致，请核对标签背面的SN码",
        "the SN typed ({typed}) is not the tag in the field ({found}): check the SN on the back of the tag",
        "sn",
    ),
    "tag_not_ours": (
        422,
        "该标签不是本发行方的标签或标签信息无法识别",
        "this tag is not one of this issuer's, or its data cannot be read",
        "sn",
    ),
    "tag_not_in_outlet_stock": (
        409,
        "该标签不在本网点库存中",
        "this tag is not in this outlet's stock",
        "sn",
    ),
    "tag_not_in_stock": (
        409,
        "该标签不在库存中（当前状态：{status_zh}），不能办理",
        "this tag is not in stock (it is {status_en}) and cannot be issued",
        "sn",
    ),
    "tag_card_not_read": (
        409,
        "读卡成功之前不显示注册按钮：请先读卡",
        "registration comes after a successful card read (读卡成功之前不显示注册按钮): read the card first",
        "application_id",
    ),
    "tag_not_read": (
        409,
        "请先输入并确认SN码、读取标签后再注册",
        "type and confirm the SN and read the tag before registering",
        "sn",
    ),
    "tag_changed": (
        409,
        "与第一次读取的标签信息不一致：{reason_zh}",
        "the tag is not the one read first: {reason_en}",
        "sn",
    ),
    "tag_issuance_writing": (
        409,
        "标签 {number} 的写入尚未完成，请将该标签放回读写区域后再次点击【注册】",
        "the write of tag {number} is unfinished: put that tag back in the field and register again",
        "sn",
    ),
    "vehicle_has_live_tag": (
        409,
        "该车辆已有在用的电子标签（一车一卡一签），如需重新办理请先注销原标签",
        "this vehicle already holds a live tag (one vehicle, one card, one tag): deregister it first",
        "application_id",
    ),
    "tag_write_failed": (
        409,
        "写标签失败：{reason_zh}，请重试或换一个标签",
        "writing the tag failed: {reason_en}; try again or take another tag",
        "sn",
    ),
    "tag_damaged": (
        409,
        "标签写入失败（{reason_zh}），标签可能已损坏，请换一个标签重新办理",
        "the tag refused the write ({reason_en}) and may be damaged: take another tag",
        "sn",
    ),
    "tag_not_issued": (
        409,
        "该标签尚未办理，不能激活",
        "this tag has not been issued and cannot be activated",
        "obu_number",
    ),
    "card_not_issued": (
        409,
        "卡槽中的卡片尚未办理，不能用于激活标签",
        "the card in the slot has not been issued and cannot activate a tag",
        "card_number",
    ),
    "tag_card_differ": (
        409,
        "卡片信息与标签信息不一致：{fields_zh}",
        "the card and the tag do not describe the same vehicle: {fields_en} differ",
        None,
    ),
    "tag_not_vehicle_live_tag": (
        409,
        "该标签不是车辆 {vehicle} 在用的电子标签（平台记录：{status_zh}），请到【卡签检测】核对",
        "this tag is not the live tag of vehicle {vehicle} (the platform has it {status_en})",
        "obu_number",
    ),
    "card_not_vehicle_live_card": (
        409,
        "该卡片不是车辆 {vehicle} 在用的陇通卡（平台记录：{status_zh}）",
        "this card is not the live card of vehicle {vehicle} (the platform has it {status_en})",
        "card_number",
    ),
    "tag_switch_released": (
        409,
        "请将标签安装在车上并按下防拆按钮",
        "mount the tag on the vehicle and press its anti-tamper button",
        None,
    ),
    # --- detection, loss and cancellation (detection.py) ---
    "card_blank": (
        409,
        "该卡片尚未发行（空白卡），不能激活",
        "this card is blank (never issued) and cannot be activated",
        "card_number",
    ),
    "card_not_activatable": (
        409,
        "该卡片当前状态为{status_zh}，不能激活",
        "the card is {status_en} and cannot be activated",
        "card_number",
    ),
    "card_already_active": (
        409,
        "该卡片已激活且未过期，无需再次激活",
        "the card is active and not expired: there is nothing to activate",
        "card_number",
    ),
    "card_mismatch": (
        409,
        "卡片信息与平台记录不一致（{fields}），不能激活，请先核对",
        "the card differs from the platform's record ({fields}) and cannot be activated: check it first",
        "card_number",
    ),
    "card_activation_failed": (
        409,
        "激活写卡失败：{reason_zh}，请重新读卡后再试",
        "writing the activation failed: {reason_en}. Read the card and try again",
        "card_number",
    ),
    "tag_not_live": (
        409,
        "该标签当前状态为{status_zh}，不能注销",
        "the tag is {status_en}: only a live tag can be deregistered",
        "number",
    ),
    "card_not_live": (
        409,
        "该卡片当前状态为{status_zh}，不能挂失",
        "the card is {status_en}: only a live card can be reported lost",
        "number",
    ),
    "card_not_cancellable": (
        409,
        "该卡片当前状态为{status_zh}，只有在用或已挂失的卡片可以注销",
        "the card is {status_en}: only a live or lost card can be cancelled",
        "number",
    ),
    # --- account services (services.py) ---
    "bank_outlet_only": (
        403,
        "变更银行卡只能在银行网点由银行工作人员办理",
        "a bank card is changed only by bank staff at a bank outlet",
        None,
    ),
    "card_not_in_use": (
        409,
        "该卡片尚未发行或已不在使用中（当前状态：{status_zh}）",
        "this card is not an issued card in use (it is {status_en})",
        "card_number",
    ),
    "card_has_no_bank_card": (
        409,
        "该卡片未绑定银行卡（自营网点办理的卡），无需变更",
        "this card has no bank card bound (issued at a self-operated outlet)",
        "card_number",
    ),
    "bank_card_unchanged": (
        409,
        "新银行卡与当前绑定的银行卡相同",
        "the new bank card is the one already bound",
        "bank_card_number",
    ),
    "bank_card_change_invalid": (
        422,
        "变更申请已失效或银行卡号与发送验证码时不一致，请重新发起变更",
        "the change has expired, or the bank card is not the one the code was sent for: start again",
        "change_token",
    ),
    "customer_not_matched": (
        404,
        "手机号与证件号码不属于同一客户",
        "no customer has both this phone number and this ID number",
        "id_number",
    ),
    # --- common ---
    "cursor_invalid": (422, "分页游标无效", "the page cursor is not valid", "cursor"),
    "emulator_only": (
        409,
        "仅模拟读卡器支持此操作",
        "only the emulated reader supports this",
        None,
    ),
}


class IssuanceError(DomainError):
    """A request the issuance domain refused. ``extra`` goes into the answer, ``text`` only into its
    sentences."""

    def __init__(
        self,
        code: str,
        *,
        field: str | None = None,
        text: Mapping[str, object] | None = None,
        **extra: Any,
    ) -> None:
        status, zh, en = ISSUANCE_ERRORS[code][:3]
        default_field = ISSUANCE_ERRORS[code][3]
        if text:
            zh, en = zh.format_map(text), en.format_map(text)
        super().__init__(code, status, zh, en, field=field or default_field, extra=dict(extra))
