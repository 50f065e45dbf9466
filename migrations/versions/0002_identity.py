"""Identity: customers, staff and outlets, sessions, SMS codes, second factors, rate limits, audit log.

Revision ID: 0002_identity
Revises: 0001_ledger
Create Date: 2026-11-25
"""

from alembic import op

revision = "0002_identity"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE outlets (
            id uuid PRIMARY KEY,
            code text NOT NULL UNIQUE,
            name text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('self_operated', 'bank')),
            bank text CHECK (bank IN ('lanzhou_bank', 'gansu_bank', 'icbc', 'abc', 'rural_credit', 'ccb', 'psbc')),
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((kind = 'bank') = (bank IS NOT NULL))
        );

        CREATE TABLE customers (
            id uuid PRIMARY KEY,
            phone text NOT NULL UNIQUE,
            password_hash text NOT NULL,
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
            frozen_reason text,
            frozen_by text,
            frozen_at timestamptz,
            failed_logins integer NOT NULL DEFAULT 0,
            lockouts integer NOT NULL DEFAULT 0,
            locked_until timestamptz,
            password_changed_at timestamptz NOT NULL DEFAULT now(),
            created_at timestamptz NOT NULL DEFAULT now()
        );

        -- Real-name data: encrypted at rest (AES-GCM); looked up by a keyed hash, shown masked.
        CREATE TABLE customer_profiles (
            customer_id uuid PRIMARY KEY REFERENCES customers (id),
            name_enc bytea NOT NULL,
            id_type text NOT NULL CHECK (id_type IN ('resident_id', 'passport', 'hk_macao_permit', 'taiwan_permit', 'military_id')),
            id_number_enc bytea NOT NULL,
            id_number_hash bytea NOT NULL,
            id_number_masked text NOT NULL,
            birth_date date,
            verified_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX customer_profiles_id_number ON customer_profiles (id_type, id_number_hash);

        CREATE TABLE payment_passwords (
            customer_id uuid PRIMARY KEY REFERENCES customers (id),
            password_hash text NOT NULL,
            failed_attempts integer NOT NULL DEFAULT 0,
            locked_at timestamptz,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE staff (
            id uuid PRIMARY KEY,
            username text NOT NULL UNIQUE,
            display_name text NOT NULL,
            password_hash text NOT NULL,
            role text NOT NULL CHECK (role IN ('outlet_operator', 'outlet_supervisor', 'bank_operator', 'finance',
                                               'risk_officer', 'support_agent', 'administrator')),
            outlet_id uuid REFERENCES outlets (id),
            status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
            failed_logins integer NOT NULL DEFAULT 0,
            lockouts integer NOT NULL DEFAULT 0,
            locked_until timestamptz,
            password_changed_at timestamptz NOT NULL DEFAULT now(),
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK (role NOT IN ('outlet_operator', 'outlet_supervisor', 'bank_operator') OR outlet_id IS NOT NULL)
        );

        -- Second factors, for customers and staff alike (principal = 'customer' | 'staff').
        CREATE TABLE totp_factors (
            principal_type text NOT NULL CHECK (principal_type IN ('customer', 'staff')),
            principal_id uuid NOT NULL,
            secret_enc bytea NOT NULL,
            confirmed_at timestamptz,
            last_used_step bigint,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (principal_type, principal_id)
        );
        CREATE TABLE recovery_codes (
            principal_type text NOT NULL,
            principal_id uuid NOT NULL,
            code_hash bytea NOT NULL,
            used_at timestamptz,
            PRIMARY KEY (principal_type, principal_id, code_hash)
        );
        CREATE TABLE passkeys (
            id uuid PRIMARY KEY,
            principal_type text NOT NULL CHECK (principal_type IN ('customer', 'staff')),
            principal_id uuid NOT NULL,
            credential_id bytea NOT NULL UNIQUE,
            public_key bytea NOT NULL,
            sign_count bigint NOT NULL DEFAULT 0,
            transports text[] NOT NULL DEFAULT '{}',
            name text NOT NULL DEFAULT '',
            created_at timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz
        );
        CREATE INDEX passkeys_principal ON passkeys (principal_type, principal_id);
        CREATE TABLE webauthn_challenges (
            id uuid PRIMARY KEY,
            principal_type text,
            principal_id uuid,
            purpose text NOT NULL CHECK (purpose IN ('register', 'login', 'step_up')),
            challenge bytea NOT NULL,
            expires_at timestamptz NOT NULL,
            used_at timestamptz
        );

        -- Sessions: opaque random tokens, stored only as hashes.
        CREATE TABLE sessions (
            id uuid PRIMARY KEY,
            token_hash bytea NOT NULL UNIQUE,
            refresh_hash bytea NOT NULL UNIQUE,
            csrf_token text NOT NULL,
            principal_type text NOT NULL CHECK (principal_type IN ('customer', 'staff')),
            principal_id uuid NOT NULL,
            created_at timestamptz NOT NULL,
            last_seen_at timestamptz NOT NULL,
            idle_expires_at timestamptz NOT NULL,
            absolute_expires_at timestamptz NOT NULL,
            stepped_up_at timestamptz,
            step_up_factor text,
            revoked_at timestamptz,
            revoked_reason text,
            ip text,
            user_agent text
        );
        CREATE INDEX sessions_principal ON sessions (principal_type, principal_id) WHERE revoked_at IS NULL;

        -- The first step of a two-step login (password accepted, second factor still owed).
        CREATE TABLE login_tickets (
            ticket_hash bytea PRIMARY KEY,
            principal_type text NOT NULL,
            principal_id uuid NOT NULL,
            expires_at timestamptz NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            used_at timestamptz
        );

        CREATE TABLE sms_codes (
            id uuid PRIMARY KEY,
            phone text NOT NULL,
            purpose text NOT NULL,
            code_hash bytea NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            consumed_at timestamptz,
            ip text
        );
        CREATE INDEX sms_codes_phone ON sms_codes (phone, purpose, created_at DESC);

        -- The development SMS sink: messages a real gateway would have sent. Unused in production.
        CREATE TABLE sms_outbox (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            phone text NOT NULL,
            body text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX sms_outbox_phone ON sms_outbox (phone, id DESC);

        -- Fixed-window counters shared by every worker process.
        CREATE TABLE rate_limits (
            key text NOT NULL,
            window_start timestamptz NOT NULL,
            count integer NOT NULL,
            PRIMARY KEY (key, window_start)
        );

        -- The append-only audit log: each row carries the hash of the one before.
        CREATE TABLE audit_log (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL,
            actor_type text NOT NULL,
            actor_id text,
            action text NOT NULL,
            target_type text,
            target_id text,
            outcome text NOT NULL,
            ip text,
            user_agent text,
            detail jsonb NOT NULL DEFAULT '{}'::jsonb,
            prev_hash bytea NOT NULL,
            hash bytea NOT NULL
        );
        CREATE INDEX audit_log_actor ON audit_log (actor_type, actor_id, seq);
        CREATE INDEX audit_log_target ON audit_log (target_type, target_id, seq);
        CREATE TRIGGER audit_log_no_update_delete
            BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_row_change();
        CREATE TRIGGER audit_log_no_truncate
            BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION refuse_row_change();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE audit_log, rate_limits, sms_outbox, sms_codes, login_tickets, sessions, webauthn_challenges, passkeys,
            recovery_codes, totp_factors, staff, payment_passwords, customer_profiles, customers, outlets;
        """
    )
