"""Lockout for sign-ins at identifiers nobody holds, so a lock does not reveal who is registered.

Revision ID: 0003_unknown_login_lockout
Revises: 0002_identity
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003_unknown_login_lockout"
down_revision = "0002_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Failed sign-ins at a phone number or username that has no account, counted exactly as a real
        -- account's are: after five, the identifier answers "locked until …" like a real one would.
        CREATE TABLE unknown_login_failures (
            identity_hash bytea PRIMARY KEY,  -- SHA-256 of "<customers|staff>:<phone or username>"
            failed_logins integer NOT NULL DEFAULT 0,
            lockouts integer NOT NULL DEFAULT 0,
            locked_until timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE unknown_login_failures")
