"""The parser contract, and the reading machinery parsers share.

A parser turns one file's content into Arrow record batches in the *canonical record layout*
(:data:`CANONICAL`): every field already validated and normalised, ready to be bulk-loaded without
another look. It either yields every record of the file or raises :class:`ingest.errors.ParseError`
naming the file, the line and the field; the loader loads nothing of a file whose parse failed.

Delimited formats (csv, txt = tab, pipe) are read by pyarrow's C++ CSV reader in blocks, so memory stays
flat with file size; JSON arrays are decoded incrementally. Validation is vectorised; only when something
is wrong does a plain-Python rescan run, to name the exact line.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO, Callable, ClassVar, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ingest.errors import ParseError

DELIMITERS = {"csv": ",", "txt": "\t", "pipe": "|"}
BLOCK_SIZE = 1 << 20

# The canonical record layout every parser produces; the loader's scratch tables mirror it. A record's
# identity is its carrier's ``feed_id`` when the layout has an ID; otherwise ``record_key`` (see
# ``content_keys``) and feed_id stays null. Exactly one of the two is set.
# Kinds: key/text (as given), int, decimal (validated decimal text), date (ISO text), utc (UTC
# 'YYYY-MM-DD HH:MM:SS' text).
CANONICAL: tuple[tuple[str, str], ...] = (
    ("record_key", "text"),
    ("record_type", "text"),
    ("position", "int"),
    ("feed_id", "int"),
    ("account_code", "text"),
    ("direction", "text"),
    ("call_type", "text"),
    ("bill_date", "date"),
    ("local_date", "text"),
    ("local_time", "text"),
    ("utc_time", "utc"),
    ("utc_offset", "text"),
    ("a_party", "text"),
    ("b_party", "text"),
    ("bill_number", "text"),
    ("seconds", "int"),
    ("network_seconds", "int"),
    ("connect_seconds", "int"),
    ("charge", "decimal"),
    ("charge_excl", "decimal"),
    ("free_units_used", "decimal"),
    ("text_desc1", "text"),
    ("text_desc2", "text"),
    ("release_cause", "text"),
    ("call_status", "text"),
    ("service_type", "text"),
    ("billing_group", "text"),
    ("calling_group", "text"),
    ("profile", "text"),
)
CANONICAL_NAMES = tuple(name for name, _ in CANONICAL)
CANONICAL_SCHEMA = pa.schema([(name, pa.int64() if kind == "int" else pa.string()) for name, kind in CANONICAL])


@dataclass(frozen=True)
class Source:
    """What a parser reads: a name for messages, the format if known, and a way to (re)open the content."""

    name: str
    file_format: str | None
    open: Callable[[], BinaryIO]


class Parser(ABC):
    """One carrier family's layout. Subclasses are registered in ``carriers.PARSERS`` by ``name``."""

    name: ClassVar[str]

    def __init__(self, carrier: str, options: dict[str, Any] | None = None):
        self.carrier = carrier
        self.options = dict(options or {})

    @classmethod
    def check_options(cls, carrier) -> None:
        """Refuse, with a ConfigError, options in ``[carriers.NAME.options]`` this parser does not take."""

    @abstractmethod
    def batches(self, source: Source) -> Iterator[pa.RecordBatch]:
        """Yield the file's records in the CANONICAL layout, or raise ParseError (file, line, field)."""


class ContentKeys:
    """Record keys for layouts without an ID: ``h:`` + xxh3-128 of the normalised record (every canonical
    field but its position, type and keys) + ``:`` + its occurrence among identical records so far in the
    file. The same record in another file gets the same key, so it is never loaded twice; a file that
    really holds the same call twice keeps both (occurrences 1 and 2). Use one instance per file."""

    IGNORED = ("record_key", "record_type", "position", "feed_id")

    def __init__(self) -> None:
        self.seen: dict[bytes, int] = {}

    def keys(self, batch: pa.RecordBatch) -> pa.Array:
        import xxhash

        parts = [pc.fill_null(pc.cast(batch.column(name), pa.string()), "\x00")
                 for name in batch.schema.names if name not in self.IGNORED]
        joined = pc.binary_join_element_wise(*parts, "\x1f") if parts else pa.array([""] * batch.num_rows)
        out = []
        for text in joined.to_pylist():
            digest = xxhash.xxh3_128_digest(text.encode("utf-8"))
            occurrence = self.seen.get(digest, 0) + 1
            self.seen[digest] = occurrence
            out.append(f"h:{digest.hex()}:{occurrence}")
        return pa.array(out, pa.string())

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch with record_key set and feed_id cleared."""
        index = batch.schema.get_field_index("record_key")
        batch = batch.set_column(index, "record_key", self.keys(batch))
        index = batch.schema.get_field_index("feed_id")
        return batch.set_column(index, "feed_id", pa.nulls(batch.num_rows, pa.int64()))


# ---------------------------------------------------------------------------------------------------
# Reading: rows of text, in blocks.


@dataclass
class TextBlock:
    """Some consecutive data rows of a file, every value still text, columns named by the file's names."""

    columns: dict[str, pa.Array]
    first_ordinal: int  # 0-based index of the block's first data row in the file
    num_rows: int
    lines: Sequence[int] | None = None  # physical line of each row when known cheaply (JSON)


