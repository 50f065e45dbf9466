"""Owners the ledger knows: whether an owner's accounts are frozen, as one row per owner.

Freezing a customer freezes every ledger account they hold (``ledger/owners.py``). An account opened
lazily afterwards must open frozen too, and without a record of the owner's state an opening that races
with a freeze could miss it: the freeze updates the accounts it can see, and the new one is not yet
committed. So both take this row's lock first: an opening reads the owner's state under it (and a freeze
that committed before is seen), and a freeze that comes after sees the committed account.

Revision ID: 0016_owned_accounts
Revises: 0015_audit_append
Create Date: 2026-12-03
"""

from alembic import op

revision = "0016_owned_accounts"
down_revision = "0015_audit_append"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ledger_owners (
            owner text PRIMARY KEY,
            frozen boolean NOT NULL,
            updated_at timestamptz NOT NULL
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE ledger_owners")
