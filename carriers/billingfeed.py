"""The billing-feed family: Hero (UK) and Tech Connections (NZ).

Both carriers serve the same records from their Billing Feed web service and in their collected files, in
four formats: csv, txt (tab), pipe and json (an array of objects). A header row may be present (columns are
then matched by name, in any order and any case; unknown ones are ignored); without one the documented column
order applies. Column names match whatever their case, spaces, underscores and hyphens (``UTC DateTime`` is
``UTCDateTime``); a column the layout needs that is missing fails the file, naming it. Tech Connections inserts ``Date`` (the local date) after ``BillDate``
(which is then the bill-cycle date), and mixes service fees (line rentals, broadband, number charges, other
fixed or manual charges) with calls: those rows become SDR-type records, calls CDR-type.

A record's key is the carrier's ``ID``: the same ID from the same carrier is the same record, whatever
file or format it arrives in.
"""

from __future__ import annotations

import re
from typing import Any, Collection, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ingest.errors import ConfigError, ParseError

from .base import (
    CANONICAL,
    CANONICAL_SCHEMA,
    DELIMITERS,
    Invalid,
    Parser,
    Source,
    TextBlock,
    delimited_row_lines,
    first_invalid,
    first_row,
    json_element_lines,
    lines_at,
    normalise,
    read_delimited,
    read_json_array,
    resolve_format,
)

HERO_COLUMNS = (
    "ID", "AccountCode", "Direction", "CallType", "BillDate", "Time", "UTCDateTime", "UTCOffset", "AParty",
    "BParty", "BillNumber", "Seconds", "NetworkSeconds", "ConnectSeconds", "Charge", "ChargeExcl",
    "FreeUnitsUsed", "TextDesc1", "TextDesc2", "ReleaseCause", "Status", "ServiceType", "BillingGroup",
    "CallingGroup", "Profile",
)
TECHCONNECTIONS_COLUMNS = HERO_COLUMNS[:5] + ("Date",) + HERO_COLUMNS[5:]

# The carrier's column -> (canonical field, required)
FIELD_MAP: dict[str, tuple[str, bool]] = {
    "ID": ("feed_id", True),
    "AccountCode": ("account_code", False),
    "Direction": ("direction", False),
    "CallType": ("call_type", False),
    "BillDate": ("bill_date", True),
    "Date": ("local_date", False),
    "Time": ("local_time", False),
    "UTCDateTime": ("utc_time", False),
    "UTCOffset": ("utc_offset", False),
    "AParty": ("a_party", False),
    "BParty": ("b_party", False),
    "BillNumber": ("bill_number", False),
    "Seconds": ("seconds", False),
    "NetworkSeconds": ("network_seconds", False),
    "ConnectSeconds": ("connect_seconds", False),
    "Charge": ("charge", True),
    "ChargeExcl": ("charge_excl", True),
    "FreeUnitsUsed": ("free_units_used", False),
    "TextDesc1": ("text_desc1", False),
    "TextDesc2": ("text_desc2", False),
    "ReleaseCause": ("release_cause", False),
    "Status": ("call_status", False),
    "ServiceType": ("service_type", False),
    "BillingGroup": ("billing_group", False),
    "CallingGroup": ("calling_group", False),
    "Profile": ("profile", False),
}
# A header must carry at least these (by name, any order, any case).
REQUIRED_COLUMNS = ("ID", "BillDate", "Charge", "ChargeExcl")
# A call (a CDR-type row) must also have these: a file with calls and without them fails, naming them.
CALL_COLUMNS = ("UTCDateTime",)
KINDS = dict(CANONICAL)
REASONS = {
    "int": "not a whole number (or out of range)",
    "decimal": "not a decimal amount",
    "date": "not a date (YYYY-MM-DD or DD/MM/YYYY)",
    "utc": "not a UTC date and time (YYYY-MM-DD HH:MM:SS)",
    "text": "contains a NUL character",
}
MISSING = "missing"  # a check's reason: the column (delimited) or the object's key (JSON) is not there


def _column_key(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name.strip("\ufeff")).lower()


_COLUMNS_BY_KEY = {_column_key(name): name for name in FIELD_MAP}


def carrier_column(name: str) -> str | None:
    """The layout's column a header name or JSON key means, whatever its case, spaces, underscores and
    hyphens (``utc date_time`` is ``UTCDateTime``); None for a column the layout does not have."""
    return _COLUMNS_BY_KEY.get(_column_key(name))


def _is_header(fields: list[str]) -> bool:
    """Whether a delimited file's first row is a header: it names at least one known column, and does not
    start with a whole number (a data row in the documented order starts with the numeric ID). The columns
    may come in any order."""
    if not fields:
        return False
    first = fields[0].strip().strip("\ufeff")
    return any(carrier_column(field) for field in fields) and re.fullmatch(r"[+-]?\d+", first) is None


