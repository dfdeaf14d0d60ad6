"""Calls and charges: the one ``records`` table becomes two, in the record layouts (``ingest.layouts``).

- ``calls`` (the old CDR-type records) and ``charges`` (the SDR-type records: Tech Connections' service fees),
  each unique by (carrier, record_key); money as BIGINT millionths; ``extra``: a JSON object of the columns
  the layout has no field for, by the carrier's column name.
- Every record moves, set-based (one INSERT ... SELECT per table), keeping its id, so a file's records are
  still found through its id span: ``files.first_call_id``/``last_call_id`` and ``first_charge_id``/
  ``last_charge_id`` (MIN/MAX of the file's ids in each table; a span may now have gaps) replace
  ``first_record_id``/``last_record_id``.
- ``files.records_dropped``: rows dropped as identical to an earlier row of the same file (0 for every file
  loaded so far).

Nothing is changed when any record cannot move exactly (an amount with more than 6 decimal places, or out of
the range of millionths in 64 bits, a call without its UTC time, ...): the upgrade stops before its first
change with one line naming how many records and the first one's id. Not reversible (see ``downgrade``).

This is frozen history: the tables are declared here as they are at this revision, not imported from
``ingest.catalog.schema``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ingest.errors import PermanentError

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The largest amount BIGINT millionths hold, as the decimal it stands for (and its 19 digits, for SQLite's text).
MAX_MONEY = "9223372036854.775807"
MAX_UNITS_DIGITS = "9223372036854775807"
MONEY_PLACES = 6

# The layouts at this revision: (column, kind, NOT NULL), in table order after id, file_id, carrier, record_key
# and position. Kinds: text, int, money (BIGINT millionths), date, utc (timestamptz / SQLite's DATETIME text).
CALL_FIELDS = (
    ("carrier_record_id", "text", False),
    ("account_code", "text", False),
    ("direction", "text", False),
    ("call_type", "text", False),
    ("start_time", "utc", True),
    ("answer_time", "utc", False),
    ("end_time", "utc", False),
    ("connected_seconds", "int", False),
    ("billed_seconds", "int", False),
    ("a_number", "text", False),
    ("b_number", "text", False),
    ("bill_number", "text", False),
    ("charge", "money", False),
    ("charge_excl", "money", False),
    ("currency", "text", False),
    ("status", "text", False),
    ("release_cause", "text", False),
    ("description", "text", False),
    ("bill_date", "date", False),
    ("local_date", "text", False),
    ("local_time", "text", False),
    ("utc_offset", "text", False),
)
CHARGE_FIELDS = (
    ("carrier_record_id", "text", False),
    ("customer_reference", "text", False),
    ("number_reference", "text", False),
    ("product_code", "text", False),
    ("description", "text", False),
    ("period_start", "date", False),
    ("period_end", "date", False),
    ("charge_date", "date", False),
    ("quantity", "money", False),
    ("unit_cost", "money", False),
    ("cost", "money", False),
    ("cost_incl", "money", False),
    ("currency", "text", False),
)

# What each new column is made of, in terms of the old ``records`` row (SQL; ``{money:col}`` is the column's
# amount in millionths, ``{text:col}`` its value as text, ``{utc_text}`` the UTC time as the feed writes it).
CALL_FROM = {
    "account_code": "account_code",
    "direction": "direction",
    "call_type": "call_type",
    "start_time": "utc_time",
    "answer_time": "NULL",
    "end_time": "NULL",
    "connected_seconds": "network_seconds",
    "billed_seconds": "seconds",
    "a_number": "a_party",
    "b_number": "b_party",
    "bill_number": "bill_number",
    "charge": "{money:charge}",
    "charge_excl": "{money:charge_excl}",
    "currency": "NULL",
    "status": "call_status",
    "release_cause": "release_cause",
    "description": "text_desc1",
    "bill_date": "bill_date",
    "local_date": "local_date",
    "local_time": "local_time",
    "utc_offset": "utc_offset",
}
CHARGE_FROM = {
    "customer_reference": "account_code",
    "number_reference": "bill_number",
    "product_code": "call_type",
    "description": "text_desc1",
    "period_start": "NULL",
    "period_end": "NULL",
    "charge_date": "bill_date",
    "quantity": "1000000",  # one, in millionths
    "unit_cost": "NULL",
    "cost": "{money:charge_excl}",
    "cost_incl": "{money:charge}",
    "currency": "NULL",
}
# ``extra``: the old columns the layout has no field for, by the carrier's column name, in this order.
CALL_EXTRA = (
    ("ConnectSeconds", "{text:connect_seconds}"),
    ("FreeUnitsUsed", "{text:free_units_used}"),
    ("TextDesc2", "text_desc2"),
    ("ServiceType", "service_type"),
    ("BillingGroup", "billing_group"),
    ("CallingGroup", "calling_group"),
    ("Profile", "profile"),
)
CHARGE_EXTRA = (
    # In the feed's own column order, as the loader writes a charge's ``extra``.
    ("Direction", "direction"),
    ("Date", "local_date"),
    ("Time", "local_time"),
    ("UTCDateTime", "{utc_text}"),
    ("UTCOffset", "utc_offset"),
    ("AParty", "a_party"),
    ("BParty", "b_party"),
    ("Seconds", "{text:seconds}"),
    ("NetworkSeconds", "{text:network_seconds}"),
    ("ConnectSeconds", "{text:connect_seconds}"),
    ("FreeUnitsUsed", "{text:free_units_used}"),
    ("TextDesc2", "text_desc2"),
    ("ReleaseCause", "release_cause"),
    ("Status", "call_status"),
    ("ServiceType", "service_type"),
    ("BillingGroup", "billing_group"),
    ("CallingGroup", "calling_group"),
    ("Profile", "profile"),
)
TABLES = (
    # (table, old record_type, fields, how each is made, extra)
    ("calls", "cdr", CALL_FIELDS, CALL_FROM, CALL_EXTRA),
    ("charges", "sdr", CHARGE_FIELDS, CHARGE_FROM, CHARGE_EXTRA),
)


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    sql = _PostgresSql() if postgres else _SqliteSql()
    # Every check before the first change: a refusal leaves the catalog exactly as it was (at 0006).
    if not postgres:
        _check_sqlite_version(bind)
    _check_records(bind, sql)

    with op.batch_alter_table("files") as batch:  # added columns: an ALTER TABLE ADD COLUMN each, no copy
        for name in ("first_call_id", "last_call_id", "first_charge_id", "last_charge_id"):
            batch.add_column(sa.Column(name, sa.BigInteger))
        # DEFAULT 0 fills the files loaded so far (the default stays: a writer that omits it means none).
        batch.add_column(sa.Column("records_dropped", sa.BigInteger, nullable=False, server_default="0"))

    try:
        for table, record_type, fields, made_of, extra in TABLES:
            _create_record_table(table, fields, postgres)
            # One INSERT ... SELECT per table, ids kept. On PostgreSQL the table has no primary key or unique
            # constraint yet: building both indexes once, after the copy, is far cheaper than maintaining them
            # row by row over tens of millions of records. SQLite cannot add a constraint to a table, so there
            # the table is created with them (the copy is in id order, appending to the primary key).
            columns = ["id", "file_id", "carrier", "record_key", "position", "carrier_record_id",
                       *made_of, "extra"]
            values = ["id", "file_id", "carrier", "COALESCE(record_key, " + sql.text("feed_id") + ")",
                      "position", sql.text("feed_id"), *(sql.expand(made_of[c]) for c in made_of),
                      sql.json_object([(key, sql.expand(value)) for key, value in extra])]
            assert columns[5:-1] == [name for name, _kind, _required in fields], table  # declared == filled
            _execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM records "
                     f"WHERE record_type = '{record_type}'" + ("" if postgres else " ORDER BY id"))
            if postgres:
                op.create_primary_key(f"pk_{table}", table, ["id"])
                op.create_unique_constraint(f"uq_{table}_carrier_record_key", table, ["carrier", "record_key"])
                # New rows continue after the ids copied (the sequence was not used by the copy).
                _execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)")
    except sa.exc.IntegrityError as exc:  # two records that would share a (carrier, record_key)
        raise PermanentError("cannot migrate the catalog to revision 0007: two records of one kind would have the "
                             f"same carrier and record key ({_first_line(exc.orig)}); the catalog is "
                             "unchanged") from None

    # Each file's spans, from one grouped pass over each table (no index on file_id: a subquery per file would
    # scan the table once per file).
    for table, prefix in (("calls", "call"), ("charges", "charge")):
        _execute(f"UPDATE files SET first_{prefix}_id = s.lo, last_{prefix}_id = s.hi "
                 f"FROM (SELECT file_id, MIN(id) AS lo, MAX(id) AS hi FROM {table} GROUP BY file_id) AS s "
                 "WHERE files.id = s.file_id")

    op.drop_table("records")  # its indexes (the unique keys, PostgreSQL's BRIN on file_id) go with it
    # Not through batch_alter_table: on SQLite that rebuilds ``files``, and dropping the old copy fails on the
    # foreign keys of file_events and file_links (PRAGMA foreign_keys=ON cannot be lifted inside the migration's
    # transaction). ALTER TABLE ... DROP COLUMN (SQLite 3.35+) drops a column in place.
    op.drop_column("files", "last_record_id")
    op.drop_column("files", "first_record_id")


def downgrade() -> None:
    # Not cheap to do exactly: the amounts' original text ('0.1150') is not kept in millionths.
    raise PermanentError("the catalog cannot be downgraded below revision 0007 (calls and charges); restore a "
                         "backup taken before the upgrade instead")


def _create_record_table(table: str, fields, postgres: bool) -> None:
    """The table as schema.py's record_table builds it at this revision (constraint names from the naming
    convention). On PostgreSQL without its constraints (added after the copy) and with the BIGSERIAL spelt
    out: a sequence owned by the column, as BIGSERIAL would create it."""
    types = {"text": sa.String(), "int": sa.BigInteger(), "money": sa.BigInteger(), "date": sa.Date(),
             "utc": sa.DateTime(timezone=True)}
    key = sa.String(collation="C") if postgres else sa.String()
    if postgres:
        op.execute(f"CREATE SEQUENCE {table}_id_seq")
        head = [sa.Column("id", sa.BigInteger, nullable=False,
                          server_default=sa.text(f"nextval('{table}_id_seq'::regclass)")),
                sa.Column("file_id", sa.BigInteger, nullable=False)]
        constraints = []
    else:
        head = [sa.Column("id", sa.Integer, nullable=False), sa.Column("file_id", sa.Integer, nullable=False)]
        constraints = [sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
                       sa.UniqueConstraint("carrier", "record_key", name=f"uq_{table}_carrier_record_key")]
    op.create_table(
        table,
        *head,
        sa.Column("carrier", key, nullable=False),
        sa.Column("record_key", key, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        *(sa.Column(name, types[kind], nullable=not required) for name, kind, required in fields),
        sa.Column("extra", sa.Text),
        *constraints,
    )
    if postgres:
        op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")


# --- checks -------------------------------------------------------------------------------------------------

def _check_sqlite_version(bind) -> None:
    version = bind.exec_driver_sql("SELECT sqlite_version()").scalar()
    if tuple(int(part) for part in version.split(".")[:2]) < (3, 35):
        raise PermanentError(f"cannot migrate the catalog to revision 0007: it needs SQLite 3.35 or newer "
                             f"(ALTER TABLE ... DROP COLUMN), and this Python's sqlite3 has {version}; the "
                             "catalog is unchanged")


def _check_records(bind, sql) -> None:
    """Refuse, in one line, when any record cannot move exactly; count each problem and name its first id.

    One pass: each record gets the code of its first problem (a CASE evaluated once per row; the grouping then
    sees only the few records with one). A record with two problems is counted under the first listed."""
    problems = [
        ("of a type other than cdr or sdr", "record_type NOT IN ('cdr', 'sdr')"),
        ("with neither a record_key nor a feed_id", "record_key IS NULL AND feed_id IS NULL"),
        ("of type cdr without a UTC time (a call's start_time is required)",
         "record_type = 'cdr' AND utc_time IS NULL"),
        *sql.money_problems(("charge", "charge_excl")),
    ]
    code = " ".join(f"WHEN {condition} THEN {number}" for number, (_what, condition) in enumerate(problems, 1))
    rows = bind.exec_driver_sql(f"SELECT code, COUNT(*), MIN(id) FROM (SELECT id, CASE {code} ELSE 0 END AS code "
                                "FROM records) AS checked WHERE code > 0 GROUP BY code ORDER BY code").all()
    found = [f"{count} {'record' if count == 1 else 'records'} {problems[number - 1][0]} (the first is record "
             f"{first})" for number, count, first in rows]
    if found:
        raise PermanentError(f"cannot migrate the catalog to revision 0007: {'; '.join(found)}; the catalog is "
                             "unchanged (correct or remove those records, then start again)")


def _execute(statement: str) -> None:
    # The driver's own SQL, as written: through text() the ':MI' of a to_char format would be a bind parameter.
    # (psycopg still reads '%' as a placeholder: these statements have none.)
    op.get_bind().exec_driver_sql(statement)


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- dialects -----------------------------------------------------------------------------------------------

class _Sql:
    """The SQL of one dialect for: a value as text, money as millionths, the UTC time as the feed writes it, and
    a compact JSON object of the non-null values (keys in order)."""

    def expand(self, template: str) -> str:
        if template.startswith("{money:"):
            return self.money_units(template[len("{money:"):-1])
        if template.startswith("{text:"):
            return self.text(template[len("{text:"):-1])
        if template == "{utc_text}":
            return self.utc_text("utc_time")
        return template

    def json_object(self, pairs) -> str:
        # '{"K":"v",...}', the pairs whose value is not null, in order; NULL when there is none. Built as text
        # (json_build_object's own text has spaces); the string values are escaped by the database's JSON
        # quoting (the same on both: \" \\ \n \t \u0001, other characters as they are).
        pieces = " || ".join(f"CASE WHEN {value} IS NOT NULL THEN ',\"{key}\":' || {self.json_string(value)} "
                             "ELSE '' END" for key, value in pairs)
        return f"NULLIF('{{' || SUBSTR({pieces}, 2) || '}}', '{{}}')"


class _PostgresSql(_Sql):
    def text(self, column: str) -> str:
        return f"CAST({column} AS TEXT)"  # numeric::text keeps the stored scale: '0.1150'

    def json_string(self, value: str) -> str:
        return f"to_json(CAST({value} AS TEXT))::text"

    def money_units(self, column: str) -> str:
        # Exact for NUMERIC with at most 6 decimal places (checked first: _check_records).
        return f"CAST(CAST({column} AS NUMERIC) * 1000000 AS BIGINT)"

    def utc_text(self, column: str) -> str:
        utc = f"({column} AT TIME ZONE 'UTC')"
        return (f"to_char({utc}, 'YYYY-MM-DD HH24:MI:SS') || CASE WHEN to_char({utc}, 'US') <> '000000' "
                f"THEN to_char({utc}, '.US') ELSE '' END")

    def money_problems(self, columns):
        # In this order (see _check_records): out of range first. NaN sorts above every number and Infinity is
        # above the bound: both fail the range test. A NULL amount is no problem (COALESCE).
        amount = [f"CAST({c} AS NUMERIC)" for c in columns]
        return [
            (f"with an amount outside the range of 64-bit millionths (±{MAX_MONEY})",
             " OR ".join(f"COALESCE(NOT ({a} BETWEEN -{MAX_MONEY} AND {MAX_MONEY}), FALSE)" for a in amount)),
            (f"with an amount with more than {MONEY_PLACES} decimal places",
             " OR ".join(f"COALESCE({a} <> TRUNC({a}, {MONEY_PLACES}), FALSE)" for a in amount)),
        ]


class _SqliteSql(_Sql):
    """SQLite keeps an amount as the decimal's text ('-12.3456', '.5', '+7', '5.'): converted with string
    functions, never through REAL."""

    def text(self, column: str) -> str:
        return f"CAST({column} AS TEXT)"

    def json_string(self, value: str) -> str:
        return f"json_quote(CAST({value} AS TEXT))"

    @staticmethod
    def _digits(c: str) -> str:
        # The amount's sign and integer digits followed by exactly six fraction digits: its millionths as text
        # ('-12.3456' -> '-12345600', '.5' -> '500000', '7' -> '7000000').
        dot = f"INSTR({c}, '.')"
        return (f"(CASE WHEN {dot} > 0 THEN SUBSTR({c}, 1, {dot} - 1) || SUBSTR(SUBSTR({c}, {dot} + 1) || "
                f"'000000', 1, 6) ELSE CAST({c} AS TEXT) || '000000' END)")

    def money_units(self, column: str) -> str:
        return f"CAST({self._digits(column)} AS INTEGER)"  # NULL stays NULL

    def utc_text(self, column: str) -> str:
        # Stored as 'YYYY-MM-DD HH:MM:SS' (the loader) or with '.ffffff' (SQLAlchemy's DATETIME): the fraction
        # is kept only when it is not zero.
        return (f"CASE WHEN {column} GLOB '????-??-?? ??:??:??.*' AND RTRIM(SUBSTR({column}, 21), '0') = '' "
                f"THEN SUBSTR({column}, 1, 19) ELSE {column} END")

    def money_problems(self, columns):
        # In this order (see _check_records): each test assumes the ones before it passed. A cheap guard first
        # (an amount can only be out of range with 13 characters or more, too precise with 7 after its point),
        # so that most amounts are never taken apart.
        malformed, out_of_range, too_precise = [], [], []
        for c in columns:
            text = f"CAST({c} AS TEXT)"
            malformed.append(f"({text} GLOB '*[^0-9.+-]*' OR SUBSTR({text}, 2) GLOB '*[+-]*' OR {text} GLOB "
                             f"'*.*.*' OR {text} NOT GLOB '*[0-9]*')")
            digits = f"LTRIM({self._digits(c)}, '+-0')"
            out_of_range.append(f"(LENGTH({text}) >= 13 AND (LENGTH({digits}) > 19 OR (LENGTH({digits}) = 19 AND "
                                f"{digits} > '{MAX_UNITS_DIGITS}')))")
            too_precise.append(f"({text} GLOB '*.{'?' * (MONEY_PLACES + 1)}*' AND "
                               f"RTRIM(SUBSTR({text}, INSTR({text}, '.') + {MONEY_PLACES + 1}), '0') <> '')")
        return [  # NULL (no amount) makes each test NULL: not a problem
            ("with an amount that is not a plain decimal", " OR ".join(malformed)),
            (f"with an amount outside the range of 64-bit millionths (±{MAX_MONEY})", " OR ".join(out_of_range)),
            (f"with an amount with more than {MONEY_PLACES} decimal places", " OR ".join(too_precise)),
        ]
