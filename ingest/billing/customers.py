"""Customer data, imported from CSV and kept: accounts (customers), numbers, features and carrier references.

Four kinds of header-named CSV file (UTF-8, a byte-order mark tolerated), each with exactly these columns, in any
order (:data:`COLUMNS`):

- ``customers``: ``account,name,tariff`` -> ``accounts``, by ``account``;
- ``numbers``: ``number,account,valid_from,valid_to,number_type`` -> ``numbers``, by ``number`` + ``valid_from``;
- ``features``: ``account,number,feature,quantity,valid_from,valid_to`` -> ``features``, by ``account`` +
  ``number`` + ``feature`` + ``valid_from`` (``number`` empty: the whole account, kept as '' and shown as None;
  ``quantity`` an exact decimal above 0, 1 when empty);
- ``references``: ``carrier,reference,account`` -> ``carrier_references``, by ``carrier`` + ``reference``.

Every value is text with its surrounding whitespace trimmed (a number or code such as ``0016`` stays as written);
dates are ``YYYY-MM-DD``, ``valid_to`` is the last day (inclusive, not before ``valid_from``) and empty while open.
A row whose cells are all empty is skipped.

An import is one transaction, all or nothing: the file is read and checked in Python (every error is one line
naming the file, the line and the field: :class:`CustomerDataError`), the rows it names are read back in one
query and compared, then the new rows are inserted and the changed ones updated, each in one executemany. Rows
the file does not mention are left alone (an upsert, not a replacement). A numbers import then checks, in SQL and
across the whole table, that no number belongs to two accounts on one day, and refuses the whole file if one
would. ``dry_run`` does all of that and rolls back, returning what would change. A real import is audited in
``billing_events``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sqlalchemy import Connection, Date, Table, and_, bindparam, func, literal, select, update

from ..catalog.files import now as _now
from ..catalog.schema import accounts, billing_events, carrier_references, features, numbers
from ..errors import PermanentError
from ..layouts import MONEY_SCALE

if TYPE_CHECKING:
    from ..app import App

KINDS = ("customers", "numbers", "features", "references")

# More distinct values than this and the rows a file names are found by reading the whole table once, rather
# than by one query with that many parameters.
IN_LIMIT = 1000
# At most this many overlapping pairs are read back to choose the one reported (the file's earliest line).
OVERLAPS_READ = 100
# The day an open validity (valid_to NULL) runs to, for the overlap check.
OPEN_END = date(9999, 12, 31)


class CustomerDataError(PermanentError):
    """A customer data file is refused: one line naming the file, the line and the field, and the reason
    (``numbers.csv line 4, valid_from: '2026-13-01' is not a date (YYYY-MM-DD)``). Nothing of the file was
    written."""

    def __init__(self, file: str, line: int | None, field: str | None, reason: str):
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason
        where = file if line is None else f"{file} line {line}"
        if field:
            where += f", {field}"
        super().__init__(f"{where}: {reason}")


class _Bad(Exception):
    """A cell's value is refused (the reason); the reader adds the file, line and field."""


# -- cell parsers: text in (already trimmed), a typed value out, or _Bad ---------------------------------------

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_QUANTITY = re.compile(r"\d+(\.\d+)?|\.\d+")


def _required(value: str) -> str:
    if not value:
        raise _Bad("is required and empty")
    return value


def _optional(value: str) -> str | None:
    return value or None


def _phone_number(value: str) -> str:
    _required(value)
    if re.search(r"\s", value):
        raise _Bad(f"{value!r} has spaces inside (write it as the carriers' files do, e.g. 02079460001)")
    return value


def _optional_phone_number(value: str) -> str:
    return _phone_number(value) if value else ""  # '' (not None): a feature of the whole account


