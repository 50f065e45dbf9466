"""Indexes for searching the audit log: by action, by the outlet an entry names, and by time.

The log already has ``(actor_type, actor_id, seq)`` and ``(target_type, target_id, seq)``. Searches page
newest first by ``seq`` (identity/audit/store.py), so each index ends in ``seq``: a filter reads its
entries in page order and stops at the page's end. ``action`` uses ``text_pattern_ops`` so that a prefix
(``customer.login.*``) is a range of the same index as an exact action. An entry's outlet is the
``outlet_id`` of its detail (docs/architecture.md, "The audit log as people read it"): only the entries
that name one are indexed. ``at`` comes from the appending transaction's clock, so a time range is read
from its own index rather than assumed to follow ``seq``.

Deploying on a large database: these ``CREATE INDEX`` statements take a lock that blocks writes to the
table while they build (here every audited write, or every sign-in). On a large live table, build the
same indexes beforehand with ``CREATE INDEX CONCURRENTLY`` (outside a transaction) under the same names;
the migration then finds them (``IF NOT EXISTS``) and only records the revision.

Revision ID: 0017_audit_search
Revises: 0016_owned_accounts
Create Date: 2026-12-03
"""

from alembic import op

revision = "0017_audit_search"
down_revision = "0016_owned_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX IF NOT EXISTS audit_log_action ON audit_log (action text_pattern_ops, seq);
        CREATE INDEX IF NOT EXISTS audit_log_outlet ON audit_log ((detail->>'outlet_id'), seq)
            WHERE detail ? 'outlet_id';
        CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX audit_log_at, audit_log_outlet, audit_log_action")
