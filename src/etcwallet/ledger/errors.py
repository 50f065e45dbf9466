"""The ledger's refusal codes, each with its HTTP status and a sentence in zh-CN and English.

A sentence may name a value in braces (``{max_batch}``), filled from the error's ``text``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from etcwallet.core.errors import DomainError

# code -> (status, zh, en, field the code is about)
LEDGER_ERRORS: dict[str, tuple[int, str, str, str | None]] = {
    "exceeds_credits": (
        422,
        "余额不足：借方账户的借记将超过贷记",
        "insufficient funds: debits would exceed credits",
        "amount",
    ),
    "exceeds_debits": (
        422,
        "贷方账户的贷记将超过借记",
        "credits would exceed debits on the credit account",
        "amount",
    ),
    "overflows_debits": (422, "借记总额将溢出", "the account's debits would overflow", "amount"),
    "overflows_credits": (422, "贷记总额将溢出", "the account's credits would overflow", "amount"),
    "account_frozen": (422, "账户已冻结，不能借记", "the debit account is frozen", "debit_account_id"),
    "account_not_found": (404, "账户不存在", "account not found", None),
    "currency_mismatch": (422, "币种与账户不一致", "the currency does not match the accounts", "currency"),
    "same_account": (
        422,
        "借方与贷方不能是同一账户",
        "debit and credit account must differ",
        "credit_account_id",
    ),
    "pending_not_found": (404, "待定转账不存在", "pending transfer not found", "pending_id"),
    "pending_already_posted": (
        409,
        "待定转账已入账",
        "the pending transfer was already posted",
        "pending_id",
    ),
    "pending_already_voided": (
        409,
        "待定转账已撤销",
        "the pending transfer was already voided",
        "pending_id",
    ),
    "pending_expired": (409, "待定转账已过期", "the pending transfer has expired", "pending_id"),
    "amount_exceeds_pending": (422, "金额超过待定金额", "the amount exceeds the pending amount", "amount"),
    "transfer_id_conflict": (
        409,
        "转账ID已被用于另一笔不同的转账",
        "the transfer id was used for a different transfer",
        "id",
    ),
    "account_id_conflict": (
        409,
        "账户ID已被用于另一个不同的账户",
        "the account id was used for a different account",
        "id",
    ),
    "linked_event_failed": (
        422,
        "同组关联转账中另一笔失败，本笔未执行",
        "another transfer in the linked batch failed",
        None,
    ),
    "linked_event_chain_open": (422, "关联转账链未闭合", "the linked chain is not closed", None),
    "batch_too_large": (
        422,
        "一批最多 {max_batch} 笔转账",
        "at most {max_batch} transfers a batch",
        "transfers",
    ),
    "transfer_not_found": (404, "转账不存在", "transfer not found", "transfer_id"),
    "timezone_required": (422, "时间必须带时区", "the time must carry a UTC offset", "at"),
}


class LedgerError(DomainError):
    """A request the ledger refused; ``index`` is the refused transfer's position in the submitted batch.

    ``extra`` goes into the answer, ``text`` only into its sentences.
    """

    def __init__(
        self,
        code: str,
        *,
        index: int | None = None,
        field: str | None = None,
        text: Mapping[str, object] | None = None,
        **extra: Any,
    ) -> None:
        status, zh, en, default_field = LEDGER_ERRORS[code]
        if text:
            zh, en = zh.format_map(text), en.format_map(text)
        payload: dict[str, Any] = dict(extra)
        if index is not None:
            payload["index"] = index
        super().__init__(code, status, zh, en, field=field or default_field, extra=payload)
        self.index = index
        self.text = dict(text or {})

    def at(self, index: int) -> LedgerError:
        """The same refusal, numbered by its position in the caller's own submission."""
        extra = {k: v for k, v in self.extra.items() if k != "index"}
        return LedgerError(self.code, index=index, field=self.field, text=self.text, **extra)


def chain_refusal(errors: Sequence[LedgerError]) -> LedgerError:
    """The refusal to answer for a refused chain: the member that broke it. A resent chain whose members
    were all refused as ``linked_event_failed`` before answers with the first of them."""
    return next((e for e in errors if e.code != "linked_event_failed"), errors[0])