class BillingFeedParser(Parser):
    """Parses one carrier's billing-feed layout (``columns``); see the module docstring."""

    columns: tuple[str, ...] = HERO_COLUMNS
    # Service-fee recognition (Tech Connections). A row is a service fee (SDR) when its CallType is one
    # of ``service_call_types`` (case-insensitive), or, with ``service_when_no_bparty``, when it has no
    # BParty and no charged seconds.
    default_service_call_types: tuple[str, ...] = ()
    default_service_when_no_bparty = False

    OPTIONS = ("service_call_types", "service_when_no_bparty")

    @classmethod
    def check_options(cls, carrier) -> None:
        for key, value in carrier.options.items():
            where = f"carriers.{carrier.name}.options.{key}"
            if key not in cls.OPTIONS:
                raise ConfigError(where, f"unknown option for parser {cls.name} (known: {', '.join(cls.OPTIONS)})")
            if key == "service_call_types" and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                raise ConfigError(where, "must be a list of strings")
            if key == "service_when_no_bparty" and not isinstance(value, bool):
                raise ConfigError(where, "must be true or false")

    def __init__(self, carrier: str, options: dict[str, Any] | None = None):
        super().__init__(carrier, options)
        types = self.options.get("service_call_types", self.default_service_call_types)
        self.service_call_types = pa.array(sorted({t.strip().lower() for t in types}), pa.string())
        self.service_when_no_bparty = self.options.get("service_when_no_bparty", self.default_service_when_no_bparty)

    # -- reading ----------------------------------------------------------------------------------

    def file_format(self, source: Source) -> str:
        return resolve_format(source, self._fits)

    def _fits(self, rows: list[list[str]]) -> bool:
        """Whether a file's first rows read as this layout: a header it knows and rows as wide, or rows as
        wide as the documented column order."""
        if not rows:
            return False
        width = len(self.columns)
        if _is_header(rows[0]):
            width, rows = len(rows[0]), rows[1:]
        return width > 1 and all(len(row) == width for row in rows)

    def _layout(self, source: Source) -> tuple[str | None, list[str], int]:
        """(delimiter, column names, physical line of the header or 0) of a delimited file, read in the format
        it is in; (None, [], 0) for JSON."""
        fmt = self.file_format(source)
        if fmt == "json":
            return None, [], 0
        delimiter = DELIMITERS[fmt]
        first_line, first = first_row(source, delimiter)
        header_line = first_line if _is_header(first) else 0
        names = self._header_names(source, first, header_line) if header_line else list(self.columns)
        return delimiter, names, header_line

    def batches(self, source: Source) -> Iterator[pa.RecordBatch]:
        delimiter, names, header_line = self._layout(source)
        blocks = read_json_array(source) if delimiter is None else read_delimited(source, delimiter, names, header_line)

        def locate(ordinal: int) -> int | None:
            return self.record_lines(source, [ordinal + 1]).get(ordinal + 1)

        for block in blocks:
            yield self._convert(source, block, locate, header_line)

    def record_lines(self, source: Source, positions: Collection[int]) -> dict[int, int]:
        delimiter, _names, header_line = self._layout(source)
        rows = json_element_lines(source) if delimiter is None else delimited_row_lines(source, delimiter, header_line)
        return lines_at(rows, positions)

    def _header_names(self, source: Source, header: list[str], line: int) -> list[str]:
        names = []
        for index, raw in enumerate(header):
            name = raw.strip().strip("\ufeff")
            # An unknown column is kept under its own name and ignored: a carrier adding a column must not
            # stop billing. Duplicates are refused: which one would be the charge?
            canonical = carrier_column(name) or f"?{index}:{name}"
            if canonical in names:
                raise ParseError(source.name, line, name, "column appears twice in the header")
            names.append(canonical)
        for required in REQUIRED_COLUMNS:
            if required not in names:
                raise ParseError(source.name, line, required, "required column missing from the header")
        return names

    # -- converting -------------------------------------------------------------------------------

    def _convert(self, source: Source, block: TextBlock, locate, header_line: int) -> pa.RecordBatch:
        n = block.num_rows
        given = self._columns_by_field(source, block)
        out: dict[str, pa.Array] = {}
        absent: dict[str, pa.Array] = {}
        # (column, values as given, bad rows, kind, reason: None to say what is wrong with the value)
        checks: list[tuple[str, pa.Array | None, pa.Array, str, str | None]] = []
        for carrier_name, (field, required) in FIELD_MAP.items():
            if field in given:
                values, wrong_type = given[field]
            elif required or carrier_name in CALL_COLUMNS:
                values, wrong_type = pa.nulls(n, pa.string()), None
            else:
                continue
            kind = KINDS[field]
            if values.null_count:
                absent[field] = pc.is_null(values)
                values = pc.fill_null(values, "")
                if required:
                    checks.append((carrier_name, None, absent[field], kind, MISSING))
            if wrong_type is not None:
                index, what = wrong_type
                checks.append((carrier_name, values, pa.array([row == index for row in range(n)]), kind,
                               f"{what} where a number or text is expected"))
            converted, bad = normalise(kind, values, required)
            out[field] = converted
            checks.append((carrier_name, values, bad, kind, None))

        record_type = self._record_types(out, n)
        # A call must say when it happened; a service fee may not.
        calls = pc.equal(record_type, "cdr")
        for carrier_name in CALL_COLUMNS:
            field = FIELD_MAP[carrier_name][0]
            if field in absent:
                checks.append((carrier_name, None, pc.and_(calls, absent[field]), KINDS[field], MISSING))
            given_values = given[field][0] if field in given else None
            checks.append((carrier_name, given_values, pc.and_(calls, pc.is_null(out[field])), KINDS[field], None))

        invalid = first_invalid([(name, values, bad) for name, values, bad, _, _ in checks])
        if invalid is not None:
            raise self._invalid(source, block, locate, header_line, invalid, *checks[invalid.check][3:])

        # The ID is the key (feed_id); record_key stays null, for layouts that have no ID.
        out["record_type"] = record_type
        out["position"] = pa.array(range(block.first_ordinal + 1, block.first_ordinal + n + 1), pa.int64())
        arrays = [out.get(name, pa.nulls(n, field.type)) for name, field in zip(CANONICAL_SCHEMA.names, CANONICAL_SCHEMA)]
        return pa.RecordBatch.from_arrays(arrays, schema=CANONICAL_SCHEMA)

    @staticmethod
    def _columns_by_field(source: Source, block: TextBlock) -> dict[str, tuple[pa.Array, tuple[int, str] | None]]:
        """The block's columns by canonical field: (values, the first value of a wrong JSON type). JSON keys
        spelt two ways ('Charge', 'charge') are one column, unless one object gives both."""
        found: dict[str, tuple[str, pa.Array, tuple[int, str] | None]] = {}
        for column, values in block.columns.items():
            name = carrier_column(column)
            if name is None:
                continue
            field = FIELD_MAP[name][0]
            wrong = block.wrong_types.get(column)
            if field in found:  # JSON only: a delimited header naming a column twice is refused
                other, earlier, earlier_wrong = found[field]
                both = pc.and_(pc.is_valid(earlier), pc.is_valid(values))
                if pc.any(both).as_py():
                    raise ParseError(source.name, block.lines[pc.index(both, True).as_py()], name,
                                     f"given twice in one object (as {other!r} and {column!r})")
                values = pc.coalesce(earlier, values)
                wrong = min(filter(None, (earlier_wrong, wrong)), default=None)
            found[field] = (column, values, wrong)
        return {field: (values, wrong) for field, (_, values, wrong) in found.items()}

    @staticmethod
    def _invalid(source: Source, block: TextBlock, locate, header_line: int, invalid: Invalid, kind: str,
                 reason: str | None) -> ParseError:
        """The ParseError for the first invalid row: its line, the column and what is wrong."""
        line = block.lines[invalid.index] if block.lines is not None else None
        if reason == MISSING:
            if block.lines is None:  # only a header can leave a column out of a delimited file
                return ParseError(source.name, header_line, invalid.field, "required column missing from the header")
            return ParseError(source.name, line, invalid.field, "required field missing")
        if line is None:
            line = locate(block.first_ordinal + invalid.index)
        if reason is None:
            reason = REASONS[kind] if (invalid.value or "").strip() else "required value is empty"
        return ParseError(source.name, line, invalid.field, reason, invalid.value)

    def _record_types(self, out: dict[str, pa.Array], n: int) -> pa.Array:
        cdr = pa.array(["cdr"] * n, pa.string()) if n else pa.array([], pa.string())
        if n == 0:
            return cdr
        service = pa.array([False] * n)
        if len(self.service_call_types) and "call_type" in out:
            lowered = pc.utf8_lower(pc.utf8_trim_whitespace(out["call_type"]))
            service = pc.or_(service, pc.is_in(lowered, value_set=self.service_call_types))
        if self.service_when_no_bparty and "b_party" in out:
            no_bparty = pc.equal(pc.utf8_trim_whitespace(out["b_party"]), "")
            seconds = out.get("seconds")
            no_seconds = pc.fill_null(pc.equal(seconds, 0), True) if seconds is not None else pa.array([True] * n)
            service = pc.or_(service, pc.and_(no_bparty, no_seconds))
        return pc.if_else(service, "sdr", cdr)


class HeroParser(BillingFeedParser):
    name = "hero"
    columns = HERO_COLUMNS


class TechConnectionsParser(BillingFeedParser):
    name = "techconnections"
    columns = TECHCONNECTIONS_COLUMNS
    default_service_call_types = (
        "Service", "Services", "Service Fee", "Rental", "Line Rental", "Number Rental", "Number Charge",
        "Broadband", "Fibre", "Fixed", "Fixed Charge", "Manual", "Manual Charge", "Recurring", "One Off",
        "Installation", "Equipment",
    )
    default_service_when_no_bparty = True