def sniff_format(head: bytes) -> str:
    """Guess the format from the first bytes: a JSON array, else the most frequent delimiter on line one."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "json"
    first = text.split("\n", 1)[0]
    counts = {fmt: first.count(sep) for fmt, sep in DELIMITERS.items()}
    return max(counts, key=lambda fmt: counts[fmt]) if any(counts.values()) else "csv"


def format_of(source: Source) -> str:
    if source.file_format:
        return source.file_format
    with source.open() as fh:
        return sniff_format(fh.read(4096))


def first_row(source: Source, delimiter: str) -> tuple[int, list[str]]:
    """(physical line, fields) of the first row of a delimited file that is not blank (quotes honoured, BOM
    removed); (0, []) when there is none."""
    with source.open() as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="replace", newline="")
        line_no = 0

        def lines() -> Iterator[str]:
            nonlocal line_no
            for physical in text:
                line_no += 1
                yield physical

        reader = csv.reader(lines(), delimiter=delimiter)
        while True:
            start = line_no + 1
            try:
                fields = next(reader)
            except (StopIteration, csv.Error):
                return 0, []
            if fields and any(f.strip() for f in fields):
                return start, fields


def read_delimited(source: Source, delimiter: str, column_names: Sequence[str],
                   header_line: int) -> Iterator[TextBlock]:
    """Stream a delimited file as blocks of text columns. ``header_line`` is the physical line of the header
    row (it and any blank lines before it are skipped), 0 when the file has none. Structural errors (wrong
    field count, bad UTF-8, unbalanced quotes) are located by a rescan and raised as ParseError with the line."""
    ordinal = 0
    stream = source.open()
    try:
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(column_names=list(column_names), skip_rows=header_line,
                                          block_size=BLOCK_SIZE),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, quote_char='"', double_quote=True,
                                            newlines_in_values=True, ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in column_names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            yield TextBlock(dict(zip(column_names, batch.columns)), ordinal, batch.num_rows)
            ordinal += batch.num_rows
    except pa.ArrowInvalid as exc:
        raise structural_error(source, delimiter, len(column_names), header_line, str(exc)) from None
    finally:
        stream.close()


def scan_rows(source: Source, delimiter: str, header_line: int) -> Iterator[tuple[int, list[str]]]:
    """Plain-Python walk over the data rows (those starting after ``header_line``; empty lines skipped):
    (physical line where the row starts, fields). Slow but exact; used only to explain an error."""
    with source.open() as fh:
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        line_no = 0

        def lines() -> Iterator[str]:
            nonlocal line_no
            for raw in fh:
                line_no += 1
                try:
                    yield decoder.decode(raw)
                except UnicodeDecodeError as exc:
                    raise ParseError(source.name, line_no, None, f"not valid UTF-8 text ({exc.reason})") from None

        reader = csv.reader(lines(), delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
        while True:
            start = line_no + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ParseError(source.name, line_no, None, f"malformed row: {exc}") from None
            if start <= header_line or not fields or (len(fields) == 1 and fields[0] == ""):
                continue
            yield start, fields


def structural_error(source: Source, delimiter: str, expected: int, header_line: int, detail: str) -> ParseError:
    try:
        for line, fields in scan_rows(source, delimiter, header_line):
            if len(fields) != expected:
                return ParseError(source.name, line, None, f"expected {expected} fields, found {len(fields)}")
    except ParseError as exc:
        return exc
    return ParseError(source.name, None, None, f"unreadable: {detail}")


def line_of_ordinal(source: Source, delimiter: str, header_line: int, ordinal: int) -> int | None:
    for index, (line, _fields) in enumerate(scan_rows(source, delimiter, header_line)):
        if index == ordinal:
            return line
    return None


def read_json_array(source: Source, rows_per_block: int = 65536) -> Iterator[TextBlock]:
    """Stream a JSON array of objects as blocks of text columns; numbers keep their exact text."""
    decoder = json.JSONDecoder(parse_float=Decimal, parse_int=str, parse_constant=str)
    ordinal = 0
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for line, obj in _json_elements(source, decoder):
        if not isinstance(obj, dict):
            raise ParseError(source.name, line, None, f"expected a JSON object, found {_json_kind(obj)}")
        rows.append(obj)
        lines.append(line)
        if len(rows) >= rows_per_block:
            yield _json_block(rows, lines, ordinal)
            ordinal += len(rows)
            rows, lines = [], []
    if rows:
        yield _json_block(rows, lines, ordinal)


def _json_kind(value: Any) -> str:
    """The JSON type of a decoded value (numbers decode to text or Decimal to keep their exact digits)."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "a number or string"


