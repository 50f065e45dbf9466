"""Card and tag detection (卡签检测, issue 18): card activations persisted before the card is written, and
tag issuances that end when their tag is deregistered.

- ``issuance_card_activations``: one row per activation or renewal of a card (卡片激活): the new start and
  expiry dates are persisted (``writing``) before 0015 bytes 20..27 are written, so a card that leaves the
  reader mid-write is finished by activating again with the very same dates; ``done`` once recorded. At
  most one activation of a card is ``writing`` at a time.
- ``issuance_tag_issuances.status`` may be ``deregistered``: 标签注销 ends the registered issuance of the
  tag, so the application's one registered tag issuance may be a new tag's.

Revision ID: 0023_detection
Revises: 0022_issuance
Create Date: 2026-12-03
"""

from alembic import op

revision = "0023_detection"
down_revision = "0022_issuance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE issuance_card_activations (
            id uuid PRIMARY KEY,
            chip_id uuid NOT NULL REFERENCES issuance_chips (id),
            outlet_id uuid NOT NULL REFERENCES outlets (id),
            operator_id uuid NOT NULL REFERENCES staff (id),
            renewal boolean NOT NULL,
            start_date date NOT NULL,
            expiry_date date NOT NULL CHECK (expiry_date > start_date),
            status text NOT NULL CHECK (status IN ('writing', 'done')),
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE UNIQUE INDEX issuance_card_activations_one_writing ON issuance_card_activations (chip_id)
            WHERE status = 'writing';

        ALTER TABLE issuance_tag_issuances DROP CONSTRAINT issuance_tag_issuances_status_check;
        ALTER TABLE issuance_tag_issuances ADD CONSTRAINT issuance_tag_issuances_status_check
            CHECK (status IN ('card_read', 'tag_read', 'writing', 'failed', 'registered', 'deregistered'));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE issuance_tag_issuances DROP CONSTRAINT issuance_tag_issuances_status_check;
        ALTER TABLE issuance_tag_issuances ADD CONSTRAINT issuance_tag_issuances_status_check
            CHECK (status IN ('card_read', 'tag_read', 'writing', 'failed', 'registered'));
        DROP TABLE issuance_card_activations;
        """
    )
