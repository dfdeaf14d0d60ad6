"""Compare two received files before deciding on one (the Potential Duplicates tab's "compare").

:func:`compare` answers, for files ``first`` and ``other``:

- whether their stored bytes are the same (the same staged blob and member), and whether their contents are
  (a gzipped copy of a plain file has the same content in other bytes);
- their line counts and the first line on which they differ, read side by side in blocks (memory stays flat);
- for two files of one carrier, read by its parser as the loader reads them (loaded or not): how many records
  are in both, only in ``first``, only in ``other`` (by the record's key: the carrier's ID, or the record key
  of a layout without one), and how many of those in both differ in a field, with the first few of each.
  The records are compared set-based in Arrow (unique keys, ``is_in``, a hash join of keys and row numbers,
  then each field compared column by column); only the few samples shown are looked at one by one, and
  their lines found in one rescan of each file. Each file's records are held in memory as Arrow columns
  while they are compared (about the size of the files' content).

A file that does not parse, or files of different carriers, are compared by lines only; the result says why
(``records_not_compared``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from . import admin
from .app import App
from .catalog import files as catalog_files
from .errors import CdrError
from .formats import parser_for
from .layouts import LAYOUTS, money_decimal
from .load import readable_source

SAMPLES = 5  # how many records of each kind a comparison names
LINE_SHOWN = 1000  # the most bytes of a differing line a comparison quotes
CHUNK = 1 << 20
# The fields two records with one key are compared on: every field of either layout (calls and charges share a
# few, such as description), and the columns the format did not map (``extra``); not the key or where the
# record is in its file. A record's key in a comparison is its kind and record key: a call and a charge are
# never the same record.
_FIELDS = {f.name: f for layout in LAYOUTS.values() for f in layout.fields}
COMPARED = (*_FIELDS, "extra")
_MONEY = {name for name, f in _FIELDS.items() if f.kind == "money"}
FIRST, OTHER = "_first", "_other"


@dataclass(frozen=True)
class Side:
    """One of the two files: what the catalog says of it, and what reading it found."""

    id: int
    name: str
    carrier: str | None
    status: str
    compression: str  # none | gzip | zip
    container: str | None  # the archive a zip member came in
    size: int  # bytes of content (decompressed)
    lines: int
    records: int | None = None  # None when its records were not read


@dataclass(frozen=True)
class Line:
    """The first line on which the two contents differ; a file's text is None when it has no such line."""

    number: int
    first: str | None
    other: str | None
    note: str | None = None  # what differs when the texts shown do not (a line break at the end of the file)


@dataclass(frozen=True)
class FieldChange:
    field: str
    first: Any
    other: Any


@dataclass(frozen=True)
class Sample:
    """A record named by its key and the line it starts on in each file (None: not in that file, or a parser
    that cannot tell); for a record in both whose fields differ, each differing field."""

    key: str
    first_line: int | None
    other_line: int | None
    fields: list[FieldChange] = field(default_factory=list)


@dataclass(frozen=True)
class Records:
    """Record keys in both files, only in the first, only in the other; ``changed``: of those in both, how many
    differ in a field. The samples are the first few of each (in file order; changed ones in the first file's)."""

    in_both: int
    only_in_first: int
    only_in_other: int
    changed: int
    samples_in_both: list[Sample] = field(default_factory=list)
    samples_changed: list[Sample] = field(default_factory=list)
    samples_only_in_first: list[Sample] = field(default_factory=list)
    samples_only_in_other: list[Sample] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    first: Side
    other: Side
    same_bytes: bool  # the same staged bytes (blob and member)
    same_content: bool  # the same content, byte for byte, once decompressed
    verdict: str  # one sentence for a person
    first_difference: Line | None
    records: Records | None
    records_not_compared: str | None  # why ``records`` is None


def compare(app: App, first_id: int, other_id: int) -> Comparison:
    """Compare files ``first_id`` and ``other_id`` (see the module docstring). Unknown id: NotFound. Neither
    file changes; a file that does not parse is compared by lines and the reason given."""
    with app.catalog.read() as conn:
        rows = catalog_files.get_file(conn, first_id), catalog_files.get_file(conn, other_id)
    with admin.open_content(app, first_id) as a, admin.open_content(app, other_id) as b:
        lines = compare_lines(a, b)
    records, tables, why_not = _compare_records(app, *rows)
    sides = [Side(id=row["id"], name=row["name"], carrier=row["carrier"], status=row["status"],
                  compression=row["compression"], container=row["container"], size=lines.sizes[i],
                  lines=lines.counts[i], records=tables[i].num_rows if tables else None)
             for i, row in enumerate(rows)]
    same_bytes = rows[0]["blob"] == rows[1]["blob"] and rows[0]["member"] == rows[1]["member"]
    same_content = lines.difference is None
    return Comparison(first=sides[0], other=sides[1], same_bytes=same_bytes, same_content=same_content,
                      verdict=_verdict(sides, same_bytes, same_content), first_difference=lines.difference,
                      records=records, records_not_compared=why_not)


