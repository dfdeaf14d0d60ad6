"""The billing feeds (Hero, Tech Connections) through the format engine: the cases the hand-written parser was
held to, run with ``FileParser`` on the built-in ``hero-feed`` and ``techconnections-feed`` formats.

:class:`FeedContract` holds the tests; a feed's test class subclasses it and sets ``carrier`` (its layout in
``tests/records.py``, its format in ``records.FORMATS``). Each test runs on the fixtures below, parametrised over
every format the feeds serve (csv, txt = tab, pipe, json) and, for the delimited ones, with and without a header
row (JSON always names its fields).

Records come as (Layout, batch): a call or a charge (the service fees of Tech Connections). A record's fields
are the layouts' (``carrier_record_id`` from ID, ``start_time`` from UTCDateTime, money in millionths, ...);
every column a format does not map is in the record's ``extra`` JSON, as given.

Expected line numbers count the header as line 1. For JSON the line of a record is the line of its ``{``.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

from ingest.errors import NotText, ParseError
from ingest.formats.engine import FileParser
from ingest.formats.read import BLOCK_SIZE, Source, _QuoteCheck, sniff_format
from ingest.formats.spec import builtin_format_tables, parse_format
from ingest.layouts import CALL, CHARGE
from tests.records import FORMATS, LAYOUTS as COLUMNS, record, render

DELIMITED = ("csv", "txt", "pipe")
SEPARATORS = {"csv": ",", "txt": "\t", "pipe": "|"}
EXTENSIONS = {"csv": "csv", "txt": "txt", "pipe": "txt", "json": "json"}
VARIANTS = [(fmt, True) for fmt in DELIMITED] + [(fmt, False) for fmt in DELIMITED] + [("json", True)]
DELIMITED_VARIANTS = [v for v in VARIANTS if v[0] != "json"]
HEADED_VARIANTS = [v for v in VARIANTS if v[1]]
M = 1_000_000  # money in millionths


def _variant_id(variant: tuple[str, bool]) -> str:
    fmt, header = variant
    return fmt if fmt == "json" else f"{fmt}-{'header' if header else 'noheader'}"


def feed_table(carrier: str, records: list[dict] | None = None) -> dict:
    """The carrier's built-in format table; ``records`` replaces its rules (a carrier's own variant)."""
    table = copy.deepcopy(builtin_format_tables()[FORMATS[carrier]])
    if records is not None:
        table["records"] = records
    return table


@dataclass
class Feed:
    """One (carrier, format, header) combination: renders test files and runs its format on them."""

    carrier: str
    fmt: str
    header: bool

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS[self.carrier]

    @property
    def sep(self) -> str:
        return SEPARATORS[self.fmt]

    @property
    def name(self) -> str:
        return f"{self.carrier}_cdr_20261001.{EXTENSIONS[self.fmt]}"

    def render(self, rows: list[dict[str, str]], **kwargs: Any) -> bytes:
        if self.fmt == "json":
            data = render(rows, carrier=self.carrier, fmt="json")
            newline = kwargs.get("newline", "\n")
            data = data.replace(b"\n", newline.encode())
            return (b"\xef\xbb\xbf" + data) if kwargs.get("bom") else data
        return render(rows, carrier=self.carrier, fmt=self.fmt, header=self.header, **kwargs)

    def source(self, data: bytes, file_format: Any = ...) -> Source:
        """A Source over ``data``; ``file_format`` defaults to this feed's format (None: let the parser sniff)."""
        fmt = self.fmt if file_format is ... else file_format
        return Source(self.name, fmt, lambda: io.BytesIO(data))

    def parser(self, records: list[dict] | None = None) -> FileParser:
        name = FORMATS[self.carrier] + ("" if records is None else "-variant")  # a variant is a format of its own
        return FileParser(parse_format(name, feed_table(self.carrier, records)), self.carrier)

    def batches(self, data: bytes, records: list[dict] | None = None,
                file_format: Any = ...) -> list[tuple[Any, pa.RecordBatch]]:
        batches = list(self.parser(records).batches(self.source(data, file_format)))
        for layout, batch in batches:
            assert layout in (CALL, CHARGE)
            assert batch.schema.equals(layout.arrow_schema())
        return batches

    def rows(self, data: bytes, **kwargs: Any) -> list[dict[str, Any]]:
        """Every record in file order, with ``layout`` (call or charge) and ``extra`` decoded."""
        out = []
        for layout, batch in self.batches(data, **kwargs):
            for row in batch.to_pylist():
                row["layout"] = layout.kind
                row["extra"] = json.loads(row["extra"]) if row["extra"] is not None else {}
                out.append(row)
        return sorted(out, key=lambda row: row["position"])

    def error(self, data: bytes, **kwargs: Any) -> ParseError:
        with pytest.raises(ParseError) as info:
            self.rows(data, **kwargs)
        err = info.value
        assert err.file == self.name and self.name in str(err)
        if err.line is not None:
            assert f"line {err.line}" in str(err)
        if err.field is not None:
            assert f"field {err.field}" in str(err)
        return err

    def record_line(self, data: bytes, index: int, delimited_line: int) -> int:
        """The expected line of the ``index``-th record (1-based): for delimited files ``delimited_line``
        counted without a header (so +1 with one); for JSON the line of the record's opening brace."""
        if self.fmt == "json":
            starts = [n for n, text in enumerate(data.split(b"\n"), 1) if text.rstrip(b"\r") == b" {"]
            return starts[index - 1]
        return delimited_line + (1 if self.header else 0)


