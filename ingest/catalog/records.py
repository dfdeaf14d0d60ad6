"""Reading loaded records: the filters of ``cdr records``, streamed, for calls and for charges.

The columns are the layout's (:mod:`ingest.layouts`): the CSV header, the JSON keys and the table's columns all
come from there. Money comes back as exact Decimals (the tables keep millionths).

Which records: ``record_type`` ``cdr`` lists calls, ``sdr`` charges (:data:`ingest.layouts.LAYOUT_BY_FILE_TYPE`);
without one, the file's own type when ``file_id`` is given, else calls.

The period filter is on a record's own date (:func:`ingest.catalog.files.record_date`: a call's UTC start date,
a charge's period start, else its charge date), so ``period="2026-10"`` is every call that started in October
2026 (UTC) and every charge for a period starting in October 2026. ``since``/``before`` are on its own moment
the same way: a call's start, a charge's own date at 00:00 UTC.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterator

from sqlalchemy import ColumnElement, Connection, Select, String, false, func, or_, select, type_coerce
from sqlalchemy.engine import Result

from ..core import month_bounds
from ..errors import InvalidState
from ..layouts import CALL, CHARGE, LAYOUT_BY_FILE_TYPE, LEG, Layout, extra_mapping
from . import files as catalog_files
from .db import stream
from .schema import RECORD_TABLES, files

# The columns a table on screen shows, per kind (the others are in --csv and --json).
_AT_A_GLANCE = {
    "call": ("id", "file_id", "carrier", "carrier_record_id", "call_type", "start_time", "a_number", "b_number",
             "billed_seconds", "charge", "charge_excl"),
    "charge": ("id", "file_id", "carrier", "carrier_record_id", "customer_reference", "number_reference",
               "product_code", "period_start", "charge_date", "quantity", "cost", "cost_incl"),
    "leg": ("id", "file_id", "carrier", "status_type", "event_time", "conf_id", "nas_ip", "user_name",
            "call_origin", "calling_number", "called_number", "session_seconds"),
}


def table_columns(layout: Layout) -> tuple[str, ...]:
    """The columns a table on screen shows for ``layout``, in the table's order."""
    return tuple(name for name in layout.columns if name in _AT_A_GLANCE[layout.kind])


def layout_for(conn: Connection, record_type: str | None, file_id: int | None) -> Layout:
    """The layout a listing shows: the given type's; else the file's type's (when a file is given and its type
    is known); else calls. An unknown ``file_id`` raises :class:`~ingest.errors.NotFound`."""
    if record_type is not None:
        return LAYOUT_BY_FILE_TYPE[record_type]
    if file_id is not None:
        found = catalog_files.get_file(conn, file_id)
        if found["first_call_id"] is None and found["first_charge_id"] is not None:
            return CHARGE
        if found["first_call_id"] is None and found["first_leg_id"] is not None:
            return LEG
        if found["first_call_id"] is None and found["type"] in LAYOUT_BY_FILE_TYPE:
            return LAYOUT_BY_FILE_TYPE[found["type"]]
    return CALL


def records_query(conn: Connection, *, file_id: int | None = None, carrier: str | None = None,
                  record_type: str | None = None, account: str | None = None, number: str | None = None,
                  period: str | None = None, since: datetime | None = None, before: datetime | None = None,
                  layout: Layout | None = None) -> Select:
    """The records matching every filter given, oldest (lowest id) first, of the layout :func:`layout_for`
    chooses. ``account`` is a call's account code or a charge's customer reference; ``number`` matches a call's
    a-, b- or bill number, or a charge's number reference, exactly; ``since`` (at or after) and ``before``
    (strictly before) are UTC-aware instants on the record's own moment (module docs). An unknown ``file_id``
    raises :class:`~ingest.errors.NotFound`. ``layout``: the one :func:`layout_for` chose, when the caller has it."""
    layout = layout or layout_for(conn, record_type, file_id)
    table = RECORD_TABLES[layout.kind]
    query = select(table).order_by(table.c.id)
    if carrier is not None:
        query = query.where(table.c.carrier == carrier)
    if account is not None:
        query = query.where(table.c["account_code" if layout.kind == "call" else "customer_reference"] == account)
    if number is not None:
        numbers = ("a_number", "b_number", "bill_number") if layout.kind == "call" else ("number_reference",)
        query = query.where(or_(*(table.c[name] == number for name in numbers)))
    if period is not None:
        first, last = month_bounds(period)
        own_date = catalog_files.record_date(conn.dialect.name, layout)
        query = query.where(own_date >= first, own_date <= last)
    if since is not None:
        query = query.where(_moment(conn, layout, since, at_or_after=True))
    if before is not None:
        query = query.where(_moment(conn, layout, before, at_or_after=False))
    if file_id is not None:
        found = catalog_files.get_file(conn, file_id)
        first, last = found[f"first_{layout.kind}_id"], found[f"last_{layout.kind}_id"]
        if first is None:
            return query.where(false())  # it loaded none of this kind
        # Through the primary key: file_id has no index.
        query = query.where(table.c.id.between(first, last), table.c.file_id == file_id)
    return query