def _verdict(sides: list[Side], same_bytes: bool, same_content: bool) -> str:
    if same_bytes:
        return "byte-identical: the same stored bytes"
    if not same_content:
        return "different content"
    stored = [f"#{s.id} is {_stored_as(s)}" for s in sides if _stored_as(s)]
    return "the same content in different bytes" + (f" ({'; '.join(stored)})" if stored else "")


def _stored_as(side: Side) -> str | None:
    if side.compression == "gzip":
        return "gzip-compressed"
    if side.compression == "zip":
        return f"a member of {side.container}"
    return None


# ---------------------------------------------------------------------------------------------------
# Lines: both contents read side by side in equal blocks, so the first differing byte is found with block
# comparisons (C speed) and lines are counted per block.


@dataclass(frozen=True)
class LineComparison:
    sizes: tuple[int, int]
    counts: tuple[int, int]
    difference: Line | None  # None: the contents are byte-identical


def compare_lines(first: BinaryIO, other: BinaryIO) -> LineComparison:
    """Line counts of two streams (a last line without a line break counts) and their first differing line."""
    streams = (first, other)
    sizes, counts, last = [0, 0], [0, 0], [b"", b""]
    line_start = b""  # the current line's first bytes (up to LINE_SHOWN), the same on both sides until they differ
    lines_before = 0  # complete lines before the current block, the same on both sides until they differ
    found: tuple[int, list[bytearray], list[bool]] | None = None  # line number, each side's line, line broken
    while True:
        blocks = [stream.read(CHUNK) for stream in streams]
        if not any(blocks):
            break
        for i, block in enumerate(blocks):
            sizes[i] += len(block)
            counts[i] += block.count(b"\n")
            last[i] = block[-1:] or last[i]
        if found is None and blocks[0] != blocks[1]:
            at = _common_prefix(*blocks)
            start = blocks[0].rfind(b"\n", 0, at) + 1
            head = ((line_start if start == 0 else b"") + blocks[0][start:at][:LINE_SHOWN])[:LINE_SHOWN]
            number = lines_before + blocks[0].count(b"\n", 0, at) + 1
            found = (number, [bytearray(head), bytearray(head)], [False, False])
            blocks = [block[at:] for block in blocks]
        elif found is None:
            lines_before += blocks[0].count(b"\n")
            newline = blocks[0].rfind(b"\n")
            if newline >= 0:
                line_start = blocks[0][newline + 1:][:LINE_SHOWN]
            else:
                line_start += blocks[0][: LINE_SHOWN - len(line_start)]
            continue
        _extend_lines(found, blocks)
    counts = [n + (1 if end not in (b"", b"\n") else 0) for n, end in zip(counts, last)]
    difference = None
    if found is not None:
        number, texts, broken = found
        shown = [_line_text(text, number, count) for text, count in zip(texts, counts)]
        difference = Line(number, *shown, _unseen_difference(texts, broken) if shown[0] == shown[1] else None)
    return LineComparison(tuple(sizes), tuple(counts), difference)


def _extend_lines(found, blocks: list[bytes]) -> None:
    """Add each side's block to its differing line until the line ends (or is as long as is shown)."""
    _number, texts, broken = found
    for i, block in enumerate(blocks):
        if broken[i] or len(texts[i]) >= LINE_SHOWN:
            continue
        newline = block.find(b"\n")
        texts[i] += block[: newline if newline >= 0 else len(block)][: LINE_SHOWN - len(texts[i])]
        broken[i] = newline >= 0


def _unseen_difference(texts: list[bytearray], broken: list[bool]) -> str:
    """What differs between two lines whose text, as shown, is the same."""
    if texts[0] == texts[1] and broken[0] != broken[1]:
        return "the same text, but only one of them ends with a line break"
    if texts[0].rstrip(b"\r") == texts[1].rstrip(b"\r"):
        return "the same text with different line breaks (CRLF and LF)"
    return f"the lines differ after their first {LINE_SHOWN} bytes"


def _line_text(raw: bytearray, number: int, count: int) -> str | None:
    if number > count:
        return None  # the file ended before this line
    text = bytes(raw).decode("utf-8", errors="replace").rstrip("\r")
    return text if len(raw) < LINE_SHOWN else text + "…"


