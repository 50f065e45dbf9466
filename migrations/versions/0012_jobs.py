"""Jobs: scheduled and queued work that runs once across every process.

One row per schedule (``scheduled``, unique by name) and one per queued job (``enqueue``, optionally
deduplicated by ``key``). A runner claims a due row with ``FOR UPDATE SKIP LOCKED`` and holds it by a
*lease* (``lease_token``, ``lease_until``) that it renews while the work runs: no transaction stays open
across the job, and a runner that dies stops renewing, so its claim lapses and another runner takes over.
``attempts`` counts the tries of the current run, ``retry`` says the next claim is a retry of a failed
one; ``outcome``, ``last_error`` and ``result`` describe the last finished try.

Revision ID: 0012_jobs
Revises: 0011_idempotency_keys
Create Date: 2026-12-10
"""

from alembic import op

revision = "0012_jobs"
down_revision = "0011_idempotency_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE jobs (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL,
            scheduled boolean NOT NULL DEFAULT false,
            key text,  -- a queued job's deduplication key (one job per name and key)
            payload jsonb NOT NULL DEFAULT '{}',
            state text NOT NULL DEFAULT 'waiting'
                CHECK (state IN ('waiting', 'running', 'done', 'failed')),
            run_at timestamptz NOT NULL DEFAULT now(),
            attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            retry boolean NOT NULL DEFAULT false,
            lease_token uuid,
            lease_owner text,
            lease_until timestamptz,
            started_at timestamptz,
            finished_at timestamptz,
            outcome text CHECK (outcome IN ('success', 'failure')),
            last_error text,
            result jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((state = 'running') = (lease_token IS NOT NULL)),
            CHECK ((state = 'running') = (lease_until IS NOT NULL)),
            CHECK (NOT (scheduled AND key IS NOT NULL)),
            CHECK (NOT (scheduled AND state IN ('done', 'failed')))  -- a schedule never ends
        );
        CREATE UNIQUE INDEX jobs_one_schedule ON jobs (name) WHERE scheduled;
        CREATE UNIQUE INDEX jobs_by_key ON jobs (name, key) WHERE key IS NOT NULL;
        CREATE INDEX jobs_due ON jobs (run_at) WHERE state = 'waiting';
        CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
        CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state = 'done';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE jobs")
