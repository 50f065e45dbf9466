"""The transfer sequence counts in steps of 8,192: each batch takes one value and numbers its transfers.

Before, every inserted row took its own ``nextval``, and a bulk call of 8,000 transfers straddled two
history blocks (``seq >> 13``) half the time. Now a batch takes one value once its account locks are
held, and its transfers get that value, the next, and so on in the order they were applied: one batch
fills one block alone, every account has one history index entry per batch, and PostgreSQL evaluates no
sequence per row. Order between batches is kept: a batch that waits for another's locks takes its value
after that one has taken its own.

The first value after this migration starts a fresh block, so no block mixes old and new numbering.

Revision ID: 0007_seq_block_per_batch
Revises: 0006_history_blocks
Create Date: 2026-12-02
"""

from alembic import op

revision = "0007_seq_block_per_batch"
down_revision = "0006_history_blocks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 8,192 is SEQ_BLOCK in etcwallet.ledger.engine (1 << HISTORY_BLOCK_SHIFT).
    op.execute(
        """
        ALTER TABLE ledger_transfers ALTER COLUMN seq SET INCREMENT BY 8192;
        SELECT setval('ledger_transfers_seq_seq', ((last_value >> 13) + 1) << 13, false)
            FROM ledger_transfers_seq_seq;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE ledger_transfers ALTER COLUMN seq SET INCREMENT BY 1")
