"""Catalog operations on files: reading them, and every status change, each audited.

A file's status changes only here, inside the caller's transaction, by :func:`transition`, which checks
the current status (so two admins or an admin and the loader cannot both act on the same file) and writes
a ``file_events`` row saying who, when and why.

Statuses::

    queued     waiting to be loaded              -> loaded | failed | held (overlap) | discarded
    held       a potential duplicate or overlap  -> queued (release) | discarded
    failed     intake or load failed, bytes kept -> queued (retry) | discarded | superseded
    ignored    no carrier rule recognised it,    -> queued (retry, after a rule is added) | discarded
               or its content is not text (load)
    loaded     its records are in the database   (final)
    discarded  an admin decided it is not needed (final; no longer counts as an earlier copy)
    superseded a corrected file replaced it      (final; ``superseded_by`` names the replacement)

A failed file is superseded, in the transaction that loads its replacement, when a later file of the same
carrier loads under its name (or, for a failed archive, from an archive of its name): whatever it failed
for, the corrected file is what the carrier meant. It no longer counts in the backlog, but still counts as
an earlier copy for the content check (its bad content sent again is held, as any repeat is). The same-name
rule counts only files that may bill (queued, held, loaded): a failed or superseded file loaded nothing, and
the file sent under its name is the correction, so it is not held for the name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, Date, Table, and_, cast, func, insert, or_, select, text, update
from sqlalchemy.dialects import sqlite

from ..core import month_bounds
from ..errors import InvalidState, NotFound
from ..export import FILE_SORTS
from .db import stream
from ..layouts import LAYOUTS, Layout
from .schema import RECORD_TABLES, file_events, file_links, files

# Files that count as "received before" for the duplicate checks.
COUNTS_AS_EARLIER = ("queued", "loaded", "held", "failed", "superseded")
# Files a same-named file may repeat (the carrier's ``same_name_rule``): those whose records are or may be loaded.
MAY_BILL = ("queued", "loaded", "held")


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Link:
    earlier_id: int
    kind: str
    records: int | None = None


def add_file(conn: Connection, values: dict[str, Any], *, actor: str, why: str | None) -> int:
    """Insert a new file row with its first audit event; returns its id."""
    stamp = now()
    row = {"released": False, "records_loaded": 0, "records_skipped": 0, **values}
    row.setdefault("received_at", stamp)
    row["updated_at"] = stamp
    file_id = conn.execute(insert(files).values(**row).returning(files.c.id)).scalar_one()
    _event(conn, file_id, actor=actor, action="received", from_status=None, to_status=row["status"], why=why)
    return file_id


def add_links(conn: Connection, file_id: int, links: Iterable[Link]) -> None:
    rows = [
        {"file_id": file_id, "earlier_id": link.earlier_id, "kind": link.kind, "records": link.records}
        for link in links
        if link.earlier_id != file_id
    ]
    if rows:
        conn.execute(insert(file_links), rows)


def clear_links(conn: Connection, file_id: int, kind: str | None = None) -> None:
    cond = file_links.c.file_id == file_id
    if kind:
        cond = and_(cond, file_links.c.kind == kind)
    conn.execute(file_links.delete().where(cond))


def transition(
    conn: Connection,
    file_id: int,
    to_status: str,
    *,
    allowed_from: Sequence[str],
    actor: str,
    action: str,
    why: str | None = None,
    **values: Any,
) -> dict[str, Any]:
    """Move a file to ``to_status`` if its status is one of ``allowed_from``; audit it; return the old row."""
    current = get_file(conn, file_id)
    if current["status"] not in allowed_from:
        allowed = ", ".join(allowed_from)
        raise InvalidState(
            f"file {file_id} is {current['status']}; {action} applies only to a file that is {allowed}"
        )
    changed = conn.execute(
        update(files)
        .where(files.c.id == file_id, files.c.status == current["status"])
        .values(status=to_status, updated_at=now(), **values)
    ).rowcount
    if changed != 1:
        raise InvalidState(f"file {file_id} changed while {action} was being applied; try again")
    _event(conn, file_id, actor=actor, action=action, from_status=current["status"], to_status=to_status, why=why)
    return current


def loaded_why(inserted: int, skipped: int, period: str | None = None, dropped: int = 0) -> str:
    """The audit reason of a load; ``period``: the billing period the file was given from its records;
    ``dropped``: rows dropped as identical to an earlier row of the file."""
    return (f"loaded {inserted} records" + (f", skipped {skipped} already loaded" if skipped else "")
            + (f", dropped {dropped} identical rows" if dropped else "")
            + (f"; billing period {period} from its records" if period else ""))


def record_date(dialect_name: str, layout: Layout):
    """A record's own date, as a SQL expression over its layout's table: a call's is the date of its start
    (UTC); a charge's its period start, else its charge date. The one definition of it: a loaded file's
    ``records_from``/``records_to`` (and the billing period a file whose name carries no date is given from
    them) and ``cdr records --period`` both use it. On SQLite a UTC time is stored as 'YYYY-MM-DD HH:MM:SS'
    text, so its date is the first ten characters; on PostgreSQL it is a timestamptz, taken in UTC whatever
    the session's time zone."""
    table = RECORD_TABLES[layout.kind]
    dates = [utc_date(dialect_name, table.c[name]) if layout.field(name).kind == "utc" else table.c[name]
             for name in layout.date_fields]
    return dates[0] if len(dates) == 1 else func.coalesce(*dates)


