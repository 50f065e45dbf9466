"""Fixtures shared by the ledger's test modules: a clock moved by hand, a ledger on it, funded accounts."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from etcwallet.ledger.service import Ledger, wallet_spec
from etcwallet.ledger.types import Account
from tests.ledger.builders import FakeClock, move, open_account


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(pool: Any, clock: FakeClock) -> Ledger:
    """A ledger on the shared pool whose time the test moves; no writers, so calls apply directly."""
    return Ledger(pool, writers=0, clock=clock)


@pytest.fixture
async def funded(ledger: Ledger) -> tuple[Account, Account]:
    """An unconstrained source account and a customer wallet holding 5,000."""
    source = await open_account(ledger)
    wallet = await ledger.create_account(wallet_spec(uuid4(), "customer-1"))
    await ledger.create_transfer(move(source.id, wallet.id, 5000, code="topup"))
    return source, await ledger.get_account_or_raise(wallet.id)
