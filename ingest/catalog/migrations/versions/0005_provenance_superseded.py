"""What a source told us about each file, the file that superseded a failed one, and each source's entry-level
problems.

- ``files.given_*``: the carrier, type, cadence, billing period and format the source gave the file when it
  was received (a remote dir mapping, a mail route, a drop folder's settings, an upload's flags), so that
  ``cdr retry`` classifies it again with what the collector knew, not with the source's top-level options.
- ``files.superseded_by``: a ``failed`` file replaced by a corrected file of the same carrier and name that
  loaded; the failed file's status is then ``superseded``.
- ``source_state.entry_errors`` / ``entry_errors_at``: the entries the last pass could not take (a refused
  remote name, a file that could not be opened), one per line; the pass itself still counts as a success.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from ingest.catalog.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

GIVEN = ("given_carrier", "given_type", "given_cadence", "given_period", "given_format")


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        for name in GIVEN:
            batch.add_column(sa.Column(name, sa.String))
        batch.add_column(sa.Column("superseded_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite")))
    with op.batch_alter_table("source_state") as batch:
        batch.add_column(sa.Column("entry_errors", sa.Text))
        batch.add_column(sa.Column("entry_errors_at", UTCDateTime))


def downgrade() -> None:
    with op.batch_alter_table("source_state") as batch:
        batch.drop_column("entry_errors_at")
        batch.drop_column("entry_errors")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("superseded_by")
        for name in reversed(GIVEN):
            batch.drop_column(name)
