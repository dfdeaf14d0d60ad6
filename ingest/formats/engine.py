"""The format engine: a FormatSpec applied to one file, giving record batches in the call and charge layouts.

Reading is done in blocks (ingest.formats.read); each block is converted with Arrow compute, every check
gathered, and the earliest bad row of the block raised as a ParseError naming the file, the physical line and
the column (or field). Only the error path rescans the file to find a row's line (delimited, fixed width);
JSON knows its lines as it reads.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from typing import Callable, Collection, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from ingest.errors import ConfigError, NotText, ParseError
from ingest.layouts import LAYOUTS, Layout

from .convert import Context, convert, reason
from .detail import detail_record_lines, read_detail
from .read import (
    DELIMITERS,
    HEAD_BYTES,
    Dialect,
    Source,
    TextBlock,
    binary_kind,
    delimited_row_lines,
    head_rows,
    json_element_lines,
    lines_at,
    read_ragged,
    read_delimited,
    read_json_array,
    read_lines,
    resolve_format,
    scan_lines,
)
from .spec import FieldSpec, FormatSpec, spec_key

MISSING_COLUMN = "required column missing from the header"
EMPTY = "required value is empty"
MISSING_KEY = "required field missing"
_NAMES_BY_DELIMITER = {sep: name for name, sep in DELIMITERS.items()}


@dataclass
class _Plan:
    """How one file is read: its format, delimiter, column names (canonical, in file order), how each is shown
    in ``extra``, and the physical line after which the data starts."""

    fmt: str
    dialect: Dialect
    names: list[str]
    display: dict[str, str]
    header_line: int = 0
    empty: bool = False  # no rows at all

    @property
    def keyed(self) -> bool:
        """Whether each record names its own columns (JSON objects, detail records), so that a column may be
        absent from some records (null), rather than every row having the header's columns."""
        return self.fmt in ("json", "detail")


class Format:
    """A compiled format: what does not depend on the file, worked out once."""

    def __init__(self, spec: FormatSpec):
        self.spec = spec
        self.ctx = Context(spec.decimal_separator, spec.timezone)
        self.kinds = spec.kinds
        # Every name the format refers to, by how it is matched: `columns` first, then fields, keys and rules.
        self.known: dict[str, str] = {}
        refs = list(spec.columns)
        if isinstance(spec.key, tuple):
            refs += list(spec.key)
        refs += [cond.column for rule in spec.rules for cond in rule.when]
        for fields in spec.fields.values():
            for f in fields.values():
                refs += [c for c in (f.column, f.also) if c is not None]
        for name in refs:
            self.known.setdefault(spec_key(spec, name), name)
        self.columns_known = {spec_key(spec, name) for name in spec.columns}
        # Columns a header must have: the key's and those of fields required by the format (not only by a layout).
        # (A key that falls back to the row's hash when a column is missing requires none.)
        required: list[str] = list(spec.key) if isinstance(spec.key, tuple) and spec.key_else is None else []
        for kind, fields in spec.fields.items():
            layout = LAYOUTS[kind]
            for name, f in fields.items():
                if f.required and not layout.field(name).required and f.column is not None:
                    required += [c for c in (f.column, f.also) if c is not None]
        self.required_columns = [self.canonical(c) for c in dict.fromkeys(required)]
        self.used: dict[str, set[str]] = {
            kind: {self.canonical(c) for f in fields.values() for c in (f.column, f.also) if c is not None}
            for kind, fields in spec.fields.items()}
        self.constants: dict[FieldSpec, pa.Scalar] = {}
        for fields in spec.fields.values():
            for f in fields.values():
                if f.value is not None:
                    text = f.value if f.type == "text" else f.value.strip()
                    out, _bad = convert(f, pa.array([text], pa.string()), self.ctx)
                    self.constants[f] = out[0]
        self.key_fields: dict[str, FieldSpec] = {}
        if isinstance(spec.key, tuple):
            for col in spec.key:
                for fields in spec.fields.values():
                    for f in fields.values():
                        if (f.column is not None and self.canonical(f.column) == self.canonical(col) and f.also is None
                                and not f.map and f.type == "int" and f.default is None):
                            self.key_fields[self.canonical(col)] = f
        self.hook: Callable | None = None
        if spec.hook:
            module, _, function = spec.hook.partition(":")
            try:
                self.hook = getattr(importlib.import_module(module), function)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"formats.{spec.name}.hook", f"cannot load {spec.hook!r}: {exc}") from None

    def canonical(self, name: str) -> str:
        return self.known.get(spec_key(self.spec, name), name)

    def parser(self, carrier: str) -> "FileParser":
        return FileParser(self.spec, carrier, compiled=self)