def _date(value: str) -> date:
    _required(value)
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise _Bad(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _optional_date(value: str) -> date | None:
    return _date(value) if value else None


def _quantity(value: str) -> Decimal:
    if not value:
        return Decimal(1)
    try:
        if not _QUANTITY.fullmatch(value):
            raise InvalidOperation
        quantity = Decimal(value)
    except InvalidOperation:
        raise _Bad(f"{value!r} is not a decimal number (e.g. 1 or 2.5)") from None
    if quantity <= 0:
        raise _Bad(f"{value!r} is not above 0")
    if -quantity.as_tuple().exponent > MONEY_SCALE:
        raise _Bad(f"{value!r} has more than {MONEY_SCALE} decimal places")
    return quantity


@dataclass(frozen=True)
class _Kind:
    name: str  # customers, numbers, features, references: the CLI's group and the audit's subject
    table: Table
    parsers: dict[str, Callable[[str], Any]]  # every CSV column, in the documented order, and its parser
    key: tuple[str, ...]  # the natural key (columns of both the file and the table)
    compared: tuple[str, ...]  # the other columns an import sets (compared with what is kept)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.parsers)


_KINDS = {
    "customers": _Kind("customers", accounts,
                       {"account": _required, "name": _required, "tariff": _optional},
                       key=("account",), compared=("name", "tariff")),
    "numbers": _Kind("numbers", numbers,
                     {"number": _phone_number, "account": _required, "valid_from": _date,
                      "valid_to": _optional_date, "number_type": _optional},
                     key=("number", "valid_from"), compared=("account", "valid_to", "number_type")),
    "features": _Kind("features", features,
                      {"account": _required, "number": _optional_phone_number, "feature": _required,
                       "quantity": _quantity, "valid_from": _date, "valid_to": _optional_date},
                      key=("account", "number", "feature", "valid_from"), compared=("quantity", "valid_to")),
    "references": _Kind("references", carrier_references,
                        {"carrier": _required, "reference": _required, "account": _required},
                        key=("carrier", "reference"), compared=("account",)),
}

# The columns of each kind's CSV file, in the documented order.
COLUMNS: dict[str, tuple[str, ...]] = {name: kind.columns for name, kind in _KINDS.items()}


# -- the result ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Change:
    """One row an import inserts or updates: its natural key (a feature of the whole account: ``number`` None),
    the file's line, and each field set, old -> new (an insert: old None)."""

    line: int
    action: str  # insert | update
    key: dict[str, Any]
    fields: dict[str, tuple[Any, Any]]

    def view(self) -> dict[str, Any]:
        return {"line": self.line, "action": self.action, "key": dict(self.key),
                "fields": {name: {"old": old, "new": new} for name, (old, new) in self.fields.items()}}


@dataclass(frozen=True)
class ImportResult:
    """What an import did (``dry_run``: would do). ``changes``, each row inserted or updated in the file's order,
    is filled for a dry run only."""

    kind: str
    file: str
    dry_run: bool
    inserted: int
    updated: int
    unchanged: int
    changes: list[Change] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        """The public shape (JSON with :func:`ingest.export.exact`)."""
        out: dict[str, Any] = {"kind": self.kind, "file": self.file, "dry_run": self.dry_run,
                               "inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged}
        if self.dry_run:
            out["changes"] = [change.view() for change in self.changes]
        return out


# -- reading a file ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Row:
    line: int
    values: dict[str, Any]


def read_rows(path: Path, kind: str, *, known_tariffs: Collection[str] | None = None,
              carriers: Collection[str] | None = None) -> list[_Row]:
    """The rows of a ``kind`` file, typed and checked on their own (the header, each cell, valid_to not before
    valid_from, a natural key given twice, a tariff or carrier not among those given): what can be checked
    without the catalog. Raises :class:`CustomerDataError`."""
    spec = _KINDS[kind]
    path = Path(path)
    name = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CustomerDataError(name, None, None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CustomerDataError(name, line, None, f"not UTF-8 text (byte 0x{data[exc.start]:02x})") from None

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[_Row] = []
    seen: dict[tuple, int] = {}
    header: list[str] | None = None
    previous = 0
    try:
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if header is None:
                header = _header(name, line, cells, spec)
                continue
            cells = [cell.strip() for cell in cells]
            if not any(cells):
                continue  # a blank line, or a row of empty cells (as spreadsheets write at the end)
            if len(cells) > len(header) and not any(cells[len(header):]):
                cells = cells[:len(header)]  # trailing empty cells
            if len(cells) != len(header):
                missing = header[len(cells)] if len(cells) < len(header) else None
                raise CustomerDataError(name, line, missing,
                                        f"the row has {len(cells)} fields where the header has {len(header)}")
            row = _Row(line, _typed(name, line, dict(zip(header, cells)), spec, known_tariffs, carriers))
            key = tuple(row.values[k] for k in spec.key)
            if key in seen:
                raise CustomerDataError(name, line, spec.key[0],
                                        f"{_key_text(spec, row.values)} is also on line {seen[key]}")
            seen[key] = line
            rows.append(row)
    except csv.Error as exc:
        raise CustomerDataError(name, reader.line_num or 1, None, f"not readable as CSV: {exc}") from None
    if header is None:
        raise CustomerDataError(name, 1, None, f"the file is empty (expected the header {','.join(spec.columns)})")
    return rows


def _header(name: str, line: int, cells: list[str], spec: _Kind) -> list[str]:
    header = [cell.strip().lower() for cell in cells]
    expected = f"expected exactly the columns {','.join(spec.columns)}, in any order"
    for index, column in enumerate(header):
        if column not in spec.parsers:
            shown = repr(cells[index].strip()) if column else f"column {index + 1} (no name)"
            raise CustomerDataError(name, line, column or None, f"unknown column {shown} ({expected})")
        if column in header[:index]:
            raise CustomerDataError(name, line, column, f"column {column!r} is given twice")
    for column in spec.columns:
        if column not in header:
            raise CustomerDataError(name, line, column, f"missing column {column!r} ({expected})")
    return header


def _typed(name: str, line: int, cells: dict[str, str], spec: _Kind, known_tariffs: Collection[str] | None,
           carriers: Collection[str] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in spec.columns:  # in the documented order, so that the first error is the same whatever the order
        try:
            values[column] = spec.parsers[column](cells[column])
        except _Bad as exc:
            raise CustomerDataError(name, line, column, str(exc)) from None
    if "valid_to" in values and values["valid_to"] is not None and values["valid_to"] < values["valid_from"]:
        raise CustomerDataError(name, line, "valid_to",
                                f"{cells['valid_to']!r} is before valid_from {values['valid_from']}")
    if known_tariffs is not None and values.get("tariff") is not None and values["tariff"] not in known_tariffs:
        raise CustomerDataError(name, line, "tariff", f"{values['tariff']!r} is not a configured tariff "
                                f"(known: {', '.join(sorted(known_tariffs)) or 'none'})")
    if carriers is not None and "carrier" in values and values["carrier"] not in carriers:
        raise CustomerDataError(name, line, "carrier", f"{values['carrier']!r} is not a configured carrier "
                                f"(known: {', '.join(sorted(carriers)) or 'none'})")
    return values


def _key_text(spec: _Kind, values: Mapping[str, Any]) -> str:
    """A natural key as the messages show it: ``number 02079460001 from 2026-01-01``."""
    parts = []
    for column in spec.key:
        value = values[column]
        if column == "valid_from":
            parts.append(f"from {value}")
        elif column == "number" and spec.name == "features":
            parts.append(f"number {value}" if value else "(the whole account)")
        else:
            parts.append(f"{column} {value}")
    return " ".join(parts)


# -- importing ---------------------------------------------------------------------------------------------------

class _DryRun(Exception):
    """Raised inside a dry run's transaction to roll it back, carrying the result out."""

    def __init__(self, result: ImportResult):
        self.result = result


def import_file(app: App, kind: str, path: Path | str, *, dry_run: bool = False, actor: str | None = None,
                known_tariffs: Collection[str] | None = None) -> ImportResult:
    """Upsert the ``kind`` file at ``path`` (one of :data:`KINDS`) in one transaction, all or nothing; with
    ``dry_run`` check and compare the same way, then roll back. ``known_tariffs``: a customer's tariff must be
    one of these names; by default the configuration's retail tariffs, once it defines any (before that, while
    billing is not set up, any name is taken: a run reports what it then cannot price as no-rate). Raises
    :class:`CustomerDataError` (nothing written)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown kind of customer data {kind!r} (one of {', '.join(KINDS)})")
    if known_tariffs is None and app.config.tariffs:
        known_tariffs = {name for name, tariff in app.config.tariffs.items() if not tariff.wholesale}
    spec = _KINDS[kind]
    path = Path(path)
    carriers = app.config.carriers if kind == "references" else None
    rows = read_rows(path, kind, known_tariffs=known_tariffs, carriers=carriers)
    try:
        with app.catalog.write() as conn:
            app.catalog.serialize(conn, "customer-data")
            result = _upsert(conn, spec, path.name, rows, dry_run=dry_run)
            if dry_run:
                raise _DryRun(result)
            conn.execute(billing_events.insert().values(
                at=_now(), actor=actor or app.actor, subject=kind, subject_id=None, action="import",
                detail=f"{path.name}: {result.inserted} inserted, {result.updated} updated, "
                       f"{result.unchanged} unchanged"))
    except _DryRun as done:
        return done.result
    return result


def import_customers(app: App, path: Path | str, *, dry_run: bool = False, actor: str | None = None,
                     known_tariffs: Collection[str] | None = None) -> ImportResult:
    """Upsert ``account,name,tariff`` rows into ``accounts`` (see :func:`import_file`)."""
    return import_file(app, "customers", path, dry_run=dry_run, actor=actor, known_tariffs=known_tariffs)


def import_numbers(app: App, path: Path | str, *, dry_run: bool = False, actor: str | None = None) -> ImportResult:
    """Upsert ``number,account,valid_from,valid_to,number_type`` rows into ``numbers``; a number that would
    belong to two accounts (or twice to one) on the same day is refused (see :func:`import_file`)."""
    return import_file(app, "numbers", path, dry_run=dry_run, actor=actor)


def import_features(app: App, path: Path | str, *, dry_run: bool = False, actor: str | None = None) -> ImportResult:
    """Upsert ``account,number,feature,quantity,valid_from,valid_to`` rows into ``features`` (see
    :func:`import_file`)."""
    return import_file(app, "features", path, dry_run=dry_run, actor=actor)


def import_references(app: App, path: Path | str, *, dry_run: bool = False,
                      actor: str | None = None) -> ImportResult:
    """Upsert ``carrier,reference,account`` rows into ``carrier_references`` (see :func:`import_file`)."""
    return import_file(app, "references", path, dry_run=dry_run, actor=actor)


def _upsert(conn: Connection, spec: _Kind, name: str, rows: list[_Row], *, dry_run: bool) -> ImportResult:
    if spec.name != "customers":
        _check_accounts(conn, name, rows)
    kept = _kept_rows(conn, spec, rows)
    inserts: list[_Row] = []
    updates: list[_Row] = []
    changes: list[Change] = []
    for row in rows:
        old = kept.get(tuple(row.values[k] for k in spec.key))
        if old is None:
            inserts.append(row)
            diff = {c: (None, row.values[c]) for c in spec.compared}
        else:
            diff = {c: (old[c], row.values[c]) for c in spec.compared if old[c] != row.values[c]}
            if not diff:
                continue
            updates.append(row)
        if dry_run:
            changes.append(Change(row.line, "insert" if old is None else "update", _shown_key(spec, row.values),
                                  diff))
    stamp = _now()
    table = spec.table
    if inserts:
        conn.execute(table.insert(), [{**row.values, "updated_at": stamp} for row in inserts])
    if updates:
        statement = (update(table)
                     .where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in spec.key)))
                     .values({**{c: bindparam(f"v_{c}") for c in spec.compared}, "updated_at": stamp}))
        conn.execute(statement, [{**{f"k_{k}": row.values[k] for k in spec.key},
                                  **{f"v_{c}": row.values[c] for c in spec.compared}} for row in updates])
    if spec.name == "numbers" and (inserts or updates):
        _refuse_overlaps(conn, name, rows)
    return ImportResult(spec.name, name, dry_run, inserted=len(inserts), updated=len(updates),
                        unchanged=len(rows) - len(inserts) - len(updates), changes=changes)


def _shown_key(spec: _Kind, values: Mapping[str, Any]) -> dict[str, Any]:
    key = {k: values[k] for k in spec.key}
    if spec.name == "features":
        key["number"] = key["number"] or None
    return key


def _kept_rows(conn: Connection, spec: _Kind, rows: list[_Row]) -> dict[tuple, dict[str, Any]]:
    """The kept rows with the natural keys of ``rows``, by key: one query."""
    table = spec.table
    first = spec.key[0]
    wanted = {tuple(row.values[k] for k in spec.key) for row in rows}
    query = select(*(table.c[c] for c in (*spec.key, *spec.compared)))
    firsts = {key[0] for key in wanted}
    if not firsts:
        return {}
    if len(firsts) <= IN_LIMIT:
        query = query.where(table.c[first].in_(sorted(firsts)))
    found = {}
    for row in conn.execute(query).mappings():
        key = tuple(row[k] for k in spec.key)
        if key in wanted:
            found[key] = dict(row)
    return found


def _check_accounts(conn: Connection, name: str, rows: list[_Row]) -> None:
    """Every account the rows name is a customer in the catalog (one query), else refuse the first row naming
    one that is not."""
    named = {row.values["account"] for row in rows}
    if not named:
        return
    query = select(accounts.c.account)
    if len(named) <= IN_LIMIT:
        query = query.where(accounts.c.account.in_(sorted(named)))
    known = set(conn.execute(query).scalars())
    for row in rows:
        if row.values["account"] not in known:
            raise CustomerDataError(name, row.line, "account", f"{row.values['account']!r} is not a customer "
                                    "(import it first: cdr customers import)")


def _refuse_overlaps(conn: Connection, name: str, rows: list[_Row]) -> None:
    """After the numbers are written, in their transaction: refuse the file if any number of the whole table has
    two rows whose days intersect (valid_to NULL: open), naming the number, both ranges and accounts and the
    file's line (the earliest line involved)."""
    a, b = numbers.alias("a"), numbers.alias("b")
    # Rows of one number are distinct by valid_from and each runs from valid_from to valid_to (>= valid_from):
    # an earlier row a and a later row b overlap exactly when b starts on or before a's last day.
    pairs = conn.execute(
        select(a.c.number, a.c.valid_from.label("a_from"), a.c.valid_to.label("a_to"), a.c.account.label("a_account"),
               b.c.valid_from.label("b_from"), b.c.valid_to.label("b_to"), b.c.account.label("b_account"))
        .select_from(a.join(b, and_(a.c.number == b.c.number, a.c.valid_from < b.c.valid_from,
                                    b.c.valid_from <= func.coalesce(a.c.valid_to, literal(OPEN_END, Date)))))
        .order_by(a.c.number, a.c.valid_from, b.c.valid_from)
        .limit(OVERLAPS_READ)
    ).mappings().all()
    if not pairs:
        return
    lines = {(row.values["number"], row.values["valid_from"]): row.line for row in rows}

    def line_of(pair, side):
        return lines.get((pair["number"], pair[f"{side}_from"]))

    def first_line(pair):
        found = [n for n in (line_of(pair, "a"), line_of(pair, "b")) if n is not None]
        return min(found) if found else float("inf")

    pair = min(pairs, key=first_line)  # the overlap the file's earliest line is part of
    la, lb = line_of(pair, "a"), line_of(pair, "b")
    here, there = ("a", "b") if la is not None and (lb is None or la <= lb) else ("b", "a")
    where = f"line {line_of(pair, there)}" if line_of(pair, there) is not None else "in the catalog"

    def validity(side):
        end = pair[f"{side}_to"]
        return f"{pair[f'{side}_from']} to {end if end is not None else 'open'}"

    line = line_of(pair, here)
    raise CustomerDataError(
        name, line, "number",
        f"number {pair['number']} from {validity(here)} (account {pair[f'{here}_account']}) overlaps its "
        f"validity from {validity(there)} (account {pair[f'{there}_account']}, {where}): a number belongs to "
        "one account at a time")


# -- listing ---------------------------------------------------------------------------------------------------

def list_customers(app: App) -> list[dict[str, Any]]:
    """Every customer (account), by account: ``account``, ``name``, ``tariff``, ``updated_at``."""
    with app.catalog.read() as conn:
        return [dict(row) for row in conn.execute(
            select(accounts.c.account, accounts.c.name, accounts.c.tariff, accounts.c.updated_at)
            .order_by(accounts.c.account)).mappings()]


def list_numbers(app: App, account: str | None = None, number: str | None = None) -> list[dict[str, Any]]:
    """Numbers, by number and valid_from (only ``account``'s; only ``number``, exactly): ``number``, ``account``,
    ``valid_from``, ``valid_to`` (None: open), ``number_type``, ``updated_at``."""
    query = select(numbers.c.number, numbers.c.account, numbers.c.valid_from, numbers.c.valid_to,
                   numbers.c.number_type, numbers.c.updated_at).order_by(numbers.c.number, numbers.c.valid_from)
    if account is not None:
        query = query.where(numbers.c.account == account)
    if number is not None:
        query = query.where(numbers.c.number == number)
    with app.catalog.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def list_features(app: App, account: str | None = None) -> list[dict[str, Any]]:
    """Features, by account, number, feature and valid_from (only ``account``'s): ``id`` (what a charge's
    allocation names), ``account``, ``number`` (None: the whole account), ``feature``, ``quantity``,
    ``valid_from``, ``valid_to``, ``updated_at``."""
    query = select(features.c.id, features.c.account, features.c.number, features.c.feature, features.c.quantity,
                   features.c.valid_from, features.c.valid_to, features.c.updated_at).order_by(
        features.c.account, features.c.number, features.c.feature, features.c.valid_from)
    if account is not None:
        query = query.where(features.c.account == account)
    with app.catalog.read() as conn:
        return [{**row, "number": row["number"] or None} for row in conn.execute(query).mappings()]


def list_references(app: App, carrier: str | None = None) -> list[dict[str, Any]]:
    """Carrier references, by carrier and reference (only ``carrier``'s): ``carrier``, ``reference``,
    ``account``, ``updated_at``."""
    query = select(carrier_references.c.carrier, carrier_references.c.reference, carrier_references.c.account,
                   carrier_references.c.updated_at).order_by(carrier_references.c.carrier,
                                                              carrier_references.c.reference)
    if carrier is not None:
        query = query.where(carrier_references.c.carrier == carrier)
    with app.catalog.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


__all__ = ["COLUMNS", "KINDS", "Change", "CustomerDataError", "ImportResult", "import_customers", "import_features",
           "import_file", "import_numbers", "import_references", "list_customers", "list_features",
           "list_numbers", "list_references", "read_rows"]
