"""ETC issuance at outlets (issue 18): stock, vehicle applications, card and tag issuances.

- ``issuance_chips`` holds every user card and OBU tag the issuer owns, from the batch that brought it
  into an outlet's stock to the end of its life. ``number`` is the card number (20 digits) or the OBU
  number (16). A live chip (issued or active) names its vehicle (plate + colour): one vehicle holds at
  most one live card and one live tag (a partial unique index).
- ``issuance_chip_history`` records every change of a chip's status or outlet, append-only.
- ``issuance_applications`` are the vehicle applications operators create at an outlet (the only source
  issuance accepts): customer, vehicle, card type wanted, the bank card to bind at a bank outlet.
- ``issuance_card_issuances`` / ``issuance_tag_issuances``: one row per application and chip, the step
  persisted before each exchange with the chip (``writing``) and its outcome after; attempts and failures
  count the seed's retry rules.

Revision ID: 0022_issuance
Revises: 0021_bank_cards
Create Date: 2026-12-03
"""

from alembic import op

revision = "0022_issuance"
down_revision = "0021_bank_cards"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE issuance_stock_batches (
            id uuid PRIMARY KEY,
            kind text NOT NULL CHECK (kind IN ('card', 'tag')),
            card_type smallint CHECK (card_type IN (22, 23)),
            outlet_id uuid NOT NULL REFERENCES outlets (id),
            first_number text NOT NULL,
            count integer NOT NULL CHECK (count > 0),
            created_by text NOT NULL,
            created_at timestamptz NOT NULL,
            CHECK ((kind = 'card') = (card_type IS NOT NULL))
        );

        CREATE TABLE issuance_applications (
            id uuid PRIMARY KEY,
            outlet_id uuid NOT NULL REFERENCES outlets (id),
            operator_id uuid NOT NULL REFERENCES staff (id),
            customer_id uuid NOT NULL REFERENCES customers (id),
            plate text NOT NULL,
            plate_colour smallint NOT NULL,
            vehicle_kind text NOT NULL CHECK (vehicle_kind IN ('passenger', 'truck', 'special')),
            vehicle_class smallint NOT NULL,
            user_type smallint NOT NULL DEFAULT 0,
            vin text NOT NULL,
            engine_number text NOT NULL,
            length_mm integer NOT NULL,
            width_mm integer NOT NULL,
            height_mm integer NOT NULL,
            seats integer,
            axles integer,
            gross_mass_kg integer,
            card_type smallint NOT NULL CHECK (card_type IN (22, 23)),
            bank_card_id uuid REFERENCES bank_cards (id),
            status text NOT NULL CHECK (status IN ('open', 'card_issued', 'tag_issued', 'cancelled')),
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE INDEX issuance_applications_vehicle ON issuance_applications (plate, plate_colour);
        CREATE INDEX issuance_applications_outlet ON issuance_applications (outlet_id, created_at DESC, id);
        CREATE UNIQUE INDEX issuance_applications_one_open ON issuance_applications (plate, plate_colour)
            WHERE status = 'open';

        CREATE TABLE issuance_chips (
            id uuid PRIMARY KEY,
            kind text NOT NULL CHECK (kind IN ('card', 'tag')),
            number text NOT NULL,
            card_type smallint CHECK (card_type IN (22, 23)),
            batch_id uuid NOT NULL REFERENCES issuance_stock_batches (id),
            outlet_id uuid NOT NULL REFERENCES outlets (id),
            status text NOT NULL CHECK (status IN (
                'in_stock', 'issued', 'active', 'lost', 'cancelled', 'deregistered', 'damaged',
                'suspect_damaged')),
            failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
            application_id uuid REFERENCES issuance_applications (id),
            customer_id uuid REFERENCES customers (id),
            plate text,
            plate_colour smallint,
            expires_on date,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            UNIQUE (kind, number),
            CHECK ((kind = 'card') = (card_type IS NOT NULL)),
            CHECK (kind = 'card' AND number ~ '^[0-9]{20}$' OR kind = 'tag' AND number ~ '^[0-9]{16}$'),
            CHECK (status NOT IN ('issued', 'active')
                   OR (plate IS NOT NULL AND plate_colour IS NOT NULL AND customer_id IS NOT NULL))
        );
        CREATE UNIQUE INDEX issuance_chips_live_vehicle ON issuance_chips (kind, plate, plate_colour)
            WHERE status IN ('issued', 'active');
        CREATE INDEX issuance_chips_stock ON issuance_chips (outlet_id, kind, status, number);
        CREATE INDEX issuance_chips_customer ON issuance_chips (customer_id) WHERE customer_id IS NOT NULL;

        CREATE TABLE issuance_chip_history (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            chip_id uuid NOT NULL REFERENCES issuance_chips (id),
            from_status text,
            to_status text NOT NULL,
            from_outlet uuid REFERENCES outlets (id),
            to_outlet uuid NOT NULL REFERENCES outlets (id),
            reason text NOT NULL,
            actor text NOT NULL,
            at timestamptz NOT NULL
        );
        CREATE INDEX issuance_chip_history_chip ON issuance_chip_history (chip_id, id);

        CREATE TABLE issuance_card_issuances (
            id uuid PRIMARY KEY,
            application_id uuid NOT NULL REFERENCES issuance_applications (id),
            chip_id uuid NOT NULL REFERENCES issuance_chips (id),
            outlet_id uuid NOT NULL REFERENCES outlets (id),
            operator_id uuid NOT NULL REFERENCES staff (id),
            mode text NOT NULL,
            status text NOT NULL CHECK (status IN ('read', 'writing', 'failed', 'registered')),
            attempts integer NOT NULL DEFAULT 0,
            failures integer NOT NULL DEFAULT 0,
            issue_content bytea,
            holder_content bytea,
            last_error text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            UNIQUE (application_id, chip_id)
        );
        CREATE UNIQUE INDEX issuance_card_issuances_one_registered ON issuance_card_issuances (application_id)
            WHERE status = 'registered';

        CREATE TABLE issuance_tag_issuances (
            id uuid PRIMARY KEY,
            application_id uuid NOT NULL REFERENCES issuance_applications (id),
            card_chip_id uuid NOT NULL REFERENCES issuance_chips (id),
            chip_id uuid REFERENCES issuance_chips (id),
            outlet_id uuid NOT NULL REFERENCES outlets (id),
            operator_id uuid NOT NULL REFERENCES staff (id),
            mode text,
            first_read_number text,
            status text NOT NULL CHECK (status IN ('card_read', 'tag_read', 'writing', 'failed', 'registered')),
            attempts integer NOT NULL DEFAULT 0,
            last_error text,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE UNIQUE INDEX issuance_tag_issuances_one_registered ON issuance_tag_issuances (application_id)
            WHERE status = 'registered';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE issuance_tag_issuances;
        DROP TABLE issuance_card_issuances;
        DROP TABLE issuance_chip_history;
        DROP TABLE issuance_chips;
        DROP TABLE issuance_applications;
        DROP TABLE issuance_stock_batches;
        """
    )
