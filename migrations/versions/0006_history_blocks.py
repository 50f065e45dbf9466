"""Account history indexed by account and 8,192-transfer block of ``seq``, not by every single ``seq``.

An index keyed on (account, seq) gets a separate entry for every transfer; keyed on (account, seq >> 13),
an account's transfers within one block of 8,192 share a key, and PostgreSQL stores them as one posting
list. The index is several times smaller for busy accounts and bulk batches, so inserting into it
splits far fewer pages: bulk calls of 8,000 transfers run about a tenth faster. Readers order a block's
rows by ``seq`` themselves (at most 8,192 rows, an incremental sort).

On a large live table, build the new indexes with ``CREATE INDEX CONCURRENTLY`` before this migration.

Revision ID: 0006_history_blocks
Revises: 0005_lockout_memory
Create Date: 2026-11-25
"""

from alembic import op

revision = "0006_history_blocks"
down_revision = "0005_lockout_memory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The shift (13) is HISTORY_BLOCK_SHIFT in etcwallet.ledger.service: the queries must spell the
    # same expression for PostgreSQL to use these indexes.
    op.execute(
        """
        CREATE INDEX IF NOT EXISTS ledger_transfers_debit_block
            ON ledger_transfers (debit_account_id, (seq >> 13));
        CREATE INDEX IF NOT EXISTS ledger_transfers_credit_block
            ON ledger_transfers (credit_account_id, (seq >> 13));
        DROP INDEX ledger_transfers_debit;
        DROP INDEX ledger_transfers_credit;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id, seq);
        CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id, seq);
        DROP INDEX ledger_transfers_debit_block;
        DROP INDEX ledger_transfers_credit_block;
        """
    )
