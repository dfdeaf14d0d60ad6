"""Writing listings out as they stream: CSV, JSON Lines, a JSON array written element by element, and a table.

Each writer takes the rows as an iterator and writes each as it comes, so memory stays constant however many
there are (the table alone reads a first sample to size its columns). Values are written exactly: money as its
decimal text (``0.1150``, never a float nor an exponent), times as UTC ISO 8601 with ``Z``, dates as
``YYYY-MM-DD``, numbers-as-text (``0016…``) as given.

Standard library only: the CLI's listings use it without loading the database layer.
"""

from __future__ import annotations

import csv
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import islice
from operator import itemgetter
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

# A table on a terminal shows at most this many rows unless --limit says otherwise.
TTY_LIMIT = 50
# How many rows a streamed table reads first to size its columns (a longer value later widens its row only).
TABLE_SAMPLE = 200
CELL_WIDTH = 48
# What ``cdr files --sort`` sorts by (``-`` before one: descending); the catalog maps each to its columns.
FILE_SORTS = ("id", "received", "name")


def sort_keys() -> tuple[str, ...]:
    """The values ``--sort`` takes: each of :data:`FILE_SORTS`, and each with ``-`` (descending)."""
    return tuple(key for name in FILE_SORTS for key in (name, f"-{name}"))


# Values written as they are (the common case, checked first: an export converts millions of them).
_AS_IS = frozenset({str, int, bool, float, type(None)})


def exact(value: Any) -> Any:
    """A value as JSON carries it exactly: money as decimal text, times as UTC ISO 8601 with Z, dates ISO;
    containers converted throughout."""
    if type(value) in _AS_IS:
        return value
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")  # exact text; a JSON number would become a float in most readers
    if isinstance(value, Mapping):
        return {k: exact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [exact(v) for v in value]
    return value


def cell_text(value: Any) -> str:
    """A value as a table shows it, whole: ``-`` for none, a time to the second, else its :func:`exact` text."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(exact(value))


def cell(value: Any) -> str:
    """A value in a table cell: :func:`cell_text`, shortened to 48 characters."""
    text = cell_text(value)
    return text if len(text) <= CELL_WIDTH else text[:CELL_WIDTH - 1] + "…"


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    """A header row of ``columns``, then each row's values of them; returns the rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    values = itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
    written = 0
    plain = _AS_IS  # None is written empty by the csv module itself
    for row in rows:
        writer.writerow([v if type(v) in plain else _cell(v) for v in values(row)])
        written += 1
    return written


def _cell(value: Any) -> Any:
    """A CSV cell: :func:`exact`, with an object or a list as its compact JSON text (a record's ``extra``)."""
    if type(value) is dict:  # a record's extra: text values, written as they are (else converted first)
        try:
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        except TypeError:
            pass
    value = exact(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def write_json_lines(items: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    """One JSON object per item and line (JSON Lines); returns the items written."""
    written = 0
    for item in items:
        out.write(json.dumps(exact(dict(item))) + "\n")
        written += 1
    return written


def write_json_array(items: Iterable[Mapping[str, Any]], out: TextIO) -> int:
    """One JSON array of ``items``, written one element at a time (a reader sees one document, as if it was
    built at once); returns the items written."""
    written = 0
    for item in items:
        out.write(("[\n  " if not written else ",\n  ") + json.dumps(exact(dict(item))))
        written += 1
    out.write("\n]\n" if written else "[]\n")
    return written


def write_table(columns: Sequence[str], rows: Iterable[Mapping[str, Any]], out: TextIO,
                sample_size: int | None = TABLE_SAMPLE) -> int:
    """An aligned table of ``columns`` (a row without one shows ``-``) with an upper-case header, ``(none)`` when
    there are no rows; column widths come from the first ``sample_size`` rows (None: all), the rest are written
    as they come. Returns the rows written."""
    rows = iter(rows)
    sample = [[cell(row.get(c)) for c in columns] for row in islice(rows, sample_size)]
    if not sample:
        out.write("(none)\n")
        return 0
    widths = [max(len(c), *(len(r[i]) for r in sample)) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(cells, widths)).rstrip() + "\n"

    out.write(line([c.upper() for c in columns]))
    for cells in sample:
        out.write(line(cells))
    written = len(sample)
    for row in rows:
        out.write(line([cell(row.get(c)) for c in columns]))
        written += 1
    return written


# How a listing can be written: ``table`` (``columns`` the table's), ``csv`` (``columns`` every column),
# ``json`` (one array) and ``jsonl`` (JSON Lines: one object per line).
WRITERS = {
    "table": write_table,
    "csv": write_csv,
    "json": lambda _columns, rows, out: write_json_array(rows, out),
    "jsonl": lambda _columns, rows, out: write_json_lines(rows, out),
}


def write_listing(form: str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]], out: TextIO, *,
                  limit: int = 0, total: Callable[[], int] | None = None, how_to_see: str = "") -> int:
    """Write ``rows`` as ``form`` (a key of :data:`WRITERS`), at most ``limit`` of them (0: all; give one row
    more than ``limit`` to learn whether there are more). A table cut short ends with a line saying how many
    more (``total()``: how many there are in all) and ``how_to_see`` them; the data forms never get that line.
    Returns the rows written."""
    rows = iter(rows)
    shown = islice(rows, limit) if limit else rows
    written = WRITERS[form](columns, shown, out)
    if form == "table" and limit and written == limit and next(rows, None) is not None:
        more = f"{total() - written} more" if total else "more"
        out.write(f"… {more}" + (f": {how_to_see}" if how_to_see else "") + "\n")
    return written


def parse_moment(text: str) -> tuple[datetime, bool]:
    """A UTC date (``2026-10-01``) or date-time (``2026-10-01T13:05``, ``2026-10-01 13:05:09Z``, with an offset
    converted to UTC; without one it is UTC) as a UTC-aware datetime, and whether only a date was given.
    Raises ValueError for anything else."""
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass  # not a date alone: a date-time, or nothing
    else:
        return datetime(day.year, day.month, day.day, tzinfo=timezone.utc), True
    moment = datetime.fromisoformat(text)  # 3.11: 'Z', offsets, 'T' or a space
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc), False


def since_bound(text: str) -> datetime:
    """``--since``: the first instant included (a date: its 00:00 UTC)."""
    return parse_moment(text)[0]


def until_bound(text: str) -> datetime:
    """``--until``, inclusive, as the first instant excluded: a date includes that whole day (up to the next
    day's 00:00 UTC); a date-time includes that instant."""
    moment, whole_day = parse_moment(text)
    return moment + (timedelta(days=1) if whole_day else timedelta(microseconds=1))


__all__ = ["FILE_SORTS", "TTY_LIMIT", "WRITERS", "cell", "cell_text", "exact", "parse_moment", "since_bound", "sort_keys",
           "until_bound", "write_csv", "write_json_array", "write_json_lines", "write_listing", "write_table"]
