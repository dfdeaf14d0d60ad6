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
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, BinaryIO, Callable, ClassVar, Collection, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ingest.errors import NotText, ParseError

DELIMITERS = {"csv": ",", "txt": "\t", "pipe": "|"}
BLOCK_SIZE = 1 << 20
HEAD_BYTES = 8192  # what format detection looks at
SAMPLE_ROWS = 5  # the first rows that must fit the layout for another delimiter to be taken

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
        """Yield the file's records in the CANONICAL layout, or raise ParseError (file, line, field); read in
        the format :meth:`file_format` gives. Raises NotText for content that is not text at all."""

    def file_format(self, source: Source) -> str:
        """The format the content is actually in (see :func:`resolve_format`); NotText if it is not text."""
        return resolve_format(source, lambda rows: False)

    def record_lines(self, source: Source, positions: Collection[int]) -> dict[int, int]:
        """The physical line on which each record starts, by its ``position`` (1-based, as in the batches).
        Rereads the file: meant for explaining an error, not for the happy path. A parser that cannot tell
        gives {}, and its records are named by position."""
        return {}


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
    """Some consecutive data rows of a file, every value still text, columns named by the file's names. In
    JSON, an object without a key has null in that column (an explicit null is empty text), and
    ``wrong_types`` gives, per key, the first row whose value is true/false, an object or an array."""

    columns: dict[str, pa.Array]
    first_ordinal: int  # 0-based index of the block's first data row in the file
    num_rows: int
    lines: Sequence[int] | None = None  # physical line of each row when known cheaply (JSON)
    wrong_types: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> (row index, what it is)


