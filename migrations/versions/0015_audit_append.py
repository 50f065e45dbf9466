"""The audit chain appended by one function call: the server links each row to the one before.

``audit_append(contents)`` takes each entry's canonical content (the JSON array that its hash covers after
the previous hash, as ``platform/audit.py`` writes it), takes the chain's advisory lock, and inserts the
rows in order with ``hash = sha256(prev_hash || content)``. One call appends a whole batch of entries with
no answer needed between them, so it travels in the same message as the rest of a commit, and the chain's
lock is held only from that message to the end of the commit. The function runs with its caller's
rights (the service role inserts into ``audit_log`` as before).

Revision ID: 0015_audit_append
Revises: 0014_events
Create Date: 2026-12-03
"""

from alembic import op

revision = "0015_audit_append"
down_revision = "0014_events"
branch_labels = None
depends_on = None

AUDIT_LOCK_KEY = (
    0x45544357_41554449  # "ETCW" "AUDI": the chain's lock, the key Python's appends took before this function
)


def upgrade() -> None:
    op.execute(
        f"""
        CREATE FUNCTION audit_append(contents text[]) RETURNS bigint
        LANGUAGE plpgsql SECURITY INVOKER SET search_path FROM CURRENT AS $$
        DECLARE
            prev bytea;
            content text;
            f jsonb;
            digest bytea;
            last_seq bigint;
        BEGIN
            PERFORM pg_advisory_xact_lock({AUDIT_LOCK_KEY});
            SELECT hash INTO prev FROM audit_log ORDER BY seq DESC LIMIT 1;
            prev := coalesce(prev, decode(repeat('00', 32), 'hex'));
            FOREACH content IN ARRAY contents LOOP
                -- [at, actor_type, actor_id, action, target_type, target_id, outcome, ip, user_agent, detail]
                f := content::jsonb;
                digest := sha256(prev || convert_to(content, 'UTF8'));
                INSERT INTO audit_log (at, actor_type, actor_id, action, target_type, target_id, outcome, ip,
                                       user_agent, detail, prev_hash, hash)
                VALUES ((f->>0)::timestamptz, f->>1, f->>2, f->>3, f->>4, f->>5, f->>6, f->>7, f->>8, f->9,
                        prev, digest)
                RETURNING seq INTO last_seq;
                prev := digest;
            END LOOP;
            RETURN last_seq;
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION audit_append(text[])")
