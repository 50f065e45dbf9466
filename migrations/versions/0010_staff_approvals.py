"""Separation of duties for staff: privileged role changes wait for a second administrator; staff enroll
their own TOTP with a one-time enrollment code.

Granting or taking the ``finance`` or ``administrator`` role (by creating staff in it, or changing a role
to or from it) is a *pending change* that a different active administrator approves or rejects before it
takes effect. A staff member created that way waits in status ``pending`` (cannot sign in) and ends
``active`` or ``rejected``. ``password_set_by`` names who set a staff member's password (NULL: the command
line, the bootstrap path); that person may not issue the member's TOTP enrollment code, which is stored
hashed, expires and works once.

Revision ID: 0010_staff_approvals
Revises: 0009_refresh_family
Create Date: 2026-12-03
"""

from alembic import op

revision = "0010_staff_approvals"
down_revision = "0009_refresh_family"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE staff DROP CONSTRAINT staff_status_check;
        ALTER TABLE staff ADD CONSTRAINT staff_status_check
            CHECK (status IN ('active', 'disabled', 'pending', 'rejected'));
        ALTER TABLE staff ADD COLUMN password_set_by uuid REFERENCES staff (id);

        CREATE TABLE staff_changes (
            id uuid PRIMARY KEY,
            staff_id uuid NOT NULL REFERENCES staff (id),
            kind text NOT NULL CHECK (kind IN ('create', 'role')),
            role_from text,  -- NULL when the change creates the staff member
            role_to text NOT NULL,
            outlet_id uuid REFERENCES outlets (id),
            status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
            requested_by uuid NOT NULL REFERENCES staff (id),
            requested_at timestamptz NOT NULL DEFAULT now(),
            decided_by uuid REFERENCES staff (id),
            decided_at timestamptz,
            CHECK ((status = 'pending') = (decided_by IS NULL)),
            CHECK ((status = 'pending') = (decided_at IS NULL)),
            CHECK (status <> 'approved' OR decided_by <> requested_by)  -- nobody approves their own request
        );
        CREATE UNIQUE INDEX staff_changes_one_pending ON staff_changes (staff_id) WHERE status = 'pending';
        CREATE INDEX staff_changes_by_time ON staff_changes (status, requested_at DESC);

        CREATE TABLE staff_enrollment_codes (
            staff_id uuid PRIMARY KEY REFERENCES staff (id),  -- one live code per staff member
            code_hash bytea NOT NULL UNIQUE,
            issued_by uuid REFERENCES staff (id),  -- NULL: the command line
            expires_at timestamptz NOT NULL,
            used_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE staff_enrollment_codes, staff_changes;
        ALTER TABLE staff DROP COLUMN password_set_by;
        UPDATE staff SET status = 'disabled' WHERE status IN ('pending', 'rejected');
        ALTER TABLE staff DROP CONSTRAINT staff_status_check;
        ALTER TABLE staff ADD CONSTRAINT staff_status_check CHECK (status IN ('active', 'disabled'));
        """
    )
