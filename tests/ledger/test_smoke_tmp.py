from uuid import uuid4

from etcwallet.ledger.service import AccountSpec, wallet_spec
from etcwallet.ledger.types import TransferRequest


async def test_smoke(ledger):
    a = await ledger.create_account(AccountSpec(uuid4(), "CNY", "general", "t"))
    b = await ledger.create_account(wallet_spec(uuid4(), "c1"))
    t = await ledger.create_transfer(
        TransferRequest(
            uuid4(), debit_account_id=a.id, credit_account_id=b.id, amount=100, currency="CNY", code="topup"
        )
    )
    print(t)
    acct = await ledger.get_account(b.id)
    assert acct.balance == 100