def line_of(data: bytes, marker: bytes) -> int:
    """The physical line (1-based) on which ``marker`` occurs."""
    return data[: data.index(marker)].count(b"\n") + 1


def render_columns(rows: list[dict[str, str]], columns: list[str], names: list[str], fmt: str) -> bytes:
    """Render with a header (or JSON keys) of ``names`` over the values of ``columns``: any order, any names."""
    if fmt == "json":
        return json.dumps([{n: row.get(c, "") for c, n in zip(columns, names)} for row in rows], indent=1).encode()
    out = io.StringIO()
    writer = csv.writer(out, delimiter=SEPARATORS[fmt], lineterminator="\n")
    writer.writerow(names)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return out.getvalue().encode()


# Big files: rows as short as the layout allows, built from a template so that 200 000 rows stay cheap.
BIG_VALUES = {"BillDate": "2026-10-01", "UTCDateTime": "2026-10-01 00:05:09", "BParty": "7", "Seconds": "60",
              "Charge": "0.1150", "ChargeExcl": "0.1000"}


def big_file(feed: Feed, n: int, special: dict[int, dict[str, str]] | None = None, narrow: bool = False) -> bytes:
    """``n`` records with IDs 1..n; ``special`` overrides the values of some records (by ID). JSON puts one
    record per line (record k on line k + 1). ``narrow``: a delimited header names only the columns used."""
    special = special or {}
    if feed.fmt == "json":
        def line(i: int, **over: str) -> bytes:
            return json.dumps({"ID": str(i), **BIG_VALUES, **over}).encode()
        template = line(0).replace(b'"ID": "0"', b'"ID": "{id}"')
        body = b",\n".join(line(i, **special[i]) if i in special else template.replace(b"{id}", b"%d" % i)
                           for i in range(1, n + 1))
        return b"[\n" + body + b"\n]\n"
    columns = ["ID", *BIG_VALUES, "TextDesc1"] if narrow and feed.header else list(feed.columns)
    empty = {column: "" for column in columns}

    def row(i: int, **over: str) -> bytes:
        values = {**empty, **BIG_VALUES, "ID": str(i), **over}
        return render_columns([values], columns, columns, feed.fmt).split(b"\n", 1)[1][:-1]  # no header, no \n

    template = row(0).replace(b"0", b"{id}", 1)
    assert template.startswith(b"{id}" + feed.sep.encode())
    lines = [row(i, **special[i]) if i in special else template.replace(b"{id}", b"%d" % i) for i in range(1, n + 1)]
    head = (feed.sep.join(columns) + "\n").encode() if feed.header else b""
    return head + b"\n".join(lines) + b"\n"


def _xlsx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet><sheetData/></worksheet>")
    return out.getvalue()


def _noise(n: int) -> bytes:
    """``n`` bytes that look random (as compressed or encrypted content does), the same every run."""
    return b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(n // 32 + 1))[:n]


# Files that land in carrier folders by mistake, and what they are called in the error.
NOT_TEXT = [
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + _noise(200), "a PNG image"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + _noise(200), "a JPEG image"),
    (_xlsx(), "spreadsheet"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504), "spreadsheet"),
    ("ID,BillDate\r\n1,2026-10-01\r\n".encode("utf-16"), "UTF-16"),
    (_noise(5000), "binary content"),
]


