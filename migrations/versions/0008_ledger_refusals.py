"""Refused transfers are remembered: a refusal is final for its id.

A client that timed out resends its transfer with the same id. If the first attempt was refused (say
``exceeds_credits``) and money has arrived since, applying the resend would move money long after the
client was told "insufficient funds". The ledger keeps every refused id with the request's fields and
the refusal, and answers a resend with the same fields with that same refusal (TigerBeetle calls it
``id_already_failed``); a resend with other fields is ``transfer_id_conflict``.

Rows are immutable, as transfers are.

Revision ID: 0008_ledger_refusals
Revises: 0007_accounts_fillfactor
Create Date: 2026-12-03
"""

from alembic import op

revision = "0008_ledger_refusals"
down_revision = "0007_accounts_fillfactor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE ledger_refusals (
            id uuid PRIMARY KEY,
            -- The request as it was sent, to tell a resend from a different request with the same id.
            kind text NOT NULL CHECK (kind IN ('single', 'pending', 'post_pending', 'void_pending')),
            debit_account_id uuid,
            credit_account_id uuid,
            amount numeric,  -- as sent: a refused amount may be beyond any account's range
            currency text,
            code text,
            pending_id uuid,
            timeout_seconds bigint,
            metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
            linked boolean NOT NULL,
            -- The refusal: its code, the field it names and its details (e.g. the available amount).
            error text NOT NULL,
            error_field text,
            error_details jsonb NOT NULL DEFAULT '{}'::jsonb,
            refused_at timestamptz NOT NULL
        );
        CREATE TRIGGER ledger_refusals_no_update_delete
            BEFORE UPDATE OR DELETE ON ledger_refusals
            FOR EACH ROW EXECUTE FUNCTION refuse_row_change();
        CREATE TRIGGER ledger_refusals_no_truncate
            BEFORE TRUNCATE ON ledger_refusals
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_row_change();
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE ledger_refusals")
