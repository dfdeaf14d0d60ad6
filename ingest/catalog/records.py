"""Reading loaded records: the filters of ``cdr records``, streamed.

The columns are the ``records`` table's (:data:`RECORD_COLUMNS`, from :mod:`ingest.catalog.schema`): the CSV
header, the JSON keys and the table's columns all come from here.

The period filter is on a record's own date (:func:`ingest.catalog.files.record_date`: a call's UTC date, else
its bill date), so ``period="2026-10"`` is every call whose UTC time falls in October 2026 and every fee billed
in October 2026. ``since``/``before`` are on its own moment, the same way: a call's UTC time, else its bill
date at 00:00 UTC.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, String, and_, false, func, or_, select, type_coerce
from sqlalchemy.engine import MappingResult

from . import files as catalog_files
from .db import stream
from .schema import records

# Every column of a record, in the table's order.
RECORD_COLUMNS: tuple[str, ...] = tuple(records.c.keys())
# The columns a table on screen shows (the others are in --csv and --json), in the table's order.
_AT_A_GLANCE = {"id", "file_id", "carrier", "record_type", "feed_id", "call_type", "utc_time", "a_party",
                "b_party", "seconds", "charge", "charge_excl"}
RECORD_TABLE_COLUMNS: tuple[str, ...] = tuple(name for name in RECORD_COLUMNS if name in _AT_A_GLANCE)
assert len(RECORD_TABLE_COLUMNS) == len(_AT_A_GLANCE), "a table column that is not a records column"


def records_query(conn: Connection, *, file_id: int | None = None, carrier: str | None = None,
                  record_type: str | None = None, account: str | None = None, number: str | None = None,
                  period: str | None = None, since: datetime | None = None, before: datetime | None = None
                  ) -> Select:
    """The records matching every filter given, oldest (lowest id) first. ``number`` matches the a-party, b-party or bill number exactly; ``since`` (at or
    after) and ``before`` (strictly before) are UTC-aware instants on the record's own moment (module docs).
    An unknown ``file_id`` raises :class:`~ingest.errors.NotFound`."""
    query = select(records).order_by(records.c.id)
    for column, value in ((records.c.carrier, carrier), (records.c.record_type, record_type),
                          (records.c.account_code, account)):
        if value is not None:
            query = query.where(column == value)
    if number is not None:
        query = query.where(or_(records.c.a_party == number, records.c.b_party == number,
                                records.c.bill_number == number))
    if period is not None:
        year, month = (int(part) for part in period.split("-"))
        own_date = catalog_files.record_date(conn.dialect.name)
        query = query.where(own_date >= date(year, month, 1), own_date <= date(year, month, monthrange(year, month)[1]))
    if since is not None:
        query = query.where(_moment_at_or_after(conn, since))
    if before is not None:
        query = query.where(_moment_before(conn, before))
    if file_id is not None:
        found = catalog_files.get_file(conn, file_id)
        if found["first_record_id"] is None:
            return query.where(false())  # it loaded none
        # Through the primary key: records.file_id has no index on SQLite.
        query = query.where(records.c.id.between(found["first_record_id"], found["last_record_id"]),
                            records.c.file_id == file_id)
    return query


def iter_records(conn: Connection, *, limit: int | None = None, **filters: Any) -> MappingResult:
    """The matching records (see :func:`records_query`), each a read-only mapping of :data:`RECORD_COLUMNS`,
    streamed (:func:`ingest.catalog.db.stream`): iterate it within ``conn``'s block, and close it (``with``) if
    not read to the end. ``limit`` 0 or None: all. The query runs (a bad filter raises) before this returns."""
    query = records_query(conn, **filters)
    if limit:
        query = query.limit(limit)
    return stream(conn, query).mappings()


def count_records(conn: Connection, **filters: Any) -> int:
    """How many records match (the filters of :func:`records_query`)."""
    query = records_query(conn, **filters)
    return conn.execute(select(func.count()).select_from(query.order_by(None).subquery())).scalar_one()


def _is_timed_call() -> ColumnElement[bool]:
    """A record whose own moment is its UTC time (as in :func:`ingest.catalog.files.record_date`)."""
    return and_(records.c.record_type == "cdr", records.c.utc_time.is_not(None))


def _moment_at_or_after(conn: Connection, moment: datetime) -> ColumnElement[bool]:
    return or_(and_(_is_timed_call(), _utc_time(conn) >= _utc_bound(conn, moment)),
               and_(~_is_timed_call(), records.c.bill_date >= _first_day_from(moment)))


def _moment_before(conn: Connection, moment: datetime) -> ColumnElement[bool]:
    return or_(and_(_is_timed_call(), _utc_time(conn) < _utc_bound(conn, moment)),
               and_(~_is_timed_call(), records.c.bill_date < _first_day_from(moment)))


def _first_day_from(moment: datetime) -> date:
    """The first day whose 00:00 UTC is at or after ``moment``: a bill date (at 00:00 UTC) is at or after
    ``moment`` exactly when it is on or after this day."""
    moment = moment.astimezone(timezone.utc)
    day = moment.date()
    return day if moment.timetz().replace(tzinfo=None) == time(0) else day + timedelta(days=1)


def _utc_time(conn: Connection):
    # SQLite keeps a UTC time as text ('YYYY-MM-DD HH:MM:SS[.ffffff]'); compared as text, against a bound in the
    # same form (the type's own bind would add '.000000' and put a record at exactly the bound on the wrong side).
    return type_coerce(records.c.utc_time, String) if conn.dialect.name == "sqlite" else records.c.utc_time


def _utc_bound(conn: Connection, moment: datetime):
    if conn.dialect.name != "sqlite":
        return moment
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{moment.microsecond:06d}" if moment.microsecond else "")


__all__ = ["RECORD_COLUMNS", "RECORD_TABLE_COLUMNS", "count_records", "iter_records", "records_query"]