class FeedContract:
    """Every billing feed: the layouts' fields, typed and exact; real-file quirks; errors that name file, line
    and field; headers by name; streaming in blocks; format sniffing."""

    carrier: str

    @pytest.fixture(params=VARIANTS, ids=_variant_id)
    def feed(self, request) -> Feed:
        return Feed(self.carrier, *request.param)

    @pytest.fixture(params=DELIMITED_VARIANTS, ids=_variant_id)
    def delimited(self, request) -> Feed:
        return Feed(self.carrier, *request.param)

    @pytest.fixture(params=HEADED_VARIANTS, ids=_variant_id)
    def headed(self, request) -> Feed:
        return Feed(self.carrier, *request.param)

    @pytest.fixture(params=DELIMITED)
    def headed_delimited(self, request) -> Feed:
        return Feed(self.carrier, request.param, True)

    @pytest.fixture
    def json_feed(self) -> Feed:
        return Feed(self.carrier, "json", True)

    def test_builtin(self):
        assert FORMATS[self.carrier] in builtin_format_tables()
        spec = parse_format(FORMATS[self.carrier], feed_table(self.carrier))
        assert spec.columns == COLUMNS[self.carrier]

    # -- 1. typed, normalised values ---------------------------------------------------------------

    def test_typed_values(self, feed):
        rows = [
            record(4200000001, AccountCode="0081234567", Direction="inbound", CallType="Mobile",
                   BillDate="01/10/2026", Date="1/10/2026", Time="1:05:09 PM", UTCDateTime="2026-10-01T00:05:09Z",
                   UTCOffset="+13:00", AParty="0016321234", BParty="+64 21 000 111", BillNumber="0099",
                   Seconds="61", NetworkSeconds="", ConnectSeconds=" ", Charge="0.1150",
                   ChargeExcl="12345678901.123456", FreeUnitsUsed="-1.50", TextDesc1="Mobile call",
                   TextDesc2="", ReleaseCause="0017", Status="Ok", ServiceType="STD", BillingGroup="BG",
                   CallingGroup="CG", Profile="P1"),
            record(2, BillDate="20261002", UTCDateTime="02/10/2026 23:59", Seconds="0", FreeUnitsUsed=""),
            record(3, BillDate="2026/10/03", UTCDateTime="2026-10-03 10:11:12.345", ID="+3"),
            # An ISO 8601 offset is read (the old parser refused any but +00:00): the instant, in UTC.
            record(4, UTCDateTime="2026-10-01 13:05:09+13:00"),
        ]
        got = feed.rows(feed.render(rows))
        assert [r["position"] for r in got] == [1, 2, 3, 4]
        first, second, third, fourth = got
        assert first["layout"] == "call"
        assert first["carrier_record_id"] == "4200000001" and first["record_key"]
        assert first["charge"] == 115_000 and isinstance(first["charge"], int)
        assert first["charge_excl"] == 12345678901_123456
        assert first["extra"]["FreeUnitsUsed"] == "-1.50"
        assert first["start_time"] == "2026-10-01 00:05:09"
        assert first["bill_date"] == "2026-10-01"
        assert first["local_time"] == "1:05:09 PM"
        if "Date" in feed.columns:
            assert first["local_date"] == "1/10/2026"
        else:
            assert first["local_date"] is None
        assert first["account_code"] == "0081234567"
        assert first["a_number"] == "0016321234"
        assert first["b_number"] == "+64 21 000 111"
        assert first["bill_number"] == "0099"
        assert first["release_cause"] == "0017"
        assert first["utc_offset"] == "+13:00"
        assert (first["billed_seconds"], first["connected_seconds"]) == (61, None)
        assert first["extra"].get("ConnectSeconds", "").strip() == ""
        assert (first["direction"], first["call_type"], first["description"], first["status"]) == (
            "inbound", "Mobile", "Mobile call", "Ok")
        assert {k: first["extra"][k] for k in ("ServiceType", "BillingGroup", "CallingGroup", "Profile")} == {
            "ServiceType": "STD", "BillingGroup": "BG", "CallingGroup": "CG", "Profile": "P1"}
        assert (second["bill_date"], second["start_time"], second["billed_seconds"]) == (
            "2026-10-02", "2026-10-02 23:59:00", 0)
        assert second["extra"].get("FreeUnitsUsed", "") == ""
        assert third["carrier_record_id"] == "3"
        assert (third["bill_date"], third["start_time"]) == ("2026-10-03", "2026-10-03 10:11:12")
        assert fourth["start_time"] == "2026-10-01 00:05:09"
        assert set(first) == set(CALL.parsed_columns) | {"layout"}
        assert len({r["record_key"] for r in got}) == 4

    def test_the_key_is_the_id(self, feed):
        """The same ID is the same record, whatever the file format or its spelling (+3, 003)."""
        keys = [r["record_key"] for r in feed.rows(feed.render([record(3), record(4)]))]
        assert keys == [r["record_key"] for r in Feed(self.carrier, "json", True).rows(
            Feed(self.carrier, "json", True).render([record(3, ID="+3"), record(4, ID="004")]))]

    def test_empty_file_with_only_a_header_has_no_records(self, headed):
        data = headed.render([])
        assert headed.rows(data) == []

    # -- 2. real-file quirks -----------------------------------------------------------------------

    def test_bom_crlf_quotes_and_trailing_blank_line(self, feed):
        tricky = 'He said "hi", then , | and \t'
        rows = [record(1, TextDesc1=tricky, TextDesc2="two\nlines"), record(2, TextDesc1='"quoted"')]
        data = feed.render(rows, newline="\r\n", bom=True) + b"\r\n"
        assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
        got = feed.rows(data)
        assert [r["carrier_record_id"] for r in got] == ["1", "2"]
        assert got[0]["description"] == 'He said "hi", then , | and \t'
        assert got[0]["extra"]["TextDesc2"] == "two\nlines"
        assert got[1]["description"] == '"quoted"'
        assert got[1]["extra"]["Profile"] == "Default"  # no stray \r on the last field
        assert got[0]["charge"] == 115_000

    def test_json_numbers_keep_their_exact_text(self, json_feed):
        data = (b'[{"ID": 7, "BillDate": "2026-10-01", "UTCDateTime": "2026-10-01 00:05:09", "Charge": 0.1150,'
                b' "ChargeExcl": 1234567.123456, "FreeUnitsUsed": 1.5E2, "Seconds": 60,'
                b' "NetworkSeconds": null, "ReleaseCause": "0017", "UTCOffset": -13, "TextDesc1": 1e-7}]')
        (row,) = json_feed.rows(data)
        assert (row["carrier_record_id"], row["billed_seconds"]) == ("7", 60)
        assert row["charge"] == 115_000
        assert row["charge_excl"] == 1234567_123456
        assert row["extra"]["FreeUnitsUsed"] == "150"
        assert row["connected_seconds"] is None
        assert row["release_cause"] == "0017"
        assert row["utc_offset"] == "-13"
        assert row["description"] == "0.0000001"

    def test_json_text_split_across_read_chunks(self, json_feed):
        """The JSON reader takes 1 MiB at a time: a string, a \\u escape or a multi-byte UTF-8 character
        cut by that boundary must still be read."""
        boundary = 1 << 20
        rows = [record(i, TextDesc1="é" * 50) for i in range(1, 3001)]
        escaped = json_feed.render(rows)  # 'é' written as \u00e9
        raw = json.dumps(rows, indent=1, ensure_ascii=False).encode()  # 'é' as two UTF-8 bytes
        for data, piece, offset in [
            (escaped, b'"Spark, mobile"', 5),  # the boundary falls inside a string
            (escaped, b"\\u00e9", 3),  # ... inside a \u escape
            (raw, "é".encode(), 1),  # ... between the two bytes of a character
        ]:
            at = data.index(piece, boundary - 5000)
            padded = b"[" + b" " * (boundary - offset - at) + data[1:]
            assert padded[boundary - offset: boundary - offset + len(piece)] == piece
            got = json_feed.rows(padded)
            assert len(got) == 3000
            assert all(r["description"] == "é" * 50 and r["extra"]["TextDesc2"] == "Spark, mobile" for r in got)

    # -- 3. errors name file, line and field -------------------------------------------------------

    @pytest.mark.parametrize("field, value, reason", [
        ("Charge", "0.11.5", "not a decimal amount"),
        ("Charge", "1,50", "not a decimal amount"),
        ("ChargeExcl", "0.1234567", "not a decimal amount"),  # more places than millionths: refused, not rounded
        ("ChargeExcl", "", "required value is empty"),
        ("Charge", "  ", "required value is empty"),
        ("ID", "12x", "not a whole number"),
        ("ID", "", "required value is empty"),
        ("ID", "99999999999999999999", "not a whole number"),
        ("Seconds", "6.5", "not a whole number"),
        ("UTCDateTime", "2026-13-01 00:00:00", "not a date and time"),
        ("UTCDateTime", "2026-02-30 00:00:00", "not a date and time"),
        ("UTCDateTime", "2026-10-01 00:05:60", "not a date and time"),
        ("UTCDateTime", "2026-10-01 0:5:9", "not a date and time"),
        ("UTCDateTime", "2026-10-01 00:05:09+25:00", "not a date and time"),
        ("UTCDateTime", "", "required value is empty"),
        ("BillDate", "2026-02-30", "not a date"),
        ("BillDate", "0000-01-01", "not a date"),  # the year 0 neither PostgreSQL nor Python can hold
        ("UTCDateTime", "2026-02-30T00:00:00Z", "not a date and time"),  # ISO 8601 with Z, as feeds send
        ("UTCDateTime", "2026-10-01T24:00:00Z", "not a date and time"),
        ("UTCDateTime", "2026-10-01T00:05:60Z", "not a date and time"),
        ("UTCDateTime", "0000-01-01 10:00:00", "not a date and time"),
        ("BillDate", "", "required value is empty"),
    ])
    def test_bad_value_names_line_and_field(self, feed, field, value, reason):
        rows = [record(1), record(2, TextDesc1="two\nlines"), record(3), record(4, **{field: value}), record(5)]
        data = feed.render(rows)
        err = feed.error(data)
        # delimited, no header: rows 1, 2 (two lines), 3 on lines 1, 2-3, 4: the bad row starts on line 5
        assert err.line == feed.record_line(data, 4, delimited_line=5)
        assert err.field == field
        assert reason in err.reason
        assert err.value == value

    def test_first_bad_row_is_reported(self, feed):
        rows = [record(1), record(2, Seconds="x"), record(3, Charge="y")]
        err = feed.error(feed.render(rows))
        assert (err.field, err.value) == ("Seconds", "x")
        assert err.line == feed.record_line(feed.render(rows), 2, delimited_line=2)

    @pytest.mark.parametrize("extra", [1, -1])
    def test_wrong_number_of_fields(self, delimited, extra):
        feed = delimited
        lines = feed.render([record(1), record(2, TextDesc1="a\nb"), record(3), record(4)]).split(b"\n")
        bad = 4 + (1 if feed.header else 0)  # 0-based: row 1, row 2 (two lines), row 3, then row 4
        sep = feed.sep.encode()
        lines[bad] = lines[bad] + sep + b"extra" if extra > 0 else lines[bad].rsplit(sep, 1)[0]
        err = feed.error(b"\n".join(lines))
        assert err.line == bad + 1
        assert f"found {len(feed.columns) + extra}" in err.reason

    def test_invalid_utf8(self, feed):
        rows = [record(i, TextDesc1=f"MARK{i}") for i in range(1, 6)]
        data = feed.render(rows).replace(b"MARK4", b"\xff\xfeX")
        err = feed.error(data)
        assert err.line == line_of(data, b"\xff\xfeX")
        assert "utf-8" in err.reason.lower()

    def test_header_missing_a_required_column(self, headed_delimited):
        feed = headed_delimited
        data = feed.render([record(1), record(2)])
        header, rest = data.split(b"\n", 1)
        data = header.replace(b"ChargeExcl", b"ChargeExclVat") + b"\n" + rest
        err = feed.error(data)
        assert (err.line, err.field) == (1, "ChargeExcl")
        assert "missing" in err.reason
        err = feed.error(b"\n\r\n" + data)  # after blank lines, the header is on line 3
        assert (err.line, err.field) == (3, "ChargeExcl")

    def test_header_with_a_duplicated_column(self, headed_delimited):
        feed = headed_delimited
        data = feed.render([record(1)])
        header, rest = data.split(b"\n", 1)
        data = header.replace(b"ChargeExcl", b"charge") + b"\n" + rest
        err = feed.error(data)
        assert err.line == 1 and err.field.lower() == "charge"
        assert "twice" in err.reason

    def test_blank_lines_before_the_header(self, headed_delimited):
        feed = headed_delimited
        data = b"\n\r\n" + feed.render([record(1), record(2, Charge="bad")])
        err = feed.error(data)
        assert (err.line, err.field) == (5, "Charge")
        assert [r["carrier_record_id"] for r in feed.rows(b"\n\n" + feed.render([record(1), record(2)]))] == ["1", "2"]

    def test_json_missing_required_key(self, json_feed):
        rows = [record(1), record(2)]
        for row in rows:
            del row["ChargeExcl"]
        err = json_feed.error(json_feed.render(rows))
        assert (err.line, err.field) == (2, "ChargeExcl")

    @pytest.mark.parametrize("data, line, words", [
        (b'{"ID": "1", "BillDate": "2026-10-01", "Charge": "1", "ChargeExcl": "1"}', 1, "not a JSON array"),
        (b'\n\n  "just text"', 3, "not a JSON array"),
        (b"", 1, "empty"),
        (b'[\n {"ID": "1"},\n 5\n]', 3, "expected a JSON object"),
        (b'[\n ["ID", "1"]\n]', 2, "expected a JSON object"),
        (b'[\n {"ID": "1"}\n]\n[]', 4, "after the JSON array"),
        (b'[\n {"ID": "1"},\n]', 3, "invalid JSON"),
        (b'[\n {"ID": "1"}\n {"ID": "2"}\n]', 3, "invalid JSON"),
        (b'[\n {"ID": "1",\n  "Charge": 01}\n]', 3, "invalid JSON"),
    ])
    def test_json_structure_errors(self, json_feed, data, line, words):
        err = json_feed.error(data)
        assert err.line == line
        assert words in err.reason

    def test_truncated_json(self, json_feed):
        data = json_feed.render([record(1), record(2), record(3)])
        cut_after_element = data[: data.rindex(b"}") + 1]  # the closing ']' is lost
        err = json_feed.error(cut_after_element)
        assert err.line == cut_after_element.count(b"\n") + 1
        assert "not closed" in err.reason
        mid_string = data[: data.rindex(b"Spark") + 2]
        err = json_feed.error(mid_string)
        assert err.line == mid_string.count(b"\n") + 1
        assert "invalid JSON" in err.reason

    def test_bad_row_far_into_a_large_file(self, headed):
        """Row 200 000, blocks past the first: the line still counts the header and an earlier quoted newline.
        (Header-less large files are covered by the streaming test; only the header offset differs.)"""
        bad = 200_000
        data = big_file(headed, bad + 1, {10: {"TextDesc1": "a\nb"}, bad: {"Charge": "0.1150x"}}, narrow=True)
        assert len(data) > BLOCK_SIZE
        err = headed.error(data)
        # JSON: '[' on line 1, record k on line k + 1. Delimited: header, then row 10 takes two lines.
        expected = bad + 1 if headed.fmt == "json" else bad + 2
        assert (err.line, err.field, err.value) == (expected, "Charge", "0.1150x")

    # -- 5. headers by name --------------------------------------------------------------------------

    def test_header_in_any_order_with_unknown_columns(self, headed):
        columns = list(reversed(headed.columns))
        columns.insert(3, "Foo")
        columns.append("Bar")
        names = [c.lower() if c in ("ID", "Charge", "BillDate") else c for c in columns]
        rows = [record(1, AParty="0011", BParty="0022", BillNumber="0033", Seconds="61", NetworkSeconds="62",
                       ConnectSeconds="63", Charge="1.10", ChargeExcl="1.00", FreeUnitsUsed="0.5",
                       TextDesc1="d1", TextDesc2="d2", BillDate="2026-09-30", Date="2026-10-01"),
                record(2)]
        for row in rows:
            row.update(Foo="12x", Bar="not, a charge")
        got = headed.rows(render_columns(rows, columns, names, headed.fmt))
        first = got[0]
        assert (first["carrier_record_id"], first["a_number"], first["b_number"]) == ("1", "0011", "0022")
        assert first["bill_number"] == "0033"
        assert (first["billed_seconds"], first["connected_seconds"]) == (61, 62)
        assert (first["charge"], first["charge_excl"]) == (1_100_000, 1 * M)
        assert (first["description"], first["bill_date"]) == ("d1", "2026-09-30")
        assert {k: first["extra"][k] for k in ("ConnectSeconds", "FreeUnitsUsed", "TextDesc2", "Foo", "Bar")} == {
            "ConnectSeconds": "63", "FreeUnitsUsed": "0.5", "TextDesc2": "d2", "Foo": "12x", "Bar": "not, a charge"}
        assert [r["position"] for r in got] == [1, 2]

    def test_header_with_only_some_columns(self, headed):
        columns = ["Charge", "UTCDateTime", "ChargeExcl", "BillDate", "ID"]
        got = headed.rows(render_columns([record(5), record(6)], columns, columns, headed.fmt))
        assert [(r["carrier_record_id"], r["charge"], r["start_time"]) for r in got] == [
            ("5", 115_000, "2026-10-01 00:05:09"), ("6", 115_000, "2026-10-01 00:05:09")]
        assert got[0]["a_number"] is None and got[0]["billed_seconds"] is None

    # -- 6. streaming ---------------------------------------------------------------------------------

    def test_large_file_streams_in_batches(self, feed):
        n = 70_000  # > one block of delimited text; > one 65 536-record block of JSON
        data = big_file(feed, n)
        assert len(data) > BLOCK_SIZE
        batches = feed.parser().batches(feed.source(data))
        sizes, positions, ids = [], [], []
        for layout, batch in batches:
            assert layout is CALL and batch.schema.equals(CALL.arrow_schema())
            sizes.append(batch.num_rows)
            positions.extend(batch.column("position").to_pylist())
            ids.extend(batch.column("carrier_record_id").to_pylist())
        assert len(sizes) > 1 and max(sizes) < n
        assert positions == list(range(1, n + 1))
        assert ids == [str(i) for i in range(1, n + 1)]

    # -- 7. format sniffing -----------------------------------------------------------------------------

    def test_format_is_sniffed_when_unknown(self, feed):
        rows = [record(1, TextDesc1="a, b, c | d"), record(2, TextDesc2="x\ty")]
        data = feed.render(rows, bom=True)
        assert sniff_format(data[:4096]) == feed.fmt
        assert feed.rows(data, file_format=None) == feed.rows(data)

    # -- 8. what a file claims to be, and what it is --------------------------------------------------

    def test_the_delimiter_is_sniffed_when_the_name_lies(self, delimited):
        """A pipe-separated '.txt': the claimed delimiter gives one field per row, the real one the layout."""
        rows = [record(1, TextDesc2="Spark mobile"), record(2, TextDesc1='He said "hi"', TextDesc2="two\nlines")]
        data = delimited.render(rows)
        expected = delimited.rows(data)
        for claimed in DELIMITED:
            if claimed != delimited.fmt:
                assert delimited.parser().file_format(delimited.source(data, claimed)) == delimited.fmt
                assert delimited.rows(data, file_format=claimed) == expected

    def test_a_claimed_delimiter_that_splits_rows_is_kept(self, delimited):
        """Only a delimiter that finds nothing to split is second-guessed: otherwise the file is wrong, and
        fails as such."""
        rows = [record(1, TextDesc2="a,b|c\td")]
        data = delimited.render(rows)
        for claimed in DELIMITED:
            if claimed != delimited.fmt:
                assert delimited.parser().file_format(delimited.source(data, claimed)) == claimed
                assert "expected" in delimited.error(data, file_format=claimed).reason

    @pytest.mark.parametrize("content, what", NOT_TEXT, ids=[what for _, what in NOT_TEXT])
    def test_content_that_is_not_text(self, feed, content, what):
        for claimed in (feed.fmt, None):
            source = feed.source(content, claimed)
            with pytest.raises(NotText) as info:
                feed.parser().file_format(source)
            with pytest.raises(NotText) as info:
                list(feed.parser().batches(source))
            assert info.value.file == feed.name
            assert f"{feed.name}: not a delimited or JSON text file" in str(info.value) and what in str(info.value)

    def test_record_lines(self, feed):
        rows = [record(1), record(2, TextDesc1="two\nlines"), record(3), record(4)]
        data = feed.render(rows, bom=True)
        lines = feed.parser().record_lines(feed.source(data), [1, 3, 4])
        assert lines == {1: feed.record_line(data, 1, delimited_line=1), 3: feed.record_line(data, 3, delimited_line=4),
                         4: feed.record_line(data, 4, delimited_line=5)}

    # -- 9. a column the layout needs must be there --------------------------------------------------

    def test_calls_without_a_utc_time_column_fail(self, headed):
        columns = [column for column in headed.columns if column != "UTCDateTime"]
        data = render_columns([record(1), record(2)], columns, columns, headed.fmt)
        err = headed.error(data)
        assert (err.field, err.line) == ("UTCDateTime", 2 if headed.fmt == "json" else 1)
        assert "missing" in err.reason

    @pytest.mark.parametrize("spelling", ["UTC DateTime", "utc_date_time", "UTC-DateTime"])
    def test_column_names_match_whatever_their_spacing(self, headed, spelling):
        columns = ["ID", "BillDate", "UTCDateTime", "Charge", "ChargeExcl"]
        names = [spelling if column == "UTCDateTime" else column for column in columns]
        rows = [record(1), record(2, UTCDateTime="2026-10-02 01:02:03")]
        got = headed.rows(render_columns(rows, columns, names, headed.fmt))
        assert [r["start_time"] for r in got] == ["2026-10-01 00:05:09", "2026-10-02 01:02:03"]

    def test_json_keys_spelt_two_ways_in_one_object(self, json_feed):
        data = (b'[\n {"ID": "1", "BillDate": "2026-10-01", "UTCDateTime": "2026-10-01 00:05:09", "Charge": "1",'
                b' "ChargeExcl": "1"},\n {"ID": "2", "BillDate": "2026-10-01", "UTC DateTime": "2026-10-01 00:05:09",'
                b' "Charge": "1", "ChargeExcl": "1", "charge": "2"}\n]')
        err = json_feed.error(data)
        assert (err.line, err.field) == (3, "Charge")
        assert "twice" in err.reason

    @pytest.mark.parametrize("key", ["ChargeExcl", "ID", "UTCDateTime"])
    def test_a_json_object_missing_a_required_key_fails_at_that_object(self, json_feed, key):
        rows = [record(1), record(2), record(3)]
        del rows[1][key]
        data = json_feed.render(rows)
        err = json_feed.error(data)
        assert (err.line, err.field) == (json_feed.record_line(data, 2, delimited_line=0), key)
        assert "missing" in err.reason

    def test_an_undecodable_byte_in_a_header_name_fails(self, headed_delimited):
        feed = headed_delimited
        data = feed.render([record(1), record(2)]).replace(b"TextDesc1", b"Text\xffDesc1", 1)
        err = feed.error(data)
        assert err.line == 1 and "utf-8" in err.reason.lower()

    # -- 10. types are what they claim -----------------------------------------------------------------

    @pytest.mark.parametrize("field, value, what", [
        ("Charge", True, "true/false"),
        ("ID", True, "true/false"),
        ("Seconds", False, "true/false"),
        ("UTCDateTime", {"at": "2026-10-01 00:05:09"}, "an object"),
        ("TextDesc1", ["a"], "an array"),
        ("BillDate", [], "an array"),
    ])
    def test_json_values_of_a_wrong_type_fail(self, json_feed, field, value, what):
        rows = [record(1), record(2), record(3)]
        rows[1][field] = value
        data = json_feed.render(rows)
        err = json_feed.error(data)
        assert (err.line, err.field) == (json_feed.record_line(data, 2, delimited_line=0), field)
        assert what in err.reason and "where a number or text is expected" in err.reason

    def test_a_lone_surrogate_escape_in_json_text_fails_at_its_line_and_key(self, json_feed):
        rows = [record(1), record(2, TextDesc1="MARK"), record(3)]
        data = json_feed.render(rows).replace(b"MARK", b"\\ud800")
        err = json_feed.error(data)
        assert (err.line, err.field) == (json_feed.record_line(data, 2, delimited_line=0), "TextDesc1")
        assert "not valid Unicode" in err.reason

    @pytest.mark.parametrize("stray", ['"He said "hi" again"', '"Spark" mobile', '"a""b"c"', '"x" ', '""x'])
    def test_a_stray_quote_in_a_quoted_field_fails(self, delimited, stray):
        rows = [record(1), record(2, TextDesc1="two\nlines"), record(3), record(4, TextDesc1="MARK"), record(5)]
        data = delimited.render(rows).replace(b"MARK", stray.encode())
        err = delimited.error(data)
        assert err.line == delimited.record_line(data, 4, delimited_line=5)
        assert "quote" in err.reason

    def test_quotes_inside_an_unquoted_field_are_text(self, delimited):
        data = delimited.render([record(1, TextDesc1="MARK")]).replace(b"MARK", b'12" screen "big"')
        assert [r["description"] for r in delimited.rows(data)] == ['12" screen "big"']

    def test_a_stray_quote_far_into_a_large_file(self, delimited):
        """Past the first block read, after quoted fields that were fine."""
        n, bad = 30_000, 29_000
        data = big_file(delimited, n, {10: {"TextDesc1": 'say "hi"\nthere'}, bad: {"TextDesc1": "STRAY"}})
        data = data.replace(b"STRAY", b'"say "hi" there"')
        assert len(data) > BLOCK_SIZE
        err = delimited.error(data)
        assert err.line == line_of(data, b'"say "hi" there"')


