"""Customer data and billing: accounts, numbers, features, carrier references; charge allocations; billing runs,
their lines and exceptions; the sources locked runs billed; the billing audit trail. New tables only.

This is frozen history: the tables are declared here as they are at this revision. Money is BIGINT millionths.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ingest.catalog.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Key = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Money = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account", Key, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("tariff", sa.String),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_accounts"),
    )
    op.create_table(
        "numbers",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("number", Key, nullable=False),
        sa.Column("account", Key, nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date),
        sa.Column("number_type", sa.String),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_numbers"),
        sa.ForeignKeyConstraint(["account"], ["accounts.account"], name="fk_numbers_account_accounts"),
        sa.UniqueConstraint("number", "valid_from", name="uq_numbers_number_valid_from"),
    )
    op.create_index("ix_numbers_account", "numbers", ["account"])
    op.create_table(
        "features",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("account", Key, nullable=False),
        sa.Column("number", Key, nullable=False),
        sa.Column("feature", sa.String, nullable=False),
        sa.Column("quantity", Money, nullable=False),
        sa.Column("valid_from", sa.Date, nullable=False),
        sa.Column("valid_to", sa.Date),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_features"),
        sa.ForeignKeyConstraint(["account"], ["accounts.account"], name="fk_features_account_accounts"),
        sa.UniqueConstraint("account", "number", "feature", "valid_from",
                            name="uq_features_account_number_feature_valid_from"),
    )
    op.create_table(
        "carrier_references",
        sa.Column("carrier", Key, nullable=False),
        sa.Column("reference", Key, nullable=False),
        sa.Column("account", Key, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("carrier", "reference", name="pk_carrier_references"),
        sa.ForeignKeyConstraint(["account"], ["accounts.account"], name="fk_carrier_references_account_accounts"),
    )
    op.create_table(
        "charge_allocations",
        sa.Column("charge_id", Id, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("reason", sa.String),
        sa.Column("transaction_type", sa.String),
        sa.Column("account", Key),
        sa.Column("number", Key),
        sa.Column("feature_id", Id),
        sa.Column("allocated_at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("charge_id", name="pk_charge_allocations"),
        sa.ForeignKeyConstraint(["charge_id"], ["charges.id"], name="fk_charge_allocations_charge_id_charges"),
    )
    op.create_index("ix_charge_allocations_status", "charge_allocations", ["status"])
    op.create_index("ix_charge_allocations_account", "charge_allocations", ["account"])
    op.create_table(
        "billing_events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("subject", sa.String, nullable=False),
        sa.Column("subject_id", sa.String),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("detail", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_billing_events"),
    )
    op.create_index("ix_billing_events_subject_subject_id", "billing_events", ["subject", "subject_id"])
    op.create_table(
        "bill_runs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("cutoff", sa.Date),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("built_at", UTCDateTime, nullable=False),
        sa.Column("built_by", sa.String, nullable=False),
        sa.Column("locked_at", UTCDateTime),
        sa.Column("locked_by", sa.String),
        sa.PrimaryKeyConstraint("id", name="pk_bill_runs"),
        sa.UniqueConstraint("period", name="uq_bill_runs_period"),
    )
    op.create_table(
        "bill_lines",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("run_id", Id, nullable=False),
        sa.Column("source_kind", sa.String, nullable=False),
        sa.Column("source_id", sa.BigInteger, nullable=False),
        sa.Column("file_id", sa.BigInteger, nullable=False),
        sa.Column("carrier", Key, nullable=False),
        sa.Column("account", Key, nullable=False),
        sa.Column("number", Key),
        sa.Column("item_date", sa.Date, nullable=False),
        sa.Column("late", sa.Boolean, nullable=False),
        sa.Column("item_type", sa.String),
        sa.Column("description", sa.Text),
        sa.Column("quantity", Money, nullable=False),
        sa.Column("seconds", sa.BigInteger),
        sa.Column("currency", sa.String),
        sa.Column("retail", Money, nullable=False),
        sa.Column("cost", Money, nullable=False),
        sa.Column("expected_cost", Money),
        sa.Column("margin", Money, nullable=False),
        sa.Column("rate", sa.String),
        sa.PrimaryKeyConstraint("id", name="pk_bill_lines"),
        sa.UniqueConstraint("run_id", "source_kind", "source_id", name="uq_bill_lines_run_id_source_kind_source_id"),
    )
    op.create_index("ix_bill_lines_source_kind_source_id", "bill_lines", ["source_kind", "source_id"])
    op.create_table(
        "bill_exceptions",
        sa.Column("run_id", Id, nullable=False),
        sa.Column("source_kind", sa.String, nullable=False),
        sa.Column("source_id", sa.BigInteger, nullable=False),
        sa.Column("file_id", sa.BigInteger, nullable=False),
        sa.Column("carrier", Key, nullable=False),
        sa.Column("exception", sa.String, nullable=False),
        sa.Column("reason", sa.String),
        sa.Column("account", Key),
        sa.Column("number", Key),
        sa.Column("item_date", sa.Date, nullable=False),
        sa.Column("cost", Money),
        sa.Column("currency", sa.String),
        sa.PrimaryKeyConstraint("run_id", "source_kind", "source_id", name="pk_bill_exceptions"),
        sa.ForeignKeyConstraint(["run_id"], ["bill_runs.id"], name="fk_bill_exceptions_run_id_bill_runs"),
    )
    op.create_table(
        "billed_sources",
        sa.Column("source_kind", sa.String, nullable=False),
        sa.Column("source_id", sa.BigInteger, nullable=False),
        sa.Column("run_id", Id, nullable=False),
        sa.PrimaryKeyConstraint("source_kind", "source_id", name="pk_billed_sources"),
        sa.ForeignKeyConstraint(["run_id"], ["bill_runs.id"], name="fk_billed_sources_run_id_bill_runs"),
    )


def downgrade() -> None:
    for table in ("billed_sources", "bill_exceptions", "bill_lines", "bill_runs", "billing_events",
                  "charge_allocations", "carrier_references", "features", "numbers", "accounts"):
        op.drop_table(table)