def compile_format(spec: FormatSpec) -> Format:
    return Format(spec)


# The column types a names+types file (Cisco CUCM) writes in its second row: SQL type names, with an optional
# size, case-insensitive (INTEGER, VARCHAR(50), UNIQUEIDENTIFIER, DATETIME, DECIMAL(10, 2), ...).
_TYPE_NAMES = ("bigint", "binary", "bit", "blob", "bool", "boolean", "byte", "char", "character", "clob", "date",
               "datetime", "datetime2", "datetimeoffset", "dec", "decimal", "double", "double precision", "float",
               "guid", "int", "integer", "long", "money", "nchar", "number", "numeric", "nvarchar", "real",
               "serial", "smalldatetime", "smallint", "string", "text", "time", "timestamp", "tinyint",
               "uniqueidentifier", "uuid", "varbinary", "varchar", "varchar2")
_TYPE_NAME = re.compile(r"\s*(?:" + "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in _TYPE_NAMES)
                        + r")(?:\s+unsigned)?\s*(?:\(\s*(?:\d+|max)\s*(?:,\s*\d+\s*)?\))?\s*", re.IGNORECASE)


def _check_types_row(source: Source, line: int, fields: list[str]) -> None:
    """(header names+types) The second row must name a type for every column: a data row there (a file
    without its types row) would be read from its second row on, silently losing a record."""
    bad = next((value for value in fields if not _TYPE_NAME.fullmatch(value)), None)
    if bad is not None:
        raise ParseError(source.name, line, None,
                         'expected the types row of header = "names+types" (column types such as INTEGER, '
                         'VARCHAR(50), UNIQUEIDENTIFIER), found a value that is not a type', bad)


