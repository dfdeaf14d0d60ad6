"""Reading a file's rows as blocks of text columns, and what a file is (moved from carriers/base.py).

Delimited files are read by pyarrow's C++ CSV reader in blocks, so memory stays flat with file size; JSON
arrays are decoded incrementally; fixed-width files are read as whole lines and cut by Arrow. Structural
errors (wrong field count, undecodable bytes, stray quotes) name their line; the exact line is found by a
plain-Python rescan, only on the error path.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import operator
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, BinaryIO, Callable, Collection, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ingest.errors import NotText, ParseError

DELIMITERS = {"csv": ",", "txt": "\t", "pipe": "|"}
BLOCK_SIZE = 1 << 20
HEAD_BYTES = 8192  # what format detection looks at
SAMPLE_ROWS = 5  # the first rows that must fit the layout for another delimiter to be taken

@dataclass(frozen=True)
class Source:
    """What a parser reads: a name for messages, the format if known, and a way to (re)open the content."""

    name: str
    file_format: str | None
    open: Callable[[], BinaryIO]




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
    json_nulls: dict[str, list[int]] = field(default_factory=dict)  # key -> rows where it is an explicit null
    # (detail files) the physical line of each value, by column: a bad value is reported at its own line
    cell_lines: dict[str, pa.Array] = field(default_factory=dict)
    # (detail files) the file's own columns, when ``columns`` also has derived ones (Cisco-AVPair pairs): what a
    # row's hash is made of; None: ``columns``
    own: dict[str, pa.Array] | None = None


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
    (b"\xff\xfe", _UTF16 := 'UTF-16 text; the format reads UTF-8 (set its encoding = "utf-16" to read it)'),
    (b"\xfe\xff", _UTF16),
)
# Bytes text is made of: printable ASCII, UTF-8's high bytes, and the controls text uses (BEL, BS, TAB, LF,
# VT, FF, CR, ESC). Any other byte, or a high byte that is not UTF-8, is binary.
_TEXT_BYTES = bytes([7, 8, 9, 10, 11, 12, 13, 27, *range(0x20, 0x100)])
_BINARY_SHARE = 0.1


def binary_kind(head: bytes, encoding: str = "utf-8") -> str | None:
    """What a file whose content starts with ``head`` is, if it is not text; None for text. Known signatures
    name the usual strays; otherwise more than a tenth of binary bytes makes it binary. A text file with a
    few bad bytes stays text, so that its parse fails naming their line. In UTF-16 or UTF-32 (``encoding``),
    the text decoded is judged instead of the bytes."""
    wide = wide_encoding(encoding)
    for signature, what in _SIGNATURES:
        if head.startswith(signature) and not (wide and what == _UTF16):
            return what
    if wide:
        text = _decoder(Dialect(encoding=encoding), "replace").decode(head)
        bad = text.count("\ufffd") + sum(1 for ch in text if ch < " " and ch not in "\a\b\t\n\v\f\r\x1b")
        return "binary content" if bad > _BINARY_SHARE * len(text) else None
    undecodable = head.decode("utf-8", errors="replace").count("\ufffd")
    controls = len(head.translate(None, _TEXT_BYTES))
    return "binary content" if undecodable + controls > _BINARY_SHARE * len(head) else None


def resolve_format(source: Source, fits: Callable[[list[list[str]]], bool], encoding: str = "utf-8") -> str:
    """The format to read the content in: the source's, else sniffed from the first bytes. When the source's
    delimiter gives one field per row (a name that lies: a pipe-separated ``.txt``), the first other
    delimiter whose first rows ``fits`` the layout is taken instead. Raises NotText when the content is not
    text at all."""
    with source.open() as fh:
        head = fh.read(HEAD_BYTES)
    what = binary_kind(head, encoding)
    if what is not None:
        raise NotText(source.name, what)
    cut = len(head) == HEAD_BYTES
    if wide_encoding(encoding):  # judged as the UTF-8 text it is read as
        head = _decoder(Dialect(encoding=encoding), "replace").decode(head).encode("utf-8")
    fmt = source.file_format or sniff_format(head)
    if fmt not in DELIMITERS or any(len(row) > 1 for row in sample_rows(head, DELIMITERS[fmt], cut)):
        return fmt
    return next((other for other, sep in DELIMITERS.items()
                 if other != fmt and fits(sample_rows(head, sep, cut))), fmt)


def sample_rows(head: bytes, delimiter: str, cut: bool | None = None) -> list[list[str]]:
    """The first rows that are not blank (up to SAMPLE_ROWS) in a delimited file's first bytes, without the
    row the end of ``head`` may cut (``cut``: whether it may; by default when ``head`` is HEAD_BYTES long)."""
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    if (len(head) == HEAD_BYTES) if cut is None else cut:
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


@dataclass(frozen=True)
class Dialect:
    """How a delimited file is written: its delimiter, its quote character ('' for none) and its encoding."""

    delimiter: str = ","
    quote: str = '"'
    encoding: str = "utf-8"
    errors: str = "strict"  # strict | replace

    @property
    def plain_utf8(self) -> bool:
        """UTF-8 read strictly: pyarrow reads the bytes as they are (and validates them) without transcoding."""
        return codecs.lookup(self.encoding).name == "utf-8" and self.errors == "strict"


def _decoder(dialect: Dialect, errors: str | None = None):
    name = codecs.lookup(dialect.encoding).name
    return codecs.getincrementaldecoder("utf-8-sig" if name == "utf-8" else dialect.encoding)(
        errors=errors or dialect.errors)


def wide_encoding(encoding: str) -> bool:
    """Whether text in ``encoding`` is not a superset of ASCII bytes (UTF-16, UTF-32): its lines cannot be
    split at 0x0A bytes, and its bytes cannot be judged as UTF-8."""
    try:
        return codecs.lookup(encoding).encode("\n")[0] != b"\n"
    except LookupError:
        return False


def _newlines_before(dialect: Dialect, state: Any, exc: UnicodeDecodeError) -> int:
    """Newlines in the text before an undecodable byte: the bytes the decoder held (``exc.object`` is its
    held bytes and the new data) up to the error, decoded in the decoder's state before the call."""
    decoder = _decoder(dialect, "replace")
    try:
        decoder.setstate((b"", state[1]))
    except (TypeError, IndexError, ValueError):
        pass
    return decoder.decode(bytes(exc.object[: exc.start])).count("\n")


