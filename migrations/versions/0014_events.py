"""Events with a transactional outbox: what a domain step tells other domains, committed with the step.

``event_outbox`` holds each event with the id of the transaction that wrote it (``pg_current_xact_id()``)
and a sequence number; consumers read it in (xid, seq) order and only below the oldest transaction still
running, so an event that commits late is never skipped (see ``etcwallet.platform.events``). The sequence
caches 100 values per connection: ordering between transactions is by xid, so seq only has to be unique
and increasing within one transaction, and a cache spares writers the sequence's lock.

``event_consumers`` keeps each consumer's offset (the last (xid, seq) it has passed) and the head event
it is retrying; its row lock is what stops two processes delivering to one consumer at once.
``event_parked`` keeps, per consumer, an event that failed too often (a copy, so pruning the outbox keeps
it) until an administrator replays it.

Revision ID: 0014_events
Revises: 0013_machine_clients
Create Date: 2026-12-04
"""

from alembic import op

revision = "0014_events"
down_revision = "0013_machine_clients"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE event_outbox (
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            seq bigint GENERATED ALWAYS AS IDENTITY (CACHE 100),
            id uuid NOT NULL,  -- the event's id (UUIDv7): NATS's message id, a handler's idempotency key
            type text NOT NULL,  -- <domain>.<what>
            key text NOT NULL,  -- what the event is about (an account, an order): consumers may group by it
            payload jsonb NOT NULL,
            emitted_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (xid, seq)
        );

        CREATE TABLE event_consumers (
            name text PRIMARY KEY,
            after_xid xid8 NOT NULL DEFAULT '0',  -- every event at or before (after_xid, after_seq) is done
            after_seq bigint NOT NULL DEFAULT 0,
            failing_xid xid8,  -- the next event, while its handler fails
            failing_seq bigint,
            attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            retry_at timestamptz,
            last_error text,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((failing_xid IS NULL) = (failing_seq IS NULL))
        );

        CREATE TABLE event_parked (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            consumer text NOT NULL REFERENCES event_consumers (name),
            event_id uuid NOT NULL,
            event_xid xid8 NOT NULL,
            event_seq bigint NOT NULL,
            type text NOT NULL,
            key text NOT NULL,
            payload jsonb NOT NULL,
            emitted_at timestamptz NOT NULL,
            attempts integer NOT NULL CHECK (attempts > 0),
            last_error text NOT NULL,
            status text NOT NULL DEFAULT 'parked' CHECK (status IN ('parked', 'replaying', 'replayed')),
            parked_at timestamptz NOT NULL DEFAULT now(),
            replay_requested_by text,  -- who asked for the last replay (staff:<id> or system:<name>)
            replay_requested_at timestamptz,
            replayed_at timestamptz,
            UNIQUE (consumer, event_id)
        );
        CREATE INDEX event_parked_by_status ON event_parked (status, id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE event_parked, event_consumers, event_outbox")
