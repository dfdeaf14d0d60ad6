"""The initial catalog: files, their links and events, and the loaded records.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from ingest.catalog.schema import Id, UTCDateTime

# Money as it was stored until 0007 (which turns it into millionths): NUMERIC on PostgreSQL, the decimal's text on
# SQLite. Frozen here: a migration must build what it built then, whatever the live schema's Money is now.
Money = sa.Numeric().with_variant(sa.String(), "sqlite")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("container", sa.String),
        sa.Column("member", sa.String),
        sa.Column("carrier", sa.String),
        sa.Column("type", sa.String),
        sa.Column("cadence", sa.String),
        sa.Column("format", sa.String),
        sa.Column("billing_period", sa.String(7)),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("origin", sa.String),
        sa.Column("delivery", sa.String),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("fingerprint", sa.String(32)),
        sa.Column("blob", sa.String(32), nullable=False),
        sa.Column("blob_size", sa.BigInteger, nullable=False),
        sa.Column("compression", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("reason", sa.String),
        sa.Column("error", sa.Text),
        sa.Column("released", sa.Boolean, nullable=False),
        sa.Column("records_loaded", sa.BigInteger, nullable=False),
        sa.Column("records_skipped", sa.BigInteger, nullable=False),
        sa.Column("first_record_id", sa.BigInteger),
        sa.Column("last_record_id", sa.BigInteger),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_files"),
    )
    op.create_index("ix_files_fingerprint", "files", ["fingerprint"])
    op.create_index("ix_files_carrier_name", "files", ["carrier", "name"])
    op.create_index("ix_files_status", "files", ["status"])
    op.create_index("ix_files_carrier_billing_period", "files", ["carrier", "billing_period"])
    op.create_index("ix_files_source_delivery", "files", ["source", "delivery"])

    op.create_table(
        "file_links",
        sa.Column("file_id", Id, nullable=False),
        sa.Column("earlier_id", Id, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("records", sa.BigInteger),
        sa.PrimaryKeyConstraint("file_id", "earlier_id", "kind", name="pk_file_links"),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], name="fk_file_links_file_id_files"),
        sa.ForeignKeyConstraint(["earlier_id"], ["files.id"], name="fk_file_links_earlier_id_files"),
    )

    op.create_table(
        "file_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("file_id", Id, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("from_status", sa.String),
        sa.Column("to_status", sa.String),
        sa.Column("reason", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_file_events"),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], name="fk_file_events_file_id_files"),
    )
    op.create_index("ix_file_events_file_id", "file_events", ["file_id"])

    op.create_table(
        "records",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("file_id", Id, nullable=False),
        sa.Column("carrier", sa.String, nullable=False),
        sa.Column("record_key", sa.String),
        sa.Column("record_type", sa.String(3), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("feed_id", sa.BigInteger),
        sa.Column("account_code", sa.String),
        sa.Column("direction", sa.String),
        sa.Column("call_type", sa.String),
        sa.Column("bill_date", sa.Date),
        sa.Column("local_date", sa.String),
        sa.Column("local_time", sa.String),
        sa.Column("utc_time", UTCDateTime),
        sa.Column("utc_offset", sa.String),
        sa.Column("a_party", sa.String),
        sa.Column("b_party", sa.String),
        sa.Column("bill_number", sa.String),
        sa.Column("seconds", sa.BigInteger),
        sa.Column("network_seconds", sa.BigInteger),
        sa.Column("connect_seconds", sa.BigInteger),
        sa.Column("charge", Money),
        sa.Column("charge_excl", Money),
        sa.Column("free_units_used", Money),
        sa.Column("text_desc1", sa.String),
        sa.Column("text_desc2", sa.String),
        sa.Column("release_cause", sa.String),
        sa.Column("call_status", sa.String),
        sa.Column("service_type", sa.String),
        sa.Column("billing_group", sa.String),
        sa.Column("calling_group", sa.String),
        sa.Column("profile", sa.String),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
        sa.UniqueConstraint("carrier", "feed_id", name="uq_records_carrier_feed_id"),
    )
    op.create_index("uq_records_carrier_record_key", "records", ["carrier", "record_key"], unique=True,
                    sqlite_where=sa.text("record_key IS NOT NULL"),
                    postgresql_where=sa.text("record_key IS NOT NULL"))
    if op.get_bind().dialect.name == "postgresql":
        # Cheap to keep for rows that arrive in file order. SQLite finds a file's records by its id range.
        op.create_index("ix_records_file_id", "records", ["file_id"], postgresql_using="brin")


def downgrade() -> None:
    op.drop_table("records")
    op.drop_table("file_events")
    op.drop_table("file_links")
    op.drop_table("files")