def utc_date(dialect_name: str, instant):
    """The UTC date of a stored instant (a ``UTCDateTime`` column or expression), as SQL: on SQLite the first ten
    characters of its 'YYYY-MM-DD HH:MM:SS' text; on PostgreSQL its timestamptz taken in UTC, whatever the
    session's time zone."""
    return func.substr(instant, 1, 10) if dialect_name == "sqlite" else cast(func.timezone("UTC", instant), Date)


def span_values(billing_period: str | None, first: date | str | None, last: date | str | None) -> dict[str, Any]:
    """The ``files`` values a load sets from its records' own dates (first and last): ``records_from`` and
    ``records_to``, and ``billing_period`` (YYYY-MM) when the file has none and every record falls in one
    month. A period the file already has (from its name, or its source) is kept."""
    first, last = _as_date(first), _as_date(last)
    values: dict[str, Any] = {"records_from": first, "records_to": last}
    if billing_period is None and first is not None and (first.year, first.month) == (last.year, last.month):
        values["billing_period"] = f"{first:%Y-%m}"
    return values


def _iso(value: date | None) -> str | None:
    """A date in the form the SQLite dialect stores ``Date``."""
    return value.isoformat() if value is not None else None


def _as_date(value: date | str | None) -> date | None:
    """A date as the drivers return it: a ``date`` (PostgreSQL) or ISO text (SQLite)."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def in_period(period: str):
    """The files of billing period YYYY-MM: those it is the billing period of, and those whose records' own
    dates (``records_from``..``records_to``) overlap that month."""
    first, last = month_bounds(period)
    return or_(files.c.billing_period == period, and_(files.c.records_from <= last, files.c.records_to >= first))


@dataclass(frozen=True)
class Loaded:
    """What a load put in: records inserted and skipped (already loaded: a released file), rows dropped as
    identical within the file, and per record kind the id above which its records were given ids (every id
    committed before the load; on SQLite, where one writer at a time loads, the records are exactly the ids
    above it)."""

    inserted: int
    skipped: int = 0
    dropped: int = 0
    after: dict[str, int] | None = None
    # Per kind, what the loader counted as it inserted: (records, first own date, last own date) (ISO text). With
    # it, a kind's span is read through the primary key alone when its ids are the ones right above ``after``.
    counted: dict[str, tuple[int, str | None, str | None]] | None = None
    # Per kind, the names of the values its records' ``extra`` holds by position (``files.extra_columns``).
    extra_columns: dict[str, list[str]] | None = None

    def extra_columns_text(self) -> str | None:
        """``extra_columns`` as ``files.extra_columns`` stores it: compact JSON, or None when there are none."""
        if not self.extra_columns:
            return None
        return json.dumps(self.extra_columns, separators=(",", ":"), ensure_ascii=False)


_SPAN_COLUMNS = {"call": ("first_call_id", "last_call_id"), "charge": ("first_charge_id", "last_charge_id"),
                 "leg": ("first_leg_id", "last_leg_id")}


def last_id_given(conn: Connection, table: str) -> int:
    """The highest id ``table`` (calls, charges, legs) has given a record so far, committed or not (0: none):
    every record this session inserts after this is above it. PostgreSQL: its sequence's last value (an aggregate
    would scan calls, whose ids have no B-tree there; see ``ingest.catalog.schema``), once the ids the session
    had cached below it are discarded (``RECORD_ID_CACHE``); SQLite: MAX(id), through the rowid."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("DISCARD SEQUENCES"))
        return conn.execute(text(
            f"SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('{table}', 'id')::regclass), 0)")
        ).scalar_one()
    return conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar_one()


