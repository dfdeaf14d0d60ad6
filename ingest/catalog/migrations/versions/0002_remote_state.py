"""Remote state: what each source collected (never fetched again), what it has seen but not yet taken, and
each source's run state (last attempt, success, error, next run).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from ingest.catalog.schema import Id, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remote_collected",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime", sa.BigInteger, nullable=False),
        sa.Column("file_id", Id),
        sa.Column("collected_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_remote_collected"),
        sa.UniqueConstraint("source", "path", "size", "mtime", name="uq_remote_collected_source_path_size_mtime"),
    )
    op.create_table(
        "remote_pending",
        sa.Column("source", sa.String, nullable=False),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime", sa.BigInteger, nullable=False),
        sa.Column("seen_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("source", "path", name="pk_remote_pending"),
    )


    op.create_table(
        "source_state",
        sa.Column("source", sa.String, nullable=False),
        sa.Column("last_attempt_at", UTCDateTime),
        sa.Column("last_success_at", UTCDateTime),
        sa.Column("last_error", sa.Text),
        sa.Column("last_error_at", UTCDateTime),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("next_run_at", UTCDateTime),
        sa.Column("files_collected", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_source_state"),
    )


def downgrade() -> None:
    op.drop_table("source_state")
    op.drop_table("remote_pending")
    op.drop_table("remote_collected")
