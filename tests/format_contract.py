"""The format contract: one abstract suite every built-in format runs (fsspec ``tests/abstract`` style).

:class:`FormatContract` holds the tests. ``tests/test_format_contract.py`` subclasses it once per built-in format,
setting ``format_name`` and ``samples``: the format's sample files (``tests/samples/formats/<format>/``) with the
records each must give. Every test runs on every sample (the module's ``pytest_generate_tests``, re-exported by
the test module, parametrises ``sample``); the hostile cases are derived from each sample programmatically
(:func:`hostile_cases`), from the sample's bytes and the format's own table (its header mode, columns, rules,
fields), so a new format gets them all by adding its class and its samples.

What each format must do, on its samples and on files made hostile from them:

- its samples parse to the expected records (real field values, money as integer millionths, UTC times), every
  batch's schema equal to its layout's ``arrow_schema()``, positions increasing, a record key on every record;
- a truncated row (the file cut in the middle of its last row), a row with too many or too few columns, a bad
  number, a bad date, undecodable bytes: a ParseError naming the file, the line and (where one applies) the
  field, and nothing loaded; except undecodable bytes in a format with ``encoding_errors = "replace"``, where
  the row loads with U+FFFD and no record is lost;
- an empty file: no records (a JSON file: an error, as JSON has no empty document); a header only: no records.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pytest

from ingest.errors import ParseError
from ingest.layouts import LAYOUTS

SAMPLES = Path(__file__).resolve().parent / "samples" / "formats"
BUILTIN = Path(__file__).resolve().parent.parent / "ingest" / "formats" / "builtin"
CARRIER = "contract"
DELIMITERS = {"csv": ",", "txt": "\t", "pipe": "|"}
BOM = b"\xef\xbb\xbf"
MARK = "QZXMARKXZQ"  # stands for undecodable bytes until the row is written
BAD_NUMBER = "12x"
BAD_DATE = "2026-02-30 25:61:00"
HOSTILE = ("truncated_row", "too_many_columns", "too_few_columns", "bad_number", "bad_date", "undecodable_bytes",
           "empty_file", "header_only")


@dataclass(frozen=True)
class Sample:
    """A sample file of a format, the file format its source claims (None: sniffed), and what it must give:
    ``records`` in order, each a dict with ``layout`` (call or charge) and the fields to check (a field not
    named is not checked; ``extra`` is a dict checked as a subset of the record's extra JSON)."""

    file: str
    file_format: str | None = None
    records: tuple[dict[str, Any], ...] = ()
    rows_dropped: int = 0

    def __str__(self) -> str:
        return self.file


# ---------------------------------------------------------------------------------------------------
# The engine, as the contract uses it.


def format_table(name: str) -> dict:
    from ingest.formats.spec import builtin_format_tables

    return builtin_format_tables()[name]


def format_spec(name: str, table: dict | None = None):
    from ingest.formats.spec import parse_format

    return parse_format(name, format_table(name) if table is None else table)


def file_parser(spec, carrier: str = CARRIER):
    from ingest.formats.engine import FileParser

    return FileParser(spec, carrier)


def source(name: str, data: bytes, file_format: str | None):
    from ingest.formats.read import Source

    return Source(name, file_format, lambda: io.BytesIO(data))


@dataclass
class Parsed:
    rows: list[dict[str, Any]]  # every record, in file order (by position, whatever its kind), "layout" added
    rows_dropped: int
    parser: Any


def parse(spec, name: str, data: bytes, file_format: str | None, extra_by_position: bool = False) -> Parsed:
    """Every record of a file through FileParser, each batch's schema checked against its layout;
    ``extra_by_position`` as the loader asks (names in ``parser.extra_columns``)."""
    parser = file_parser(spec)
    rows: list[dict[str, Any]] = []
    for layout, batch in parser.batches(source(name, data, file_format), extra_by_position=extra_by_position):
        assert layout in LAYOUTS.values(), layout
        assert batch.schema.equals(layout.arrow_schema()), (layout.kind, batch.schema)
        for row in batch.to_pylist():
            rows.append({"layout": layout.kind, **row})
    # Calls and charges of one block come in separate batches: the file's order is the positions'.
    rows.sort(key=lambda row: row["position"])
    return Parsed(rows, parser.rows_dropped, parser)


def parse_error(spec, name: str, data: bytes, file_format: str | None) -> ParseError:
    """The ParseError a file gives; it names the file (and its line and field, in the message as in the error)."""
    parser = file_parser(spec)
    with pytest.raises(ParseError) as info:
        for _layout, _batch in parser.batches(source(name, data, file_format)):
            pass
    err = info.value
    assert err.file == name and name in str(err), str(err)
    if err.line is not None:
        assert f"line {err.line}" in str(err)
    if err.field is not None:
        assert f"field {err.field}" in str(err)
    return err


# ---------------------------------------------------------------------------------------------------
# A sample's shape, read without the engine, from its bytes and the format's table.


def _loose(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name.strip("\ufeff")).lower()


@dataclass
class Row:
    start: int  # physical line where the row starts (1-based)
    end: int  # physical line where it ends
    values: dict[str, str]  # column name (as the file names it) -> text
    width: int  # fields in the row
    kind: str  # call | charge | skip, by the format's rules


@dataclass
class Shape:
    """What the contract needs to know of a sample: JSON or the delimiter, its header lines and names, its rows."""

    table: dict
    data: bytes
    is_json: bool
    delimiter: str | None
    header_lines: int  # physical lines before the first data row that are a header (0: none)
    names: list[str]  # column names in order (the header's, or the format's columns)
    rows: list[Row] = field(default_factory=list)
    json_objects: list[dict[str, str]] = field(default_factory=list)
    is_detail: bool = False  # a FreeRADIUS detail file: records of attribute lines (kind "radius-detail")

    # -- the format's table ---------------------------------------------------------------------

    @property
    def loose(self) -> bool:
        return self.table.get("column_names", "exact") == "loose"

    def same(self, a: str, b: str) -> bool:
        return _loose(a) == _loose(b) if self.loose else a == b

    def fields(self, kind: str) -> dict[str, dict]:
        """The format's fields for one kind (``fields`` then ``<kind>_fields``), those the layout has."""
        layout = LAYOUTS[kind]
        merged = {name: f for name, f in self.table.get("fields", {}).items() if name in layout.names}
        merged.update(self.table.get(f"{kind}_fields", {}))
        return merged

    def rule_columns(self) -> set[str]:
        out = set()
        for rule in self.table.get("records", []):
            when = rule["when"] if isinstance(rule["when"], list) else [rule["when"]]
            out.update(_loose(c["column"]) if self.loose else c["column"] for c in when)
        return out

    def key_columns(self) -> set[str]:
        key = self.table.get("key", "row")
        if key == "row" or self.table.get("key_else") == "row":  # a record missing a key column is still one
            return set()
        return {_loose(c) if self.loose else c for c in key}

    def norm(self, column: str) -> str:
        return _loose(column) if self.loose else column

    def column_of(self, row: Row, wanted: str) -> str | None:
        return next((name for name in row.values if self.same(name, wanted)), None)

    def kind_of(self, values: dict[str, str]) -> str:
        for rule in self.table.get("records", []):
            when = rule["when"] if isinstance(rule["when"], list) else [rule["when"]]
            if all(self._holds(cond, values) for cond in when):
                return rule["record"]
        return self.table.get("record", "call")

    def _holds(self, cond: dict, values: dict[str, str]) -> bool:
        value = next((v for k, v in values.items() if self.same(k, cond["column"])), "").strip()
        wanted = [cond["equals"]] if "equals" in cond else list(cond["in"])
        wanted = [w.strip() for w in wanted]
        if cond.get("ignore_case"):
            value, wanted = value.lower(), [w.lower() for w in wanted]
        return value in wanted

    # -- choosing what to corrupt -----------------------------------------------------------------

    @property
    def record_rows(self) -> list[Row]:
        """The rows that give a record, less any exact repeat of an earlier row (which may be dropped)."""
        seen: set[tuple] = set()
        out = []
        for row in self.rows:
            identity = tuple(sorted(row.values.items()))
            if row.kind != "skip" and identity not in seen:
                out.append(row)
            seen.add(identity)
        return out

    def target(self, kinds: tuple[str, ...]) -> tuple[Row, str] | None:
        """A data row in the middle of the file that gives a record, and a column of it that a field of one of
        ``kinds`` (layout field kinds) reads, with a value, and that no rule or key reads; None if there is none."""
        rows = self.record_rows
        if not rows:
            return None
        middle = len(rows) // 2
        avoid = self.rule_columns() | self.key_columns()
        for row in rows[middle:] + rows[:middle]:
            layout = LAYOUTS[row.kind]
            for fname, f in self.fields(row.kind).items():
                if "column" not in f or layout.field(fname).kind not in kinds or self.norm(f["column"]) in avoid:
                    continue
                if "text" in kinds and f.get("type", "text") != "text":
                    continue
                column = self.column_of(row, f["column"])
                if column is not None and row.values[column].strip():
                    return row, column
        return None

    def text_target(self) -> tuple[Row, str] | None:
        """A row that gives a record and a column of it with a value, read as text or not mapped at all (so
        that a U+FFFD in it is no error), that no rule or key reads."""
        rows = self.record_rows
        if not rows:
            return None
        avoid = self.rule_columns() | self.key_columns()
        middle = len(rows) // 2
        for row in rows[middle:] + rows[:middle]:
            layout = LAYOUTS[row.kind]
            non_text = {self.norm(f["column"]) for name, f in self.fields(row.kind).items()
                        if "column" in f and (layout.field(name).kind != "text" or f.get("type", "text") != "text"
                                              or f.get("map"))}
            for column, value in row.values.items():
                if value.strip() and self.norm(column) not in avoid | non_text:
                    return row, column
        return None

    # -- writing a changed file ------------------------------------------------------------------

    def replace_row(self, row: Row, cells: list[str]) -> bytes:
        """The sample with ``row`` rewritten as ``cells`` (every value quoted, newline style kept)."""
        lines = self.data.split(b"\n")
        out = io.StringIO()
        csv.writer(out, delimiter=self.delimiter, quoting=csv.QUOTE_ALL, lineterminator="").writerow(cells)
        text = out.getvalue().encode("utf-8")
        if lines[row.end - 1].endswith(b"\r"):
            text += b"\r"
        if row.start == 1 and lines[0].startswith(BOM):
            text = BOM + text
        return b"\n".join(lines[: row.start - 1] + [text] + lines[row.end:])

    def detail_line(self, row: Row, column: str) -> int:
        """(detail) The physical line of a record's attribute (``Name[2]``: its second line of that name)."""
        if column == "Detail-Date":  # the record's header line
            return row.start
        name, _, nth = column.partition("[")
        wanted = int(nth.rstrip("]")) if nth else 1
        lines = self.data.decode("utf-8").split("\n")
        for number in range(row.start + 1, row.end + 1):
            if lines[number - 1].strip().partition(" = ")[0] == name:
                wanted -= 1
                if not wanted:
                    return number
        raise KeyError(column)

    def with_value(self, row: Row, column: str, value: str) -> bytes:
        """The sample with one value of one row replaced (JSON: re-serialised one object per line; a detail
        file: the attribute's line rewritten, quoted if it was)."""
        if self.is_detail:
            number = self.detail_line(row, column)
            lines = self.data.split(b"\n")
            if number == row.start:
                lines[number - 1] = value.encode("utf-8")
                return b"\n".join(lines)
            name, _, given = lines[number - 1].partition(b" = ")
            text = value.encode("utf-8")
            lines[number - 1] = name + b" = " + (b'"' + text + b'"' if given.startswith(b'"') else text)
            return b"\n".join(lines)
        if self.is_json:
            index = self.rows.index(row)
            objects = [dict(o) for o in self.json_objects]
            objects[index][column] = value
            return json_lines(objects)
        cells = [row.values.get(name, "") for name in self.names[: row.width]]
        cells[self.names.index(column)] = value
        return self.replace_row(row, cells)

    def json_line(self, row: Row) -> int:
        """The line of a row's object once the sample is re-serialised by :func:`json_lines`."""
        return self.rows.index(row) + 2


def json_lines(objects: list[dict[str, str]]) -> bytes:
    """A JSON array with one object per line: object k (1-based) on line k + 1."""
    body = ",\n".join(json.dumps(o, ensure_ascii=False) for o in objects)
    return ("[\n" + body + "\n]\n").encode("utf-8")


def _is_json(table: dict, sample: Sample, data: bytes) -> bool:
    kind = table.get("kind", "delimited")
    if kind == "json":
        return True
    if kind != "auto":
        return False
    if sample.file_format is not None:
        return sample.file_format == "json"
    return data.removeprefix(BOM).lstrip().startswith(b"[")


def _delimiter(table: dict, sample: Sample, text: str) -> str:
    delimiter = table.get("delimiter", "auto" if table.get("kind") == "auto" else ",")
    if delimiter != "auto":
        return delimiter
    first = text.lstrip("\r\n").split("\n", 1)[0]
    claimed = DELIMITERS.get(sample.file_format or "")
    if claimed is not None and claimed in first:
        return claimed
    # Not claimed, or a claim that splits nothing (a pipe-separated '.txt'): as the engine, sniff it.
    return max(DELIMITERS.values(), key=first.count)


def _rows(text: str, delimiter: str) -> Iterator[tuple[int, int, list[str]]]:
    """(start line, end line, fields) of every row that is not blank."""
    lines = text.split("\n")
    number = 0

    def feed() -> Iterator[str]:
        nonlocal number
        for line in lines:
            number += 1
            yield line + "\n"

    reader = csv.reader(feed(), delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
    while True:
        start = number + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        if cells and any(c.strip() for c in cells):
            yield start, number, cells


_DETAIL_ESCAPE = re.compile(r"((?:\\[0-7]{3})+)|\\(.)")


def _detail_value(name: str, value: str) -> str:
    """A detail attribute's value as the format documents it: unquoted, unescaped, ``::`` and its name dropped."""
    if value.startswith('"'):
        def undo(match: re.Match) -> str:
            if match.group(1):
                return bytes(int(o, 8) for o in match.group(1).split("\\")[1:]).decode("utf-8")
            return {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}.get(match.group(2), match.group(0))
        value = _DETAIL_ESCAPE.sub(undo, value[1:-1])
    elif re.fullmatch(r"::[A-Za-z_][\w-]*", value) and not re.fullmatch(r"::[0-9A-Fa-f:.]*", value):
        value = value[2:]
    return value.removeprefix(name + "=")


def _detail_shape(table: dict, data: bytes) -> Shape:
    """A detail file's records, read line by line (without the engine): each a Row of its attributes."""
    result = Shape(table, data, False, None, 0, [], is_detail=True)
    current: Row | None = None
    for number, line in enumerate(data.decode("utf-8").split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if line[0] not in "\t ":
            current = Row(number, number, {"Detail-Date": line}, 1, table.get("record", "call"))
            result.rows.append(current)
            continue
        assert current is not None
        name, _, value = line.strip().partition(" = ")
        column, k = name, 1
        while column in current.values:
            k += 1
            column = f"{name}[{k}]"
        current.values[column] = _detail_value(name, value)
        current.end = number
        current.width += 1
    return result


def shape(format_name: str, sample: Sample) -> Shape:
    table = format_table(format_name)
    data = (SAMPLES / format_name / sample.file).read_bytes()
    if table.get("kind") == "radius-detail":
        return _detail_shape(table, data)
    if _is_json(table, sample, data):
        objects = json.loads(data.decode("utf-8-sig"), parse_float=str, parse_int=str)
        objects = [{k: "" if v is None else str(v) for k, v in o.items()} for o in objects]
        result = Shape(table, data, True, None, 0, [], json_objects=objects)
        result.rows = [Row(i + 2, i + 2, o, len(o), result.kind_of(o)) for i, o in enumerate(objects)]
        return result
    text = data.decode("utf-8-sig")
    delimiter = _delimiter(table, sample, text)
    rows = list(_rows(text, delimiter))
    header = table.get("header", "first")
    columns = list(table.get("columns", []))
    result = Shape(table, data, False, delimiter, 0, columns)
    header_rows = 0
    if header == "first":
        header_rows = 1
    elif header == "names+types":
        header_rows = 2
    elif header == "auto" and rows:
        first = rows[0][2]
        named = any(result.same(cell.strip(), c) for cell in first for c in columns)
        header_rows = 1 if named and not re.fullmatch(r"[+-]?\d+", first[0].strip()) else 0
    if header_rows:
        result.names = [c.strip() for c in rows[0][2]]
        result.header_lines = rows[header_rows - 1][1]
    for start, end, cells in rows[header_rows:]:
        values = dict(zip(result.names, cells))
        result.rows.append(Row(start, end, values, len(cells), result.kind_of(values)))
    return result


# ---------------------------------------------------------------------------------------------------
# Hostile cases.


@dataclass(frozen=True)
class Hostile:
    """A file made hostile from a sample, and what it must give: an error at ``line`` (None: any line) naming
    one of ``fields`` (empty: no field applies), or ``records`` records (None: an error)."""

    case: str
    data: bytes
    line: int | None = None
    fields: tuple[str, ...] = ()
    value: str | None = None
    records: int | None = None
    replaced: bool = False  # undecodable bytes that must load as U+FFFD


def applicable(format_name: str, sample: Sample) -> list[str]:
    """The hostile cases a sample yields (statically: at collection time, without the engine)."""
    s = shape(format_name, sample)
    cases = ["truncated_row", "empty_file"]
    # A detail file has no columns (each record lists its attributes) and no file header: the column-count
    # and header-only cases cannot apply to it.
    if not s.is_json and not s.is_detail:
        cases += ["too_many_columns", "too_few_columns"]
        if s.header_lines:
            cases.append("header_only")
    if s.target(("int", "money")) is not None:
        cases.append("bad_number")
    if s.target(("date", "utc")) is not None:
        cases.append("bad_date")
    if s.text_target() is not None:
        cases.append("undecodable_bytes")
    return [case for case in HOSTILE if case in cases]


def hostile(format_name: str, sample: Sample, case: str, clean_records: int) -> Hostile:
    s = shape(format_name, sample)
    table = s.table
    if case == "empty_file":
        return Hostile(case, b"", records=None if s.is_json else 0)
    if case == "header_only":
        lines = s.data.split(b"\n")
        # As the writer would end it: a file without a newline at its end (CUCM) has none after the header either.
        end = b"\n" if s.data.endswith(b"\n") else b""
        return Hostile(case, b"\n".join(lines[: s.header_lines]) + end, records=0)
    if case == "truncated_row" and s.is_detail:
        # Cut in the middle of the last record: its last line is cut short (no newline), which a detail file
        # refuses at that line (a Timestamp cut in its digits would otherwise read as another time).
        last = s.rows[-1]
        lines = s.data.split(b"\n")
        start = len(b"\n".join(lines[: last.start - 1])) + 1
        end = len(b"\n".join(lines[: last.end]))
        cut = (start + end) // 2
        if s.data[cut - 1:cut] == b"\n":
            cut += 1
        return Hostile(case, s.data[:cut], line=s.data[:cut].count(b"\n") + 1)
    if case == "truncated_row":
        last = s.rows[-1]
        if s.is_json:
            cut = s.data[: s.data.rindex(b"}") - 5]
            return Hostile(case, cut)
        lines = s.data.split(b"\n")
        offset = len(b"\n".join(lines[: last.start - 1])) + (1 if last.start > 1 else 0)
        row_bytes = b"\n".join(lines[last.start - 1: last.end]).rstrip(b"\r\n")
        return Hostile(case, s.data[: offset + len(row_bytes) // 2], line=last.start)
    if case in ("too_many_columns", "too_few_columns"):
        row = s.record_rows[len(s.record_rows) // 2]
        cells = [row.values.get(name, "") for name in s.names[: row.width]]
        if case == "too_many_columns":
            most = len(s.names)
            cells += ["x"] * (most - len(cells) + 1)
        else:
            least = table.get("min_columns") or len(s.names)
            cells = cells[: least - 1]
        return Hostile(case, s.replace_row(row, cells), line=row.start)
    if case in ("bad_number", "bad_date"):
        found = s.target(("int", "money") if case == "bad_number" else ("date", "utc"))
        assert found is not None
        row, column = found
        value = BAD_NUMBER if case == "bad_number" else BAD_DATE
        names = {column} | {name for kind in LAYOUTS for name, f in s.fields(kind).items()
                            if f.get("column") and s.same(f["column"], column)}
        line = s.json_line(row) if s.is_json else s.detail_line(row, column) if s.is_detail else row.start
        return Hostile(case, s.with_value(row, column, value), line=line, fields=tuple(sorted(names)), value=value)
    if case == "undecodable_bytes":
        found = s.text_target()
        assert found is not None
        row, column = found
        original = row.values[column]
        data = s.with_value(row, column, original[:1] + MARK + original[1:])
        data = data.replace(MARK.encode(), b"\xff\xfe")
        line = data[: data.index(b"\xff\xfe")].count(b"\n") + 1
        if table.get("encoding_errors", "strict") == "replace":
            return Hostile(case, data, records=clean_records, replaced=True)
        return Hostile(case, data, line=line)
    raise ValueError(case)


def pytest_generate_tests(metafunc) -> None:
    """Parametrise ``sample`` over the class's samples, and ``hostile_case`` over (sample, case) pairs."""
    cls = metafunc.cls
    if cls is None or not getattr(cls, "samples", None):
        return
    if "hostile_case" in metafunc.fixturenames:
        pairs = [(sample, case) for sample in cls.samples for case in applicable(cls.format_name, sample)]
        metafunc.parametrize("hostile_case", pairs, ids=[f"{s.file}-{c}" for s, c in pairs])
    elif "sample" in metafunc.fixturenames:
        metafunc.parametrize("sample", cls.samples, ids=[s.file for s in cls.samples])


# ---------------------------------------------------------------------------------------------------
# The contract.


class FormatContract:
    """Every built-in format: documented, valid, its samples giving the expected records in the layouts'
    schemas, and every hostile file derived from them refused at its line and field (or loaded, as documented)."""

    format_name: ClassVar[str]
    samples: ClassVar[tuple[Sample, ...]]

    @property
    def spec(self):
        return format_spec(self.format_name)

    def read(self, sample: Sample) -> bytes:
        return (SAMPLES / self.format_name / sample.file).read_bytes()

    def parse(self, sample: Sample, data: bytes | None = None, file_format: Any = ...) -> Parsed:
        fmt = sample.file_format if file_format is ... else file_format
        return parse(self.spec, sample.file, self.read(sample) if data is None else data, fmt)

    # -- the format itself ------------------------------------------------------------------------

    def test_is_builtin_and_valid(self):
        from ingest.formats.spec import builtin_format_tables

        tables = builtin_format_tables()
        assert self.format_name in tables
        spec = self.spec
        assert spec.name == self.format_name
        assert spec.description.strip()

    def test_its_file_cites_its_documentation(self):
        text = (BUILTIN / f"{self.format_name}.toml").read_text(encoding="utf-8")
        assert f"[formats.{self.format_name}]" in text
        comments = "\n".join(line for line in text.splitlines() if line.lstrip().startswith("#"))
        assert re.search(r"^# Sources?:", comments, re.M), "a comment names the documentation the format follows"

    def test_has_samples(self):
        assert self.samples
        for sample in self.samples:
            assert (SAMPLES / self.format_name / sample.file).is_file(), sample.file
            assert sample.records, f"{sample.file}: no expected records"

    # -- samples ----------------------------------------------------------------------------------

    def test_sample_gives_the_expected_records(self, sample):
        parsed = self.parse(sample)
        assert len(parsed.rows) == len(sample.records), [r["carrier_record_id"] for r in parsed.rows]
        for number, (got, expected) in enumerate(zip(parsed.rows, sample.records), 1):
            for name, value in expected.items():
                if name == "extra":
                    extra = json.loads(got["extra"] or "{}")
                    for key, text in value.items():
                        assert extra.get(key) == text, (number, key, extra)
                else:
                    assert got[name] == value, (number, name, got[name], value)
        assert parsed.rows_dropped == sample.rows_dropped

    def test_sample_records_are_well_formed(self, sample):
        parsed = self.parse(sample)
        positions = [r["position"] for r in parsed.rows]
        assert positions == sorted(positions) and len(set(positions)) == len(positions) and positions[0] >= 1
        for kind in LAYOUTS:
            keys = [r["record_key"] for r in parsed.rows if r["layout"] == kind]
            assert all(isinstance(k, str) and k for k in keys)
            assert len(set(keys)) == len(keys), "a record key names one record of a file"
        for row in parsed.rows:
            layout = LAYOUTS[row["layout"]]
            assert set(row) - {"layout"} == set(layout.parsed_columns)
            for f in layout.fields:
                if f.required:
                    assert row[f.name] is not None, (f.name, row)
                if f.kind == "utc" and row[f.name] is not None:
                    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row[f.name]), (f.name, row[f.name])
                if f.kind == "date" and row[f.name] is not None:
                    assert re.fullmatch(r"\d{4}-\d\d-\d\d", row[f.name]), (f.name, row[f.name])
                if f.kind == "money" and row[f.name] is not None:
                    assert isinstance(row[f.name], int)
            extra = json.loads(row["extra"]) if row["extra"] is not None else {}
            assert isinstance(extra, dict) and all(isinstance(v, str) for v in extra.values()), row["extra"]

    def test_sample_parsed_for_the_loader_gives_the_same_records(self, sample):
        """The loader's parse (``extra_by_position``: ``extra`` as values, named once per file) gives every
        record a plain parse gives, field for field, and the same ``extra`` once its values are named."""
        from ingest.layouts import extra_mapping

        parsed = self.parse(sample)
        for_loader = parse(self.spec, sample.file, self.read(sample), sample.file_format, extra_by_position=True)
        loaded = for_loader.rows
        assert [dict(r, extra=None) for r in loaded] == [dict(r, extra=None) for r in parsed.rows]
        for plain, compact in zip(parsed.rows, loaded):
            names = for_loader.parser.extra_columns.get(compact["layout"])
            plain_extra = json.loads(plain["extra"]) if plain["extra"] is not None else None
            named = extra_mapping(compact["extra"], names)
            assert list((named or {}).items()) == list((plain_extra or {}).items()), (plain["position"], names)
        assert for_loader.rows_dropped == parsed.rows_dropped

    def test_sample_unmapped_columns_are_kept_in_extra(self, sample):
        """Nothing in a file is lost: every column a record's fields do not read is in its extra."""
        s = shape(self.format_name, sample)
        parsed = self.parse(sample)
        records = iter(parsed.rows)
        seen: set[tuple] = set()
        for row in s.record_rows:
            if self.spec.duplicates(row.kind) == "once":
                identity = (row.kind, tuple(sorted(row.values.items())))
                if identity in seen:
                    continue
                seen.add(identity)
            got = next(records)
            mapped = {s.norm(f[k]) for f in s.fields(row.kind).values() for k in ("column", "also") if k in f}
            extra = json.loads(got["extra"] or "{}")
            for column, value in row.values.items():
                if s.norm(column) not in mapped and value != "":
                    assert extra.get(column) == value, (column, value, extra)

    def test_sample_record_lines(self, sample):
        s = shape(self.format_name, sample)
        parsed = self.parse(sample)
        positions = [r["position"] for r in parsed.rows]
        lines = parsed.parser.record_lines(source(sample.file, self.read(sample), sample.file_format), positions)
        starts = {row.start for row in s.rows}
        if s.is_json:  # the sample as written: the line of each object's opening brace
            text = self.read(sample).decode("utf-8-sig").split("\n")
            starts = {n for n, line in enumerate(text, 1) if line.lstrip().startswith("{")}
        assert set(lines) == set(positions)
        assert set(lines.values()) <= starts

    def test_sample_read_whatever_its_source_claims(self, sample):
        """A source that names no file format gives the same records (the format, or sniffing, decides)."""
        if sample.file_format is None:
            return
        claimed = self.parse(sample)
        sniffed = self.parse(sample, file_format=None)
        assert sniffed.rows == claimed.rows

    # -- hostile files ----------------------------------------------------------------------------

    def test_hostile(self, hostile_case):
        sample, case = hostile_case
        clean = self.parse(sample)
        h = hostile(self.format_name, sample, case, len(clean.rows))
        if h.records is not None:
            parsed = self.parse(sample, data=h.data)
            assert len(parsed.rows) == h.records
            if h.replaced:
                texts = [str(v) for row in parsed.rows for v in row.values()]
                assert any("\ufffd" in t for t in texts), "the undecodable bytes load as U+FFFD"
            return
        err = parse_error(self.spec, sample.file, h.data, sample.file_format)
        if h.line is not None:
            assert err.line == h.line, str(err)
        else:
            assert err.line is not None, str(err)
        if h.fields:
            assert err.field in h.fields, str(err)
        if h.value is not None and err.value is not None:
            assert err.value.strip() == h.value, str(err)
