"""A customer's ledger accounts: the wallet, card purses, account card receivables the domains open.

The ledger names them (``ledger.chart.owned_account_id``: owner, purpose, currency), so any domain finds
a customer's wallet from the customer id alone; identity says who the owner is (:func:`owner_of`) and
keeps the accounts' frozen state with the customer's: freezing a customer freezes their accounts for
debits (holds taken before still post or void), and an account opened while they are frozen opens frozen.
"""

from __future__ import annotations

from uuid import UUID

from etcwallet.identity.customers import store
from etcwallet.identity.customers.types import CustomerAction
from etcwallet.ledger.chart import AccountPurpose
from etcwallet.ledger.owners import set_owner_frozen
from etcwallet.ledger.service import Ledger
from etcwallet.ledger.types import Account
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit, UnitOfWork


def owner_of(customer_id: UUID) -> str:
    """The ledger's owner of a customer's accounts: ``customer:<uuid>``."""
    return f"customer:{customer_id}"


async def account_for(
    ledger: Ledger,
    *,
    customer_id: UUID,
    purpose: AccountPurpose,
    currency: str = "CNY",
    frozen: bool,
    actor: Actor | None = None,
    instance: str | None = None,
) -> Account:
    """The customer's account for ``purpose`` in ``currency``, opened now if it is not yet.

    ``instance`` names one of several accounts of a purpose: each ETC card has its own card purse (or
    receivable), named by the card number, so a purse mirrors exactly one chip.

    ``frozen``: whether the customer is frozen (their status, as the caller read it); the ledger's record
    of the owner wins once it has one, so a freeze racing with this opening is not missed.
    """
    return await ledger.open_owned_account(
        owner=owner_of(customer_id),
        purpose=purpose,
        currency=currency,
        actor=actor,
        frozen=frozen,
        instance=instance,
    )


async def accounts_of(ledger: Ledger, *, customer_id: UUID) -> list[Account]:
    """Every ledger account the customer holds, oldest first."""
    return await ledger.list_accounts(owner=owner_of(customer_id))


async def freeze_accounts(
    unit: Unit, *, customer_id: UUID, frozen: bool, actor: Actor | None = None
) -> list[UUID]:
    """Freeze (or release) the customer's ledger accounts for debits, in the caller's unit of work, so
    they change with the customer's status or not at all; answers the ids whose state changed."""
    return await set_owner_frozen(unit, owner=owner_of(customer_id), frozen=frozen, actor=actor)


async def accounts_read_by_staff(
    *, uow: UnitOfWork, ledger: Ledger, customer_id: UUID, actor: Actor
) -> list[Account]:
    """A customer's accounts for staff who may read customers: an unknown customer is a 404, and the read
    is audited (``customer.accounts.read``), as every staff look at a customer is."""

    async def step(unit: Unit) -> None:
        await store.get_customer_or_raise(unit.conn, customer_id)
        unit.audit(actor.event(CustomerAction.ACCOUNTS_READ, target=("customer", str(customer_id))))

    await uow.run(step)
    return await accounts_of(ledger, customer_id=customer_id)
