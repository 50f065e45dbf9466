"""Demo data: its money moves under the platform's own transfer code, a start after the code's rename
finds the wallets it topped up before instead of refusing them as a conflict, and its outlets have stock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from uuid import NAMESPACE_URL, uuid5

from etcwallet.app import Runtime
from etcwallet.core.config import Settings
from etcwallet.core.crypto import Keys
from etcwallet.core.db import open_pool
from etcwallet.demo import DEMO_CUSTOMERS, DEMO_OUTLETS, DEMO_STOCK, load_demo_data
from etcwallet.ledger.chart import TransferCode, platform_account_id
from etcwallet.ledger.service import Ledger, wallet_spec
from etcwallet.ledger.types import TransferRequest
from tests.issuance.builders import issuance_context


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


async def test_demo_outlets_get_blank_cards_and_tags_once(
    fresh_database: Callable[[], str], keys: Keys, settings: Settings, tmp_path: Path
) -> None:
    pool = await open_pool(fresh_database(), 4)
    try:
        ledger = Ledger(pool, writers=0)
        await ledger.ensure_chart()
        context = issuance_context(settings, tmp_path / "chips")
        runtime = Runtime(pool=pool, ledger=ledger, keys=keys, issuance=context)
        await load_demo_data(runtime)
        await load_demo_data(runtime)  # a second start finds the numbers taken and adds nothing
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT kind, card_type, count(*) FROM issuance_chips GROUP BY 1, 2 ORDER BY 1, 2"
            )
            counts = await cur.fetchall()
        per_kind = DEMO_STOCK * len(DEMO_OUTLETS)
        assert counts == [("card", 22, per_kind), ("card", 23, per_kind), ("tag", None, per_kind)]
        assert len(list((tmp_path / "chips").glob("*.json"))) == 3 * per_kind
    finally:
        await pool.close()
