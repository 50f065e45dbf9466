"""Ledger migrations that change numbering or storage must carry an existing database over correctly."""

from __future__ import annotations

import os

import psycopg

from etcwallet.core.db import create_database, migrate
from etcwallet.ledger.engine import SEQ_BLOCK


def test_block_numbering_starts_a_fresh_block_after_old_numbering(database_url: str) -> None:
    """0007: the sequence steps by SEQ_BLOCK from the first whole block after the last value used."""
    name = f"etcw_test_migration_{os.getpid()}"
    url = create_database(database_url, name)
    migrate(url, "0006_history_blocks")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT setval('ledger_transfers_seq_seq', 3 * %s + 17)", (SEQ_BLOCK,))
        migrate(url)
        row = conn.execute(
            "SELECT increment_by FROM pg_sequences WHERE sequencename = 'ledger_transfers_seq_seq'"
        )
        assert row.fetchone() == (SEQ_BLOCK,)
        taken = [conn.execute("SELECT nextval('ledger_transfers_seq_seq')").fetchone() for _ in range(2)]
        assert taken == [(4 * SEQ_BLOCK,), (5 * SEQ_BLOCK,)]
        row = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'ledger_accounts'")
        assert row.fetchone() == (["fillfactor=50"],)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
