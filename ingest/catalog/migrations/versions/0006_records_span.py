"""The span of the records' own dates in each loaded file, so a file whose name carries no date still gets a
billing period (the month, when every record falls in one) and is found by the months it covers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("records_from", sa.Date))
        batch.add_column(sa.Column("records_to", sa.Date))


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_column("records_to")
        batch.drop_column("records_from")