def iter_records(conn: Connection, *, limit: int | None = None, **filters: Any) -> "RecordRows":
    """The matching records (see :func:`records_query`), each a dict of the layout's columns, ``extra`` as the
    object it stands for (:class:`RecordRows`), streamed (:func:`ingest.catalog.db.stream`):
    iterate it within ``conn``'s block, and close it (``with``) if not read to the end. ``limit`` 0 or None: all.
    The query runs (a bad filter raises) before this returns."""
    layout = layout_for(conn, filters.get("record_type"), filters.get("file_id"))
    query = records_query(conn, layout=layout, **filters)
    if limit:
        query = query.limit(limit)
    return RecordRows(conn, stream(conn, query), layout.kind)


class RecordRows:
    """Records as :func:`iter_records` streams them, each a dict of its columns. A record whose ``extra`` is
    stored by position (a list: see ``ingest.layouts``) has its values named by its file's ``extra_columns``,
    read once per file on ``conn``. An iterator; ``with`` closes it."""

    def __init__(self, conn: Connection, rows: Result, kind: str):
        self._conn = conn
        self._rows = rows
        self._kind = kind
        self._names: dict[int, list[str] | None] = {}
        self._iterator = self._named_rows()

    def __iter__(self) -> "RecordRows":
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._iterator)

    def _named_rows(self) -> Iterator[dict[str, Any]]:
        columns = tuple(self._rows.keys())
        at_extra, at_file = columns.index("extra"), columns.index("file_id")
        for values in self._rows:
            row = dict(zip(columns, values))
            extra = values[at_extra]
            if type(extra) is list:
                row["extra"] = self._named(values[at_file], row, extra)
            yield row

    def _named(self, file_id: int, row: dict[str, Any], values: list) -> dict[str, str]:
        if file_id not in self._names:
            stored = self._conn.execute(select(files.c.extra_columns).where(files.c.id == file_id)).scalar()
            self._names[file_id] = (json.loads(stored) if stored else {}).get(self._kind)
        try:
            return extra_mapping(values, self._names[file_id])
        except ValueError as exc:  # the catalog lost what names them: never shown under the wrong names
            self.close()
            raise InvalidState(f"record #{row['id']} of file #{file_id}: {exc}") from None

    def close(self) -> None:
        self._rows.close()

    def __enter__(self) -> "RecordRows":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_records(conn: Connection, **filters: Any) -> int:
    """How many records match (the filters of :func:`records_query`)."""
    query = records_query(conn, **filters)
    return conn.execute(select(func.count()).select_from(query.order_by(None).subquery())).scalar_one()


def _moment(conn: Connection, layout: Layout, moment: datetime, *, at_or_after: bool) -> ColumnElement[bool]:
    """A record's own moment compared with ``moment``: a call's start time; a charge's own date at 00:00 UTC."""
    table = RECORD_TABLES[layout.kind]
    if layout.kind == "call":
        column = table.c.start_time
        if conn.dialect.name == "sqlite":
            # SQLite keeps a UTC time as text ('YYYY-MM-DD HH:MM:SS[.ffffff]'); compared as text, against a bound
            # in the same form (the type's own bind would add '.000000' and put a record at exactly the bound on
            # the wrong side).
            column, bound = type_coerce(column, String), _sqlite_utc(moment)
        else:
            bound = moment
        return column >= bound if at_or_after else column < bound
    own_date = catalog_files.record_date(conn.dialect.name, layout)
    day = _first_day_from(moment)
    return own_date >= day if at_or_after else own_date < day


def _first_day_from(moment: datetime) -> date:
    """The first day whose 00:00 UTC is at or after ``moment``: a date (at 00:00 UTC) is at or after
    ``moment`` exactly when it is on or after this day."""
    moment = moment.astimezone(timezone.utc)
    day = moment.date()
    return day if moment.timetz().replace(tzinfo=None) == time(0) else day + timedelta(days=1)


def _sqlite_utc(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{moment.microsecond:06d}" if moment.microsecond else "")


__all__ = ["RecordRows", "count_records", "iter_records", "layout_for", "records_query", "table_columns"]