def _json_block(rows: list[dict[str, Any]], lines: list[int], ordinal: int) -> TextBlock:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    columns = {key: pa.array([_json_text(row.get(key)) for row in rows], pa.string()) for key in keys}
    return TextBlock(columns, ordinal, len(rows), lines)


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        # A JSON number with a fraction or exponent: its exact value as plain decimal text ('0.1150' stays
        # '0.1150', '1.5E2' becomes '150'). Absurd exponents keep their text, which then fails validation.
        return format(value, "f") if value.is_finite() and abs(value.as_tuple().exponent) <= 64 else str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def _json_elements(source: Source, decoder: json.JSONDecoder) -> Iterator[tuple[int, Any]]:
    """Yield (line, element) of a top-level JSON array, reading the text incrementally."""
    with source.open() as fh:
        buf = ""
        pos = 0
        line = 1
        eof = False
        pending = b""  # the start of a UTF-8 sequence cut by the end of the last chunk
        first_chunk = True
        state = "start"  # start -> open -> (value -> sep)* -> end

        def more() -> bool:
            nonlocal buf, pos, eof, pending, first_chunk
            if eof:
                return False
            raw = fh.read(1 << 20)
            data = pending + raw
            try:
                chunk = data.decode("utf-8")
                pending = b""
            except UnicodeDecodeError as exc:
                if raw and exc.end == len(data) and exc.reason == "unexpected end of data":
                    chunk, pending = data[: exc.start].decode("utf-8"), data[exc.start:]
                else:  # name the line the bad bytes are on, not the line being parsed
                    bad_line = line + buf.count("\n", pos) + data.count(b"\n", 0, exc.start)
                    raise ParseError(source.name, bad_line, None, f"not valid UTF-8 text ({exc.reason})") from None
            if first_chunk and chunk:
                first_chunk = False
                chunk = chunk.removeprefix("\ufeff")
            if not raw:
                eof = True
                return False
            buf = buf[pos:] + chunk
            pos = 0
            return True

        while True:
            # skip whitespace, counting lines
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    if buf[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buf) or not more():
                    break
            if pos >= len(buf):
                if state == "end":
                    return
                raise ParseError(source.name, line, None, "the JSON array is not closed (file truncated?)"
                                 if state != "start" else "empty file: expected a JSON array")
            ch = buf[pos]
            if state == "start":
                if ch != "[":
                    raise ParseError(source.name, line, None, "not a JSON array")
                pos += 1
                state = "open"
            elif state == "end":
                raise ParseError(source.name, line, None, "unexpected text after the JSON array")
            elif ch == "]" and state in ("open", "sep"):
                pos += 1
                state = "end"
            elif ch == "," and state == "sep":
                pos += 1
                state = "value"
            elif state in ("open", "value"):
                while True:
                    try:
                        obj, end = decoder.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as exc:
                        # The element may just be cut by the end of the chunk read so far: inside a string
                        # (reported at the string's start) or a literal/number/escape near the end.
                        cut = exc.pos >= len(buf) - 8 or exc.msg.startswith("Unterminated string")
                        if cut and more():
                            continue
                        raise ParseError(source.name, line + buf.count("\n", pos, exc.pos), None,
                                         f"invalid JSON: {exc.msg}") from None
                yield line, obj
                line += buf.count("\n", pos, end)
                pos = end
                state = "sep"
            else:
                raise ParseError(source.name, line, None, f"invalid JSON: unexpected {ch!r}")


# ---------------------------------------------------------------------------------------------------
# Validation and normalisation, vectorised. Each returns the normalised array and a mask of bad rows.

# A whole number that fits int64: up to 18 digits, or 19 starting 1-8 (leading zeros allowed).
_INT = r"^[+-]?0*(\d{1,18}|[1-8]\d{18})$"
_DECIMAL = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"
_ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"


@dataclass
class Invalid:
    index: int
    field: str
    reason: str
    value: str | None


