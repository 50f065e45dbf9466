"""Demo data for ``make run``: a few customer wallets with money in them, created idempotently."""

from __future__ import annotations

import logging
from uuid import NAMESPACE_URL, uuid5

from etcwallet.ledger.chart import platform_account_id
from etcwallet.ledger.service import Ledger, wallet_spec
from etcwallet.ledger.types import TransferRequest

log = logging.getLogger(__name__)

DEMO_CUSTOMERS = {"张伟": 50_000, "李娜": 12_345, "王芳": 800}


async def load_demo_data(ledger: Ledger) -> None:
    """Open one wallet per demo customer and top it up from the cash clearing account, once."""
    cash = platform_account_id("clearing.cash")
    for name, amount in DEMO_CUSTOMERS.items():
        account_id = uuid5(NAMESPACE_URL, f"etcwallet-demo:wallet:{name}")
        await ledger.create_account(wallet_spec(account_id, f"demo:{name}"))
        await ledger.create_transfer(
            TransferRequest(
                id=uuid5(NAMESPACE_URL, f"etcwallet-demo:topup:{name}"),
                debit_account_id=cash,
                credit_account_id=account_id,
                amount=amount,
                currency="CNY",
                code="demo_topup",
                metadata={"customer": name},
            )
        )
        log.info(
            "demo wallet", extra={"customer": name, "account_id": str(account_id), "balance_fen": amount}
        )
