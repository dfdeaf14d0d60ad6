"""Reading FreeRADIUS ``detail`` accounting files (``kind = "radius-detail"``) as blocks of records.

A detail file is a run of records, each a header line (a ctime date such as ``Tue Feb 11 14:55:41 2014``, not
indented), then one indented ``Name = value`` line per attribute, usually ending with ``Timestamp = <unix
seconds>`` and a blank line. Each record becomes one row whose columns are its attribute names:

- a quoted value is unquoted and its C escapes undone (``\\"``, ``\\\\``, ``\\n``, ``\\r``, ``\\t``, octal
  ``\\303``: the bytes of octal escapes are decoded in the format's encoding; any other escape is kept as
  written); a bare value is taken as given, less a leading ``::`` on an enumerated value (FreeRADIUS v4:
  ``::Start``; an IPv6 address such as ``::1`` keeps it);
- a value that begins with its own attribute's name and ``=`` (Cisco: ``h323-conf-id = "h323-conf-id=..."``)
  loses that prefix;
- an attribute given again in the record keeps every value, in order: ``Name``, ``Name[2]``, ``Name[3]``, ...;
- the header line is the column :data:`DETAIL_DATE`, as written;
- each attribute named in ``avpairs`` (Cisco-AVPair) whose value is ``name=value`` also gives ``name`` that
  value, when the record has no attribute ``name`` of its own (the first such pair wins). These derived
  columns are read by fields, keys and rules, and kept in ``extra`` like any column no field reads (so that a
  reader of ``extra`` finds ``media_duration`` as it finds a top-level attribute); the row's hash is made of the
  file's own columns only (``TextBlock.own``), the pairs being there under their attribute.

The file is read in large chunks cut before a record's header, parsed by worker threads (a few chunks ahead of
the caller), each split into lines, parsed and pivoted with Arrow compute: each line is cut at its first
`` = `` (lines without one, ``Name=value``, by a lenient regular expression), what a line is (blank, header,
attribute) is judged once per distinct first piece, the records are numbered by a running count of header lines,
the attribute lines are sorted by name, and each attribute's values are scattered into its column by ``index_in``
+ ``take``. Only values with a backslash go through Python, and names once per chunk. Structural errors (a line that is not
``Name = value``, an unterminated quoted string, a header that is not a date, undecodable bytes, a file that
ends in the middle of a line) are raised as ParseError naming the physical line and, where one applies, the
attribute; each column's values carry their own lines (``TextBlock.cell_lines``), so that a bad value is
reported at its attribute's line.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ingest.errors import ParseError

from .read import Dialect, Source, TextBlock, _decoder, _Lines, _undecodable

DETAIL_DATE = "Detail-Date"  # the column of a record's header line
CHUNK_SIZE = 16 << 20
WORKERS = 2  # chunks parsed at once (and one more read ahead): each holds a chunk's text and arrays
_MOST = 1 << 30  # the most bytes a chunk grows to while looking for a record's header
_BOM = b"\xef\xbb\xbf"
# A record's header: a ctime date (the day of the month space-padded, or not).
_HEADER = r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-3]?\d \d{2}:\d{2}:\d{2} \d{4}$"
# An attribute line: indented (FreeRADIUS writes a TAB; spaces are read too), a name, " = ", a value.
_ATTRIBUTE = r"^[\t ]+(?P<name>[^\s=]+)[\t ]*=[\t ]?(?P<value>.*?)[\t ]*$"
_ENUM = r"^::[A-Za-z_][A-Za-z0-9_-]*$"
_IPV6ISH = r"^::[0-9A-Fa-f:.]*$"
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_ESCAPE = re.compile(r"((?:\\[0-7]{3})+)|\\(.)|([^\\]+)", re.S)
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}

NOT_AN_ATTRIBUTE = "not an attribute line (TAB Name = value)"
NOT_A_HEADER = "not a record header (a date line such as 'Tue Feb 11 14:55:41 2014') nor an indented attribute line"
UNTERMINATED = "unterminated quoted string"
CUT_SHORT = "the file ends in the middle of a line (truncated?): every line of a detail file ends with a newline"


def read_detail(source: Source, dialect: Dialect, avpairs: Sequence[str] = (),
                chunk_size: int | None = None) -> Iterator[TextBlock]:
    """Stream a detail file as blocks of records (see the module's docstring). ``first_ordinal`` counts records;
    ``lines`` gives each record's header line; ``cell_lines`` each value's line; ``own`` the columns without
    those derived from ``avpairs``."""
    # Chunks are parsed by worker threads (Arrow's kernels release the GIL), a few ahead of the one the caller
    # converts; blocks, and errors, still come in file order.
    ordinal = 0
    pending: deque[Future] = deque()
    late: ParseError | None = None  # a chunk that could not be read (undecodable bytes): after those before it
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="detail") as pool:
        try:
            try:
                for chunk, first_line, final in _chunks(source, dialect, chunk_size or CHUNK_SIZE):
                    pending.append(pool.submit(_block, source, dialect, chunk, first_line, final, avpairs))
                    while len(pending) > WORKERS:
                        block = pending.popleft().result()
                        if block is not None:
                            block.first_ordinal = ordinal
                            ordinal += block.num_rows
                            yield block
            except ParseError as exc:
                late = exc
            while pending:
                block = pending.popleft().result()
                if block is not None:
                    block.first_ordinal = ordinal
                    ordinal += block.num_rows
                    yield block
            if late is not None:
                raise late
        finally:
            for future in pending:
                future.cancel()


def detail_record_lines(source: Source, dialect: Dialect) -> Iterator[int]:
    """The physical line of each record's header (a rescan: error path only)."""
    with source.open() as fh:
        lines = _Lines(source, fh, dialect)
        for text in lines:
            if text.strip() and text[:1] not in ("\t", " "):
                yield lines.number


# ---------------------------------------------------------------------------------------------------
# Chunks: UTF-8 bytes cut before a record's header.


def _chunks(source: Source, dialect: Dialect, chunk_size: int) -> Iterator[tuple[bytes, int, bool]]:
    """(UTF-8 bytes, physical line of their first line, whether they end the file), each chunk but the last
    ending just before a header line, so that no record spans two chunks."""
    plain = dialect.plain_utf8
    decoder = None if plain else _decoder(dialect)
    carry = b""
    line = 1  # of carry's first line
    decoded_lines = 0  # newlines decoded so far (transcoding): where an undecodable byte is
    started = False
    with source.open() as raw:
        while True:
            data = raw.read(chunk_size)
            final = not data
            if decoder is not None:
                state = decoder.getstate()
                try:
                    text = decoder.decode(data, final=final)
                except UnicodeDecodeError as exc:
                    before = _text_before(dialect, state, exc)
                    error = _undecodable(source, decoded_lines + before.count("\n") + 1, dialect, exc)
                    # The whole records before the bad byte are still read, so that an error of theirs, earlier
                    # in the file, is the one reported.
                    buf = carry + before.encode("utf-8")
                    cut = _last_header(buf)
                    if cut > 0:
                        yield buf[:cut], line, False
                    raise error from None
                decoded_lines += text.count("\n")
                data = text.encode("utf-8")
            elif not started:
                data = data.removeprefix(_BOM)
            started = started or bool(data)
            buf = carry + data if carry else data
            if final:
                if buf:
                    yield buf, line, True
                return
            cut = _last_header(buf)
            if cut <= 0 and len(buf) >= _MOST:  # no header in so much: cut anyway (an error follows)
                cut = buf.rfind(b"\n") + 1
            if cut <= 0:
                carry = buf
                continue
            yield buf[:cut], line, False
            line += buf.count(b"\n", 0, cut)
            carry = buf[cut:]


def _text_before(dialect: Dialect, state, exc: UnicodeDecodeError) -> str:
    """The text an incremental decoder in ``state`` gives before the byte ``exc`` is about (it decodes)."""
    decoder = _decoder(dialect, "replace")
    try:
        decoder.setstate((b"", state[1]))
    except (TypeError, IndexError, ValueError):
        pass
    return decoder.decode(bytes(exc.object[: exc.start]))


_HEADER_BYTES = re.compile(_HEADER.encode().strip(b"^$") + rb"\r?\n")


def _last_header(buf: bytes) -> int:
    """The offset of the last header line (a ctime date, whole) that starts in ``buf`` after its first byte;
    0 if there is none. Only a real header cuts: a stray line stays with its record, to be refused there."""
    end = len(buf)
    while True:
        pos = buf.rfind(b"\n", 0, end)
        if pos < 0:
            return 0
        nxt = buf[pos + 1:pos + 2]
        if nxt and nxt not in b" \t\r\n" and _HEADER_BYTES.match(buf, pos + 1):
            return pos + 1
        end = pos


# ---------------------------------------------------------------------------------------------------
# One chunk of records.


def _lines_of(source: Source, chunk: bytes, first_line: int, final: bool) -> pa.Array:
    """The chunk's lines (without their newline and a CR before it), checked as UTF-8."""
    text = pa.StringArray.from_buffers(1, pa.array([0, len(chunk)], pa.int32()).buffers()[1], pa.py_buffer(chunk))
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(source.name, first_line + chunk.count(b"\n", 0, exc.start), None,
                             f"not valid utf-8 text ({exc.reason})") from None
        raise
    lines = pc.split_pattern(text, "\n").values
    if chunk.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    elif final:
        raise ParseError(source.name, first_line + len(lines) - 1, None, CUT_SHORT)
    if b"\r" in chunk:
        lines = pc.utf8_rtrim(lines, characters="\r")
    return lines


def _block(source: Source, dialect: Dialect, chunk: bytes, first_line: int, final: bool,
           avpairs: Sequence[str]) -> TextBlock | None:
    """One chunk's records (``first_ordinal`` 0: the reader sets it), or None if it has none."""
    ordinal = 0
    lines = _lines_of(source, chunk, first_line, final)
    # Every line cut at its first " = " (FreeRADIUS writes exactly TAB, name, " = ", value): a header or a blank
    # line is one piece, an attribute line two. What a line is comes from its first piece, judged once per
    # distinct first piece (a few dozen attribute names, one date per second) and spread by its dictionary code.
    pieces = pc.split_pattern(lines, " = ", max_splits=1)
    tokens, offsets = pieces.values, pieces.offsets
    encoded = pc.dictionary_encode(pc.list_element(pieces, 0))
    codes = encoded.indices
    kinds = _kinds_of(encoded.dictionary)  # of each distinct first piece: 0 blank, 1 header, 2 attribute, 3 neither
    neither = pc.equal(kinds, 3)
    if pc.any(neither).as_py():  # a line neither a header nor an attribute: the first one, by its line
        index = pc.index(pc.is_in(codes, value_set=pc.indices_nonzero(neither)), True).as_py()
        raise ParseError(source.name, first_line + index, None, NOT_A_HEADER, lines[index].as_py())
    line_kinds = pc.take(kinds, codes)
    header = pc.equal(line_kinds, 1)
    headers = pc.filter(lines, header)
    n = len(headers)
    numbers = pc.add(_counting(len(lines)), first_line)  # the physical line of each line
    header_lines = pc.filter(numbers, header)
    records = pc.subtract(pc.cumulative_sum(pc.cast(header, pa.int64())), 1)
    two = pc.equal(pc.list_value_length(pieces), 2)
    attribute = pc.equal(line_kinds, 2)
    odd = pc.and_(attribute, pc.invert(two))
    if pc.any(odd).as_py():  # an indented line without " = ": read by the lenient expression (rare), or refused
        return _block_slowly(source, dialect, lines, first_line, headers, header_lines, records, attribute, avpairs,
                             ordinal)
    rows = pc.indices_nonzero(attribute)
    if len(rows) and pc.less(pc.take(records, rows.slice(0, 1)), 0)[0].as_py():
        index = rows[0].as_py()
        raise ParseError(source.name, first_line + index, None,
                         "an attribute line before the first record header (a date line)", lines[index].as_py())
    if n == 0:
        return None
    # Attribute names, ranked by name: each line's rank, then the lines sorted by it (stable: file order kept).
    attribute_codes = pc.indices_nonzero(pc.equal(kinds, 2)).to_pylist()
    given = pc.take(encoded.dictionary, attribute_codes).to_pylist()
    names = sorted({_name(text) for text in given})
    rank = {name: i for i, name in enumerate(names)}
    code_rank = [-1] * len(kinds)
    for code, text in zip(attribute_codes, given):
        code_rank[code] = rank[_name(text)]
    code_rank = pa.array(code_rank, pa.int64())
    ranks = pc.take(code_rank, pc.take(codes, rows))
    sort = pc.sort_indices(ranks)
    order, ranks = pc.take(rows, sort), pc.take(ranks, sort)
    values = pc.take(tokens, pc.add(pc.take(offsets, order), 1))
    if b" \n" in chunk or b"\t\n" in chunk or b" \r\n" in chunk:  # spaces after a value: not the value's
        values = pc.utf8_rtrim(values, characters=" \t")
    at = pc.add(order, first_line)
    record = pc.take(records, order)
    values = _unquote(source, dialect, chunk, values, at, lambda: pc.take(pa.array(names), ranks))
    tally = pc.value_counts(ranks)
    counts = dict(zip(tally.field("values").to_pylist(), tally.field("counts").to_pylist()))
    pivoted, lines_of = _pivot(source, names, counts, values, record, at, n)
    return _finish(headers, header_lines, pivoted, lines_of, avpairs, ordinal, n)


def _kinds_of(firsts: pa.Array) -> pa.Array:
    """What a line whose first piece is each of ``firsts`` is: 0 blank, 1 a header, 2 an attribute, 3 neither."""
    blank = pc.or_(pc.equal(firsts, ""), pc.utf8_is_space(firsts))
    indented = pc.is_in(pc.utf8_slice_codeunits(firsts, 0, 1), value_set=pa.array(["\t", " "]))
    header = pc.match_substring_regex(firsts, _HEADER)
    kinds = pc.if_else(blank, 0, pc.if_else(indented, 2, pc.if_else(header, 1, 3)))
    return pc.cast(kinds, pa.int8())


def _name(first: str) -> str:
    return first.lstrip("\t ")


def _finish(headers, header_lines, pivoted, lines_of, avpairs, ordinal, n) -> TextBlock:
    columns = {DETAIL_DATE: headers, **pivoted}
    cell_lines = {DETAIL_DATE: header_lines, **lines_of}
    own = dict(columns)
    if avpairs:
        _derive(columns, cell_lines, avpairs, n)
    return TextBlock(columns, ordinal, n, header_lines.to_pylist(), cell_lines=cell_lines,
                     own=own if len(own) != len(columns) else None)


def _block_slowly(source: Source, dialect: Dialect, lines: pa.Array, first_line: int, headers, header_lines,
                  records, attribute, avpairs, ordinal) -> TextBlock | None:
    """A chunk with attribute lines not cut by " = " (``Name=value``): every attribute line read by the lenient
    regular expression; one that does not match it fails."""
    texts = pc.filter(lines, attribute)
    at = pc.add(pc.indices_nonzero(attribute), first_line)
    record = pc.filter(records, attribute)
    if len(record) and record[0].as_py() < 0:
        raise ParseError(source.name, at[0].as_py(), None,
                         "an attribute line before the first record header (a date line)", texts[0].as_py())
    parts = pc.extract_regex(texts, _ATTRIBUTE)
    if parts.null_count:
        index = pc.index(pc.is_null(parts), True).as_py()
        raise ParseError(source.name, at[index].as_py(), None, NOT_AN_ATTRIBUTE, texts[index].as_py())
    n = len(headers)
    if n == 0:
        return None
    encoded = pc.dictionary_encode(pc.struct_field(parts, "name"))
    names = sorted(encoded.dictionary.to_pylist())
    rank = {name: i for i, name in enumerate(names)}
    ranks = pc.take(pa.array([rank[name] for name in encoded.dictionary.to_pylist()], pa.int64()), encoded.indices)
    order = pc.sort_indices(ranks)
    ranks = pc.take(ranks, order)
    values = pc.take(pc.utf8_rtrim(pc.struct_field(parts, "value"), characters=" \t"), order)
    at, record = pc.take(at, order), pc.take(record, order)
    values = _values(source, dialect, pc.take(pa.array(names), ranks), values, at)
    tally = pc.value_counts(ranks)
    counts = dict(zip(tally.field("values").to_pylist(), tally.field("counts").to_pylist()))
    pivoted, lines_of = _pivot(source, names, counts, values, record, at, n)
    return _finish(headers, header_lines, pivoted, lines_of, avpairs, ordinal, n)


def _unquote(source: Source, dialect: Dialect, chunk: bytes, values: pa.Array, at: pa.Array, names) -> pa.Array:
    """Values unquoted. When the chunk has no backslash and every quote in it opens or closes a value that
    starts and ends with one, trimming quotes off every value is exact (one pass); else :func:`_values`."""
    if b"\\" not in chunk:
        quoted = pc.starts_with(values, '"')
        # (A value that is one quote alone starts and ends with it, but its one quote fails the count.)
        closed = pc.and_(quoted, pc.ends_with(values, '"'))
        opened = pc.sum(quoted).as_py() or 0
        if pc.sum(closed).as_py() == opened and chunk.count(b'"') == 2 * opened:
            if b" = ::" in chunk:
                values = _without_colons(values, pc.invert(quoted))
            return pc.utf8_trim(values, characters='"') if opened else values
    return _values(source, dialect, names(), values, at)


def _values(source: Source, dialect: Dialect, names: pa.Array, values: pa.Array, at: pa.Array) -> pa.Array:
    """Attribute values unquoted and unescaped, ``::`` dropped from enumerated values."""
    quoted = pc.starts_with(values, '"')
    if pc.any(quoted).as_py():
        escaped = pc.and_(quoted, pc.match_substring(values, "\\"))
        closed = pc.and_(pc.ends_with(values, '"'), pc.greater_equal(pc.utf8_length(values), 2))
        open_ = pc.and_(quoted, pc.invert(pc.or_(closed, escaped)))
        if pc.any(open_).as_py():
            index = pc.index(open_, True).as_py()
            raise ParseError(source.name, at[index].as_py(), names[index].as_py(), UNTERMINATED,
                             values[index].as_py())
        inner = pc.utf8_slice_codeunits(values, 1, -1)
        if pc.any(escaped).as_py():
            rows = pc.indices_nonzero(escaped).to_pylist()
            given = pc.take(values, rows).to_pylist()
            fixed = [_unescape(source, dialect, text, at[i].as_py(), names[i].as_py()) for i, text in zip(rows, given)]
            inner = pc.replace_with_mask(inner, escaped, pa.array(fixed, pa.string()))
        values = pc.if_else(quoted, inner, values)
        bare = pc.invert(quoted)
    else:
        bare = None
    return _without_colons(values, bare)


def _without_colons(values: pa.Array, bare: pa.Array | None) -> pa.Array:
    """Bare enumerated values (``::Start``, FreeRADIUS v4) without their ``::``; IPv6 addresses kept."""
    enum = pc.starts_with(values, "::")
    if pc.any(enum).as_py():
        enum = pc.and_(pc.match_substring_regex(values, _ENUM), pc.invert(pc.match_substring_regex(values, _IPV6ISH)))
        if bare is not None:
            enum = pc.and_(enum, bare)
        values = pc.if_else(enum, pc.utf8_slice_codeunits(values, 2), values)
    return values


def _unescape(source: Source, dialect: Dialect, text: str, line: int, name: str) -> str:
    """A quoted value with backslashes, unquoted and unescaped; ParseError if its quotes do not close it."""
    match = _QUOTED.fullmatch(text)
    if match is None:
        raise ParseError(source.name, line, name, UNTERMINATED, text)
    out = []
    for octal, escape, literal in _ESCAPE.findall(match.group(1)):
        if literal:
            out.append(literal)
        elif octal:
            data = bytes(int(octal[i + 1:i + 4], 8) for i in range(0, len(octal), 4))
            try:
                out.append(codecs.decode(data, dialect.encoding, dialect.errors))
            except UnicodeDecodeError as exc:
                raise ParseError(source.name, line, name,
                                 f"not valid {dialect.encoding} text in an octal escape ({exc.reason})", text) from None
        else:
            out.append(_SIMPLE_ESCAPES.get(escape, "\\" + escape))
    return "".join(out)


def _pivot(source: Source, names: list[str], counts: dict[int, int], values: pa.Array, record: pa.Array,
           at: pa.Array, n: int) -> tuple[dict[str, pa.Array], dict[str, pa.Array]]:
    """Attribute lines sorted by name (``counts``: how many lines of each, by its rank in ``names``) scattered
    into one column per attribute (and per repeat: ``Name[2]``, ...), each of ``n`` records, null where a record
    has no such attribute."""
    columns: dict[str, pa.Array] = {}
    cell_lines: dict[str, pa.Array] = {}
    start = 0
    everyone = _counting(n)
    known = set(names)
    for k, name in enumerate(names):
        m = counts.get(k, 0)
        vals, recs, lines = values.slice(start, m), record.slice(start, m), at.slice(start, m)
        start += m
        if not name or re.search(r"[\s=]", name):
            raise ParseError(source.name, lines[0].as_py(), None, NOT_AN_ATTRIBUTE, name)
        prefix = name + "="
        named = pc.starts_with(vals, prefix)
        if pc.all(named).as_py():  # Cisco, every time
            vals = pc.utf8_slice_codeunits(vals, len(prefix))
        elif pc.any(named).as_py():
            vals = pc.if_else(named, pc.utf8_slice_codeunits(vals, len(prefix)), vals)
        if m > 1 and pc.any(pc.equal(recs.slice(1), recs.slice(0, m - 1))).as_py():
            occurrences = _occurrences(recs)
            for j in range(1, pc.max(occurrences).as_py() + 1):
                take = pc.equal(occurrences, j)
                column = name if j == 1 else f"{name}[{j}]"
                if j > 1 and column in known:
                    raise ParseError(source.name, pc.filter(lines, take)[0].as_py(), name,
                                     f"given again in a record, where its repeat would be named like the "
                                     f"attribute {column!r}")
                columns[column], cell_lines[column] = _scatter(everyone, pc.filter(recs, take),
                                                                pc.filter(vals, take), pc.filter(lines, take))
        else:
            if name == DETAIL_DATE:
                raise ParseError(source.name, lines[0].as_py(), name,
                                 f"an attribute named {DETAIL_DATE} (the column of each record's date line)")
            columns[name], cell_lines[name] = _scatter(everyone, recs, vals, lines)
    return columns, cell_lines


def _occurrences(recs: pa.Array) -> pa.Array:
    """For sorted record indexes, each one's occurrence within its record: 1, 2, ... (vectorised)."""
    m = len(recs)
    positions = _counting(m)
    previous = pa.concat_arrays([pa.array([-1], pa.int64()), recs.slice(0, m - 1)])
    starts = pc.not_equal(recs, previous)
    run_start = pc.cumulative_max(pc.if_else(starts, positions, 0))
    return pc.add(pc.subtract(positions, run_start), 1)


def _scatter(everyone: pa.Array, recs: pa.Array, vals: pa.Array, lines: pa.Array) -> tuple[pa.Array, pa.Array]:
    if len(recs) == len(everyone):  # every record has it, once: already in record order
        return vals, lines
    where = pc.index_in(everyone, value_set=recs)
    return pc.take(vals, where), pc.take(lines, where)


def _derive(columns: dict[str, pa.Array], cell_lines: dict[str, pa.Array], avpairs: Sequence[str], n: int) -> None:
    """``name=value`` pairs inside the ``avpairs`` attributes, as columns ``name`` where a record has none."""
    found: dict[str, tuple[pa.Array, pa.Array]] = {}
    own = set(columns)
    for attribute in avpairs:
        j = 1
        while True:
            column = attribute if j == 1 else f"{attribute}[{j}]"
            if column not in columns:
                break
            j += 1
            parts = pc.extract_regex(columns[column], r"^(?P<n>[^=\s]+)=(?P<v>.*)$")
            subnames = pc.struct_field(parts, "n")
            subvalues = pc.struct_field(parts, "v")
            for sub in pc.unique(subnames.drop_null()).to_pylist():
                hit = pc.fill_null(pc.equal(subnames, sub), False)
                vals = pc.if_else(hit, subvalues, pa.scalar(None, pa.string()))
                lines = pc.if_else(hit, cell_lines[column], pa.scalar(None, pa.int64()))
                if sub in found:  # the first pair of the record wins
                    vals, lines = pc.coalesce(found[sub][0], vals), pc.coalesce(found[sub][1], lines)
                found[sub] = (vals, lines)
    for sub, (vals, lines) in found.items():
        if sub in own:  # the record's own attribute wins
            columns[sub] = pc.coalesce(columns[sub], vals)
            cell_lines[sub] = pc.coalesce(cell_lines[sub], lines)
        else:
            columns[sub], cell_lines[sub] = vals, lines


_COUNTING: list[pa.Array] = [pa.array([], pa.int64())]


def _counting(n: int) -> pa.Array:
    """0, 1, ..., n - 1 (int64)."""
    if len(_COUNTING[0]) < n:
        size = max(n, 2 * len(_COUNTING[0]))
        _COUNTING[0] = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), size)), 1)
    return _COUNTING[0].slice(0, n)


__all__ = ["DETAIL_DATE", "detail_record_lines", "read_detail"]
