"""Sessions carry the device id the client sends (issue 17), so later rules can tell a new device.

``device_id`` is the random id the app keeps and sends as ``X-Device-Id`` (8-64 of A-Z a-z 0-9 _ -);
NULL when the client sent none (older apps, browsers, scripts). The index answers "has this principal
ever signed in from this device?" (revoked and expired sessions included: they are the device history),
asked once per new session.

Deploying on a large database: these ``CREATE INDEX`` statements take a lock that blocks writes to the
table while they build (here every audited write, or every sign-in). On a large live table, build the
same indexes beforehand with ``CREATE INDEX CONCURRENTLY`` (outside a transaction) under the same names;
the migration then finds them (``IF NOT EXISTS``) and only records the revision.

Revision ID: 0018_session_devices
Revises: 0017_audit_search
Create Date: 2026-12-03
"""

from alembic import op

revision = "0018_session_devices"
down_revision = "0017_audit_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE sessions ADD COLUMN device_id text
            CHECK (device_id ~ '^[A-Za-z0-9_-]{8,64}$');
        CREATE INDEX IF NOT EXISTS sessions_principal_device ON sessions (principal_type, principal_id, device_id)
            WHERE device_id IS NOT NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX sessions_principal_device;
        ALTER TABLE sessions DROP COLUMN device_id;
        """
    )
