"""Idempotency keys: a client's ``Idempotency-Key`` per principal, with its request's fingerprint and answer.

A row is claimed before the work runs (``claim_id`` and a lease, ``locked_until``), answered after it
(``status`` and ``response``, the answer encrypted), or deleted when the work failed and may be retried.
``request_hash`` is a keyed HMAC of the principal, method, path and canonical body, so a body holding a
password cannot be guessed from the table. Rows are forgotten ``expires_at`` (a day after the claim).

Revision ID: 0011_idempotency_keys
Revises: 0010_staff_approvals
Create Date: 2026-12-10
"""

from alembic import op

revision = "0011_idempotency_keys"
down_revision = "0010_staff_approvals"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE idempotency_keys (
            principal text NOT NULL,  -- kind:id of the caller (customer:…, staff:…, machine:…)
            key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
            request_hash bytea NOT NULL,
            route text NOT NULL,  -- "POST /api/v1/admin/outlets": the route template, for operators
            claim_id uuid,  -- the attempt running now; NULL once answered
            locked_until timestamptz,  -- that attempt's lease: after it a retry may run again
            status smallint,  -- the stored answer's status; NULL while the first attempt runs
            response bytea,  -- the stored answer (headers and body), AES-GCM under the field key
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (principal, key),
            CHECK ((status IS NULL) = (response IS NULL)),
            CHECK ((status IS NULL) = (claim_id IS NOT NULL)),
            CHECK ((claim_id IS NULL) = (locked_until IS NULL))
        );
        CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE idempotency_keys")