def _last_id_query(dialect_name: str, table: Table):
    """The id this session's last insert into ``table`` gave (PostgreSQL: the sequence's currval, this session's
    own; SQLite, one writer at a time: MAX(id))."""
    if dialect_name == "postgresql":
        return select(func.currval(func.pg_get_serial_sequence(table.name, "id")))
    return select(func.max(table.c.id))


def _span_query(dialect_name: str, layout: Layout, file_id: int, after: int):
    table = RECORD_TABLES[layout.kind]
    dates = record_date(dialect_name, layout)
    return (select(func.min(table.c.id), func.max(table.c.id), func.min(dates), func.max(dates))
            .where(table.c.id > after, table.c.file_id == file_id))


def _spans(execute, dialect_name: str, file_id: int, loaded: Loaded) -> dict[str, tuple]:
    """Per kind of record the load inserted: (first id, last id, first own date, last own date). From what the
    loader counted when the kind's ids are exactly those above ``after`` (the highest id is that plus the count:
    no other load's records are among them); else one aggregate over the records. ``execute`` runs a statement
    and gives its one row."""
    spans = {}
    for kind, after in (loaded.after or {}).items() if loaded.inserted else ():
        counted = (loaded.counted or {}).get(kind)
        if counted is not None:
            records, low, high = counted
            if not records:
                continue
            table = RECORD_TABLES[kind]
            (last,) = execute(_last_id_query(dialect_name, table))
            if last == after + records:
                spans[kind] = (after + 1, last, low, high)
                continue
        spans[kind] = execute(_span_query(dialect_name, LAYOUTS[kind], file_id, after))
    return spans


def _loaded_values(rows: dict[str, tuple], period: str | None) -> dict[str, Any]:
    """The ``files`` values of a load from each kind's (first id, last id, first date, last date)."""
    values: dict[str, Any] = {}
    lows, highs = [], []
    for kind, (first, last, low, high) in rows.items():
        values.update(zip(_SPAN_COLUMNS[kind], (first, last)))
        if low is not None:
            lows.append(_as_date(low))
            highs.append(_as_date(high))
    values.update(span_values(period, min(lows, default=None), max(highs, default=None)))
    return values


def mark_loaded(conn: Connection, file_id: int, loaded: Loaded, *, actor: str) -> None:
    """The ``queued -> loaded`` transition on a SQLAlchemy connection, audited: the counts, the span of ids each
    kind of its records was given and its records' own dates (:func:`span_values`), from one aggregate per
    kind (:func:`_spans`)."""
    rows = _spans(lambda statement: conn.execute(statement).one(), conn.dialect.name, file_id, loaded)
    period = conn.execute(select(files.c.billing_period).where(files.c.id == file_id)).scalar_one()
    values = _loaded_values(rows, period)
    transition(conn, file_id, "loaded", allowed_from=("queued",), actor=actor, action="loaded",
               why=loaded_why(loaded.inserted, loaded.skipped, values.get("billing_period"), loaded.dropped),
               records_loaded=loaded.inserted, records_skipped=loaded.skipped, records_dropped=loaded.dropped,
               extra_columns=loaded.extra_columns_text(), error=None, reason=None, **values)


