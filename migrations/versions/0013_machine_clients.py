"""Machine clients: credentials for systems, not people (toll lanes and gantries, merchant terminals,
payment-provider callbacks, road operators' settlement downloads), and the nonces of signed requests.

A client signs its requests with an HMAC secret (kept encrypted, since the server must recompute the
signature) or presents a bearer key (kept as a keyed hash only). ``scopes`` decide what it may call;
a revoked client is kept (the audit log names it) and refused. ``machine_nonces`` remembers each signed
request's nonce until its timestamp leaves the replay window, so a captured request cannot be sent twice.

Revision ID: 0013_machine_clients
Revises: 0012_jobs
Create Date: 2026-12-04
"""

from alembic import op

revision = "0013_machine_clients"
down_revision = "0012_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE machine_clients (
            id uuid PRIMARY KEY,  -- UUIDv7: time-ordered, so lists page by id
            name text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
            kind text NOT NULL,
            scopes text[] NOT NULL CHECK (cardinality(scopes) > 0),
            auth text NOT NULL CHECK (auth IN ('hmac', 'bearer')),
            secret_sealed bytea,  -- hmac: AES-256-GCM (core/crypto.py), bound to the client's id
            key_hash bytea UNIQUE,  -- bearer: HMAC of the key under the look-up key
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by text NOT NULL,  -- 'cli' or a staff id
            revoked_at timestamptz,
            revoked_by text,
            last_heartbeat_at timestamptz,
            last_heartbeat jsonb,
            CHECK ((auth = 'hmac') = (secret_sealed IS NOT NULL)),
            CHECK ((auth = 'bearer') = (key_hash IS NOT NULL)),
            CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
        );

        CREATE TABLE machine_nonces (
            client_id uuid NOT NULL REFERENCES machine_clients (id),
            nonce text NOT NULL,
            expires_at timestamptz NOT NULL,  -- the request's timestamp plus the replay window
            PRIMARY KEY (client_id, nonce)
        );
        CREATE INDEX machine_nonces_expiry ON machine_nonces (expires_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE machine_nonces, machine_clients")
