"""Tag issuance (标签办理) keeps what it writes: the OBU system and vehicle files persisted with the intent.

A tag issuance persists the exact bytes of both files (``writing``) before the tag is spoken to, so a tear
or a dead process is re-driven with the very same bytes (the signing date included) by registering again.
One registered issuance per tag rather than per application: a vehicle whose tag was deregistered is given a
new one on its application (one live tag per vehicle stays the chips' partial unique index).

Revision ID: 0024_tags
Revises: 0023_detection
Create Date: 2026-12-03
"""

from alembic import op

revision = "0024_tags"
down_revision = "0023_detection"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE issuance_tag_issuances
            ADD COLUMN system_content bytea,
            ADD COLUMN vehicle_content bytea,
            ADD CONSTRAINT issuance_tag_issuances_writing_has_content
                CHECK (status NOT IN ('writing', 'registered')
                       OR (system_content IS NOT NULL AND vehicle_content IS NOT NULL
                           AND chip_id IS NOT NULL AND first_read_number IS NOT NULL));
        CREATE INDEX issuance_tag_issuances_application ON issuance_tag_issuances (application_id, created_at);
        -- a vehicle whose tag was deregistered gets a new one on the same application: one registered
        -- issuance per tag (one live tag per vehicle stays with issuance_chips_live_vehicle)
        DROP INDEX issuance_tag_issuances_one_registered;
        CREATE UNIQUE INDEX issuance_tag_issuances_one_registered ON issuance_tag_issuances (chip_id)
            WHERE status = 'registered';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX issuance_tag_issuances_one_registered;
        CREATE UNIQUE INDEX issuance_tag_issuances_one_registered ON issuance_tag_issuances (application_id)
            WHERE status = 'registered';
        DROP INDEX issuance_tag_issuances_application;
        ALTER TABLE issuance_tag_issuances
            DROP CONSTRAINT issuance_tag_issuances_writing_has_content,
            DROP COLUMN vehicle_content,
            DROP COLUMN system_content;
        """
    )
