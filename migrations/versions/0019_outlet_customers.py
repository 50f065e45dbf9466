"""Customers created at an outlet, and how a customer was verified (issue 17).

An operator at an outlet opens an account from the real-name data the customer shows at the counter,
with no password: ``customers.password_hash`` is NULL until the customer claims the account (an SMS
code proves the phone, then they set a password). Only an account opened at an outlet may be unclaimed:
``created_at_outlet`` and ``created_by_staff`` say where and by whom (both set, or neither).

``customer_profiles.verified_by`` names what verified the real-name profile since ``verified_at``: an ID
check by an operator at an outlet (``outlet_id_check``) or a bank card its bank verified with the name,
ID number and phone (``bank_card``). Both are set together or neither; changing the profile clears both.

Revision ID: 0019_outlet_customers
Revises: 0018_session_devices
Create Date: 2026-12-03
"""

from alembic import op

revision = "0019_outlet_customers"
down_revision = "0018_session_devices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE customers ALTER COLUMN password_hash DROP NOT NULL;
        ALTER TABLE customers
            ADD COLUMN created_at_outlet uuid REFERENCES outlets (id),
            ADD COLUMN created_by_staff uuid REFERENCES staff (id),
            ADD CONSTRAINT customers_created_at_outlet_by_staff
                CHECK ((created_at_outlet IS NULL) = (created_by_staff IS NULL)),
            ADD CONSTRAINT customers_unclaimed_only_from_outlet
                CHECK (password_hash IS NOT NULL OR created_at_outlet IS NOT NULL);

        -- Nothing wrote verified_at before this revision; a row that has one has no method to name.
        UPDATE customer_profiles SET verified_at = NULL WHERE verified_at IS NOT NULL;
        ALTER TABLE customer_profiles
            ADD COLUMN verified_by text CHECK (verified_by IN ('outlet_id_check', 'bank_card')),
            ADD CONSTRAINT customer_profiles_verified_with_method
                CHECK ((verified_at IS NULL) = (verified_by IS NULL));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE customer_profiles DROP CONSTRAINT customer_profiles_verified_with_method;
        ALTER TABLE customer_profiles DROP COLUMN verified_by;
        ALTER TABLE customers DROP CONSTRAINT customers_unclaimed_only_from_outlet;
        ALTER TABLE customers DROP CONSTRAINT customers_created_at_outlet_by_staff;
        ALTER TABLE customers DROP COLUMN created_by_staff;
        ALTER TABLE customers DROP COLUMN created_at_outlet;
        -- An unclaimed account keeps a hash no password matches (a claim by SMS still sets one).
        UPDATE customers SET password_hash = '!unclaimed' WHERE password_hash IS NULL;
        ALTER TABLE customers ALTER COLUMN password_hash SET NOT NULL;
        """
    )