class FileParser:
    """Reads files of one format for one carrier (see docs/formats.md). One instance may read many files, one
    at a time; ``rows_dropped`` and ``extra_columns`` are the last file's."""

    def __init__(self, spec: FormatSpec, carrier: str, compiled: Format | None = None):
        self.spec = spec
        self.carrier = carrier
        self.compiled = compiled or Format(spec)
        self.kinds: frozenset[str] = self.compiled.kinds
        self.rows_dropped = 0
        self.extra_columns: dict[str, list[str]] = {}

    def duplicate_rows(self, layout: Layout) -> str:
        """once | distinct: the format's setting for this kind of record, else the layout's default."""
        return self.spec.duplicates(layout.kind)

    # -- what the file is -------------------------------------------------------------------------

    def file_format(self, source: Source) -> str:
        spec = self.spec
        if spec.kind == "auto" or (spec.kind == "delimited" and spec.delimiter == "auto"):
            fmt = resolve_format(source, self._fits, spec.encoding)
            if spec.kind == "delimited" and fmt not in DELIMITERS:
                fmt = "csv"
            return fmt
        with source.open() as fh:
            head = fh.read(HEAD_BYTES)
        what = binary_kind(head, spec.encoding)
        if what is not None:
            raise NotText(source.name, what)
        if spec.kind in ("json", "fixed"):
            return spec.kind
        if spec.kind == "radius-detail":
            return "detail"
        return _NAMES_BY_DELIMITER.get(spec.delimiter, "delimited")

    def _fits(self, rows: list[list[str]]) -> bool:
        """Whether a file's first row reads as this format under a delimiter: a header naming columns it knows
        (with more than one column), or a row as wide as ``columns``. Only the first row decides, so that a bad
        row further down is reported at its own line rather than as a file of one column."""
        if not rows:
            return False
        widths = {len(self.spec.columns)}
        if self.spec.min_columns:
            widths = set(range(self.spec.min_columns, len(self.spec.columns) + 1))
        first = rows[0]
        if self.spec.header in ("first", "names+types"):
            return len(first) > 1
        if self._is_header(first):
            return len(first) > 1
        return len(first) > 1 and len(first) in widths

    def _is_header(self, fields: list[str]) -> bool:
        """(header auto) The first row names a column of ``columns`` and does not start with a whole number."""
        if not fields:
            return False
        first = fields[0].strip().strip("\ufeff")
        return (any(spec_key(self.spec, f.strip().strip("\ufeff")) in self.compiled.columns_known for f in fields)
                and re.fullmatch(r"[+-]?\d+", first) is None)

    def _dialect(self, delimiter: str) -> Dialect:
        return Dialect(delimiter, self.spec.quote, self.spec.encoding, self.spec.encoding_errors)

    def _plan(self, source: Source) -> _Plan:
        spec = self.spec
        fmt = self.file_format(source)
        if fmt in ("json", "detail"):
            return _Plan(fmt, self._dialect(","), [], {})
        if fmt == "fixed":
            names = list(spec.columns)
            return _Plan(fmt, self._dialect(","), names, {n: n for n in names}, spec.header_skip)
        delimiter = DELIMITERS.get(fmt, spec.delimiter if len(spec.delimiter) == 1 else ",")
        dialect = self._dialect(delimiter)
        skip = spec.header_skip if spec.header == "skip" else 0
        header_rows = 2 if spec.header == "names+types" else 1
        rows = head_rows(source, dialect, header_rows + 1, skip)  # the header, and whether any row follows it
        if not rows:
            return _Plan(fmt, dialect, list(spec.columns), {}, skip, empty=True)
        line, first = rows[0]
        header = spec.header == "first" or spec.header == "names+types" or (
            spec.header == "auto" and self._is_header(first))
        if header:
            if spec.header == "names+types" and len(rows) >= 2:
                _check_types_row(source, *rows[1])
            names, display = self._header_names(source, first, line)
            header_line = rows[header_rows - 1][0] if len(rows) >= header_rows else line
            return _Plan(fmt, dialect, names, display, header_line, empty=len(rows) <= header_rows)
        names = list(spec.columns)
        if spec.min_columns and spec.min_columns <= len(first) < len(names):
            names = names[: len(first)]
        elif len(first) != len(names):
            expected = len(names) if not spec.min_columns else f"{spec.min_columns} to {len(names)}"
            raise ParseError(source.name, line, None, f"expected {expected} fields, found {len(first)}")
        return _Plan(fmt, dialect, names, {n: n for n in names}, skip)

    def _header_names(self, source: Source, header: list[str], line: int) -> tuple[list[str], dict[str, str]]:
        names: list[str] = []
        display: dict[str, str] = {}
        known = self.compiled.columns_known if self.spec.columns else None
        for index, raw in enumerate(header):
            shown = raw.strip().strip("\ufeff")
            canonical = self.compiled.canonical(shown)
            if known is not None and spec_key(self.spec, canonical) not in known and canonical == shown:
                # A column the format does not know is kept (in extra) under its own name: a carrier adding a
                # column must not stop billing.
                canonical = shown
            if canonical in display:
                if spec_key(self.spec, canonical) in self.compiled.known:  # which one would be the charge?
                    raise ParseError(source.name, line, shown, "column appears twice in the header")
                canonical = f"?{index}:{shown}"  # an unknown name twice (two empty names): both kept
            names.append(canonical)
            display[canonical] = shown if canonical.startswith("?") or known is None or \
                spec_key(self.spec, canonical) not in known else canonical
        for required in self.compiled.required_columns:
            if required not in display:
                raise ParseError(source.name, line, required, MISSING_COLUMN)
        return names, display

    # -- reading ----------------------------------------------------------------------------------

    def batches(self, source: Source, *, extra_by_position: bool = False) -> Iterator[tuple[Layout, pa.RecordBatch]]:
        """The file's records, batch by batch, each with its layout. ``extra`` is a JSON object's text; with
        ``extra_by_position`` (the loader's choice: ``files.extra_columns``), a batch of a layout that allows it
        (``Layout.extra_by_position``) may carry instead a JSON array of the values alone, in the order of the
        names ``extra_columns[kind]`` lists once the file is read: a batch whose every value is given, under the
        names the file's first such batch had. Any other batch keeps objects, so both may be in one file."""
        self.rows_dropped = 0
        state = _FileState(extra_by_position)
        self.extra_columns = state.extra_columns  # filled as the file is read
        plan = self._plan(source)
        if plan.empty:
            return
        for block in self._blocks(source, plan):
            yield from self._convert(source, plan, block, state)
        self.rows_dropped = state.dropped

    def _blocks(self, source: Source, plan: _Plan) -> Iterator[TextBlock]:
        if plan.fmt == "json":
            return read_json_array(source, plan.dialect)
        if plan.fmt == "detail":
            return read_detail(source, plan.dialect, self.spec.avpairs)
        if plan.fmt == "fixed":
            return self._fixed_blocks(source, plan)
        if self.spec.min_columns and plan.names == list(self.spec.columns)[: len(plan.names)]:
            return self._delimited_of_any_width(source, plan)
        return read_delimited(source, plan.dialect, plan.names, plan.header_line)

    def _delimited_of_any_width(self, source: Source, plan: _Plan) -> Iterator[TextBlock]:
        """(min_columns) Read fast at the first row's width; when a row of another width comes, go on reading
        the rest row by row, each at its own width (from min_columns to every column)."""
        done = 0
        try:
            for block in read_delimited(source, plan.dialect, plan.names, plan.header_line):
                yield block
                done = block.first_ordinal + block.num_rows
        except ParseError as exc:
            if not exc.reason.startswith("expected "):
                raise
            yield from read_ragged(source, plan.dialect, list(self.spec.columns), self.spec.min_columns or 1,
                                   plan.header_line, done)

    def _fixed_blocks(self, source: Source, plan: _Plan) -> Iterator[TextBlock]:
        columns = self.spec.fixed_columns
        reach = max(c.start for c in columns)
        for block in read_lines(source, plan.dialect, plan.header_line):
            line = block.columns["line"]
            length = pc.utf8_length(line)
            short = pc.less(length, reach)
            if pc.any(short).as_py():
                index = pc.index(short, True).as_py()
                size = length[index].as_py()
                column = next(c for c in columns if c.start > size)
                number = self.record_lines(source, [block.first_ordinal + index + 1]).get(block.first_ordinal + index + 1)
                raise ParseError(source.name, number, column.name,
                                 f"line too short: {size} characters, the column starts at character {column.start}")
            cut = {c.name: pc.utf8_trim_whitespace(pc.utf8_slice_codeunits(line, c.start - 1, c.start - 1 + c.width))
                   for c in columns}
            yield TextBlock(cut, block.first_ordinal, block.num_rows)

    def record_lines(self, source: Source, positions: Collection[int]) -> dict[int, int]:
        plan = self._plan(source)
        if plan.empty:
            return {}
        if plan.fmt == "json":
            rows = json_element_lines(source, plan.dialect)
        elif plan.fmt == "detail":
            rows = detail_record_lines(source, plan.dialect)
        elif plan.fmt == "fixed":
            rows = (number for number, _text in scan_lines(source, plan.dialect, plan.header_line))
        else:
            rows = delimited_row_lines(source, plan.dialect, plan.header_line)
        return lines_at(rows, positions)

    # -- converting -------------------------------------------------------------------------------

    def _columns(self, source: Source, plan: _Plan, block: TextBlock):
        """(columns by canonical name, how each is shown, wrong JSON types, explicit JSON nulls) of a block."""
        if not plan.keyed:
            return block.columns, plan.display, {}, {}
        columns: dict[str, pa.Array] = {}
        display: dict[str, str] = {}
        wrong: dict[str, tuple[int, str]] = {}
        nulls: dict[str, list[int]] = {}
        for key, values in block.columns.items():
            name = self.compiled.canonical(key)
            w = block.wrong_types.get(key)
            if name in columns:  # the same column spelt two ways ('Charge', 'charge'): one, unless both are given
                both = pc.and_(pc.is_valid(columns[name]), pc.is_valid(values))
                if pc.any(both).as_py():
                    raise ParseError(source.name, block.lines[pc.index(both, True).as_py()], name,
                                     f"given twice in one object (as {display[name]!r} and {key!r})")
                values = pc.coalesce(columns[name], values)
                w = min(filter(None, (wrong.get(name), w)), default=None)
                nulls[name] = nulls.get(name, []) + block.json_nulls.get(key, [])
            else:
                display[name] = name if spec_key(self.spec, name) in self.compiled.known else key
                if key in block.json_nulls:
                    nulls[name] = block.json_nulls[key]
            columns[name] = values
            if w is not None:
                wrong[name] = w
        return columns, display, wrong, nulls

    def _convert(self, source: Source, plan: _Plan, block: TextBlock, state: "_FileState"
                 ) -> Iterator[tuple[Layout, pa.RecordBatch]]:
        n = block.num_rows
        if n == 0:
            return
        spec, compiled = self.spec, self.compiled
        columns, display, wrong, nulls = self._columns(source, plan, block)
        if compiled.hook is not None:
            table = compiled.hook(pa.table(columns))
            columns = {name: pc.cast(table.column(name).combine_chunks(), pa.string()) for name in table.column_names}
            n = len(next(iter(columns.values()))) if columns else n
        checks: list[_Check] = []
        kinds = self._row_kinds(columns, n)
        masks: dict[str, pa.Array | None] = {}
        for kind in sorted(self.kinds):
            if kinds is None:
                masks[kind] = None
            else:
                mask = pc.fill_null(pc.equal(kinds, kind), False)
                if pc.any(mask).as_py():
                    masks[kind] = mask
        converted: dict[FieldSpec, tuple[pa.Array, pa.Array]] = {}
        outputs: dict[str, dict[str, pa.Array]] = {}
        for kind, mask in masks.items():
            out: dict[str, pa.Array] = {}
            for name, f in spec.fields[kind].items():
                if f.value is not None:
                    out[name] = pa.repeat(compiled.constants[f], n)
                    continue
                if f not in converted:
                    converted[f] = self._field(f, columns, n)
                values, text, bad, empty, absent, read, notes = converted[f]
                out[name] = values
                column = display.get(compiled.canonical(f.column), f.column)
                original = columns.get(compiled.canonical(f.column))
                # What the field reads: its column, or (with `also`) both, shown as read (joined).
                field = column
                if f.also is not None:
                    field = f"{column} + {display.get(compiled.canonical(f.also), f.also)}"
                for col in (f.column, f.also):
                    wrong_at = wrong.get(compiled.canonical(col)) if col is not None else None
                    if wrong_at is not None:
                        checks.append(_Check(display.get(compiled.canonical(col), col),
                                             columns.get(compiled.canonical(col)), _at(n, wrong_at[0], mask),
                                             f"{wrong_at[1]} where a number or text is expected"))
                for note, why in notes:  # a more precise reason for some bad rows: listed first
                    checks.append(_Check(field, read, _masked(note, mask), why))
                checks.append(_Check(field, read, _masked(bad, mask), reason(f)))
                if empty is not None and f.required:
                    if original is None and not plan.keyed:  # only a header can leave a column out
                        checks.append(_Check(f.column, None, _masked(pa.repeat(True, n), mask), MISSING_COLUMN,
                                             header=True))
                    elif absent is not None and plan.keyed:
                        checks.append(_Check(column, None, _masked(pc.and_(absent, empty), mask), MISSING_KEY))
                    checks.append(_Check(field, read, _masked(empty, mask), EMPTY))
            outputs[kind] = out
        any_rows = None
        if kinds is not None:
            any_rows = pc.fill_null(pc.is_in(kinds, value_set=pa.array(sorted(self.kinds))), False)
        keys, incomplete = self._keys(columns, display, converted, n, any_rows, checks, plan)

        invalid = _first_invalid(checks)
        if invalid is not None:
            check, index = invalid
            if check.header:
                raise ParseError(source.name, plan.header_line or None, check.field, check.reason)
            line = block.lines[index] if block.lines is not None else None
            at = _cell_line(block, check.field, index, compiled)
            if at is not None:  # the value's own line (a detail file's attribute line)
                line = at
            if line is None:
                position = block.first_ordinal + index + 1
                line = self.record_lines(source, [position]).get(position)
            value = check.values[index].as_py() if check.values is not None else None
            raise ParseError(source.name, line, check.field, check.reason, value)

        positions = pc.add(_counting(n), block.first_ordinal + 1)
        # The file's own columns (without those a detail file derives from Cisco-AVPair): what a row's hash is of.
        own = block.own if block.own is not None and compiled.hook is None else columns
        if spec.key == "row":
            keys, keep = state.row_keys(self._row_texts(plan, own, n), any_rows, masks, spec)
        elif incomplete is not None and pc.any(incomplete).as_py():
            # key_else = "row": the records missing a key column are keyed by their row's hash instead.
            subset = pc.indices_nonzero(incomplete)
            texts = self._row_texts(plan, {name: pc.take(values, subset) for name, values in own.items()},
                                    len(subset))
            sub_masks = {kind: (None if mask is None else pc.take(mask, subset)) for kind, mask in masks.items()}
            sub_any = None if any_rows is None else pc.take(any_rows, subset)
            hashed, sub_keep = state.row_keys(texts, sub_any, sub_masks, spec)
            keys = pc.replace_with_mask(keys, incomplete, hashed)
            keep = None
            if sub_keep is not None:
                keep = pc.replace_with_mask(pa.repeat(pa.scalar(True), n), incomplete, sub_keep)
        else:
            keep = None
        extra_cache: dict[str, pa.Array] = {}
        for kind, mask in masks.items():
            layout = LAYOUTS[kind]
            select = mask
            if keep is not None:
                select = keep if select is None else pc.and_(select, keep)
            extra = self._extra(columns, display, nulls, kind, n, extra_cache, state)
            out = outputs[kind]
            arrays = [keys, positions]
            for fld in layout.fields:
                arrays.append(out.get(fld.name, pa.nulls(n, _arrow_type(fld.kind))))
            arrays.append(extra)
            batch = pa.RecordBatch.from_arrays(arrays, schema=_schema(layout))
            if select is not None:
                batch = batch.filter(select)
            if batch.num_rows:
                yield layout, batch

    def _row_kinds(self, columns: dict[str, pa.Array], n: int) -> pa.Array | None:
        """The kind of each row (call, charge, skip) by the rules; None when every row is ``record``."""
        if not self.spec.rules:
            return None
        kinds = pa.nulls(n, pa.string())
        for rule in self.spec.rules:
            match = None
            for cond in rule.when:
                values = columns.get(self.compiled.canonical(cond.column))
                if values is None:  # a column the file does not have: the condition does not hold
                    holds = pa.repeat(pa.scalar(False), n)
                else:
                    values = pc.utf8_trim_whitespace(pc.fill_null(values, ""))
                    if cond.ignore_case:
                        values = pc.utf8_lower(values)
                    holds = pc.is_in(values, value_set=pa.array(cond.values, pa.string()))
                match = holds if match is None else pc.and_(match, holds)
            kinds = pc.if_else(pc.and_(pc.is_null(kinds), match), pa.scalar(rule.record), kinds)
        return pc.fill_null(kinds, self.spec.record)

    def _field(self, f: FieldSpec, columns: dict[str, pa.Array], n: int):
        """(values, text converted, bad mask, empty mask, absent mask or None, the text to show in an error,
        [(mask, reason)] of bad rows with a more precise reason) of a field taken from a column (or two)."""
        read = given = columns.get(self.compiled.canonical(f.column))
        if given is None:
            given = pa.nulls(n, pa.string())
        absent = pc.is_null(given) if given.null_count else None
        text = pc.fill_null(given, "") if absent is not None else given
        if f.also is not None:
            second = columns.get(self.compiled.canonical(f.also))
            second = pc.fill_null(second, "") if second is not None else pa.repeat(pa.scalar("", pa.string()), n)
            text = pc.binary_join_element_wise(text, second, " ")
        trimmed = None
        if f.map or f.also is not None or f.default is not None:
            text = trimmed = pc.utf8_trim_whitespace(text)
        if f.also is not None:
            read = text  # both columns, joined, as read (before map and default)
        if f.map:
            keys = pa.array([k for k, _ in f.map], pa.string())
            mapped = pc.take(pa.array([v for _, v in f.map], pa.string()), pc.index_in(trimmed, value_set=keys))
            text = pc.coalesce(mapped, text)
            trimmed = None
        empty = None
        if f.default is not None:
            empty = pc.equal(trimmed if trimmed is not None else pc.utf8_trim_whitespace(text), "")
            if pc.any(empty).as_py():
                text = pc.if_else(empty, pa.scalar(f.default if f.type == "text" else f.default.strip()), text)
            trimmed = None
        notes: list[tuple[pa.Array, str]] = []
        values, bad = convert(f, text, self.compiled.ctx, trimmed=trimmed is not None, explain=notes)
        if absent is not None and f.kind == "text" and f.default is None:  # a missing column or JSON key: null
            values = pc.if_else(absent, pa.scalar(None, pa.string()), values)
        if f.required:
            if f.type == "text" and f.kind == "text":
                empty = pc.equal(trimmed if trimmed is not None else pc.utf8_trim_whitespace(text), "")
            else:  # converted: empty where null and not bad
                empty = pc.and_(pc.is_null(values), pc.invert(bad)) if values.null_count else _no_rows(n)
        return values, text, bad, empty, absent, read, notes

    def _keys(self, columns, display, converted, n, any_rows, checks, plan) -> tuple[pa.Array, pa.Array | None]:
        """(the key columns' keys, the rows missing a key column when the format falls back to the row's hash
        for them (``key_else = "row"``), else None: an empty key column fails the file)."""
        spec = self.spec
        if spec.key == "row":
            return pa.nulls(n, pa.string()), None
        fallback = spec.key_else == "row"
        incomplete = None
        parts = []
        for col in spec.key:
            name = self.compiled.canonical(col)
            field = self.compiled.key_fields.get(name)
            if field is not None:
                if field not in converted:
                    converted[field] = self._field(field, columns, n)
                values = converted[field][0]
                if values.type != pa.string():  # an int field's number: its canonical digits
                    values = pc.cast(values, pa.string())
            else:
                given = columns.get(name)
                if given is None and not plan.keyed and not fallback:
                    checks.append(_Check(col, None, _masked(pa.repeat(True, n), any_rows), MISSING_COLUMN,
                                         header=True))
                    given = pa.nulls(n, pa.string())
                values = pc.utf8_trim_whitespace(given) if given is not None else pa.nulls(n, pa.string())
            empty = pc.fill_null(pc.equal(values, ""), True)
            if fallback:
                incomplete = empty if incomplete is None else pc.or_(incomplete, empty)
            else:
                checks.append(_Check(display.get(name, col), columns.get(name), _masked(empty, any_rows), EMPTY))
            parts.append(values)
        if len(parts) == 1:
            return pc.fill_null(parts[0], ""), incomplete
        return pc.binary_join_element_wise(*[pc.fill_null(p, "") for p in parts], "\x1f"), incomplete

    def _row_texts(self, plan: _Plan, columns: dict[str, pa.Array], n: int) -> list[str]:
        """Each row as one text, for key = "row": its columns joined as given (JSON: its keys, sorted, with
        their values), so that the same row in another file is the same text."""
        # Each present value with a leading separator, absent ones empty, then the first separator dropped.
        # (Arrow's binary_join_element_wise with null_handling="skip" drops rows where every value is null.)
        if plan.keyed:
            parts = [pc.fill_null(pc.binary_join_element_wise("\x1f" + name, columns[name], "\x1e"), "")
                     for name in sorted(columns)]
        else:  # in file order; a column a short row does not reach (min_columns) is left out, as if not there
            parts = [pc.fill_null(pc.binary_join_element_wise("\x1f", values, ""), "") for values in columns.values()]
        if not parts:
            return [""] * n
        return [text[1:] for text in pc.binary_join_element_wise(*parts, "").to_pylist()]

    def _extra(self, columns, display, nulls, kind: str, n: int, cache: dict[str, pa.Array],
               state: "_FileState") -> pa.Array:
        """Every column no field of this kind uses, as a JSON object text (keys in column order), or as an array
        of the values alone when the file's state allows it (:meth:`batches`), built with Arrow; null when there
        is no such column."""
        used = self.compiled.used.get(kind, set())
        names = [name for name in columns if name not in used]
        if not names:
            return pa.nulls(n, pa.string())
        key = ("extra", kind)
        if key in cache:
            return cache[key]
        if not nulls and not any(columns[name].null_count for name in names):
            # Every value given (delimited, fixed width): the object (or the array) in one join of constants and
            # values.
            shown = [display.get(name, name) for name in names]
            by_position = state.by_position(kind, shown)
            parts: list = []
            glue = '["' if by_position else "{"
            for name, label in zip(names, shown):
                values = columns[name]
                controls, quotes = _has_special(values)
                if controls:
                    break
                if quotes:
                    values = _escaped(values)
                parts += [glue if by_position else glue + json.dumps(label, ensure_ascii=False) + ':"', values]
                glue = '","' if by_position else '",'
            else:
                parts.append('"]' if by_position else '"}')
                if by_position:
                    state.extra_columns.setdefault(kind, shown)
                cache[key] = pc.binary_join_element_wise(*parts, "")
                return cache[key]
        pieces = []
        for name in names:
            piece = cache.get(name)
            if piece is None:
                piece = cache[name] = pc.fill_null(
                    _json_member(display.get(name, name), columns[name], nulls.get(name), lead=","), "")
            pieces.append(piece)
        # Each member with a leading comma (absent ones empty), joined, the first comma dropped (see _row_texts).
        body = pc.binary_join_element_wise(*pieces, "")
        wrapped = pc.binary_join_element_wise("{", pc.utf8_slice_codeunits(body, 1), "}", "")
        # A row that has none of these columns (absent JSON keys, a short row) has no extra at all.
        cache[key] = pc.if_else(pc.equal(body, ""), pa.scalar(None, pa.string()), wrapped)
        return cache[key]


