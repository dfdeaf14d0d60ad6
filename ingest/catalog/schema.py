"""The catalog's tables, as SQLAlchemy Core. Alembic migrations (``migrations/versions``) create them.

- ``files``: one row per received file (a zip yields one row per member), its fingerprint, status and counts.
- ``file_links``: the "Potential Duplicates" tab: which earlier files a held file may repeat, and why.
- ``file_events``: the audit trail: every status change with who, when and why.
- ``calls`` and ``charges``: the loaded records, in the layouts of :mod:`ingest.layouts`, each unique by carrier
  and record key.
- Customer data (``accounts``, ``numbers``, ``features``, ``carrier_references``), where each charge was allocated
  (``charge_allocations``), billing runs with their lines and exceptions (``bill_runs``, ``bill_lines``,
  ``bill_exceptions``), what locked runs billed (``billed_sources``) and the audit of all that
  (``billing_events``): :mod:`ingest.billing`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from ingest.layouts import CALL, CHARGE, LEG, Layout, money_decimal, money_units

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp. timestamptz on PostgreSQL; 'YYYY-MM-DD HH:MM:SS[.ffffff]' text
    (always UTC) on SQLite. Naive datetimes are refused rather than guessed."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC timestamp is required")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Money(TypeDecorator[Decimal]):
    """An exact decimal amount, stored as a whole number of millionths (BIGINT; see
    :data:`ingest.layouts.MONEY_SCALE`), so that SQL sums are exact on SQLite too. Binds a Decimal with at most
    six decimal places; reads back a Decimal (``0.115``, ``12.00``: :func:`ingest.layouts.money_decimal`)."""

    impl = BigInteger()
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money must be a Decimal, not {type(value).__name__}")
        return money_units(value)

    def process_result_value(self, value, dialect):
        return money_decimal(value) if value is not None else None


class Columns(TypeDecorator[dict]):
    """A record's ``extra``: the columns its format did not map, by name. Stored as what the parser wrote, so a
    load never touches it (TEXT, compact, in the file's column order): a JSON object's text, or a JSON array's of
    the values alone, named by its file's ``extra_columns`` (``ingest.layouts``). Read back as a dict in that
    order, or as the list, which :func:`ingest.catalog.records.iter_records` names; so the JSON outputs carry an
    object, and the CSV output its JSON text."""

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def process_result_value(self, value, dialect):
        return json.loads(value) if value is not None else None


# Record keys and carrier names compare byte for byte: on PostgreSQL the "C" collation makes the unique index a
# memcmp, not a locale-aware comparison (the load's index maintenance is most of its cost over a plain COPY).
Key = String().with_variant(String(collation="C"), "postgresql")

files = Table(
    "files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String, nullable=False),
    Column("container", String),
    Column("member", String),
    Column("carrier", String),
    Column("type", String),
    Column("cadence", String),
    Column("format", String),
    Column("billing_period", String(7)),
    Column("source", String, nullable=False),
    Column("origin", String),
    Column("delivery", String),
    Column("size", BigInteger, nullable=False),
    Column("fingerprint", String(32)),
    Column("blob", String(32), nullable=False),
    Column("blob_size", BigInteger, nullable=False),
    Column("compression", String, nullable=False),
    Column("status", String, nullable=False),
    Column("reason", String),
    Column("error", Text),
    Column("released", Boolean, nullable=False, default=False),
    Column("records_loaded", BigInteger, nullable=False, default=0),
    Column("records_skipped", BigInteger, nullable=False, default=0),
    Column("received_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # What the source said the file is when it was received (a dir mapping, a mail route, a drop folder's
    # settings, an upload's flags): ``cdr retry`` classifies the file again with these (migration 0005).
    Column("given_carrier", String),
    Column("given_type", String),
    Column("given_cadence", String),
    Column("given_period", String),
    Column("given_format", String),
    # A failed file replaced by a corrected file of the same carrier and name that loaded (status superseded).
    Column("superseded_by", Id),
    # The first and last of its records' own dates, once loaded (migration 0006): a file whose name carries no
    # date gets its billing period from them, and ``cdr files --period`` finds it by the months it covers.
    Column("records_from", Date),
    Column("records_to", Date),
    # The ids this file's records were given (one load transaction, so a dense range on SQLite): finds a
    # file's records through the primary key, without an index on records.file_id to slow every load
    # (migration 0007).
    Column("first_call_id", BigInteger),
    Column("last_call_id", BigInteger),
    Column("first_charge_id", BigInteger),
    Column("last_charge_id", BigInteger),
    # Rows dropped as identical to an earlier row of the same file (a format's ``duplicate_rows = "once"``),
    # counted so that none is dropped silently (migration 0007).
    Column("records_dropped", BigInteger, nullable=False, default=0, server_default="0"),
    # The ids this file's call legs were given, as first_call_id/last_call_id (migration 0010).
    Column("first_leg_id", BigInteger),
    Column("last_leg_id", BigInteger),
    # The names of the values its records' ``extra`` holds by position (JSON: a list of names per record kind;
    # ``ingest.layouts``), written with its records (migration 0012).
    Column("extra_columns", Text),
    Index(None, "fingerprint"),
    Index(None, "carrier", "name"),
    Index(None, "status"),
    Index(None, "carrier", "billing_period"),
    Index(None, "source", "delivery"),
)

file_links = Table(
    "file_links",
    metadata,
    Column("file_id", Id, ForeignKey("files.id"), primary_key=True),
    Column("earlier_id", Id, ForeignKey("files.id"), primary_key=True),
    Column("kind", String, primary_key=True),
    Column("records", BigInteger),
)

file_events = Table(
    "file_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("file_id", Id, ForeignKey("files.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String, nullable=False),
    Column("action", String, nullable=False),
    Column("from_status", String),
    Column("to_status", String),
    Column("reason", Text),
    Index(None, "file_id"),
)

_COLUMN_TYPES = {"text": String, "int": BigInteger, "money": Money, "date": Date, "utc": UTCDateTime}


def record_table(layout: Layout, *extra_indexes: Index) -> Table:
    """A layout's table (``calls``, ``charges``): the file and carrier a record came from, its key (unique per
    carrier), its position in its file, the layout's fields and the columns the format did not map (``extra``,
    a JSON object). Two indexes only, the primary key and the unique key: every index is paid for on each
    load. A file's records are found through the primary key (the file's ``first_*_id``/``last_*_id`` span)."""
    return Table(
        layout.table,
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        # No foreign key: a per-row check would cost the bulk load more than a third of its time; the load
        # transaction holds the file's row and is the only writer of its records.
        Column("file_id", Id, nullable=False),
        Column("carrier", Key, nullable=False),
        Column("record_key", Key, nullable=False),
        Column("position", BigInteger, nullable=False),
        *(Column(f.name, _COLUMN_TYPES[f.kind](), nullable=not f.required) for f in layout.fields),
        Column("extra", Columns()),
        UniqueConstraint("carrier", "record_key"),
        *extra_indexes,
    )


# On PostgreSQL the calls' ids are indexed by a BRIN index, not by the primary key's B-tree (migration 0009): ids
# come from the table's sequence only, in load order, so a file's span is a range a BRIN index finds, and a
# B-tree on a million new ids cost each load more than a tenth of its time. SQLite keeps its INTEGER PRIMARY KEY
# (the rowid, free). Loads read the sequence, not MAX(id), for the ids they take (ingest.catalog.files).
calls = record_table(CALL, Index("ix_calls_id", "id", postgresql_using="brin").ddl_if(dialect="postgresql"))
# On PostgreSQL a session takes the record tables' ids from their sequences this many at a time (migration 0011):
# a load's million nextval() calls then touch the sequence a thousand times. ``last_id_given`` discards what the
# session holds before a load, so the load's ids are still all above the sequence's last value.
RECORD_ID_CACHE = 1000
charges = record_table(CHARGE)
legs = record_table(LEG)
RECORD_TABLES: dict[str, Table] = {CALL.kind: calls, CHARGE.kind: charges, LEG.kind: legs}


def named_extra_views(dialect: str) -> list[str]:
    """The statements that create ``calls_named`` and ``charges_named`` (migration 0012): every column of the
    table, and ``extra_named``, its ``extra`` as a JSON object's text whether it is stored as one or by position
    (``ingest.layouts``), for SQL of one's own (``extra_named::jsonb ->> 'ServiceType'``); null where the file's
    names do not fit its values (as ``ingest.catalog.records`` refuses them). The loader and the listings read the
    tables; these views are for people. A later migration that rebuilds or alters ``calls``, ``charges`` or
    ``files`` drops these views first and creates them again after: they depend on those tables (SQLite's batch
    rebuild renames a table, which a view naming it refuses; PostgreSQL fixes a view's columns when it is made)."""
    statements = []
    for layout in (CALL, CHARGE):
        table = layout.table
        if dialect == "postgresql":
            named = (f"(SELECT json_object_agg(n.name, v.value ORDER BY n.i)::text"
                     f" FROM json_array_elements_text(f.extra_columns::json -> '{layout.kind}')"
                     f" WITH ORDINALITY AS n(name, i)"
                     f" JOIN json_array_elements_text(r.extra::json) WITH ORDINALITY AS v(value, i) ON v.i = n.i)")
            starts = "left(r.extra, 1) = '['"
            fits = f"json_array_length(f.extra_columns::json -> '{layout.kind}') = json_array_length(r.extra::json)"
        else:
            named = (f"(SELECT json_group_object(name, value) FROM (SELECT n.value AS name, v.value AS value"
                     f" FROM json_each(f.extra_columns, '$.{layout.kind}') AS n"
                     f" JOIN json_each(r.extra) AS v ON v.key = n.key ORDER BY n.key))")
            starts = "substr(r.extra, 1, 1) = '['"
            fits = f"json_array_length(f.extra_columns, '$.{layout.kind}') = json_array_length(r.extra)"
        statements.append(f"CREATE VIEW {table}_named AS SELECT r.*, CASE WHEN NOT ({starts}) THEN r.extra"
                          f" WHEN {fits} THEN {named} END AS extra_named"
                          f" FROM {table} AS r LEFT JOIN files AS f ON f.id = r.file_id")
    return statements


# Remote state (collectors of remote servers). ``remote_collected``: every remote entry a source took, by
# path, size and mtime (whole seconds), committed with the file's catalog row; an entry listed again the same
# is never fetched again, one whose size or mtime changed is. ``remote_pending``: entries seen once and
# waiting for a second listing to show them unchanged (a file still being written changes in between).
remote_collected = Table(
    "remote_collected",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String, nullable=False),
    Column("path", String, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime", BigInteger, nullable=False),
    Column("file_id", Id),
    Column("collected_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "path", "size", "mtime"),
)

remote_pending = Table(
    "remote_pending",
    metadata,
    Column("source", String, primary_key=True),
    Column("path", String, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime", BigInteger, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
)

# Each source's run state, for ``cdr status`` and the daemon's schedule and backoff.
source_state = Table(
    "source_state",
    metadata,
    Column("source", String, primary_key=True),
    Column("last_attempt_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text),
    Column("last_error_at", UTCDateTime),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("next_run_at", UTCDateTime),
    Column("files_collected", BigInteger, nullable=False, default=0),
    # The entries the last pass could not take (a refused remote name, a file that could not be opened), one a
    # line; the pass still counts as a success (migration 0005).
    Column("entry_errors", Text),
    Column("entry_errors_at", UTCDateTime),
)

# Billing-feed cursors: the highest record ID each feed source has taken (its next ``fromid``). It moves
# only in the transaction that stages the answer it came from.
feed_cursors = Table(
    "feed_cursors",
    metadata,
    Column("source", String, primary_key=True),
    Column("last_id", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Mailboxes polled over IMAP. ``mail_folders``: the UIDVALIDITY each source last saw in each folder (a change
# means every UID was renumbered). ``mail_messages``: every message a source took, by (UIDVALIDITY, UID) and
# by ``message_key`` (the xxh3-128 of its exact bytes, which survives a renumbering); written after the
# message's attachments are staged and before it is flagged or moved on the server.
mail_folders = Table(
    "mail_folders",
    metadata,
    Column("source", String, primary_key=True),
    Column("folder", String, primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

mail_messages = Table(
    "mail_messages",
    metadata,
    Column("source", String, primary_key=True),
    Column("folder", String, primary_key=True),
    Column("uidvalidity", BigInteger, primary_key=True),
    Column("uid", BigInteger, primary_key=True),
    Column("message_key", String, nullable=False),
    Column("message_id", Text),
    Column("files", Integer, nullable=False),
    Column("taken_at", UTCDateTime, nullable=False),
    Index(None, "source", "message_key"),
)


# -- Customer data and billing (migration 0008; ``ingest.billing``) --------------------------------------------
# Customer data is imported from CSV (``cdr customers|numbers|features|references import``) and upserted by its
# natural key. Dates are whole days; ``valid_to`` is the last day (inclusive), NULL while open.

accounts = Table(
    "accounts",
    metadata,
    Column("account", Key, primary_key=True),
    Column("name", String, nullable=False),
    Column("tariff", String),  # a [tariffs.NAME] retail tariff; NULL: nothing of the account's is priced
    Column("updated_at", UTCDateTime, nullable=False),
)

# A number belongs to one account at a time: the import refuses overlapping validity for one number (checked in
# the import's transaction, which holds the table's write lock).
numbers = Table(
    "numbers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("number", Key, nullable=False),
    Column("account", Key, ForeignKey("accounts.account"), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date),
    Column("number_type", String),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("number", "valid_from"),
    Index(None, "account"),
)

# ``number`` is '' for a feature of the whole account (so that the natural key is unique on both databases,
# where NULLs in a unique key never collide); the library shows it as None.
features = Table(
    "features",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("account", Key, ForeignKey("accounts.account"), nullable=False),
    Column("number", Key, nullable=False, default=""),
    Column("feature", String, nullable=False),
    Column("quantity", Money(), nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("account", "number", "feature", "valid_from"),
)

# How a carrier names a customer in its files (a charge's ``customer_reference``).
carrier_references = Table(
    "carrier_references",
    metadata,
    Column("carrier", Key, primary_key=True),
    Column("reference", Key, primary_key=True),
    Column("account", Key, ForeignKey("accounts.account"), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# A charge (carrier transaction) and where it was allocated: one row per charge once allocation has looked at
# it. ``status``: unallocated (``reason`` says why: unknown-product, no-reference, unknown-number,
# unknown-reference, conflict), auto, manual. ``transaction_type``: its product code mapped by the carrier's
# [carriers.NAME.products]; ``feature_id``: the account's (and number's) feature of that type valid in its
# period, when there is one. A charge without a row has not been looked at yet (allocation takes it next).
charge_allocations = Table(
    "charge_allocations",
    metadata,
    Column("charge_id", Id, ForeignKey("charges.id"), primary_key=True),
    Column("status", String, nullable=False),
    Column("reason", String),
    Column("transaction_type", String),
    Column("account", Key),
    Column("number", Key),
    Column("feature_id", Id),
    Column("allocated_at", UTCDateTime, nullable=False),
    Column("actor", String, nullable=False),
    Index(None, "status"),
    Index(None, "account"),
)

# The audit trail of customer data and billing: imports, manual allocations, rematches, runs built and locked.
billing_events = Table(
    "billing_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String, nullable=False),
    Column("subject", String, nullable=False),  # customers, numbers, features, references, charge, run, legs
    Column("subject_id", String),
    Column("action", String, nullable=False),
    Column("detail", Text),
    Index(None, "subject", "subject_id"),
)

# Billing runs: one per period (``YYYY-MM``), a draft until locked. A draft is rebuilt in place; a locked run
# never changes.
bill_runs = Table(
    "bill_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("period", String(7), nullable=False, unique=True),
    Column("cutoff", Date),
    Column("status", String, nullable=False),  # draft | locked
    Column("built_at", UTCDateTime, nullable=False),
    Column("built_by", String, nullable=False),
    Column("locked_at", UTCDateTime),
    Column("locked_by", String),
)

# A run's billing transactions: one per source record (a charge or a call), priced.
bill_lines = Table(
    "bill_lines",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # No foreign key: a per-row check costs the run's bulk insert about a third of its time on PostgreSQL; the
    # run's own transaction, which holds its bill_runs row, is the only writer of its lines.
    Column("run_id", Id, nullable=False),
    Column("source_kind", String, nullable=False),  # charge | call | xdr
    Column("source_id", BigInteger, nullable=False),
    Column("file_id", BigInteger, nullable=False),
    Column("carrier", Key, nullable=False),
    Column("account", Key, nullable=False),
    Column("number", Key),
    Column("item_date", Date, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("item_type", String),  # the charge's transaction type, the call's call type
    Column("description", Text),
    Column("quantity", Money(), nullable=False),  # a charge's quantity; 1 for a call
    Column("seconds", BigInteger),  # a call's billed seconds, after the rate's minimum and increment
    Column("currency", String),
    Column("retail", Money(), nullable=False),
    Column("cost", Money(), nullable=False),
    Column("expected_cost", Money()),
    Column("margin", Money(), nullable=False),
    Column("rate", String),  # which tariff rate priced it ("standard.fixed[0]")
    UniqueConstraint("run_id", "source_kind", "source_id"),
    Index(None, "source_kind", "source_id"),
)

# What a run could not bill, kept with the run so its report stays as it was built: unallocated charges,
# unmatched calls, no-rate items (charges or calls no rate of the account's tariff matched).
bill_exceptions = Table(
    "bill_exceptions",
    metadata,
    Column("run_id", Id, ForeignKey("bill_runs.id"), primary_key=True),
    Column("source_kind", String, primary_key=True),
    Column("source_id", BigInteger, primary_key=True),
    Column("file_id", BigInteger, nullable=False),
    Column("carrier", Key, nullable=False),
    Column("exception", String, nullable=False),  # unallocated | unmatched | no-rate | incomplete
    Column("reason", String),
    Column("account", Key),
    Column("number", Key),
    Column("item_date", Date, nullable=False),
    Column("cost", Money()),
    Column("currency", String),
)

# Each source record a locked run billed: the database's own guarantee that nothing is billed twice (locking a
# run inserts its lines' sources here; a source already here fails the lock).
billed_sources = Table(
    "billed_sources",
    metadata,
    Column("source_kind", String, primary_key=True),
    Column("source_id", BigInteger, primary_key=True),
    Column("run_id", Id, ForeignKey("bill_runs.id"), nullable=False),
)


# Joining legs into xDRs (ingest.legs, migration 0010). ``leg_files``: the loaded files whose legs joining has
# taken (into ``pending_legs``), so a file's legs are taken once, whatever fails in between. ``pending_legs``: the
# legs waiting for the rest of their call, with what joining worked out for each (its call id, the node that
# sent it, its session: the Start and the Stop of one session share it); a leg leaves it in the transaction that
# puts it in an xDR (``xdr_legs``, whose primary key puts a leg in one xDR only) or lists it an orphan.
leg_files = Table(
    "leg_files",
    metadata,
    Column("file_id", Id, primary_key=True),
    Column("taken_at", UTCDateTime, nullable=False),
    Column("newest_event", UTCDateTime),  # its legs' latest event_time: the accounting clock the window runs on
)

pending_legs = Table(
    "pending_legs",
    metadata,
    Column("leg_id", Id, primary_key=True),
    Column("carrier", Key, nullable=False),
    Column("call_id", Key, nullable=False),
    Column("node", Key, nullable=False),  # the NAS-IP-Address ('' when the record has none)
    Column("session", Key, nullable=False),
    Column("named_node", Key),  # a trusted node it names (User-Name, else remote address): the call waits for it
    Column("status_type", String, nullable=False),
    Column("event_time", UTCDateTime, nullable=False),
    Column("file_id", Id, nullable=False),
    Index(None, "carrier", "call_id"),
)

# One xDR per party billed for a call: the session an account pays for (a gateway's legs of the call, with the
# legs of the trusted gateways that relayed it; each session of a PBX node). ``party`` names that session, so a
# call joined again never gives a second xDR for it (the unique key). ``status``: complete, or incomplete (closed
# by the window; ``reason`` says what was missing). ``account`` NULL: no account was found (a security alert).
xdrs = Table(
    "xdrs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("carrier", Key, nullable=False),
    Column("call_id", Key, nullable=False),
    Column("party", Key, nullable=False),
    Column("account", Key),
    Column("user_name", Key),
    Column("calling_number", Key),
    Column("called_number", Key),
    Column("setup_time", UTCDateTime, nullable=False),
    Column("connect_time", UTCDateTime),
    Column("disconnect_time", UTCDateTime),
    Column("charged_seconds", BigInteger, nullable=False),
    Column("call_seconds", BigInteger, nullable=False),
    Column("disconnect_cause", String),
    Column("remote_address", String),  # where the billed party's call came from (its answer leg's)
    Column("gateways", String),
    Column("leg_count", BigInteger, nullable=False),
    Column("status", String, nullable=False),
    Column("reason", String),
    Column("file_id", Id, nullable=False),  # the file of its latest leg (billing reconciles per file)
    Column("joined_at", UTCDateTime, nullable=False),
    UniqueConstraint("carrier", "call_id", "party"),
    Index(None, "setup_time"),
    Index(None, "account"),
)

xdr_legs = Table(
    "xdr_legs",
    metadata,
    Column("leg_id", Id, primary_key=True),
    Column("xdr_id", Id, nullable=False),
    Index(None, "xdr_id"),
)

# PBX call details of an xDR (auxiliary): via_hg, via_ext, media_duration, acli, as (type, value) rows.
xdr_details = Table(
    "xdr_details",
    metadata,
    Column("xdr_id", Id, primary_key=True),
    Column("detail_type", String, primary_key=True),
    Column("value", Text, nullable=False),
)

# Legs that joined no complete call: the legs of a call the window closed (``xdr_id``: its incomplete xDR) and
# legs that came after their call was produced (``late``).
orphan_legs = Table(
    "orphan_legs",
    metadata,
    Column("leg_id", Id, primary_key=True),
    Column("carrier", Key, nullable=False),
    Column("call_id", Key, nullable=False),
    Column("reason", String, nullable=False),
    Column("xdr_id", Id),
    Column("at", UTCDateTime, nullable=False),
)

# A call whose User-Name names no account: one alert per xDR (the unique key), mailed once when configured.
security_alerts = Table(
    "security_alerts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("raised_at", UTCDateTime, nullable=False),
    Column("call_time", UTCDateTime, nullable=False),
    Column("carrier", Key, nullable=False),
    Column("call_id", Key, nullable=False),
    Column("user_name", Key),
    Column("remote_address", String),
    Column("gateway", String),
    Column("xdr_id", Id, nullable=False, unique=True),
    Column("mailed_at", UTCDateTime),
    Column("mail_error", Text),
)
