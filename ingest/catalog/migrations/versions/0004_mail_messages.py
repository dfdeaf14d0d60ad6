"""IMAP state: each folder's UIDVALIDITY, and every message taken by (UIDVALIDITY, UID) and content key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from ingest.catalog.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_folders",
        sa.Column("source", sa.String, nullable=False),
        sa.Column("folder", sa.String, nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("source", "folder", name="pk_mail_folders"),
    )
    op.create_table(
        "mail_messages",
        sa.Column("source", sa.String, nullable=False),
        sa.Column("folder", sa.String, nullable=False),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("uid", sa.BigInteger, nullable=False),
        sa.Column("message_key", sa.String, nullable=False),
        sa.Column("message_id", sa.Text),
        sa.Column("files", sa.Integer, nullable=False),
        sa.Column("taken_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("source", "folder", "uidvalidity", "uid", name="pk_mail_messages"),
    )
    op.create_index("ix_mail_messages_source_message_key", "mail_messages", ["source", "message_key"])


def downgrade() -> None:
    op.drop_index("ix_mail_messages_source_message_key", "mail_messages")
    op.drop_table("mail_messages")
    op.drop_table("mail_folders")
