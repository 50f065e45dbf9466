"""Bank cards bound to customers (payments/, issue 18; the wallet of issue 20 reuses them).

The number is stored sealed (AES-GCM, ``number_enc``), found by its keyed hash (``number_hash``) and shown
masked (``masked``, computed once at binding). One card, one customer: a live card's hash is unique across
all customers (an unbound card may be bound again, as a new row). A customer has at most one default
card (a partial unique index), and an unbound card is never the default.

Revision ID: 0021_bank_cards
Revises: 0020_customer_closure
Create Date: 2026-12-04
"""

from alembic import op

revision = "0021_bank_cards"
down_revision = "0020_customer_closure"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE bank_cards (
            id uuid PRIMARY KEY,
            customer_id uuid NOT NULL REFERENCES customers (id),
            number_enc bytea NOT NULL,
            number_hash bytea NOT NULL CHECK (octet_length(number_hash) = 32),
            masked text NOT NULL,
            bank_code text NOT NULL,
            card_type text NOT NULL CHECK (card_type IN ('debit', 'credit')),
            is_default boolean NOT NULL DEFAULT false,
            bound_at_outlet uuid REFERENCES outlets (id),
            created_at timestamptz NOT NULL,
            unbound_at timestamptz,
            CONSTRAINT bank_cards_unbound_not_default CHECK (unbound_at IS NULL OR NOT is_default)
        );
        CREATE UNIQUE INDEX bank_cards_live_number ON bank_cards (number_hash) WHERE unbound_at IS NULL;
        CREATE UNIQUE INDEX bank_cards_one_default ON bank_cards (customer_id) WHERE is_default;
        CREATE INDEX bank_cards_customer ON bank_cards (customer_id) WHERE unbound_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE bank_cards")