def supersede_failed(conn: Connection, file_id: int, *, actor: str, name_identifies: bool) -> list[int]:
    """In the transaction that loads file ``file_id``: move the earlier failed files it replaces (see
    :func:`_replaced_by`) to ``superseded``, linked to it by ``superseded_by`` and audited; returns their ids."""
    replaced = list(conn.execute(_replaced_by(file_id, name_identifies)).scalars())
    for earlier_id in replaced:
        transition(conn, earlier_id, "superseded", allowed_from=("failed",), actor=actor, action="superseded",
                   why=superseded_why(file_id), superseded_by=file_id)
    return replaced


def superseded_why(file_id: int) -> str:
    return f"replaced by #{file_id}, a file of the same carrier and name that loaded"


def _replaced_by(file_id: int, name_identifies: bool):
    """The ids of the failed files that file ``file_id`` replaces: earlier, of the same carrier and type,
    named as it is or as the archive it came in, and of the same billing period. Where either period is
    unknown (a name without a date), the name alone identifies the file only for a carrier that says its
    names do (``same_name_rule``, ``name_identifies``): a carrier that reuses ``usage.csv`` every month must
    not bury last month's failed file under this month's."""
    replacement = files.alias("replacement")
    same_period = files.c.billing_period == replacement.c.billing_period
    if name_identifies:
        same_period = or_(same_period, files.c.billing_period.is_(None), replacement.c.billing_period.is_(None))
    return (
        select(files.c.id)
        .join(replacement, replacement.c.id == file_id)
        .where(files.c.status == "failed", files.c.carrier == replacement.c.carrier, files.c.id < replacement.c.id,
               or_(files.c.type == replacement.c.type, files.c.type.is_(None)),
               same_period,
               or_(files.c.name == replacement.c.name, files.c.name == replacement.c.container))
        .order_by(files.c.id)
    )


def mark_loaded_dbapi(cursor, file_id: int, loaded: Loaded, *, actor: str, name_identifies: bool) -> None:
    """The ``queued -> loaded`` transition and its audit event, and the ``failed -> superseded`` transitions
    it causes (:func:`supersede_failed`), for the SQLite bulk path whose transaction runs on an ADBC (DBAPI,
    qmark) cursor rather than a SQLAlchemy connection. The caller holds the write lock (BEGIN IMMEDIATE)
    and has checked the file is queued. Timestamps are written in the form the SQLite dialect stores
    ``UTCDateTime``. The spans and dates are one aggregate per kind, as :func:`mark_loaded` does."""
    stamp = now().replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    def execute(statement):
        _execute_dbapi(cursor, statement)
        return cursor.fetchone()

    rows = _spans(execute, "sqlite", file_id, loaded)
    _execute_dbapi(cursor, select(files.c.billing_period).where(files.c.id == file_id))
    values = _loaded_values(rows, cursor.fetchone()[0])
    period = values.get("billing_period")
    why = loaded_why(loaded.inserted, loaded.skipped, period, loaded.dropped)
    spans = [values.get(column) for kind in ("call", "charge", "leg") for column in _SPAN_COLUMNS[kind]]
    cursor.execute(
        "UPDATE files SET status = 'loaded', records_loaded = ?, records_skipped = ?, records_dropped = ?,"
        " error = NULL, reason = NULL, first_call_id = ?, last_call_id = ?, first_charge_id = ?,"
        " last_charge_id = ?, first_leg_id = ?, last_leg_id = ?, records_from = ?, records_to = ?,"
        " billing_period = COALESCE(billing_period, ?), extra_columns = ?, updated_at = ?"
        " WHERE id = ? AND status = 'queued'",
        (loaded.inserted, loaded.skipped, loaded.dropped, *spans, _iso(values["records_from"]),
         _iso(values["records_to"]), period, loaded.extra_columns_text(), stamp, file_id),
    )
    cursor.execute(
        "INSERT INTO file_events (file_id, at, actor, action, from_status, to_status, reason)"
        " VALUES (?, ?, ?, 'loaded', 'queued', 'loaded', ?)",
        (file_id, stamp, actor, why),
    )
    _execute_dbapi(cursor, _replaced_by(file_id, name_identifies))
    for (earlier_id,) in cursor.fetchall():
        cursor.execute(
            "UPDATE files SET status = 'superseded', superseded_by = ?, updated_at = ?"
            " WHERE id = ? AND status = 'failed'",
            (file_id, stamp, earlier_id),
        )
        cursor.execute(
            "INSERT INTO file_events (file_id, at, actor, action, from_status, to_status, reason)"
            " VALUES (?, ?, ?, 'superseded', 'failed', 'superseded', ?)",
            (earlier_id, stamp, actor, superseded_why(file_id)),
        )


