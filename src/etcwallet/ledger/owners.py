"""Accounts held for an owner (a customer's wallet, card purse, account card receivable): opened lazily
under an id derived from owner, purpose and currency, listed by owner, and frozen with their owner.

- **Ids are derived, not stored** (``chart.owned_account_id``): a domain names a customer's wallet
  without asking, and opening it again (or from sixteen tasks at once) opens one account.
- **An owner's frozen state is the ledger's** (``ledger_owners``, migration 0016): freezing an owner
  freezes every account they hold for debits, and an account opened afterwards opens frozen. Holds taken
  before still post or void (the engine's rule for frozen accounts); credits still arrive.
- **One lock order.** An opening and a freeze both take the owner's row first; a freeze then locks the
  owner's accounts ``ORDER BY id FOR UPDATE``, the engine's global order, so it does not deadlock with
  transfers. A freeze runs in its caller's unit of work (``platform/unit.py``): it commits, and is
  audited, with the caller's own change (the customer's status), or rolls back with it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection

from etcwallet.core.money import check_currency
from etcwallet.ledger.chart import OWNED_ACCOUNTS, AccountPurpose, OwnedKind, owned_account_id
from etcwallet.ledger.errors import LedgerError
from etcwallet.ledger.types import Account, LedgerAction
from etcwallet.platform import audit
from etcwallet.platform.audit import Actor
from etcwallet.platform.unit import Unit

ACCOUNT_COLUMNS = (
    "id, currency, code, owner, debits_must_not_exceed_credits, credits_must_not_exceed_debits, frozen, "
    "debits_posted, credits_posted, debits_pending, credits_pending, metadata, created_at"
)

LEDGER_ACTOR = Actor.system("ledger")
"""Who opens an owned account when the caller names nobody (a lazy opening on a domain's behalf)."""


async def owner_frozen(conn: AsyncConnection[Any], *, owner: str, frozen: bool, now: datetime) -> bool:
    """Lock ``owner``'s row and answer whether their accounts are frozen.

    The row's state wins; ``frozen`` (what the caller knows, e.g. a customer frozen before the ledger
    kept owners) is recorded only when the ledger has never heard of the owner.
    """
    cur = await conn.execute(
        "INSERT INTO ledger_owners (owner, frozen, updated_at) VALUES (%s, %s, %s) "
        "ON CONFLICT (owner) DO UPDATE SET owner = excluded.owner RETURNING frozen",
        (owner, frozen, now),
    )
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0])


async def open_owned(
    conn: AsyncConnection[Any],
    *,
    owner: str,
    purpose: AccountPurpose,
    currency: str,
    frozen: bool,
    now: datetime,
    actor: Actor,
    instance: str | None = None,
) -> Account:
    """Open ``owner``'s account for ``purpose`` in ``currency`` in the transaction of ``conn``, or answer
    the one there is. An existing account with other fields (opened by hand under this id) is
    ``account_id_conflict``. A new account is frozen if its owner is, and its opening is audited.

    An account that exists is answered by one read, without a lock or a write: lazy openers call this
    before every use."""
    check_currency(currency)
    kind = OWNED_ACCOUNTS[AccountPurpose(purpose)]
    account_id = owned_account_id(owner=owner, purpose=kind.purpose, currency=currency, instance=instance)
    existing = await _get(conn, account_id)
    if existing is None:
        frozen = await owner_frozen(conn, owner=owner, frozen=frozen, now=now)
        cur = await conn.execute(
            "INSERT INTO ledger_accounts (id, currency, code, owner, debits_must_not_exceed_credits, "
            "credits_must_not_exceed_debits, frozen, metadata, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            f"ON CONFLICT (id) DO NOTHING RETURNING {ACCOUNT_COLUMNS}",
            (
                account_id,
                currency,
                kind.code.value,
                owner,
                kind.debits_must_not_exceed_credits,
                kind.credits_must_not_exceed_debits,
                frozen,
                json.dumps(_metadata(kind, instance)),
                now,
            ),
        )
        row = await cur.fetchone()
        if row is not None:
            detail = {"owner": owner, "purpose": kind.purpose.value, "currency": currency, "frozen": frozen}
            if instance is not None:
                detail["instance"] = instance
            target = ("ledger_account", str(account_id))
            await audit.append(conn, actor.event(LedgerAction.ACCOUNT_OPENED, target=target, detail=detail))
            return Account(*row)
        existing = await _get(conn, account_id)  # opened by a concurrent caller that committed first
        assert existing is not None
    if not _same(existing, kind, owner=owner, currency=currency, instance=instance):
        raise LedgerError("account_id_conflict")
    return existing


