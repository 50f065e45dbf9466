"""Lockout counters that forget: failures and lock escalation expire after a quiet day.

Revision ID: 0005_lockout_memory
Revises: 0004_refresh_reuse
Create Date: 2026-11-25
"""

from alembic import op

revision = "0005_lockout_memory"
down_revision = "0004_refresh_reuse"
branch_labels = None
depends_on = None

TABLES = ("customers", "staff", "unknown_login_failures")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"""
            -- When the last failed sign-in happened, and when the last lock ended (or will end): a count
            -- or an escalation older than a day is forgotten, so a lock years ago does not lengthen today's.
            ALTER TABLE {table} ADD COLUMN last_failed_at timestamptz, ADD COLUMN last_lock_until timestamptz;
            UPDATE {table} SET last_lock_until = locked_until, last_failed_at = now() WHERE locked_until IS NOT NULL
                OR failed_logins > 0;
            """
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP COLUMN last_failed_at, DROP COLUMN last_lock_until")