def _undecodable(source: Source, line: int, dialect: Dialect, exc: UnicodeDecodeError) -> ParseError:
    return ParseError(source.name, line, None, f"not valid {dialect.encoding} text ({exc.reason})")


class _Lines:
    """A binary stream's lines decoded (BOM removed) one at a time, so that a bad byte is reported with its
    line (ParseError). ``number`` is the physical line last read."""

    def __init__(self, source: Source, stream: BinaryIO, dialect: Dialect = Dialect()):
        self.source = source
        self.stream = stream
        self.number = 0
        self.dialect = dialect
        self.decoder = _decoder(dialect)

    def __iter__(self) -> Iterator[str]:
        if wide_encoding(self.dialect.encoding):
            yield from self._wide()
            return
        for raw in self.stream:
            self.number += 1
            try:
                yield self.decoder.decode(raw)
            except UnicodeDecodeError as exc:
                raise _undecodable(self.source, self.number, self.dialect, exc) from None

    def _wide(self) -> Iterator[str]:
        """(UTF-16, UTF-32) Decode chunks and split the text at its newlines: a 0x0A byte is not one."""
        tail = ""
        while True:
            data = self.stream.read(1 << 16)
            state = self.decoder.getstate()
            try:
                text = tail + self.decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                line = self.number + tail.count("\n") + _newlines_before(self.dialect, state, exc) + 1
                raise _undecodable(self.source, line, self.dialect, exc) from None
            if not self.number and not tail:
                text = text.removeprefix("\ufeff")
            parts = text.split("\n")
            tail = parts.pop()
            lines = [part + "\n" for part in parts]
            if not data and tail:
                lines.append(tail)
            for piece in lines:
                self.number += 1
                yield piece
            if not data:
                return


class _Transcode:
    """A stream in another encoding (or UTF-8 read with ``replace``) given to pyarrow as UTF-8. A byte that does
    not decode ends the stream early and is kept in ``error`` with its line: the reader checks it first."""

    def __init__(self, source: Source, raw: BinaryIO, dialect: Dialect):
        self.source = source
        self.raw = raw
        self.dialect = dialect
        self.decoder = _decoder(dialect)
        self.lines = 0
        self.error: ParseError | None = None
        self.done = False
        self.buffer = b""

    def read(self, size: int = -1) -> bytes:
        while not self.done and (size < 0 or len(self.buffer) < size):
            data = self.raw.read(BLOCK_SIZE if size < 0 else max(size, 1 << 16))
            state = self.decoder.getstate()
            try:
                text = self.decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                self.error = _undecodable(self.source, self.lines + _newlines_before(self.dialect, state, exc) + 1,
                                          self.dialect, exc)
                self.done = True
                break
            self.lines += text.count("\n")
            self.buffer += text.encode("utf-8")
            if not data:
                self.done = True
        if size < 0:
            out, self.buffer = self.buffer, b""
        else:
            out, self.buffer = self.buffer[:size], self.buffer[size:]
        return out

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return self.raw.closed