def normalise(kind: str, values: pa.Array, required: bool) -> tuple[pa.Array, pa.Array]:
    """(normalised values, boolean mask of invalid rows). Empty text becomes null unless kind is text.

    A column already in canonical form (what well-behaved carriers send) passes Arrow's strict casts and is
    taken as it is; only a column that does not is run through the lenient normalisation below, which also
    finds the bad rows."""
    if kind == "text":
        return values, pc.is_null(values) if required else _none_bad(len(values))
    fast = _canonical(kind, values, required)
    if fast is not None:
        return fast, _none_bad(len(values))
    trimmed = pc.utf8_trim_whitespace(values)
    empty = pc.equal(trimmed, "")
    if kind == "int":
        ok = pc.match_substring_regex(trimmed, _INT)
        unsigned = pc.replace_substring_regex(trimmed, r"^\+", "")  # Arrow's cast refuses a leading '+'
        converted = pc.cast(pc.if_else(ok, unsigned, None), pa.int64())
    elif kind == "decimal":
        ok = pc.match_substring_regex(trimmed, _DECIMAL)
        converted = pc.if_else(ok, trimmed, None)
    elif kind == "date":
        iso = _to_iso_date(trimmed)
        ok = pc.and_(pc.match_substring_regex(iso, _ISO_DATE), _round_trips(iso, "%Y-%m-%d"))
        converted = pc.if_else(ok, iso, None)
    elif kind == "utc":
        iso = _to_iso_utc(trimmed)
        ok = _round_trips(iso, "%Y-%m-%d %H:%M:%S")
        converted = pc.if_else(ok, iso, None)
    else:  # pragma: no cover - programming error
        raise ValueError(kind)
    ok = pc.fill_null(ok, False)
    bad = pc.invert(ok)
    if not required:
        bad = pc.and_(bad, pc.invert(empty))
        converted = pc.if_else(empty, pa.scalar(None, converted.type), converted)
    return converted, bad


def _none_bad(n: int) -> pa.Array:
    return pc.fill_null(pa.nulls(n, pa.bool_()), False)


def _canonical(kind: str, values: pa.Array, required: bool) -> pa.Array | None:
    """The column converted if every value is already canonical (strict ISO date / 'YYYY-MM-DD HH:MM:SS' /
    plain integer / plain decimal, empty only where allowed); None if any is not, or any is invalid."""
    empty = pc.equal(values, "")
    has_empty = pc.any(empty).as_py()
    if has_empty and required:
        return None
    present = pc.if_else(empty, pa.scalar(None, pa.string()), values) if has_empty else values
    try:
        if kind == "int":
            return pc.cast(present, pa.int64())
        if kind == "decimal":
            ok = pc.match_substring_regex(present, _DECIMAL)
            return present if pc.all(pc.fill_null(ok, True)).as_py() else None
        if kind == "date":
            pc.cast(present, pa.date32())  # strict: exactly YYYY-MM-DD, a real day
            return present
        if kind == "utc":
            pc.cast(present, pa.timestamp("s"))  # strict: a real time, no offset
            shaped = pc.and_(pc.equal(pc.utf8_length(present), 19),
                             pc.equal(pc.utf8_slice_codeunits(present, 10, 11), " "))
            return present if pc.all(pc.fill_null(shaped, True)).as_py() else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None


def _round_trips(values: pa.Array, fmt: str) -> pa.Array:
    """Whether each value is a real date/time written exactly as ``fmt`` (zero-padded) would write it.
    Arrow's strptime alone accepts '2026-02-30' (rolling it into March), '00:05:60' and unpadded fields."""
    parsed = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
    return pc.equal(pc.strftime(parsed, format=fmt), values)


def _to_iso_date(values: pa.Array) -> pa.Array:
    values = pc.replace_substring_regex(values, r"^(\d{4})/(\d{2})/(\d{2})$", r"\1-\2-\3")
    values = pc.replace_substring_regex(values, r"^(\d{2})/(\d{2})/(\d{4})$", r"\3-\2-\1")
    return pc.replace_substring_regex(values, r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3")


def _to_iso_utc(values: pa.Array) -> pa.Array:
    """Accept 'YYYY-MM-DD HH:MM[:SS[.fff]]' with ' ' or 'T', an optional Z / +00:00 / UTC marker, and
    'DD/MM/YYYY HH:MM[:SS]'; give 'YYYY-MM-DD HH:MM:SS'. Any non-zero offset stays and fails validation."""
    values = pc.replace_substring_regex(values, r"^(\d{2})/(\d{2})/(\d{4})", r"\3-\2-\1")
    values = pc.replace_substring_regex(values, r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(?:(:\d{2}))?(?:\.\d+)?"
                                                r"\s*(?:Z|UTC|[+-]00:?00)?$", r"\1 \2\3")
    return pc.replace_substring_regex(values, r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2})$", r"\1:00")


def first_invalid(checks: Sequence[tuple[str, pa.Array, pa.Array]]) -> Invalid | None:
    """Given (field, original values, bad mask) for each field, the earliest bad row and its field."""
    best: Invalid | None = None
    for field, original, bad in checks:
        if not pc.any(bad).as_py():
            continue
        index = pc.index(bad, True).as_py()
        if best is None or index < best.index:
            value = original[index].as_py() if original is not None else None
            best = Invalid(index, field, "", value)
    return best
