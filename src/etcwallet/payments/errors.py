"""The payments domain's refusal codes, each with its HTTP status, a sentence in zh-CN and English, and
its field; :class:`PaymentsError` builds a fresh refusal from the table at each raise (never a shared
instance, whose traceback would keep the frames, and so the card numbers, of earlier requests).

A sentence may name a value in braces (``{length}``), filled from the error's ``text``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etcwallet.core.errors import DomainError

# code -> (status, zh, en, field the code is about)
PAYMENTS_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "card_number_not_digits": (
        422,
        "银行卡号只能由数字组成",
        "a bank card number holds digits only",
        "card_number",
    ),
    "card_number_length": (
        422,
        "银行卡号应为 13 至 19 位数字",
        "a bank card number is 13 to 19 digits long",
        "card_number",
    ),
    "card_number_checksum": (
        422,
        "银行卡号校验位不正确，请核对后重新输入",
        "the bank card number's check digit is wrong: check the number and type it again",
        "card_number",
    ),
    "card_bin_unknown": (
        422,
        "无法识别该银行卡的发卡行，暂不支持此卡",
        "the card's issuing bank is not recognized: this card is not supported",
        "card_number",
    ),
    "card_length_for_bank": (
        422,
        "{bank_zh}的此类卡号应为 {length} 位",
        "a card of this kind from {bank_en} has {length} digits",
        "card_number",
    ),
    "card_number_mismatch": (
        422,
        "两次输入的银行卡号不一致",
        "the two card numbers typed do not match",
        "confirm_number",
    ),
    "card_bound_elsewhere": (
        409,
        "该银行卡已绑定其他用户",
        "this bank card is bound to another customer",
        "card_number",
    ),
    "card_not_found": (404, "银行卡不存在", "bank card not found", "card_id"),
    "card_unbound": (409, "该银行卡已解绑", "this bank card has been unbound", "card_id"),
}


class PaymentsError(DomainError):
    """A request the payments domain refused. ``extra`` goes into the answer, ``text`` only into its
    sentences."""

    def __init__(
        self,
        code: str,
        *,
        field: str | None = None,
        text: Mapping[str, object] | None = None,
        **extra: Any,
    ) -> None:
        status, zh, en, default_field = PAYMENTS_ERRORS[code]
        if text:
            zh, en = zh.format_map(text), en.format_map(text)
        super().__init__(code, status, zh, en, field=field or default_field, extra=dict(extra))
