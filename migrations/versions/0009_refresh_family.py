"""Remember every refresh token a session has rotated out, so reuse of any of them ends the session.

Migration 0004 kept only the token the current one replaced (``sessions.previous_refresh_hash``): a thief
who held a token two rotations old was answered a plain 401 and the session lived on. Every rotated-out
refresh token's hash now goes into ``session_refresh_history`` (the session's rotation family); presenting
any of them ends the session. The column of 0004 is folded into the table and dropped.

Revision ID: 0009_refresh_family
Revises: 0008_ledger_refusals
Create Date: 2026-12-03
"""

from alembic import op

revision = "0009_refresh_family"
down_revision = "0008_ledger_refusals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE session_refresh_history (
            -- SHA-256 of a refresh token the session has rotated out: never valid again, and a sign of
            -- theft when presented.
            refresh_hash bytea PRIMARY KEY,
            session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            rotated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX session_refresh_history_session ON session_refresh_history (session_id);
        INSERT INTO session_refresh_history (refresh_hash, session_id, rotated_at)
            SELECT previous_refresh_hash, id, last_seen_at FROM sessions
            WHERE previous_refresh_hash IS NOT NULL
            ON CONFLICT DO NOTHING;
        ALTER TABLE sessions DROP COLUMN previous_refresh_hash;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE sessions ADD COLUMN previous_refresh_hash bytea;
        CREATE INDEX sessions_previous_refresh ON sessions (previous_refresh_hash)
            WHERE previous_refresh_hash IS NOT NULL;
        UPDATE sessions s SET previous_refresh_hash = h.refresh_hash
            FROM (SELECT DISTINCT ON (session_id) session_id, refresh_hash FROM session_refresh_history
                  ORDER BY session_id, rotated_at DESC) h
            WHERE h.session_id = s.id;
        DROP TABLE session_refresh_history;
        """
    )
