"""Call legs from our own network's accounting and the xDRs they are joined into: the ``legs`` record table,
``files.first_leg_id``/``last_leg_id``, and joining's tables (``leg_files``, ``pending_legs``, ``xdrs``,
``xdr_legs``, ``xdr_details``, ``orphan_legs``, ``security_alerts``). New tables and two new nullable columns: no
loaded record changes.

This is frozen history: the tables are declared here as they are at this revision.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ingest.catalog.schema import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Key = sa.String().with_variant(sa.String(collation="C"), "postgresql")

LEG_FIELDS = (("status_type", sa.String, False), ("event_time", UTCDateTime, False), ("session_id", sa.String, True),
              ("unique_session_id", sa.String, True), ("conf_id", sa.String, True), ("sip_call_id", sa.String, True),
              ("nas_ip", sa.String, True), ("user_name", sa.String, True), ("call_origin", sa.String, True),
              ("call_type", sa.String, True), ("calling_number", sa.String, True),
              ("called_number", sa.String, True), ("setup_time", UTCDateTime, True),
              ("connect_time", UTCDateTime, True), ("disconnect_time", UTCDateTime, True),
              ("clock_flag", sa.String, True), ("session_seconds", sa.BigInteger, True),
              ("disconnect_cause", sa.String, True), ("remote_address", sa.String, True))


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("first_leg_id", sa.BigInteger))
        batch.add_column(sa.Column("last_leg_id", sa.BigInteger))
    op.create_table(
        "legs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("file_id", Id, nullable=False),
        sa.Column("carrier", Key, nullable=False),
        sa.Column("record_key", Key, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        *(sa.Column(name, kind(), nullable=nullable) for name, kind, nullable in LEG_FIELDS),
        sa.Column("extra", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_legs"),
        sa.UniqueConstraint("carrier", "record_key", name="uq_legs_carrier_record_key"),
    )
    op.create_table(
        "leg_files",
        sa.Column("file_id", Id, nullable=False),
        sa.Column("taken_at", UTCDateTime, nullable=False),
        sa.Column("newest_event", UTCDateTime),
        sa.PrimaryKeyConstraint("file_id", name="pk_leg_files"),
    )
    op.create_table(
        "pending_legs",
        sa.Column("leg_id", Id, nullable=False),
        sa.Column("carrier", Key, nullable=False),
        sa.Column("call_id", Key, nullable=False),
        sa.Column("node", Key, nullable=False),
        sa.Column("session", Key, nullable=False),
        sa.Column("named_node", Key),
        sa.Column("status_type", sa.String, nullable=False),
        sa.Column("event_time", UTCDateTime, nullable=False),
        sa.Column("file_id", Id, nullable=False),
        sa.PrimaryKeyConstraint("leg_id", name="pk_pending_legs"),
    )
    op.create_index("ix_pending_legs_carrier_call_id", "pending_legs", ["carrier", "call_id"])
    op.create_table(
        "xdrs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("carrier", Key, nullable=False),
        sa.Column("call_id", Key, nullable=False),
        sa.Column("party", Key, nullable=False),
        sa.Column("account", Key),
        sa.Column("user_name", Key),
        sa.Column("calling_number", Key),
        sa.Column("called_number", Key),
        sa.Column("setup_time", UTCDateTime, nullable=False),
        sa.Column("connect_time", UTCDateTime),
        sa.Column("disconnect_time", UTCDateTime),
        sa.Column("charged_seconds", sa.BigInteger, nullable=False),
        sa.Column("call_seconds", sa.BigInteger, nullable=False),
        sa.Column("disconnect_cause", sa.String),
        sa.Column("remote_address", sa.String),
        sa.Column("gateways", sa.String),
        sa.Column("leg_count", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("reason", sa.String),
        sa.Column("file_id", Id, nullable=False),
        sa.Column("joined_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_xdrs"),
        sa.UniqueConstraint("carrier", "call_id", "party", name="uq_xdrs_carrier_call_id_party"),
    )
    op.create_index("ix_xdrs_setup_time", "xdrs", ["setup_time"])
    op.create_index("ix_xdrs_account", "xdrs", ["account"])
    op.create_table(
        "xdr_legs",
        sa.Column("leg_id", Id, nullable=False),
        sa.Column("xdr_id", Id, nullable=False),
        sa.PrimaryKeyConstraint("leg_id", name="pk_xdr_legs"),
    )
    op.create_index("ix_xdr_legs_xdr_id", "xdr_legs", ["xdr_id"])
    op.create_table(
        "xdr_details",
        sa.Column("xdr_id", Id, nullable=False),
        sa.Column("detail_type", sa.String, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("xdr_id", "detail_type", name="pk_xdr_details"),
    )
    op.create_table(
        "orphan_legs",
        sa.Column("leg_id", Id, nullable=False),
        sa.Column("carrier", Key, nullable=False),
        sa.Column("call_id", Key, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("xdr_id", Id),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("leg_id", name="pk_orphan_legs"),
    )
    op.create_table(
        "security_alerts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("raised_at", UTCDateTime, nullable=False),
        sa.Column("call_time", UTCDateTime, nullable=False),
        sa.Column("carrier", Key, nullable=False),
        sa.Column("call_id", Key, nullable=False),
        sa.Column("user_name", Key),
        sa.Column("remote_address", sa.String),
        sa.Column("gateway", sa.String),
        sa.Column("xdr_id", Id, nullable=False),
        sa.Column("mailed_at", UTCDateTime),
        sa.Column("mail_error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_security_alerts"),
        sa.UniqueConstraint("xdr_id", name="uq_security_alerts_xdr_id"),
    )


def downgrade() -> None:
    for table in ("security_alerts", "orphan_legs", "xdr_details", "xdr_legs", "xdrs", "pending_legs", "leg_files",
                  "legs"):
        op.drop_table(table)
    with op.batch_alter_table("files") as batch:
        batch.drop_column("last_leg_id")
        batch.drop_column("first_leg_id")
