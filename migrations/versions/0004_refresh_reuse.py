"""Remember each session's previous refresh token, so a replayed one is recognised.

Revision ID: 0004_refresh_reuse
Revises: 0003_unknown_login_lockout
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004_refresh_reuse"
down_revision = "0003_unknown_login_lockout"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- The hash of the refresh token this session's current one replaced. Presenting it again means
        -- two parties hold the session's tokens (one of them stole it), so the session is ended.
        ALTER TABLE sessions ADD COLUMN previous_refresh_hash bytea;
        CREATE INDEX sessions_previous_refresh ON sessions (previous_refresh_hash)
            WHERE previous_refresh_hash IS NOT NULL;
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE sessions DROP COLUMN previous_refresh_hash")