def head_rows(source: Source, dialect: Dialect, count: int, skip_lines: int = 0) -> list[tuple[int, list[str]]]:
    """(physical line, fields) of the first ``count`` rows of a delimited file that are not blank, after
    ``skip_lines`` lines (quotes honoured, BOM removed). A line before them or in them that does not decode
    fails (ParseError): a header name must not lose a byte."""
    found: list[tuple[int, list[str]]] = []
    with source.open() as fh:
        lines = _Lines(source, fh, dialect)
        reader = csv.reader(lines, **_csv_dialect(dialect))
        while len(found) < count:
            start = lines.number + 1
            try:
                fields = next(reader)
            except (StopIteration, csv.Error):
                break
            if start <= skip_lines:
                continue
            if fields and any(f.strip() for f in fields):
                found.append((start, fields))
    return found


def first_row(source: Source, dialect: Dialect, skip_lines: int = 0) -> tuple[int, list[str]]:
    """(physical line, fields) of the first row that is not blank; (0, []) when there is none."""
    rows = head_rows(source, dialect, 1, skip_lines)
    return rows[0] if rows else (0, [])


def _csv_dialect(dialect: Dialect) -> dict[str, Any]:
    if dialect.quote:
        return {"delimiter": dialect.delimiter, "quotechar": dialect.quote, "doublequote": True}
    return {"delimiter": dialect.delimiter, "quoting": csv.QUOTE_NONE}