_SPECIAL = bytes(range(0x20)) + b'"\\'  # what JSON text must escape
_ORDINARY = bytes(b for b in range(256) if b not in _SPECIAL)


def _has_special(values: pa.Array) -> tuple[bool, bool]:
    """(any control character, any quote or backslash) in a text column: one C-speed pass over its bytes
    (a sliced array's neighbours may give a false alarm, which only costs the careful path)."""
    data = values.buffers()[2]
    if data is None:
        return False, False
    found = data.to_pybytes().translate(None, _ORDINARY)
    if not found:
        return False, False
    return len(found.translate(None, b'"\\')) > 0, len(found.translate(None, bytes(range(0x20)))) > 0


def _escaped(values: pa.Array) -> pa.Array:
    return pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')


def _json_member(name: str, values: pa.Array, nulls: list[int] | None, lead: str = "") -> pa.Array:
    """'"name":"value"' for each row, after ``lead`` (null where the value is), the value escaped for JSON."""
    if nulls:
        mask = pc.is_in(pa.array(range(len(values))), value_set=pa.array(nulls))
        values = pc.if_else(mask, pa.scalar(None, pa.string()), values)
    prefix = lead + json.dumps(name, ensure_ascii=False) + ":"
    controls, quotes = _has_special(values)
    if controls:
        quoted = pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values.to_pylist()],
                          pa.string())
        return pc.binary_join_element_wise(prefix, quoted, "")
    if quotes:
        values = _escaped(values)
    return pc.binary_join_element_wise(prefix + '"', values, '"', "")


