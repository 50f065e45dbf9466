"""Demo data's money moves under the platform's own transfer code, and a start after the code's rename
finds the wallets it topped up before instead of refusing them as a conflict."""

from __future__ import annotations

from collections.abc import Callable
from uuid import NAMESPACE_URL, uuid5

from etcwallet.app import Runtime
from etcwallet.core.crypto import Keys
from etcwallet.core.db import open_pool
from etcwallet.demo import DEMO_CUSTOMERS, load_demo_data
from etcwallet.ledger.chart import TransferCode, platform_account_id
from etcwallet.ledger.service import Ledger, wallet_spec
from etcwallet.ledger.types import TransferRequest


async def test_demo_topups_carry_the_platform_code_and_survive_its_rename(
    fresh_database: Callable[[], str], keys: Keys
) -> None:
    pool = await open_pool(fresh_database(), 4)
    try:
        ledger = Ledger(pool, writers=0)
        await ledger.ensure_chart()
        runtime = Runtime(pool=pool, ledger=ledger, keys=keys)
        earlier, *others = DEMO_CUSTOMERS.items()
        # A demo database topped up by an earlier version, under the bare code of the time.
        wallet_id = uuid5(NAMESPACE_URL, f"etcwallet-demo:wallet:{earlier[0]}")
        await ledger.create_account(wallet_spec(wallet_id, f"demo:{earlier[0]}"))
        await ledger.create_transfer(
            TransferRequest(
                id=uuid5(NAMESPACE_URL, f"etcwallet-demo:topup:{earlier[0]}"),
                debit_account_id=platform_account_id("clearing.cash"),
                credit_account_id=wallet_id,
                amount=earlier[1],
                currency="CNY",
                code="demo_topup",
                metadata={"customer": earlier[0]},
            )
        )

        await load_demo_data(runtime)
        await load_demo_data(runtime)  # every start: nothing twice

        for name, amount in [earlier, *others]:
            topup = await ledger.get_transfer(uuid5(NAMESPACE_URL, f"etcwallet-demo:topup:{name}"))
            assert topup is not None
            assert topup.code == ("demo_topup" if name == earlier[0] else TransferCode.DEMO_TOPUP)
            wallet = await ledger.get_account(uuid5(NAMESPACE_URL, f"etcwallet-demo:wallet:{name}"))
            assert wallet is not None and wallet.balance == amount
    finally:
        await pool.close()