def read_delimited(source: Source, dialect: Dialect, column_names: Sequence[str],
                   header_line: int) -> Iterator[TextBlock]:
    """Stream a delimited file as blocks of text columns. ``header_line`` is the physical line of the last
    line before the data (a header, or skipped lines; they and blank lines before them are skipped), 0 when
    the data starts at the top. Structural errors (wrong field count, undecodable bytes, unbalanced or stray
    quotes) are raised as ParseError with the line."""
    ordinal = 0
    raw = source.open()
    transcoded = None if dialect.plain_utf8 else _Transcode(source, raw, dialect)
    stream = raw if transcoded is None else transcoded
    quotes = _QuoteCheck(stream, dialect.delimiter, dialect.quote) if dialect.quote else None
    internal = [f"c{i}" for i in range(len(column_names))]
    try:
        reader = pcsv.open_csv(
            quotes or stream,
            read_options=pcsv.ReadOptions(column_names=internal, skip_rows=header_line,
                                          block_size=BLOCK_SIZE),
            parse_options=pcsv.ParseOptions(delimiter=dialect.delimiter, quote_char=dialect.quote or False,
                                            double_quote=True, newlines_in_values=bool(dialect.quote),
                                            ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(
                column_types={name: pa.string() for name in internal},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            yield TextBlock(dict(zip(column_names, batch.columns)), ordinal, batch.num_rows)
            ordinal += batch.num_rows
    except pa.ArrowInvalid as exc:
        if transcoded is not None and transcoded.error is not None:
            raise transcoded.error from None
        error = structural_error(source, dialect, len(column_names), header_line, str(exc))
        if error.line is None and quotes is not None:  # the rescan, which stops at stray quotes too, found nothing
            error = quotes.error(source) or error
        raise error from None
    finally:
        stream.close()
    # Checked once the whole file is read, so that which error a file gets does not depend on read-ahead.
    if transcoded is not None and transcoded.error is not None:
        raise transcoded.error
    stray = quotes.error(source) if quotes is not None else None
    if stray is not None:
        raise stray


_NO_DELIMITER = "\x01"  # whole lines are read as one column split at a character text does not hold


def read_ragged(source: Source, dialect: Dialect, names: Sequence[str], min_columns: int, header_line: int,
                skip_rows: int = 0, rows_per_block: int = 65536) -> Iterator[TextBlock]:
    """A delimited file whose rows have from ``min_columns`` to ``len(names)`` fields each (Asterisk's
    Master.csv, widened in the middle of its life), read row by row in Python: columns a row does not reach
    are null (absent). The first ``skip_rows`` data rows are passed over (already read by the fast reader)."""
    rows: list[list[str]] = []
    lines: list[int] = []
    ordinal = 0
    first = skip_rows
    for line, fields in scan_rows(source, dialect, header_line):
        ordinal += 1
        if ordinal <= skip_rows:
            continue
        if not min_columns <= len(fields) <= len(names):
            raise ParseError(source.name, line, None,
                             f"expected {min_columns} to {len(names)} fields, found {len(fields)}")
        rows.append(fields)
        lines.append(line)
        if len(rows) == rows_per_block:
            yield _ragged_block(names, rows, lines, first)
            first += len(rows)
            rows, lines = [], []
    if rows:
        yield _ragged_block(names, rows, lines, first)


def _ragged_block(names: Sequence[str], rows: list[list[str]], lines: list[int], first: int) -> TextBlock:
    columns = {}
    for index, name in enumerate(names):
        values = [row[index] if index < len(row) else None for row in rows]
        if any(value is not None for value in values):
            columns[name] = pa.array(values, pa.string())
    return TextBlock(columns, first, len(rows), lines)


def read_lines(source: Source, dialect: Dialect, skip_lines: int = 0) -> Iterator[TextBlock]:
    """Stream a file as blocks of whole lines (one text column ``line``), blank lines skipped: what a
    fixed-width file is cut from."""
    ordinal = 0
    raw = source.open()
    transcoded = None if dialect.plain_utf8 else _Transcode(source, raw, dialect)
    stream = raw if transcoded is None else transcoded
    try:
        reader = pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(column_names=["line"], skip_rows=skip_lines, block_size=BLOCK_SIZE),
            parse_options=pcsv.ParseOptions(delimiter=_NO_DELIMITER, quote_char=False, double_quote=False,
                                            newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pcsv.ConvertOptions(column_types={"line": pa.string()}, strings_can_be_null=False),
        )
        for batch in reader:
            line = batch.column(0)
            line = pc.utf8_rtrim(line, "\r")
            blank = pc.equal(pc.utf8_trim_whitespace(line), "")
            if pc.any(blank).as_py():
                line = pc.filter(line, pc.invert(blank))
            yield TextBlock({"line": line}, ordinal, len(line))
            ordinal += len(line)
    except pa.ArrowInvalid as exc:
        if transcoded is not None and transcoded.error is not None:
            raise transcoded.error from None
        for number, text in scan_lines(source, dialect, skip_lines):
            if _NO_DELIMITER in text:
                raise ParseError(source.name, number, None, "contains a control character (\\x01)") from None
        raise ParseError(source.name, None, None, f"unreadable: {exc}") from None
    finally:
        stream.close()
    if transcoded is not None and transcoded.error is not None:
        raise transcoded.error


def scan_lines(source: Source, dialect: Dialect, skip_lines: int = 0) -> Iterator[tuple[int, str]]:
    """(physical line, text) of every line that is not blank after ``skip_lines``: a fixed-width file's rows.
    Error path only."""
    with source.open() as fh:
        lines = _Lines(source, fh, dialect)
        for text in lines:
            if lines.number > skip_lines and text.strip():
                yield lines.number, text.rstrip("\r\n")

class _QuoteCheck:
    """A delimited stream, read through on its way to pyarrow, noting the first quote that ends a quoted field
    before the field's end (``"He said "hi" again"``): pyarrow's reader, lenient, would load the rest of the
    field garbled. One C-speed regular expression per chunk (a chunk without quotes is only searched for one);
    whether the reading is inside a quoted field carries across chunks. A quote inside an unquoted field is
    text, as pyarrow reads it."""

    BOM = b"\xef\xbb\xbf"

    def __init__(self, raw: BinaryIO, delimiter: str, quote: str = '"'):
        self.raw = raw
        self.quote = quote.encode()
        sep = re.escape(delimiter.encode())
        q = re.escape(self.quote)
        field_end = rb"(?=[" + sep + rb"\r\n])"
        quoted = q + rb"[^" + q + rb"]*+(?:" + q + q + rb"[^" + q + rb"]*+)*+" + q
        # Unquoted text, with literal quotes inside, and whole quoted fields that end where the field does.
        # It stops only at a quoted field it cannot take whole (cut by the chunk's end, or a stray quote).
        self.outside = re.compile(rb"[^" + q + rb"]*+(?:(?<=[" + sep + rb"\r\n])" + quoted + field_end
                                  + rb"[^" + q + rb"]*+|(?<![" + sep + rb"\r\n])" + q + rb"++[^" + q + rb"]*+)*+")
        # the value of a quoted field, up to its closing quote
        self.inside = re.compile(rb"[^" + q + rb"]*+(?:" + q + q + rb"[^" + q + rb"]*+)*+")
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
        q = self.quote.decode()
        return ParseError(source.name, self.stray_line, None,
                          f"stray quote inside a quoted field (a quote in a quoted value is doubled: {q}{q})")

    def _check(self, data: bytes, final: bool) -> None:
        if not self.quoted and self.quote not in data:
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



def scan_rows(source: Source, dialect: Dialect, header_line: int) -> Iterator[tuple[int, list[str]]]:
    """Plain-Python walk over the data rows (those starting after ``header_line``; empty lines skipped):
    (physical line where the row starts, fields). Slow but exact; used only to explain an error."""
    with source.open() as fh:
        lines = _Lines(source, fh, dialect)
        reader = csv.reader(lines, strict=True, **_csv_dialect(dialect))
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


def structural_error(source: Source, dialect: Dialect, expected: int, header_line: int, detail: str) -> ParseError:
    try:
        for line, fields in scan_rows(source, dialect, header_line):
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


def delimited_row_lines(source: Source, dialect: Dialect, header_line: int) -> Iterator[int]:
    """The physical line on which each data row of a delimited file starts (a rescan: error path only)."""
    return (line for line, _fields in scan_rows(source, dialect, header_line))

def json_element_lines(source: Source, dialect: Dialect = Dialect()) -> Iterator[int]:
    """The physical line on which each element of a JSON array starts (a rescan: error path only)."""
    return (line for line, _element in _json_elements(source, _json_decoder(), dialect))


def read_json_array(source: Source, dialect: Dialect = Dialect(),
                    rows_per_block: int = 65536) -> Iterator[TextBlock]:
    """Stream a JSON array of objects as blocks of text columns; numbers keep their exact text. The text is
    decoded in the dialect's encoding (UTF-8 by default, BOM tolerated)."""
    decoder = _json_decoder()
    ordinal = 0
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    for line, obj in _json_elements(source, decoder, dialect):
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
    nulls: dict[str, list[int]] = {}
    transposed = _transpose(rows, list(keys))
    for number, key in enumerate(keys):
        if transposed is not None:
            values = list(transposed[number])
            try:  # a column of texts only (the usual): Arrow refuses anything else, no look at each value
                array = pa.array(values, pa.string())
                if not array.null_count:
                    columns[key] = array
                    continue
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass
        else:
            values = [row.get(key, _ABSENT) for row in rows]
        for index in [index for index, value in enumerate(values) if value.__class__ is not str]:
            value = values[index]
            if value is None:
                nulls.setdefault(key, []).append(index)
            if isinstance(value, _NEITHER_NUMBER_NOR_TEXT) and key not in wrong_types:
                wrong_types[key] = (index, _json_kind(value))
            values[index] = _json_text(value)
        columns[key] = pa.array(values, pa.string())
    return TextBlock(columns, ordinal, len(rows), lines, wrong_types, nulls)


def _transpose(rows: list[dict[str, Any]], keys: list[str]) -> list[tuple] | None:
    """The values of every object by key, when every object has exactly these keys (the usual); else None."""
    if not keys or any(len(row) != len(keys) for row in rows):
        return None
    getter = operator.itemgetter(*keys)
    try:
        values = list(map(getter, rows))
    except KeyError:
        return None
    if len(keys) == 1:
        return [tuple(values)]
    return list(zip(*values))


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


def _json_elements(source: Source, decoder: json.JSONDecoder,
                   dialect: Dialect = Dialect()) -> Iterator[tuple[int, Any]]:
    """Yield (line, element) of a top-level JSON array, reading the text incrementally."""
    plain = dialect.plain_utf8
    text_decoder = None if plain else _decoder(dialect)
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
            if text_decoder is not None:  # another encoding (or replace): the codec's incremental decoder
                state = text_decoder.getstate()
                try:
                    chunk = text_decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as exc:
                    bad_line = line + buf.count("\n", pos) + _newlines_before(dialect, state, exc)
                    raise _undecodable(source, bad_line, dialect, exc) from None
                if first_chunk and chunk:
                    first_chunk = False
                    chunk = chunk.removeprefix("\ufeff")
                buf = buf[pos:] + chunk
                pos = 0
                if not raw:
                    eof = True
                    return bool(chunk)
                return True
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