_COUNTING: list[pa.Array] = [pa.array([], pa.int64())]
_SCHEMAS: dict[str, pa.Schema] = {}


def _counting(n: int) -> pa.Array:
    """0, 1, ..., n - 1 (int64), sliced from one array kept for the purpose."""
    if len(_COUNTING[0]) < n:
        _COUNTING[0] = pa.array(range(max(n, 2 * len(_COUNTING[0]))), pa.int64())
    return _COUNTING[0].slice(0, n)


def _schema(layout: Layout) -> pa.Schema:
    if layout.kind not in _SCHEMAS:
        _SCHEMAS[layout.kind] = layout.arrow_schema()
    return _SCHEMAS[layout.kind]


def _no_rows(n: int) -> pa.Array:
    return pa.repeat(pa.scalar(False), n)


def _arrow_type(kind: str) -> pa.DataType:
    return pa.int64() if kind in ("int", "money") else pa.string()


def _at(n: int, index: int, mask: pa.Array | None) -> pa.Array:
    hit = pa.array([False] * index + [True] + [False] * (n - index - 1))
    return _masked(hit, mask)


def _cell_line(block: TextBlock, field: str, index: int, compiled: Format) -> int | None:
    """The physical line of one value of a column, when the block knows each value's line; else None."""
    if not block.cell_lines:
        return None
    lines = block.cell_lines.get(field)
    if lines is None:
        wanted = compiled.canonical(field)
        lines = next((v for k, v in block.cell_lines.items() if compiled.canonical(k) == wanted), None)
    return lines[index].as_py() if lines is not None else None


