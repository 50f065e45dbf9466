"""The engine's in-memory state speaks the ledger's words (issue 17: names spelled out).

An account locked by a batch is built positionally from the lock query's row (``_AccountState(*row)``):
its fields must be the selected columns, in order and by name, so the engine, the schema and the API
read alike and a reordered column cannot be read into the wrong total.
"""

from __future__ import annotations

import re
from dataclasses import fields

from etcwallet.ledger import engine


def test_account_state_fields_are_the_lock_query_columns() -> None:
    selected = re.fullmatch(r"SELECT (.*?) FROM ledger_accounts .*", engine._LOCK_ACCOUNTS, re.S)
    assert selected is not None
    columns = [c.strip() for c in selected.group(1).split(",")]
    state_fields = [f.name for f in fields(engine._AccountState) if f.name != "dirty"]
    assert state_fields == columns
    assert columns[2:] == [
        "debits_must_not_exceed_credits",
        "credits_must_not_exceed_debits",
        "frozen",
        "debits_posted",
        "credits_posted",
        "debits_pending",
        "credits_pending",
    ]