def _execute_dbapi(cursor, statement) -> None:
    """Run a SQLAlchemy statement on a SQLite DBAPI (qmark) cursor."""
    compiled = statement.compile(dialect=sqlite.dialect())
    cursor.execute(str(compiled), [compiled.params[name] for name in compiled.positiontup])


def audit(conn: Connection, file_id: int, *, actor: str, action: str, why: str | None) -> None:
    """Record an event that does not change the status (for example a retry that loads nothing new)."""
    status = get_file(conn, file_id)["status"]
    _event(conn, file_id, actor=actor, action=action, from_status=status, to_status=status, why=why)


def record_format(conn: Connection, file_id: int, file_format: str, *, actor: str) -> None:
    """Record the format a file's content is actually in, when it is not the one the file has (a name that
    lies: a pipe-separated ``.txt``; or none was known) and it is still queued; audited, the status unchanged."""
    current = get_file(conn, file_id)
    if current["format"] == file_format or current["status"] != "queued":
        return
    conn.execute(update(files).where(files.c.id == file_id).values(format=file_format, updated_at=now()))
    was = f"received as {current['format']}" if current["format"] else "no format was given"
    _event(conn, file_id, actor=actor, action="format", from_status=current["status"],
           to_status=current["status"], why=f"read as {file_format} ({was})")


def _event(conn, file_id, *, actor, action, from_status, to_status, why) -> None:
    conn.execute(
        insert(file_events).values(
            file_id=file_id,
            at=now(),
            actor=actor,
            action=action,
            from_status=from_status,
            to_status=to_status,
            reason=why,
        )
    )


def get_file(conn: Connection, file_id: int) -> dict[str, Any]:
    row = conn.execute(select(files).where(files.c.id == file_id)).mappings().first()
    if row is None:
        raise NotFound(f"no file with id {file_id}")
    return dict(row)


# The columns each ``cdr files --sort`` key (:data:`ingest.export.FILE_SORTS`) orders by, the id breaking ties.
SORT_COLUMNS = {"id": (files.c.id,), "received": (files.c.received_at, files.c.id), "name": (files.c.name, files.c.id)}
assert set(SORT_COLUMNS) == set(FILE_SORTS), "a sort key without its columns"


def files_query(
    *,
    carrier: str | None = None,
    file_type: str | None = None,
    cadence: str | None = None,
    status: str | None = None,
    period: str | None = None,
    since: datetime | None = None,
    sort: str = "id",
    limit: int | None = None,
):
    """The files matching every filter given (``since``: received at or after it), in ``sort`` order (one of
    :data:`ingest.export.FILE_SORTS`, ``-`` first for descending)."""
    order = SORT_COLUMNS[sort.lstrip("-")]
    query = select(files).order_by(*(column.desc() if sort.startswith("-") else column for column in order))
    for column, value in (
        (files.c.carrier, carrier),
        (files.c.type, file_type),
        (files.c.cadence, cadence),
        (files.c.status, status),
    ):
        if value is not None:
            query = query.where(column == value)
    if period is not None:
        query = query.where(in_period(period))
    if since is not None:
        query = query.where(files.c.received_at >= since)
    if limit:
        query = query.limit(limit)
    return query


