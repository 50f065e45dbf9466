"""Closing a customer's account (issue 17): when it was closed, by whom, and when its personal data was
anonymized after the retention period.

``closed_at`` is set with ``status = 'closed'`` by the closure (customers/closure.py); ``closed_by`` is
``customer`` or ``staff:<uuid>``. ``anonymized_at`` is set by the ``identity.anonymize_closed`` job once
``ETCW_CUSTOMER_RETENTION_DAYS`` have passed since ``closed_at``: the phone becomes ``closed:<uuid>`` (the
number may register again), the real-name profile, payment password and second factors are deleted. The
partial index answers the job's question ("closed long enough, not yet anonymized") without a scan.

Revision ID: 0020_customer_closure
Revises: 0019_outlet_customers
Create Date: 2026-12-03
"""

from alembic import op

revision = "0020_customer_closure"
down_revision = "0019_outlet_customers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE customers
            ADD COLUMN closed_at timestamptz,
            ADD COLUMN closed_by text,
            ADD COLUMN anonymized_at timestamptz,
            ADD CONSTRAINT customers_anonymized_after_closing
                CHECK (anonymized_at IS NULL OR (status = 'closed' AND closed_at IS NOT NULL)),
            -- a closed account without its time would never be anonymized: no closure may leave one
            ADD CONSTRAINT customers_closed_when
                CHECK (status <> 'closed' OR closed_at IS NOT NULL) NOT VALID;
        -- no code closed an account before this revision; a row closed by hand takes the migration's time
        UPDATE customers SET closed_at = now(), closed_by = 'migration' WHERE status = 'closed' AND closed_at IS NULL;
        ALTER TABLE customers VALIDATE CONSTRAINT customers_closed_when;
        CREATE INDEX customers_closed_not_anonymized ON customers (closed_at)
            WHERE status = 'closed' AND anonymized_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX customers_closed_not_anonymized;
        ALTER TABLE customers
            DROP CONSTRAINT customers_closed_when,
            DROP CONSTRAINT customers_anonymized_after_closing,
            DROP COLUMN anonymized_at,
            DROP COLUMN closed_by,
            DROP COLUMN closed_at;
        """
    )