def _metadata(kind: OwnedKind, instance: str | None = None) -> dict[str, Any]:
    if instance is None:
        return {"purpose": kind.purpose.value}
    return {"purpose": kind.purpose.value, "instance": instance}


def _same(account: Account, kind: OwnedKind, *, owner: str, currency: str, instance: str | None) -> bool:
    """Whether ``account`` is what opening ``owner``'s ``kind`` in ``currency`` would open (frozen aside)."""
    return (
        account.currency == currency
        and account.code == kind.code.value
        and account.owner == owner
        and account.debits_must_not_exceed_credits == kind.debits_must_not_exceed_credits
        and account.credits_must_not_exceed_debits == kind.credits_must_not_exceed_debits
        and account.metadata == _metadata(kind, instance)
    )


async def _get(conn: AsyncConnection[Any], account_id: UUID) -> Account | None:
    cur = await conn.execute(f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id = %s", (account_id,))
    row = await cur.fetchone()
    return Account(*row) if row is not None else None


async def list_owned(conn: AsyncConnection[Any], *, owner: str) -> list[Account]:
    """Every account ``owner`` holds (through the owner index), oldest first."""
    cur = await conn.execute(
        f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE owner = %s ORDER BY created_at, id", (owner,)
    )
    return [Account(*row) for row in await cur.fetchall()]


async def freeze_owner(conn: AsyncConnection[Any], *, owner: str, frozen: bool, now: datetime) -> list[UUID]:
    """Record ``owner`` as frozen (or not) and set every account they hold to match, in the transaction
    of ``conn``; answers the ids whose state changed, in id order. The accounts are locked in id order
    (the engine's global order) before they change."""
    await conn.execute(
        "INSERT INTO ledger_owners (owner, frozen, updated_at) VALUES (%s, %s, %s) "
        "ON CONFLICT (owner) DO UPDATE SET frozen = excluded.frozen, updated_at = excluded.updated_at",
        (owner, frozen, now),
    )
    cur = await conn.execute(
        "SELECT id, frozen FROM ledger_accounts WHERE owner = %s ORDER BY id FOR UPDATE", (owner,)
    )
    changing = [row[0] for row in await cur.fetchall() if row[1] != frozen]
    if changing:
        await conn.execute(
            "UPDATE ledger_accounts SET frozen = %s WHERE id = ANY(%s::uuid[])", (frozen, changing)
        )
    return changing


async def set_owner_frozen(unit: Unit, *, owner: str, frozen: bool, actor: Actor | None = None) -> list[UUID]:
    """Freeze (debits refused) or unfreeze every account ``owner`` holds, and any they open later, in the
    caller's unit of work: it commits, and is audited once, with the caller's own change, or not at all.

    Answers the ids of the accounts whose state changed. Holds taken before a freeze still post or void.
    """
    changed = await freeze_owner(unit.conn, owner=owner, frozen=frozen, now=unit.now)
    action = LedgerAction.OWNER_FROZEN if frozen else LedgerAction.OWNER_UNFROZEN
    detail = {"accounts": [str(account_id) for account_id in changed]}
    unit.audit((actor or LEDGER_ACTOR).event(action, target=("ledger_owner", owner), detail=detail))
    return changed