def list_files(conn: Connection, **filters: Any) -> list[dict[str, Any]]:
    """The files matching ``filters`` (those of :func:`files_query`), each a dict of its columns."""
    return [dict(r) for r in conn.execute(files_query(**filters)).mappings()]


def iter_files(conn: Connection, **filters: Any):
    """As :func:`list_files`, each file a read-only mapping, streamed (:func:`ingest.catalog.db.stream`): iterate
    it within ``conn``'s block, and close it (``with``) if not read to the end. The query runs before this
    returns."""
    return stream(conn, files_query(**filters)).mappings()


def count_files(conn: Connection, **filters: Any) -> int:
    """How many files match ``filters`` (those of :func:`files_query`, but for ``sort`` and ``limit``)."""
    query = files_query(**filters).order_by(None).subquery()
    return conn.execute(select(func.count()).select_from(query)).scalar_one()


def links_of(conn: Connection, file_id: int) -> list[dict[str, Any]]:
    """The files this one may repeat: each link's kind and ``records`` (for an overlap, how many of this file's
    records the earlier file loaded first; None for a whole-file duplicate), with the earlier file's id, name,
    status, ``records_loaded`` (its own record count), source and when it was received."""
    earlier = files.alias("earlier")
    query = (
        select(
            file_links.c.kind,
            file_links.c.records,
            earlier.c.id,
            earlier.c.name,
            earlier.c.status,
            earlier.c.records_loaded,
            earlier.c.source,
            earlier.c.received_at,
        )
        .join(earlier, earlier.c.id == file_links.c.earlier_id)
        .where(file_links.c.file_id == file_id)
        .order_by(earlier.c.id, file_links.c.kind)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def repeats_text(links: Iterable[dict[str, Any]]) -> str:
    """The earlier files a held file repeats, from :func:`links_of`, each once: ``#1 (x.csv, loaded), #2
    (y.csv, held)`` — how ``cdr upload``/``collect``/``watch`` and the daemon's log name them."""
    shown: dict[int, str] = {}
    for link in links:
        shown.setdefault(link["id"], f"#{link['id']} ({link['name']}, {link['status']})")
    return ", ".join(shown.values())


def events_of(conn: Connection, file_id: int) -> list[dict[str, Any]]:
    query = select(file_events).where(file_events.c.file_id == file_id).order_by(file_events.c.id)
    return [dict(r) for r in conn.execute(query).mappings()]


def earlier_by_content(conn: Connection, fingerprint: str) -> list[int]:
    query = (
        select(files.c.id)
        .where(files.c.fingerprint == fingerprint, files.c.status.in_(COUNTS_AS_EARLIER))
        .order_by(files.c.id)
    )
    return list(conn.execute(query).scalars())


def earlier_by_name(conn: Connection, carrier: str, name: str) -> list[int]:
    query = (
        select(files.c.id)
        .where(files.c.carrier == carrier, files.c.name == name, files.c.status.in_(MAY_BILL))
        .order_by(files.c.id)
    )
    return list(conn.execute(query).scalars())


def same_delivery(conn: Connection, source: str, delivery: str, blob: str) -> list[dict[str, Any]]:
    query = (
        select(files)
        .where(files.c.source == source, files.c.delivery == delivery, files.c.blob == blob)
        .order_by(files.c.id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def queued_ids(conn: Connection, limit: int | None = None, after: int = 0) -> list[int]:
    """The queued files' ids above ``after``, oldest first."""
    query = select(files.c.id).where(files.c.status == "queued", files.c.id > after).order_by(files.c.id)
    if limit:
        query = query.limit(limit)
    return list(conn.execute(query).scalars())


def status_counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(files.c.status, func.count()).group_by(files.c.status))
    return {status: count for status, count in rows}
