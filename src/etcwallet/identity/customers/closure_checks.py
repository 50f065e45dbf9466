"""What must be true before a customer's account may close, asked of every domain that holds something
for the customer: identity's own checks (no money on any ledger account, nothing pending) and whatever
the other domains register at start-up (issuance: no live ETC card or tag; payments: nothing in flight).

A check is an async function of the closure's unit of work and the customer id that answers a
:class:`ClosureRefusal` (its code and reason in zh and en) or None. It runs inside the closure's
transaction, after the customer's row and ledger accounts are locked; it must only read (the unit may
run again). What it reads cannot change before the closure commits only if the domain's own writers
serialize with the closure: a step that makes something for a customer (a card, a payment) calls
``customers.service.hold_open_customer`` first, which share-locks the customer's row (and refuses a
closed one), so the closure waits for that step or the step sees the closure. The registry belongs to the
application (``Runtime.closure_checks``), not to the module, so two applications in one process (and two
tests) do not share registrations::

    runtime.closure_checks.register("issuance.live_cards", no_live_cards)

Names are ``<domain>.<what>``; the refusal names the check and its domain. A closure runs every check and
refuses with all their refusals (the first one is the answer's code).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, cast
from uuid import UUID

from fastapi import Depends, Request

from etcwallet.core.errors import DomainError
from etcwallet.identity.customers.accounts import owner_of
from etcwallet.identity.errors import IdentityError
from etcwallet.ledger.chart import OWNED_ACCOUNTS, AccountPurpose
from etcwallet.ledger.owners import list_owned
from etcwallet.platform.unit import Unit

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

BALANCES = "identity.balances"
PENDING = "identity.pending"


@dataclass(frozen=True)
class ClosureRefusal:
    """Why a domain will not let the account close: a stable code, the reason in zh and en, and details
    (amounts, ids) the answer carries. ``check`` is filled in by the registry with the check's name."""

    code: str
    zh: str
    en: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    check: str = ""

    @property
    def domain(self) -> str:
        """The domain that refused: the first part of the check's name (``issuance`` of ``issuance.live_cards``)."""
        return self.check.partition(".")[0]

    @classmethod
    def of(cls, error: DomainError) -> ClosureRefusal:
        """A domain's own refusal (its code, sentences and extra fields) as a closure refusal."""
        return cls(error.code, error.zh, error.en, dict(error.extra))

    def as_dict(self) -> dict[str, Any]:
        """The refusal as the answer lists it."""
        return {
            "check": self.check,
            "domain": self.domain,
            "code": self.code,
            "zh": self.zh,
            "en": self.en,
            **self.detail,
        }


ClosureCheck = Callable[[Unit, UUID], Awaitable[ClosureRefusal | None]]
"""A domain's check: (the closure's unit, customer id) -> why not, or None."""


class ClosureRefused(DomainError):
    """A closure that one or more checks refused (409): the first refusal's code and reason, its domain,
    and every refusal under ``refusals``."""

    def __init__(self, refusals: list[ClosureRefusal]) -> None:
        first = refusals[0]
        extra = {
            **first.detail,
            "check": first.check,
            "domain": first.domain,
            "refusals": [r.as_dict() for r in refusals],
        }
        super().__init__(first.code, 409, first.zh, first.en, extra=extra)

    @property
    def refusals(self) -> list[dict[str, Any]]:
        return list(self.extra["refusals"])


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _purpose(metadata: Mapping[str, Any], code: str) -> str:
    return str(metadata.get("purpose", code))


async def no_money_left(unit: Unit, customer_id: UUID) -> ClosureRefusal | None:
    """Identity's check: every ledger account the customer holds has a zero balance (409
    ``closure_balance_left``, or ``closure_debt_left`` for what the customer owes, naming the account's
    purpose and the amount, in fen and in yuan)."""
    for account in await list_owned(unit.conn, owner=owner_of(customer_id)):
        if account.balance != 0:
            purpose = _purpose(account.metadata, account.code)
            kind = OWNED_ACCOUNTS.get(AccountPurpose(purpose)) if purpose in set(AccountPurpose) else None
            names = (
                {"name_zh": kind.zh, "name_en": kind.en} if kind else {"name_zh": purpose, "name_en": purpose}
            )
            # A debit-normal account (an account card's receivable) holds what the customer owes the bank.
            code = "closure_balance_left" if account.credit_normal else "closure_debt_left"
            return ClosureRefusal.of(
                IdentityError(
                    code,
                    text={"amount_yuan": _yuan(account.balance)} | names,
                    purpose=purpose,
                    account_id=str(account.id),
                    amount=account.balance,
                    currency=account.currency,
                )
            )
    return None


async def nothing_pending(unit: Unit, customer_id: UUID) -> ClosureRefusal | None:
    """Identity's check: no hold is pending on any of the customer's ledger accounts (409 ``closure_pending``)."""
    for account in await list_owned(unit.conn, owner=owner_of(customer_id)):
        if account.debits_pending != 0 or account.credits_pending != 0:
            purpose = _purpose(account.metadata, account.code)
            return ClosureRefusal.of(
                IdentityError(
                    "closure_pending",
                    purpose=purpose,
                    account_id=str(account.id),
                    debits_pending=account.debits_pending,
                    credits_pending=account.credits_pending,
                    currency=account.currency,
                )
            )
    return None


class ClosureChecks:
    """The checks a closure runs, by name, in the order they were registered; identity's own come first
    and are always there."""

    def __init__(self) -> None:
        self._checks: dict[str, ClosureCheck] = {}
        self.register(BALANCES, no_money_left)
        self.register(PENDING, nothing_pending)

    def register(self, name: str, check: ClosureCheck) -> None:
        """Add a domain's check under ``<domain>.<what>`` (at start-up); a name registered twice is an error."""
        if not _NAME.match(name):
            raise ValueError(f"closure check names are <domain>.<what> in lower case: {name!r}")
        if name in self._checks:
            raise ValueError(f"closure check {name!r} registered twice")
        self._checks[name] = check

    def unregister(self, name: str) -> None:
        """Remove a check (identity's own cannot be removed)."""
        if name in (BALANCES, PENDING):
            raise ValueError(f"identity's closure check {name!r} cannot be removed")
        self._checks.pop(name, None)

    @contextmanager
    def scoped(self) -> Iterator[ClosureChecks]:
        """Registrations made inside the block are undone at its end (tests share one application)."""
        before = dict(self._checks)
        try:
            yield self
        finally:
            self._checks = before

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def run(self, unit: Unit, customer_id: UUID) -> list[ClosureRefusal]:
        """Every check's refusal (empty when the account may close), each stamped with its check's name."""
        refusals: list[ClosureRefusal] = []
        for name, check in list(self._checks.items()):
            refusal = await check(unit, customer_id)
            if refusal is not None:
                refusals.append(replace(refusal, check=name))
        return refusals


def get_closure_checks(request: Request) -> ClosureChecks:
    """A route's dependency: the application's closure checks (``Runtime.closure_checks``)."""
    return cast(ClosureChecks, request.app.state.runtime.closure_checks)


ClosureChecksDep = Annotated[ClosureChecks, Depends(get_closure_checks)]
