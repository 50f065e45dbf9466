"""The chart of accounts: the kinds of account, and the platform's own accounts created on start."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from uuid import UUID, uuid5

PLATFORM_NAMESPACE = UUID("6f1d0c9e-3c0a-4f59-9a57-2f0e0e7c2a11")
OWNED_NAMESPACE = UUID("b3a7c2e4-5d1f-4e8a-9c6b-0f2d4a6e8c10")
"""The namespace of owned accounts' ids (:func:`owned_account_id`); never change it: ids are stored."""


class AccountCode(StrEnum):
    """What an account is for. Customer accounts are money the bank owes: they may not go below zero."""

    CUSTOMER_WALLET = "customer_wallet"
    CARD_PURSE = "card_purse"
    ACCOUNT_CARD = "account_card"
    CLEARING = "clearing"
    TOLL_PAYABLE = "toll_payable"
    PROMOTIONS_EXPENSE = "promotions_expense"
    FEE_INCOME = "fee_income"
    FX_POSITION = "fx_position"
    FUND_IN_TRANSIT = "fund_in_transit"
    SUSPENSE = "suspense"
    GENERAL = "general"


class TransferCode(StrEnum):
    """Why the platform itself moves money: ``<domain>.<why>``, stored as the transfer's ``code``.

    Code in ``src/`` names a transfer's reason from here (each domain adds its own), never with a bare
    string. The ledger stores any code a client of its API sends (``ledger.schemas.Code``) as it is.
    """

    DEMO_TOPUP = "demo.topup"  # demo data (``make run``): a demo customer's opening balance, from cash


class AccountPurpose(StrEnum):
    """What an account held for an owner (a customer, later a fleet) is for: one account per owner,
    purpose and currency, opened lazily (``Ledger.open_owned_account``) under :func:`owned_account_id`."""

    WALLET = "wallet"
    CARD_PURSE = "card_purse"
    ACCOUNT_CARD_RECEIVABLE = "account_card_receivable"


@dataclass(frozen=True)
class OwnedKind:
    """How the ledger opens an owned account of one purpose: its code, balance constraint and name."""

    purpose: AccountPurpose
    code: AccountCode
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    zh: str
    en: str


OWNED_ACCOUNTS: dict[AccountPurpose, OwnedKind] = {
    # Money the bank owes its customer: credit-normal, never overdrawn.
    AccountPurpose.WALLET: OwnedKind(
        AccountPurpose.WALLET, AccountCode.CUSTOMER_WALLET, True, False, "钱包余额", "wallet balance"
    ),
    # The bank's mirror of the stored value on a prepaid ETC card's chip: loaded, then spent at tolls.
    AccountPurpose.CARD_PURSE: OwnedKind(
        AccountPurpose.CARD_PURSE, AccountCode.CARD_PURSE, True, False, "储值卡余额", "card purse"
    ),
    # A postpaid (account) card's tolls that the customer owes the bank: debit-normal; a repayment may
    # settle it but not turn it into money the bank owes.
    AccountPurpose.ACCOUNT_CARD_RECEIVABLE: OwnedKind(
        AccountPurpose.ACCOUNT_CARD_RECEIVABLE,
        AccountCode.ACCOUNT_CARD,
        False,
        True,
        "记账卡应收",
        "account card receivable",
    ),
}


def owned_account_id(
    *, owner: str, purpose: AccountPurpose | str, currency: str, instance: str | None = None
) -> UUID:
    """The id of ``owner``'s account for ``purpose`` in ``currency``: a pure function of its inputs.

    A UUIDv5 in :data:`OWNED_NAMESPACE`, so every domain derives the same id without asking the ledger
    (a transfer may name a customer's wallet before it is opened) and opening it twice opens one account.
    The name is ``purpose:currency:owner``: purpose and currency hold no ``:``, so the owner (which may)
    comes last and two different inputs never spell the same name.

    ``instance`` tells apart several accounts of one purpose an owner holds (a card purse per ETC card:
    the card number). The name is then ``purpose/instance:currency:owner``; an instance holds no ``:``
    and a purpose no ``/``, so it never spells another account's name.
    """
    label = AccountPurpose(purpose).value
    if instance is not None:
        if not instance or ":" in instance:
            raise ValueError("an account instance is a non-empty name without ':'")
        label = f"{label}/{instance}"
    return uuid5(OWNED_NAMESPACE, f"{label}:{currency}:{owner}")


@dataclass(frozen=True)
class PlatformAccount:
    key: str
    code: AccountCode
    currency: str
    zh: str
    en: str

    @property
    def id(self) -> UUID:
        """Stable across installations, so other domains can name it without a lookup."""
        return platform_account_id(self.key, self.currency)


def platform_account_id(key: str, currency: str = "CNY") -> UUID:
    return uuid5(PLATFORM_NAMESPACE, f"{key}:{currency}")


PAYMENT_CHANNELS = {
    "bank_card": ("银行卡", "bank card"),
    "credit_card": ("信用卡", "credit card"),
    "alipay": ("支付宝", "Alipay"),
    "wechat": ("微信支付", "WeChat Pay"),
    "pos": ("POS刷卡", "POS"),
    "cash": ("现金", "cash"),
}
FX_CURRENCIES = ("CNY", "HKD", "USD", "EUR", "JPY")
_PLATFORM_CNY = {
    "toll_payable.default": (AccountCode.TOLL_PAYABLE, "应付路方通行费", "toll payable"),
    "promotions_expense": (AccountCode.PROMOTIONS_EXPENSE, "营销费用", "promotions expense"),
    "fee_income": (AccountCode.FEE_INCOME, "手续费收入", "fee income"),
    "fund_in_transit": (AccountCode.FUND_IN_TRANSIT, "基金申购在途", "fund subscriptions in transit"),
    "suspense": (AccountCode.SUSPENSE, "待查挂账", "suspense"),
}


def platform_accounts() -> list[PlatformAccount]:
    """Every account the platform itself holds; created idempotently when the service starts."""
    chart = [
        PlatformAccount(f"clearing.{name}", AccountCode.CLEARING, "CNY", f"{zh}清算", f"{en} clearing")
        for name, (zh, en) in PAYMENT_CHANNELS.items()
    ]
    chart += [PlatformAccount(key, code, "CNY", zh, en) for key, (code, zh, en) in _PLATFORM_CNY.items()]
    chart += [
        PlatformAccount("fx_position", AccountCode.FX_POSITION, cur, f"外汇头寸 {cur}", f"FX position {cur}")
        for cur in FX_CURRENCIES
    ]
    return chart
