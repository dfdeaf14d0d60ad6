"""Files name the values their records' ``extra`` holds by position: ``files.extra_columns``.

A record's ``extra`` (the columns its format did not map) was a JSON object, every row repeating every column's
name: 165 of the 430 bytes a Hero call row sends to the database. The loader may now store it as a JSON array of
the values alone, and the file lists their names once, per record kind (JSON: ``{"call": ["ConnectSeconds",
...]}``). Records already loaded keep their objects: both forms are read (``ingest.layouts.extra_mapping``).
For SQL of one's own, the views ``calls_named`` and ``charges_named`` give every column of their table and
``extra_named``: ``extra`` as a JSON object's text, whichever way it is stored (null where the file's names do not
fit its values). They depend on ``calls``, ``charges`` and ``files``: a later migration that rebuilds or alters one
of those drops them first and creates them again after.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


# Frozen history: the views as they are at this revision (ingest.catalog.schema.named_extra_views states them
# for a catalog created at once; a test compares the two).
_NAMED = {
    "postgresql": ("(SELECT json_object_agg(n.name, v.value ORDER BY n.i)::text"
                   " FROM json_array_elements_text(f.extra_columns::json -> '{kind}')"
                   " WITH ORDINALITY AS n(name, i)"
                   " JOIN json_array_elements_text(r.extra::json) WITH ORDINALITY AS v(value, i) ON v.i = n.i)",
                   "left(r.extra, 1) = '['",
                   "json_array_length(f.extra_columns::json -> '{kind}') = json_array_length(r.extra::json)"),
    "sqlite": ("(SELECT json_group_object(name, value) FROM (SELECT n.value AS name, v.value AS value"
               " FROM json_each(f.extra_columns, '$.{kind}') AS n"
               " JOIN json_each(r.extra) AS v ON v.key = n.key ORDER BY n.key))",
               "substr(r.extra, 1, 1) = '['",
               "json_array_length(f.extra_columns, '$.{kind}') = json_array_length(r.extra)"),
}
_TABLES = (("call", "calls"), ("charge", "charges"))


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("extra_columns", sa.Text))
    named, starts, fits = _NAMED[op.get_bind().dialect.name]
    for kind, table in _TABLES:
        op.execute(f"CREATE VIEW {table}_named AS SELECT r.*, CASE WHEN NOT ({starts}) THEN r.extra"
                   f" WHEN {fits.format(kind=kind)} THEN {named.format(kind=kind)} END AS extra_named"
                   f" FROM {table} AS r LEFT JOIN files AS f ON f.id = r.file_id")


def downgrade() -> None:
    for _kind, table in _TABLES:
        op.execute(f"DROP VIEW IF EXISTS {table}_named")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("extra_columns")