def _common_prefix(a: bytes, b: bytes) -> int:
    """How many leading bytes ``a`` and ``b`` share (a binary search of slice comparisons)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


# ---------------------------------------------------------------------------------------------------
# Records: each file parsed into Arrow (key, position, compared fields), then compared set-based.


def _compare_records(app: App, first: dict, other: dict) -> tuple[Records | None, list[pa.Table] | None, str | None]:
    """(the record comparison, both files' record tables, None), or (None, None, why they were not compared)."""
    if first["carrier"] is None or other["carrier"] is None:
        unrouted = first if first["carrier"] is None else other
        return None, None, f"file #{unrouted['id']} has no carrier: compared by lines only"
    if first["carrier"] != other["carrier"]:
        return None, None, f"different carriers ({first['carrier']}, {other['carrier']}): compared by lines only"
    try:
        parser = parser_for(app.config, first["carrier"])
        sources = [readable_source(app, row, parser) for row in (first, other)]
        tables = [_records_table(parser_for(app.config, first["carrier"]).batches(source)) for source in sources]
    except CdrError as exc:  # a record that does not parse, content that is not text, an unknown carrier
        return None, None, f"{exc}: compared by lines only"
    keys = [table["key"].combine_chunks() for table in tables]
    distinct = [pc.unique(k) for k in keys]  # in file order
    shared = [pc.is_in(distinct[0], value_set=distinct[1]), pc.is_in(distinct[1], value_set=distinct[0])]
    in_both = pc.sum(shared[0]).as_py() or 0
    changed = _changed_pairs(tables)
    first_changed = (changed.group_by("key").aggregate([("row" + FIRST, "min"), ("row" + OTHER, "min")])
                     .sort_by("row" + FIRST + "_min")[:SAMPLES])

    def rows(wanted: pa.Array) -> list[tuple[str, int | None, int | None]]:
        """(key, its first row in each table or None) for each ``wanted`` key."""
        return list(zip(wanted.to_pylist(), *(pc.index_in(wanted, value_set=k).to_pylist() for k in keys)))

    picked = {
        "in_both": rows(distinct[0].filter(shared[0])[:SAMPLES]),
        "changed": list(zip(*(first_changed[name].to_pylist() for name in first_changed.column_names))),
        "only_in_first": rows(distinct[0].filter(pc.invert(shared[0]))[:SAMPLES]),
        "only_in_other": rows(distinct[1].filter(pc.invert(shared[1]))[:SAMPLES]),
    }
    lines = [_lines(parser, sources[side], tables[side], [p[side + 1] for group in picked.values() for p in group])
             for side in (0, 1)]
    samples = {
        kind: [Sample(key, lines[0].get(a), lines[1].get(b), _field_changes(tables, a, b) if kind == "changed" else [])
               for key, a, b in group]
        for kind, group in picked.items()
    }
    records = Records(in_both=in_both, only_in_first=len(distinct[0]) - in_both,
                      only_in_other=len(distinct[1]) - in_both, changed=pc.count_distinct(changed["key"]).as_py(),
                      **{f"samples_{kind}": found for kind, found in samples.items()})
    return records, tables, None


def _records_table(batches) -> pa.Table:
    """The parsed records (calls and charges) as one table of their key (kind and record key), position and
    the compared fields (null where the record's layout has no such field)."""
    types = {name: LAYOUTS[layout].arrow_schema().field(name).type
             for layout in LAYOUTS for name in LAYOUTS[layout].parsed_columns}
    schema = pa.schema([pa.field("key", pa.string()), pa.field("position", pa.int64()),
                        *(pa.field(name, types[name]) for name in COMPARED)])
    keyed = []
    for layout, batch in batches:
        n = batch.num_rows
        names = set(batch.schema.names)
        keyed.append(pa.RecordBatch.from_arrays(
            [pc.binary_join_element_wise(layout.kind, batch.column("record_key"), ":"), batch.column("position"),
             *(batch.column(name) if name in names else pa.nulls(n, types[name]) for name in COMPARED)],
            schema=schema,
        ))
    return pa.Table.from_batches(keyed, schema=schema)


def _changed_pairs(tables: list[pa.Table]) -> pa.Table:
    """(key, row_first, row_other) of each pair of records with one key whose compared fields differ: the keys
    and row numbers are joined (a hash join), then each field is compared column by column (a null differs
    from any value, not from null)."""
    index = [pa.table({"key": t["key"], "row": pa.array(range(t.num_rows), pa.int64())}) for t in tables]
    pairs = index[0].join(index[1], keys="key", join_type="inner", left_suffix=FIRST, right_suffix=OTHER)
    differs = pc.fill_null(pa.nulls(pairs.num_rows, pa.bool_()), False)
    for name in COMPARED:
        a, b = tables[0][name].take(pairs["row" + FIRST]), tables[1][name].take(pairs["row" + OTHER])
        both = pc.and_(pc.is_valid(a), pc.is_valid(b))
        differs = pc.or_(differs, pc.if_else(both, pc.not_equal(a, b), pc.xor(pc.is_null(a), pc.is_null(b))))
    return pairs.filter(differs)


def _lines(parser, source, table: pa.Table, rows: list[int | None]) -> dict[int, int | None]:
    """The line each of the table's ``rows`` starts on in its file (one rescan of the file for all of them)."""
    rows = [row for row in rows if row is not None]
    positions = table["position"].take(pa.array(rows, pa.int64())).to_pylist()
    found = parser.record_lines(source, positions) if positions else {}
    return {row: found.get(position) for row, position in zip(rows, positions)}


def _field_changes(tables: list[pa.Table], first_row: int, other_row: int) -> list[FieldChange]:
    """Each compared field in which record ``first_row`` of the first table and ``other_row`` of the other differ."""
    first, other = (table.slice(row, 1).to_pylist()[0] for table, row in zip(tables, (first_row, other_row)))
    return [FieldChange(name, *(money_decimal(v) if name in _MONEY else v for v in (first[name], other[name])))
            for name in COMPARED if first[name] != other[name]]