def sniff_format(head: bytes) -> str:
    """Guess the format from the first bytes: a JSON array, else the most frequent delimiter on line one."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "json"
    first = text.split("\n", 1)[0]
    counts = {fmt: first.count(sep) for fmt, sep in DELIMITERS.items()}
    return max(counts, key=lambda fmt: counts[fmt]) if any(counts.values()) else "csv"


# What lands in carrier folders by mistake, by its first bytes.
_SIGNATURES = (
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"PK\x03\x04", "a ZIP archive or Office document, such as a spreadsheet"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Office document, such as a spreadsheet"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\xff\xfe", "UTF-16 text; only UTF-8 is read"),
    (b"\xfe\xff", "UTF-16 text; only UTF-8 is read"),
)
# Bytes text is made of: printable ASCII, UTF-8's high bytes, and the controls text uses (BEL, BS, TAB, LF,
# VT, FF, CR, ESC). Any other byte, or a high byte that is not UTF-8, is binary.
_TEXT_BYTES = bytes([7, 8, 9, 10, 11, 12, 13, 27, *range(0x20, 0x100)])
_BINARY_SHARE = 0.1


def binary_kind(head: bytes) -> str | None:
    """What a file whose content starts with ``head`` is, if it is not text; None for text. Known signatures
    name the usual strays; otherwise more than a tenth of binary bytes makes it binary. A text file with a
    few bad bytes stays text, so that its parse fails naming their line."""
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return what
    undecodable = head.decode("utf-8", errors="replace").count("\ufffd")
    controls = len(head.translate(None, _TEXT_BYTES))
    return "binary content" if undecodable + controls > _BINARY_SHARE * len(head) else None


def resolve_format(source: Source, fits: Callable[[list[list[str]]], bool]) -> str:
    """The format to read the content in: the source's, else sniffed from the first bytes. When the source's
    delimiter gives one field per row (a name that lies: a pipe-separated ``.txt``), the first other
    delimiter whose first rows ``fits`` the layout is taken instead. Raises NotText when the content is not
    text at all."""
    with source.open() as fh:
        head = fh.read(HEAD_BYTES)
    what = binary_kind(head)
    if what is not None:
        raise NotText(source.name, what)
    fmt = source.file_format or sniff_format(head)
    if fmt not in DELIMITERS or any(len(row) > 1 for row in sample_rows(head, DELIMITERS[fmt])):
        return fmt
    return next((other for other, sep in DELIMITERS.items() if other != fmt and fits(sample_rows(head, sep))), fmt)


def sample_rows(head: bytes, delimiter: str) -> list[list[str]]:
    """The first rows that are not blank (up to SAMPLE_ROWS) in a delimited file's first bytes, without the
    row the end of ``head`` may cut."""
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    if len(head) == HEAD_BYTES:
        text = text[: text.rfind("\n") + 1]
    rows: list[list[str]] = []
    try:
        for fields in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            if any(value.strip() for value in fields):
                rows.append(fields)
            if len(rows) == SAMPLE_ROWS:
                break
    except csv.Error:  # a quoted value cut by the end of head: the rows before it are the sample
        pass
    return rows


class _Lines:
    """A binary stream's lines decoded as UTF-8 (BOM removed) one at a time, so that a bad byte is reported
    with its line (ParseError). ``number`` is the physical line last read."""

    def __init__(self, source: Source, stream: BinaryIO):
        self.source = source
        self.stream = stream
        self.number = 0
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")

    def __iter__(self) -> Iterator[str]:
        for raw in self.stream:
            self.number += 1
            try:
                yield self.decoder.decode(raw)
            except UnicodeDecodeError as exc:
                raise ParseError(self.source.name, self.number, None, f"not valid UTF-8 text ({exc.reason})") from None


def first_row(source: Source, delimiter: str) -> tuple[int, list[str]]:
    """(physical line, fields) of the first row of a delimited file that is not blank (quotes honoured, BOM
    removed); (0, []) when there is none. A line before it or in it that is not UTF-8 fails (ParseError):
    a header name must not lose a byte."""
    with source.open() as fh:
        lines = _Lines(source, fh)
        reader = csv.reader(lines, delimiter=delimiter)
        while True:
            start = lines.number + 1
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
    field count, bad UTF-8, unbalanced or stray quotes) are raised as ParseError with the line."""
    ordinal = 0
    stream = source.open()
    quotes = _QuoteCheck(stream, delimiter)
    try:
        reader = pcsv.open_csv(
            quotes,
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
        error = structural_error(source, delimiter, len(column_names), header_line, str(exc))
        if error.line is None:  # the rescan, which stops at stray quotes too, found nothing to name
            error = quotes.error(source) or error
        raise error from None
    finally:
        stream.close()
    # Checked once the whole file is read, so that which error a file gets does not depend on read-ahead.
    stray = quotes.error(source)
    if stray is not None:
        raise stray


class _QuoteCheck:
    """A delimited stream, read through on its way to pyarrow, noting the first quote that ends a quoted field
    before the field's end (``"He said "hi" again"``): pyarrow's reader, lenient, would load the rest of the
    field garbled. One C-speed regular expression per chunk (a chunk without quotes is only searched for one);
    whether the reading is inside a quoted field carries across chunks. A quote inside an unquoted field is
    text, as pyarrow reads it."""

    BOM = b"\xef\xbb\xbf"

    def __init__(self, raw: BinaryIO, delimiter: str):
        self.raw = raw
        sep = re.escape(delimiter.encode())
        field_end = rb"(?=[" + sep + rb"\r\n])"
        quoted = rb'"[^"]*+(?:""[^"]*+)*+"'
        # Unquoted text, with literal quotes inside, and whole quoted fields that end where the field does.
        # It stops only at a quoted field it cannot take whole (cut by the chunk's end, or a stray quote).
        self.outside = re.compile(rb'[^"]*+(?:(?<=[' + sep + rb'\r\n])' + quoted + field_end + rb'[^"]*+'
                                  rb'|(?<![' + sep + rb'\r\n])"++[^"]*+)*+')
        self.inside = re.compile(rb'[^"]*+(?:""[^"]*+)*+')  # the value of a quoted field, up to its closing quote
        self.field_ends = (delimiter.encode(), b"\r", b"\n")
        self.quoted = False
        self.pending = b"\n"  # the last byte checked (a file starts as a line does), then the bytes not yet checked
        self.lines = 0  # newlines before pending[1:]
        self.stray_line: int | None = None
        self.started = self.finished = False

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if self.stray_line is None and not self.finished:
            self._check(data if self.started else data.removeprefix(self.BOM), final=not data)
            self.started, self.finished = True, not data
        return data

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def error(self, source: Source) -> ParseError | None:
        if self.stray_line is None:
            return None
        return ParseError(source.name, self.stray_line, None,
                          'stray quote inside a quoted field (a quote in a quoted value is doubled: "")')

    def _check(self, data: bytes, final: bool) -> None:
        if not self.quoted and b'"' not in data:
            self.lines += data.count(b"\n")
            self.pending = data[-1:] or self.pending
            return
        buf = self.pending + data
        end = len(buf)
        pos = 1
        while pos < end:
            if not self.quoted:
                pos = self.outside.match(buf, pos).end()
                if pos < end:  # at the opening quote of a field it could not take whole
                    self.quoted = True
                    pos += 1
                continue
            pos = self.inside.match(buf, pos).end()
            if pos == end or (pos + 1 == end and not final):
                break  # a quote at the very end may be the first of a pair: decided with the next chunk
            if pos + 1 < end and buf[pos + 1:pos + 2] not in self.field_ends:
                self.stray_line = self.lines + buf.count(b"\n", 1, pos) + 1
                return
            self.quoted = False
            pos += 1
        self.lines += buf.count(b"\n", 1, pos)
        self.pending = buf[pos - 1:]


def scan_rows(source: Source, delimiter: str, header_line: int) -> Iterator[tuple[int, list[str]]]:
    """Plain-Python walk over the data rows (those starting after ``header_line``; empty lines skipped):
    (physical line where the row starts, fields). Slow but exact; used only to explain an error."""
    with source.open() as fh:
        lines = _Lines(source, fh)
        reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
        while True:
            start = lines.number + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ParseError(source.name, lines.number, None, f"malformed row: {exc}") from None
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


def lines_at(row_lines: Iterable[int], positions: Collection[int]) -> dict[int, int]:
    """From the lines on which a file's records start, in order, those of the given 1-based positions."""
    wanted = set(positions)
    found: dict[int, int] = {}
    for position, line in enumerate(row_lines, 1):
        if position in wanted:
            found[position] = line
            if len(found) == len(wanted):
                break
    return found


def delimited_row_lines(source: Source, delimiter: str, header_line: int) -> Iterator[int]:
    """The physical line on which each data row of a delimited file starts (a rescan: error path only)."""
    return (line for line, _fields in scan_rows(source, delimiter, header_line))


def json_element_lines(source: Source) -> Iterator[int]:
    """The physical line on which each element of a JSON array starts (a rescan: error path only)."""
    return (line for line, _element in _json_elements(source, _json_decoder()))


def read_json_array(source: Source, rows_per_block: int = 65536) -> Iterator[TextBlock]:
    """Stream a JSON array of objects as blocks of text columns; numbers keep their exact text."""
    decoder = _json_decoder()
    ordinal = 0
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for line, obj in _json_elements(source, decoder):
        if not isinstance(obj, dict):
            raise ParseError(source.name, line, None, f"expected a JSON object, found {_json_kind(obj)}")
        rows.append(obj)
        lines.append(line)
        if len(rows) >= rows_per_block:
            yield _json_block_of(source, rows, lines, ordinal)
            ordinal += len(rows)
            rows, lines = [], []
    if rows:
        yield _json_block_of(source, rows, lines, ordinal)


def _json_block_of(source: Source, rows: list[dict[str, Any]], lines: list[int], ordinal: int) -> TextBlock:
    """:func:`_json_block`, with text that is not valid Unicode (a lone surrogate escape such as ``"\\ud800"``,
    which JSON allows and no database stores) failing the file at its line and key."""
    try:
        return _json_block(rows, lines, ordinal)
    except UnicodeEncodeError:
        for line, row in zip(lines, rows):
            for key, value in row.items():
                for text in (key, value if isinstance(value, str) else ""):
                    try:
                        text.encode("utf-8")
                    except UnicodeEncodeError:
                        shown = key.encode("utf-8", "backslashreplace").decode("utf-8")
                        raise ParseError(source.name, line, shown,
                                         "not valid Unicode text (a lone surrogate escape)") from None
        raise


def _json_decoder() -> json.JSONDecoder:
    return json.JSONDecoder(parse_float=Decimal, parse_int=str, parse_constant=str)


def _json_kind(value: Any) -> str:
    """The JSON type of a decoded value (numbers decode to text or Decimal to keep their exact digits)."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "a number or string"


_ABSENT = object()
_NEITHER_NUMBER_NOR_TEXT = (bool, dict, list)  # JSON values no field of a record can be


def _json_block(rows: list[dict[str, Any]], lines: list[int], ordinal: int) -> TextBlock:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    columns: dict[str, pa.Array] = {}
    wrong_types: dict[str, tuple[int, str]] = {}
    for key in keys:
        values = [row.get(key, _ABSENT) for row in rows]
        for index in [index for index, value in enumerate(values) if value.__class__ is not str]:
            value = values[index]
            if isinstance(value, _NEITHER_NUMBER_NOR_TEXT) and key not in wrong_types:
                wrong_types[key] = (index, _json_kind(value))
            values[index] = _json_text(value)
        columns[key] = pa.array(values, pa.string())
    return TextBlock(columns, ordinal, len(rows), lines, wrong_types)


def _json_text(value: Any) -> str | None:
    """A JSON value as text: exact digits for numbers, empty for null, None for an absent key."""
    if value is _ABSENT:
        return None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
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
    check: int = 0  # which of the checks found it


def normalise(kind: str, values: pa.Array, required: bool) -> tuple[pa.Array, pa.Array]:
    """(normalised values, boolean mask of invalid rows). Empty text becomes null unless kind is text.

    A column already in canonical form (what well-behaved carriers send) passes Arrow's strict casts and is
    taken as it is; only a column that does not is run through the lenient normalisation below, which also
    finds the bad rows."""
    if kind == "text":  # as given, but no NUL: PostgreSQL cannot store one in text, so no database takes it
        bad = pc.fill_null(pc.match_substring(values, "\x00"), False)
        return values, pc.or_(bad, pc.is_null(values)) if required else bad
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
            return None if pc.any(_year_zero(present)).as_py() else present
        if kind == "utc":
            marked = _canonical_utc_marked(present)
            if marked is not None:
                return marked
            pc.cast(present, pa.timestamp("s"))  # strict: a real time, no offset
            shaped = pc.and_(pc.equal(pc.utf8_length(present), 19),
                             pc.equal(pc.utf8_slice_codeunits(present, 10, 11), " "))
            shaped = pc.and_(shaped, pc.invert(_year_zero(present)))
            return present if pc.all(pc.fill_null(shaped, True)).as_py() else None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return None


def _canonical_utc_marked(present: pa.Array) -> pa.Array | None:
    """A column of UTC times written ISO 8601 with a ``Z`` (``2025-12-31T11:00:17Z``, as feeds send them) in
    canonical form, by Arrow's own cast, which refuses impossible dates; None if any value is shaped otherwise
    (the lenient path then sees it). Raises ArrowInvalid for an impossible date."""
    shaped = pc.and_(pc.equal(pc.utf8_length(present), 20), pc.ends_with(present, "Z"))
    if not pc.all(pc.fill_null(shaped, True)).as_py() or pc.any(_year_zero(present)).as_py():
        return None
    pc.cast(present, pa.timestamp("s", "UTC"))  # only to refuse what is not a real time
    # Validated and fixed-width: the canonical text is the same characters, ' ' for the 'T' and no 'Z'.
    return pc.binary_join_element_wise(pc.utf8_slice_codeunits(present, 0, 10),
                                       pc.utf8_slice_codeunits(present, 11, 19), " ")


def _round_trips(values: pa.Array, fmt: str) -> pa.Array:
    """Whether each value is a real date/time written exactly as ``fmt`` (zero-padded) would write it.
    Arrow's strptime alone accepts '2026-02-30' (rolling it into March), '00:05:60' and unpadded fields,
    and the year 0000, which neither PostgreSQL nor Python's datetime can hold."""
    parsed = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
    return pc.and_(pc.equal(pc.strftime(parsed, format=fmt), values), pc.invert(_year_zero(values)))


def _year_zero(values: pa.Array) -> pa.Array:
    return pc.starts_with(values, "0000")


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


def first_invalid(checks: Sequence[tuple[str, pa.Array | None, pa.Array]]) -> Invalid | None:
    """Given (field, original values, bad mask) for each check, the earliest bad row, its field and which
    check found it (the first listed, for one row)."""
    best: Invalid | None = None
    for number, (field_name, original, bad) in enumerate(checks):
        if not pc.any(bad).as_py():
            continue
        index = pc.index(bad, True).as_py()
        if best is None or index < best.index:
            value = original[index].as_py() if original is not None else None
            best = Invalid(index, field_name, "", value, number)
    return best