# A carrier's own variant of a feed: fees recognised by a CallType list of its own (what the old parsers'
# ``service_call_types`` / ``service_when_no_bparty`` options did, now rules in a format).
def fees_by_call_type(*call_types: str) -> list[dict]:
    return [{"when": {"column": "CallType", "in": list(call_types), "ignore_case": True}, "record": "charge"}]


class TestHeroFeed(FeedContract):
    carrier = "hero"

    def test_never_a_charge(self, feed):
        rows = [record(1, CallType="Line Rental"), record(2, CallType="Broadband"),
                record(3, BParty="", Seconds="0"), record(4, BParty="", Seconds="")]
        assert [r["layout"] for r in feed.rows(feed.render(rows))] == ["call"] * 4

    def test_a_variant_with_service_call_types(self, feed):
        rows = [record(1, CallType="Line Rental"), record(2), record(3, BParty="", Seconds="0")]
        got = feed.rows(feed.render(rows), records=fees_by_call_type("line rental"))
        assert [r["layout"] for r in got] == ["charge", "call", "call"]
        assert (got[0]["carrier_record_id"], got[0]["description"]) == ("1", "Mobile call")


class TestTechConnectionsFeed(FeedContract):
    carrier = "techconnections"

    def test_service_fees_are_charges(self, feed):
        rows = [
            record(1, CallType="Line Rental", BParty="", Seconds="0", UTCDateTime=""),
            record(2, CallType="Broadband"),
            record(3),  # a call
            record(4, CallType="Toll", BParty="", Seconds="0", UTCDateTime=""),
            record(5, CallType="  line RENTAL "),
            record(6, BParty="", Seconds="60"),  # charged seconds: a call
            record(7, BParty="0277000111", Seconds="0"),  # a B party: a call
            record(8, CallType="Number Charge", BParty="", Seconds=""),
        ]
        got = feed.rows(feed.render(rows))
        assert [r["layout"] for r in got] == ["charge", "charge", "call", "charge", "charge", "call", "call", "charge"]
        fee = got[0]
        assert set(fee) == set(CHARGE.parsed_columns) | {"layout"}
        assert (fee["carrier_record_id"], fee["charge_date"], fee["product_code"]) == ("1", "2026-10-01", "Line Rental")
        assert (fee["customer_reference"], fee["number_reference"]) == ("81234567", "0016321234")
        assert (fee["cost"], fee["cost_incl"], fee["quantity"]) == (100_000, 115_000, 1 * M)
        assert fee["description"] == "Mobile call"
        assert fee["extra"]["Date"] == "2026-10-01" and fee["extra"].get("UTCDateTime", "") == ""

    def test_a_call_must_have_its_utc_time(self, feed):
        rows = [record(1, CallType="Line Rental", UTCDateTime=""), record(2, UTCDateTime="")]
        err = feed.error(feed.render(rows))
        assert (err.field, err.line) == ("UTCDateTime", feed.record_line(feed.render(rows), 2, delimited_line=2))

    def test_service_fees_need_no_utc_time_column(self, headed):
        columns = [column for column in headed.columns if column != "UTCDateTime"]
        rows = [record(1, CallType="Line Rental", BParty="", Seconds="0"), record(2, CallType="Broadband")]
        got = headed.rows(render_columns(rows, columns, columns, headed.fmt))
        assert [(r["layout"], r["charge_date"]) for r in got] == [("charge", "2026-10-01"), ("charge", "2026-10-01")]

    def test_a_variant_with_its_own_rules(self, feed):
        rows = [record(1, CallType="Line Rental"), record(2, CallType="toll free"), record(3, BParty="", Seconds="0")]
        got = feed.rows(feed.render(rows), records=fees_by_call_type("Toll Free"))
        assert [r["layout"] for r in got] == ["call", "charge", "call"]


