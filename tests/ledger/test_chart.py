"""The chart of accounts and the platform's transfer codes: stable names other domains rely on."""

from __future__ import annotations

import re

from etcwallet.ledger.chart import AccountCode, TransferCode, platform_account_id, platform_accounts


def test_transfer_codes_are_domain_dot_why_and_fit_the_api_pattern() -> None:
    for code in TransferCode:
        assert re.fullmatch(r"[a-z][a-z_]*\.[a-z][a-z_]*", code.value), code
        assert len(code.value) <= 64  # ledger.schemas.Code: a client could send the same code


def test_platform_accounts_keep_their_keys_and_ids() -> None:
    """Ids derive from key and currency: a chart reworded in code must open the same accounts."""
    chart = {(a.key, a.currency): a for a in platform_accounts()}
    assert len(chart) == len(platform_accounts())
    for key, code in [
        ("clearing.cash", AccountCode.CLEARING),
        ("toll_payable.default", AccountCode.TOLL_PAYABLE),
        ("promotions_expense", AccountCode.PROMOTIONS_EXPENSE),
        ("fee_income", AccountCode.FEE_INCOME),
        ("fund_in_transit", AccountCode.FUND_IN_TRANSIT),
        ("suspense", AccountCode.SUSPENSE),
        ("fx_position", AccountCode.FX_POSITION),
    ]:
        account = chart[(key, "CNY")]
        assert account.code is code and account.id == platform_account_id(key)
    assert chart[("fund_in_transit", "CNY")].en == "fund subscriptions in transit"
    assert {c for k, c in chart if k == "fx_position"} == {"CNY", "HKD", "USD", "EUR", "JPY"}