def _masked(bad: pa.Array, mask: pa.Array | None) -> pa.Array:
    return bad if mask is None else pc.and_(bad, mask)


@dataclass
class _Check:
    field: str
    values: pa.Array | None
    bad: pa.Array
    reason: str
    header: bool = False


def _first_invalid(checks: Sequence[_Check]) -> tuple[_Check, int] | None:
    """The check and index of the earliest bad row (for one row, the first check listed)."""
    best: tuple[_Check, int] | None = None
    for check in checks:
        if not pc.any(check.bad).as_py():
            continue
        index = pc.index(check.bad, True).as_py()
        if best is None or index < best[1]:
            best = (check, index)
    return best


class _FileState:
    """What carries across a file's blocks: occurrences of identical rows (key = "row"), and the names of the
    values of ``extra`` written as arrays, per kind (``FileParser.batches``)."""

    def __init__(self, extra_by_position: bool = False) -> None:
        self.seen: dict[bytes, int] = {}
        self.dropped = 0
        self.extra_by_position = extra_by_position
        self.extra_columns: dict[str, list[str]] = {}

    def by_position(self, kind: str, names: list[str]) -> bool:
        """Whether a batch of ``kind`` whose ``extra`` has ``names`` may write it as an array: the loader asked,
        the layout allows it, and the file's arrays so far (if any) had the same names."""
        if not self.extra_by_position or not LAYOUTS[kind].extra_by_position:
            return False
        return self.extra_columns.get(kind, names) == names

    def row_keys(self, texts: list[str], any_rows, masks, spec: FormatSpec) -> tuple[pa.Array, pa.Array | None]:
        import xxhash

        # Which kind each row is, to apply that kind's duplicate_rows.
        once_kinds = {kind for kind in masks if spec.duplicates(kind) == "once"}
        if not once_kinds:
            row_once = [False] * len(texts)
        elif len(masks) == 1 and next(iter(masks.values())) is None:
            row_once = [True] * len(texts)
        else:
            once = None
            for kind in once_kinds:
                mask = masks[kind]
                once = mask if once is None else pc.or_(once, mask)
            row_once = once.to_pylist() if once is not None else [False] * len(texts)
        included = any_rows.to_pylist() if any_rows is not None else None
        keys: list[str | None] = []
        keep: list[bool] = []
        dropped = 0
        for i, text in enumerate(texts):
            if included is not None and not included[i]:
                keys.append(None)
                keep.append(False)
                continue
            digest = xxhash.xxh3_128_digest(text.encode("utf-8", "surrogatepass"))
            occurrence = self.seen.get(digest, 0) + 1
            self.seen[digest] = occurrence
            keys.append(f"h:{digest.hex()}:{occurrence}")
            if occurrence > 1 and row_once[i]:
                keep.append(False)
                dropped += 1
            else:
                keep.append(True)
        self.dropped += dropped
        return pa.array(keys, pa.string()), (pa.array(keep) if dropped or included is not None else None)


__all__ = ["FileParser", "Format", "compile_format"]