def test_sniffing_tricky_heads():
    assert sniff_format(b"\xef\xbb\xbf \r\n [") == "json"
    assert sniff_format(b'ID|"a,b,c"|x|y\n1,2,3,4,5,6') == "pipe"
    assert sniff_format(b"ID,BillDate\n") == "csv"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 1 << 20])
def test_quotes_are_checked_across_reads_of_any_size(size):
    """A quoted field, a doubled quote or a stray one cut anywhere by the reads pyarrow makes."""
    good = b'\xef\xbb\xbf"ID","T"\n1,"a ""b"" c"\n2,"",""""\n3,"x\n""y""",12" z\n4,"end"'
    for data, line in ((good, None), (good + b'\n5,"He said "hi" again",x\n', 7), (good + b'\n6,"x"y', 7)):
        check = _QuoteCheck(io.BytesIO(data), ",")
        read = b""
        while chunk := check.read(size):
            read += chunk
        assert read == data
        assert check.stray_line == line


def test_utc_times_marked_z_take_the_fast_cast_and_read_as_the_lenient_path_reads_them():
    """A column of ``YYYY-MM-DDTHH:MM:SSZ`` times (Arrow's cast, no regex round trips) gives the same canonical
    text as the lenient path gives the same times in a column it must take slowly (one other shape in it)."""
    from ingest.formats.convert import Context, convert
    from ingest.formats.spec import parse_field

    f = parse_field("test", "start_time", "utc", {"column": "T"})
    ctx = Context(".", "UTC")
    marked = ["2025-12-31T11:00:17Z", "2026-01-01T00:00:00Z", "2024-02-29 23:59:59Z", ""]
    fast, fast_bad = convert(f, pa.array(marked), ctx)
    slow, slow_bad = convert(f, pa.array(marked + ["31/12/2025 11:00"]), ctx)
    assert fast.to_pylist() == slow.to_pylist()[:4] == [
        "2025-12-31 11:00:17", "2026-01-01 00:00:00", "2024-02-29 23:59:59", None]
    for bad in (fast_bad, slow_bad):
        assert bad is None or not any(bad.to_pylist())
