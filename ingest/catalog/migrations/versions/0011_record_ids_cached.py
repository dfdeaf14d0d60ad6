"""PostgreSQL: the record tables' id sequences hand ids to each session a thousand at a time (CACHE 1000).

A bulk load takes one id per record from its table's sequence. Uncached, each id locks the sequence's page and
every 32nd writes WAL: on a million Hero rows that was 0.25 to 0.3 s of the server's 4.2 s COPY. Cached, a
session takes a block of 1000 at once and gives them out from memory. What a load needs of its ids still holds:
``ingest.catalog.files.last_id_given`` first discards what the session has cached, so every record the load then
inserts is above the sequence's last value; a file loaded alone still takes one run of ids. Ids a session cached
and never used are skipped (at most 999 per load). SQLite is left as it is: its ids are rowids.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

RECORD_ID_SEQUENCES = ("calls_id_seq", "charges_id_seq", "legs_id_seq")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for sequence in RECORD_ID_SEQUENCES:
        op.execute(f"ALTER SEQUENCE {sequence} CACHE 1000")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for sequence in RECORD_ID_SEQUENCES:
        op.execute(f"ALTER SEQUENCE {sequence} CACHE 1")
