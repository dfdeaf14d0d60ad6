"""The billing-feed family: Hero (UK) and Tech Connections (NZ).

Both carriers serve the same records from their Billing Feed web service and in their collected files, in
four formats: csv, txt (tab), pipe and json (an array of objects). A header row may be present (columns are
then matched by name, in any order and any case; unknown ones are ignored); without one the documented column
order applies. Tech Connections inserts ``Date`` (the local date) after ``BillDate``
(which is then the bill-cycle date), and mixes service fees (line rentals, broadband, number charges, other
fixed or manual charges) with calls: those rows become SDR-type records, calls CDR-type.

A record's key is the carrier's ``ID``: the same ID from the same carrier is the same record, whatever
file or format it arrives in.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from ingest.errors import ConfigError, ParseError

from .base import (
    CANONICAL,
    CANONICAL_SCHEMA,
    DELIMITERS,
    Parser,
    Source,
    TextBlock,
    first_invalid,
    first_row,
    format_of,
    line_of_ordinal,
    normalise,
    read_delimited,
    read_json_array,
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
_KNOWN_LOWER = frozenset(name.lower() for name in FIELD_MAP)
KINDS = dict(CANONICAL)
REASONS = {
    "int": "not a whole number (or out of range)",
    "decimal": "not a decimal amount",
    "date": "not a date (YYYY-MM-DD or DD/MM/YYYY)",
    "utc": "not a UTC date and time (YYYY-MM-DD HH:MM:SS)",
    "text": "missing",
}


def _is_header(fields: list[str]) -> bool:
    """Whether a delimited file's first row is a header: it names at least one known column, and does not
    start with a whole number (a data row in the documented order starts with the numeric ID). The columns
    may come in any order."""
    if not fields:
        return False
    names = {field.strip().strip("\ufeff").lower() for field in fields}
    first = fields[0].strip().strip("\ufeff")
    return bool(names & _KNOWN_LOWER) and re.fullmatch(r"[+-]?\d+", first) is None


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

    def batches(self, source: Source) -> Iterator[pa.RecordBatch]:
        fmt = format_of(source)
        if fmt == "json":
            blocks = read_json_array(source)
            locate = None
        else:
            delimiter = DELIMITERS[fmt]
            first_line, first = first_row(source, delimiter)
            header_line = first_line if _is_header(first) else 0
            names = self._header_names(source, first, header_line) if header_line else list(self.columns)
            blocks = read_delimited(source, delimiter, names, header_line)

            def locate(ordinal: int) -> int | None:
                return line_of_ordinal(source, delimiter, header_line, ordinal)

        for block in blocks:
            yield self._convert(source, block, locate)

    def _header_names(self, source: Source, header: list[str], line: int) -> list[str]:
        known = {name.lower(): name for name in FIELD_MAP}
        names = []
        for index, raw in enumerate(header):
            name = raw.strip().strip("\ufeff")
            # An unknown column is kept under its own name and ignored: a carrier adding a column must not
            # stop billing. Duplicates are refused: which one would be the charge?
            canonical = known.get(name.lower(), f"?{index}:{name}")
            if canonical in names:
                raise ParseError(source.name, line, name, "column appears twice in the header")
            names.append(canonical)
        for required in REQUIRED_COLUMNS:
            if required not in names:
                raise ParseError(source.name, line, required, "required column missing from the header")
        return names

    # -- converting -------------------------------------------------------------------------------

    def _convert(self, source: Source, block: TextBlock, locate) -> pa.RecordBatch:
        known = {name.lower(): name for name in FIELD_MAP}
        by_field: dict[str, tuple[str, pa.Array]] = {}
        for column, values in block.columns.items():
            name = known.get(column.lower())
            if name is not None and name in FIELD_MAP:
                by_field[FIELD_MAP[name][0]] = (name, values)
        if block.lines is not None:  # JSON: check required keys per block
            for required in REQUIRED_COLUMNS:
                if FIELD_MAP[required][0] not in by_field:
                    raise ParseError(source.name, block.lines[0], required, "required field missing")

        n = block.num_rows
        out: dict[str, pa.Array] = {}
        checks = []
        for carrier_name, (field, required) in FIELD_MAP.items():
            if field not in by_field:
                continue
            kind = KINDS[field]
            _, values = by_field[field]
            values = pc.fill_null(values, "")
            converted, bad = normalise(kind, values, required)
            out[field] = converted
            checks.append((carrier_name, values, bad, kind))

        record_type = self._record_types(out, n)
        # A call must say when it happened; a service fee may not.
        if "utc_time" in out:
            missing_time = pc.and_(pc.equal(record_type, "cdr"), pc.is_null(out["utc_time"]))
            checks.append(("UTCDateTime", by_field["utc_time"][1], missing_time, "utc"))

        invalid = first_invalid([(name, values, bad) for name, values, bad, _ in checks])
        if invalid is not None:
            kind = next(k for name, _, _, k in checks if name == invalid.field)
            if block.lines is not None:
                line = block.lines[invalid.index]
            else:
                line = locate(block.first_ordinal + invalid.index) if locate else None
            reason = REASONS[kind] if (invalid.value or "").strip() else "required value is empty"
            raise ParseError(source.name, line, invalid.field, reason, invalid.value)

        # The ID is the key (feed_id); record_key stays null, for layouts that have no ID.
        out["record_type"] = record_type
        out["position"] = pa.array(range(block.first_ordinal + 1, block.first_ordinal + n + 1), pa.int64())
        arrays = [out.get(name, pa.nulls(n, field.type)) for name, field in zip(CANONICAL_SCHEMA.names, CANONICAL_SCHEMA)]
        return pa.RecordBatch.from_arrays(arrays, schema=CANONICAL_SCHEMA)

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
