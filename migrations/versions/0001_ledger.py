"""The ledger: accounts, immutable transfers and open pending transfers.

Revision ID: 0001_ledger
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ledger_accounts (
            id uuid PRIMARY KEY,
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            code text NOT NULL,
            owner text NOT NULL,
            debits_must_not_exceed_credits boolean NOT NULL DEFAULT false,
            credits_must_not_exceed_debits boolean NOT NULL DEFAULT false,
            frozen boolean NOT NULL DEFAULT false,
            debits_posted bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
            credits_posted bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
            debits_pending bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
            credits_pending bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
            metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT one_balance_constraint
                CHECK (NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)),
            -- The engine checks these first; the database is the last line of defence.
            CONSTRAINT debits_within_credits
                CHECK (NOT debits_must_not_exceed_credits
                       OR debits_posted + debits_pending <= credits_posted),
            CONSTRAINT credits_within_debits
                CHECK (NOT credits_must_not_exceed_debits
                       OR credits_posted + credits_pending <= debits_posted)
        );
        CREATE INDEX ledger_accounts_owner ON ledger_accounts (owner);

        CREATE FUNCTION refuse_row_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger rows are never deleted or rewritten: % on % refused', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'restrict_violation';
        END $$;
        -- Accounts are closed or frozen, never deleted: a transfer's accounts always exist.
        CREATE TRIGGER ledger_accounts_no_delete
            BEFORE DELETE ON ledger_accounts FOR EACH ROW EXECUTE FUNCTION refuse_row_change();
        CREATE TRIGGER ledger_accounts_no_truncate
            BEFORE TRUNCATE ON ledger_accounts FOR EACH STATEMENT EXECUTE FUNCTION refuse_row_change();

        CREATE TABLE ledger_transfers (
            seq bigint GENERATED ALWAYS AS IDENTITY,
            id uuid PRIMARY KEY,
            kind text NOT NULL CHECK (kind IN ('single', 'pending', 'post_pending', 'void_pending')),
            -- No foreign keys: the engine reads both accounts FOR UPDATE in the same transaction, and
            -- accounts are never deleted (trigger above); a per-row FK check would halve bulk speed.
            debit_account_id uuid NOT NULL,
            credit_account_id uuid NOT NULL,
            amount bigint NOT NULL CHECK (amount > 0),
            currency text NOT NULL CHECK (char_length(currency) = 3),
            code text NOT NULL,
            pending_id uuid,
            timeout_seconds integer,
            expires_at timestamptz,
            metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at timestamptz NOT NULL,
            -- Posted totals of each side just after this transfer: the running balance, so that a
            -- balance at any moment is one index read however long the history grows.
            debit_debits_after bigint NOT NULL,
            debit_credits_after bigint NOT NULL,
            credit_debits_after bigint NOT NULL,
            credit_credits_after bigint NOT NULL,
            CHECK (debit_account_id <> credit_account_id),
            CHECK ((kind IN ('post_pending', 'void_pending')) = (pending_id IS NOT NULL))
        );
        CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id, seq);
        CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id, seq);

        -- Transfers are immutable: a correction is a new transfer, so history keeps both.
        CREATE TRIGGER ledger_transfers_no_update_delete
            BEFORE UPDATE OR DELETE ON ledger_transfers
            FOR EACH ROW EXECUTE FUNCTION refuse_row_change();
        CREATE TRIGGER ledger_transfers_no_truncate
            BEFORE TRUNCATE ON ledger_transfers
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_row_change();

        -- The life of each pending transfer: open until posted, voided or expired, exactly once.
        CREATE TABLE ledger_pending (
            id uuid PRIMARY KEY REFERENCES ledger_transfers (id),
            debit_account_id uuid NOT NULL,
            credit_account_id uuid NOT NULL,
            amount bigint NOT NULL CHECK (amount > 0),
            expires_at timestamptz,
            state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'posted', 'voided', 'expired')),
            resolved_by uuid REFERENCES ledger_transfers (id),
            resolved_at timestamptz,
            CHECK ((state = 'open') = (resolved_at IS NULL))
        );
        CREATE INDEX ledger_pending_expiry ON ledger_pending (expires_at) WHERE state = 'open';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE ledger_pending;
        DROP TABLE ledger_transfers;
        DROP TABLE ledger_accounts;
        DROP FUNCTION refuse_row_change();
        """
    )
