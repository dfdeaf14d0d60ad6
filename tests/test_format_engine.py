"""The declarative format engine (ingest.formats): the grammar (parse_format), each reader, header mode, type,
rules, keys, duplicate rows, extra, encodings, and errors naming the file, the line and the column."""

from __future__ import annotations

import functools
import io
import json
import tomllib

import pytest
import xxhash

from ingest.errors import ConfigError, NotText, ParseError
from ingest.formats import FileParser, Source, builtin_format_tables, compile_format, parse_format
from ingest.layouts import CALL, CHARGE, extra_mapping
from tests.format_contract import SAMPLES


def spec_of(text: str, name: str = "t"):
    return parse_format(name, tomllib.loads(text)["formats"][name])


def source(data: bytes | str, name: str = "f.csv", file_format: str | None = None) -> Source:
    raw = data.encode() if isinstance(data, str) else data
    return Source(name, file_format, lambda: io.BytesIO(raw))


def parse(spec, data, name="f.csv", file_format=None, parser=None, extra_by_position=False
          ) -> dict[str, list[dict]]:
    parser = parser or FileParser(spec, "acme")
    out: dict[str, list[dict]] = {}
    for layout, batch in parser.batches(source(data, name, file_format), extra_by_position=extra_by_position):
        assert batch.schema == layout.arrow_schema()
        out.setdefault(layout.kind, []).extend(batch.to_pylist())
    return out


def error(spec, data, name="f.csv", file_format=None) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(spec, data, name, file_format)
    return info.value


def calls(spec, data, **kw) -> list[dict]:
    return parse(spec, data, **kw).get("call", [])


def config_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        spec_of(text)
    return info.value


SIMPLE = """
[formats.t]
key = ["Id"]
[formats.t.fields]
carrier_record_id = { column = "Id" }
start_time = { column = "Start" }
billed_seconds = { column = "Secs" }
charge = { column = "Cost" }
"""


# -- the grammar ------------------------------------------------------------------------------------


def test_parse_format_defaults_and_kinds():
    spec = spec_of(SIMPLE)
    assert spec.kind == "delimited" and spec.delimiter == "," and spec.header == "first" and spec.record == "call"
    assert spec.kinds == frozenset({"call"})
    assert spec.key == ("Id",)
    assert FileParser(spec, "acme").duplicate_rows(CALL) == "once"
    assert spec.fields["call"]["billed_seconds"].type == "int"
    assert spec.fields["call"]["start_time"].required  # the layout's own required field


@pytest.mark.parametrize("text, key, words", [
    ('[formats.t]\ncolour = "red"', "formats.t.colour", "unknown key"),
    ('[formats.t]\ntimezone = "Mars/Olympus"', "formats.t.timezone", "IANA"),
    ('[formats.t]\nkind = "xml"', "formats.t.kind", "must be one of"),
    ('[formats.t]\ndelimiter = ";;"', "formats.t.delimiter", "one character"),
    ('[formats.t]\nheader = "none"', "formats.t.columns", "required"),
    ('[formats.t]\nheader = "skip:x"', "formats.t.header", "must be one of"),
    ('[formats.t]\nencoding = "klingon"', "formats.t.encoding", "unknown encoding"),
    ('[formats.t.fields]\nnot_a_field = { column = "A" }', "formats.t.fields.not_a_field", "no such field"),
    ('[formats.t.call_fields]\nquantity = { column = "A" }', "formats.t.call_fields.quantity", "call layout"),
    ('[formats.t.fields]\ncharge = { column = "A", type = "date" }', "formats.t.fields.charge.type",
     "money field is read as decimal"),
    ('[formats.t.fields]\nbilled_seconds = { column = "A", type = "frobnicate" }',
     "formats.t.fields.billed_seconds.type", "unknown type"),
    ('[formats.t.fields]\nstart_time = { column = "A", format = "%d/%m/%Y %Q" }',
     "formats.t.fields.start_time.format", "strftime"),
    ('[formats.t.fields]\nstart_time = { column = "A", timezone = "Nowhere/Land" }',
     "formats.t.fields.start_time.timezone", "IANA"),
    ('[formats.t.fields]\nbilled_seconds = { column = "A", unit = "hours", type = "duration" }',
     "formats.t.fields.billed_seconds.unit", "must be one of"),
    ('[formats.t.fields]\ncurrency = { column = "A", value = "GBP" }', "formats.t.fields.currency", "one of column"),
    ('[formats.t.fields]\ncharge = { value = "1.1234567" }', "formats.t.fields.charge.value", "decimal"),
    ('[formats.t.fields]\nbill_date = { column = "A", default = "31/02/2026" }', "formats.t.fields.bill_date.default",
     "not a date"),
    ('[formats.t.fields]\ncharge = { column = "A", colour = 1 }', "formats.t.fields.charge.colour", "unknown key"),
    ('[formats.t]\nkey = "rows"', "formats.t.key", "list of columns"),
    ('[formats.t]\nduplicate_rows = "twice"', "formats.t.duplicate_rows", "must be one of"),
    ('[formats.t]\nheader = "none"\ncolumns = ["A"]\nkey = ["B"]', "formats.t.key[0]", "no column 'B'"),
    ('[formats.t]\nheader = "none"\ncolumns = ["A", "B"]\nmin_columns = 3', "formats.t.min_columns", "1 to 2"),
    ('[formats.t]\nmin_columns = 1', "formats.t.min_columns", "only for"),
    ('[[formats.t.records]]\nwhen = { column = "A" }\nrecord = "charge"', "formats.t.records[0].when",
     "one of equals or in"),
    ('[[formats.t.records]]\nwhen = { column = "A", equals = "x" }\nrecord = "refund"',
     "formats.t.records[0].record", "must be one of"),
    ('[formats.t]\nhook = "not a hook"', "formats.t.hook", "module:function"),
])
def test_parse_format_refuses(text, key, words):
    exc = config_error(text)
    assert exc.key == key
    assert words in exc.reason


def test_builtin_formats_parse():
    tables = builtin_format_tables()
    assert "hero-feed" in tables
    spec = parse_format("hero-feed", tables["hero-feed"])
    assert spec.kind == "auto" and spec.key == ("ID",)


# -- delimited files ------------------------------------------------------------------------------


def test_header_first_converts_every_field_and_keeps_extra():
    rows = calls(spec_of(SIMPLE), 'Id,Start,Secs,Cost,Note,Tag\n7,2026-03-01 10:00:00,60,1.25,"say ""hi""",a\\b\n')
    assert rows == [{
        **{name: None for name in CALL.parsed_columns},
        "record_key": "7", "position": 1, "carrier_record_id": "7", "start_time": "2026-03-01 10:00:00",
        "billed_seconds": 60, "charge": 1250000, "extra": '{"Note":"say \\"hi\\"","Tag":"a\\\\b"}',
    }]
    assert json.loads(rows[0]["extra"]) == {"Note": 'say "hi"', "Tag": "a\\b"}


def test_extra_is_null_without_unused_columns_and_escapes_control_characters():
    assert calls(spec_of(SIMPLE), "Id,Start,Secs,Cost\n1,2026-03-01 10:00:00,1,1\n")[0]["extra"] is None
    rows = calls(spec_of(SIMPLE), 'Id,Start,Secs,Cost,Note\n1,2026-03-01 10:00:00,1,1,"two\nlines\ttab"\n')
    assert json.loads(rows[0]["extra"]) == {"Note": "two\nlines\ttab"}


def test_semicolon_delimiter_quote_and_decimal_comma():
    spec = spec_of(SIMPLE.replace('key = ["Id"]', 'key = ["Id"]\ndelimiter = ";"\nquote = "\'"\n'
                                  'decimal_separator = ","'))
    rows = calls(spec, "Id;Start;Secs;Cost;Note\n1;2026-03-01 10:00:00;5;0,115;'a;b'\n", name="f.txt")
    assert rows[0]["charge"] == 115000 and json.loads(rows[0]["extra"]) == {"Note": "a;b"}
    assert FileParser(spec, "acme").file_format(source(b"x")) == "delimited"
    assert error(spec, "Id;Start;Secs;Cost\n1;2026-03-01 10:00:00;5;1.150,50\n").field == "Cost"


def test_no_quote_character():
    spec = spec_of(SIMPLE.replace('key = ["Id"]', 'key = ["Id"]\nquote = ""'))
    rows = calls(spec, 'Id,Start,Secs,Cost,Note\n1,2026-03-01 10:00:00,5,1,"quoted"\n')
    assert json.loads(rows[0]["extra"]) == {"Note": '"quoted"'}


def test_header_none_and_skip():
    none = spec_of('[formats.t]\nheader = "none"\ncolumns = ["Id", "Start"]\nkey = ["Id"]\n'
                   '[formats.t.fields]\nstart_time = { column = "Start" }\n')
    assert [r["record_key"] for r in calls(none, "1,2026-01-01 00:00:00\n2,2026-01-01 00:00:01")] == ["1", "2"]
    skip = spec_of('[formats.t]\nheader = "skip:2"\ncolumns = ["Id", "Start"]\nkey = ["Id"]\n'
                   '[formats.t.fields]\nstart_time = { column = "Start" }\n')
    data = "Report for October\nId,Start\n1,2026-01-01 00:00:00\n\n2,2026-01-01 00:00:0x\n"
    exc = error(skip, data)
    assert (exc.line, exc.field, exc.value) == (5, "Start", "2026-01-01 00:00:0x")
    assert calls(skip, data.replace("0x", "01"))[1]["position"] == 2


def test_names_and_types_header():
    spec = spec_of('[formats.t]\nheader = "names+types"\nkey = ["globalCallID_callId"]\n'
                   '[formats.t.fields]\nstart_time = { column = "dateTimeOrigination", type = "epoch" }\n')
    data = "cdrRecordType,globalCallID_callId,dateTimeOrigination\nINTEGER,INTEGER,INTEGER\n1,42,1700000000\n"
    rows = calls(spec, data)
    assert rows[0]["record_key"] == "42" and rows[0]["start_time"] == "2023-11-14 22:13:20"
    assert json.loads(rows[0]["extra"]) == {"cdrRecordType": "1", "globalCallID_callId": "42"}  # no field uses it
    assert error(spec, data + "1,43,soon\n").line == 4


def test_header_auto_and_loose_names():
    spec = spec_of('[formats.t]\nheader = "auto"\ncolumn_names = "loose"\ncolumns = ["ID", "UTCDateTime", "Charge"]\n'
                   'key = ["ID"]\n[formats.t.fields]\ncarrier_record_id = { column = "ID", type = "int", required = true }\n'
                   'start_time = { column = "UTCDateTime" }\ncharge = { column = "Charge", required = true }\n')
    with_header = calls(spec, "charge,utc date_time,id,Mystery\n0.5,2026-01-01 00:00:00,+0012,m\n")
    assert with_header[0]["record_key"] == "12" and with_header[0]["charge"] == 500000
    assert json.loads(with_header[0]["extra"]) == {"Mystery": "m"}
    positional = calls(spec, "12,2026-01-01 00:00:00,0.5\n")
    assert positional[0]["record_key"] == "12" and positional[0]["extra"] is None
    twice = error(spec, "ID,Charge,charge,UTCDateTime\n1,2,3,2026-01-01 00:00:00\n")
    assert (twice.line, twice.field, twice.reason) == (1, "charge", "column appears twice in the header")
    missing = error(spec, "\nID,UTCDateTime\n")
    assert (missing.line, missing.field, missing.reason) == (2, "Charge", "required column missing from the header")
    not_int = error(spec, "ID,UTCDateTime,Charge\n1x,2026-01-01 00:00:00,1\n")
    assert (not_int.line, not_int.field) == (2, "ID") and "whole number" in not_int.reason


def test_auto_kind_reads_each_delimiter_and_json():
    spec = spec_of('[formats.t]\nkind = "auto"\nheader = "auto"\ncolumns = ["ID", "Start", "Cost"]\nkey = ["ID"]\n'
                   '[formats.t.fields]\nstart_time = { column = "Start" }\ncharge = { column = "Cost" }\n')
    parser = FileParser(spec, "acme")
    expected = {"record_key": "1", "start_time": "2026-01-01 00:00:00", "charge": 1000000}
    for fmt, data in (("csv", "1,2026-01-01 00:00:00,1\n"), ("txt", "1\t2026-01-01 00:00:00\t1\n"),
                      ("pipe", "1|2026-01-01 00:00:00|1\n"), ("json", '[{"ID": 1, "Start": "2026-01-01T00:00:00Z", "Cost": 1}]')):
        assert parser.file_format(source(data, file_format=fmt)) == fmt
        row = calls(spec, data, file_format=fmt)[0]
        assert {k: row[k] for k in expected} == expected
    # A pipe-separated file named .txt is read as pipe; a sniffed one as what it is.
    assert parser.file_format(source("1|2026-01-01 00:00:00|1\n", file_format="txt")) == "pipe"
    assert parser.file_format(source("ID\tStart\tCost\n1\t2026-01-01 00:00:00\t1\n")) == "txt"


def test_min_columns_takes_the_first_rows_width():
    spec = spec_of('[formats.t]\nheader = "none"\ncolumns = ["A", "B", "C", "D"]\nmin_columns = 2\nkey = "row"\n'
                   '[formats.t.fields]\nstart_time = { column = "B" }\na_number = { column = "A" }\n')
    rows = calls(spec, "x,2026-01-01 00:00:00\ny,2026-01-01 00:00:01\n")
    assert [r["a_number"] for r in rows] == ["x", "y"] and rows[0]["extra"] is None
    four = calls(spec, "x,2026-01-01 00:00:00,c,d\n")
    assert json.loads(four[0]["extra"]) == {"C": "c", "D": "d"}
    # Rows of several widths in one file (a Master.csv widened in the middle of its life): each at its own.
    mixed = calls(spec, "x,2026-01-01 00:00:00\ny,2026-01-01 00:00:01,c\nz,2026-01-01 00:00:02,c,d\n")
    assert [r["extra"] and json.loads(r["extra"]) for r in mixed] == [None, {"C": "c"}, {"C": "c", "D": "d"}]
    assert [r["position"] for r in mixed] == [1, 2, 3]
    # A column a row does not reach is absent (null), not empty text.
    absent = spec_of('[formats.t]\nheader = "none"\ncolumns = ["A", "B", "C"]\nmin_columns = 2\n'
                     '[formats.t.fields]\nstart_time = { column = "B" }\ncarrier_record_id = { column = "C" }\n')
    assert [r["carrier_record_id"] for r in calls(absent, "x,2026-01-01 00:00:00\ny,2026-01-01 00:00:00,\n")] \
        == [None, ""]
    exc = error(spec, "x,2026-01-01 00:00:00\ny,2026-01-01 00:00:01,c\n\nz,2026-01-01 00:00:02,c,d,e\n")
    assert (exc.line, exc.reason) == (4, "expected 2 to 4 fields, found 5")
    assert error(spec, "x\n").reason == "expected 2 to 4 fields, found 1"


def test_structural_errors_name_the_line():
    spec = spec_of(SIMPLE)
    wrong = error(spec, "Id,Start,Secs,Cost\n1,2026-01-01 00:00:00,1,1\n\n2,2026-01-01 00:00:00,1\n")
    assert (wrong.file, wrong.line, wrong.reason) == ("f.csv", 4, "expected 4 fields, found 3")
    truncated = error(spec, 'Id,Start,Secs,Cost\n1,2026-01-01 00:00:00,1,1\n2,"2026-01-01 00:00:00,1,1\n')
    assert truncated.line == 3
    stray = error(spec, 'Id,Start,Secs,Cost,Note\n1,2026-01-01 00:00:00,1,1,"He said "hi" again"\n')
    assert stray.line == 2 and "stray quote" in stray.reason


def test_blank_lines_no_final_newline_and_positions():
    rows = calls(spec_of(SIMPLE), "\nId,Start,Secs,Cost\n\n1,2026-01-01 00:00:00,1,1\n\n\n2,2026-01-01 00:00:00,2,2")
    assert [(r["record_key"], r["position"]) for r in rows] == [("1", 1), ("2", 2)]
    parser = FileParser(spec_of(SIMPLE), "acme")
    src = source("\nId,Start,Secs,Cost\n\n1,2026-01-01 00:00:00,1,1\n\n\n2,2026-01-01 00:00:00,2,2")
    assert parser.record_lines(src, [1, 2]) == {1: 4, 2: 7}


def test_empty_and_header_only_files_have_no_records():
    spec = spec_of(SIMPLE)
    assert parse(spec, "") == {}
    assert parse(spec, "\n\n") == {}
    assert parse(spec, "Id,Start,Secs,Cost\n") == {}
    json_spec = spec_of(SIMPLE.replace('key = ["Id"]', 'key = ["Id"]\nkind = "json"'))
    assert parse(json_spec, "[]") == {}
    assert error(json_spec, "").reason == "empty file: expected a JSON array"


def test_not_text_is_refused():
    with pytest.raises(NotText):
        FileParser(spec_of(SIMPLE), "acme").file_format(source(b"%PDF-1.7\n\x00\x01\x02binary"))


# -- types ------------------------------------------------------------------------------------------

TYPES = """
[formats.t]
key = "row"
timezone = "Europe/London"
[formats.t.fields]
start_time = { column = "Start" }
bill_date = { column = "Bill" }
charge = { column = "Cost" }
billed_seconds = { column = "Secs", type = "duration", unit = "hh:mm:ss" }
connected_seconds = { column = "Mins", type = "duration", unit = "minutes" }
"""


def _types(rows: str):
    return calls(spec_of(TYPES), "Start,Bill,Cost,Secs,Mins\n" + rows)


def test_datetimes_dates_money_durations():
    rows = _types("2026-07-01T10:00:00Z,2026-07-01,0.1150,1:02:03,1.5\n"
                  "2026-07-01 10:00,01/07/2026,-12,02:03,0.33\n"
                  "2026-07-01T10:00:00+02:00,20260701,.5,0:00:00,\n"
                  "2026-01-15 10:00:00,,1.1234560,,0\n")
    assert [r["start_time"] for r in rows] == ["2026-07-01 10:00:00", "2026-07-01 09:00:00",  # BST is UTC+1
                                               "2026-07-01 08:00:00", "2026-01-15 10:00:00"]
    assert [r["bill_date"] for r in rows] == ["2026-07-01"] * 3 + [None]
    assert [r["charge"] for r in rows] == [115000, -12000000, 500000, 1123456]
    assert [r["billed_seconds"] for r in rows] == [3723, 123, 0, None]
    assert [r["connected_seconds"] for r in rows] == [90, 20, None, 0]  # 0.33 minutes = 19.8 s -> 20


@pytest.mark.parametrize("row, field, reason", [
    ("2026-02-30 10:00:00,,1,,", "Start", "not a date and time"),
    ("2026-03-29 01:30:00,,1,,", "Start", "not a date and time: it does not exist in Europe/London"),  # DST gap
    ("2026-01-01 10:00:00,2026-13-01,1,,", "Bill", "not a date"),
    ("2026-01-01 10:00:00,,1.0000001,,", "Cost", "not a decimal amount (at most 6 decimal places)"),
    ("2026-01-01 10:00:00,,1e3,,", "Cost", "not a decimal amount"),
    ("2026-01-01 10:00:00,,1,1:60:00,", "Secs", "not a duration (hh:mm:ss)"),
    ("2026-01-01 10:00:00,,1,,-1", "Mins", "not a duration (minutes)"),
    (",,1,,", "Start", "required value is empty"),
])
def test_bad_values_name_line_column_and_value(row, field, reason):
    exc = error(spec_of(TYPES), "Start,Bill,Cost,Secs,Mins\n2026-01-01 10:00:00,,1,,\n" + row + "\n")
    assert (exc.file, exc.line, exc.field) == ("f.csv", 3, field)
    assert exc.reason.startswith(reason)
    assert exc.value == row.split(",")[["Start", "Bill", "Cost", "Secs", "Mins"].index(field)]


ALSO = """
[formats.t]
key = ["Id"]
[formats.t.fields]
start_time = { column = "D", also = "T", format = "%d/%m/%Y %H:%M:%S" }
"""


@pytest.mark.parametrize("row, value", [
    ("1,15/07/2026,25:61:00", "15/07/2026 25:61:00"),  # the second column is the bad one: shown with the first
    ("1,31/02/2026,10:00:00", "31/02/2026 10:00:00"),
    ("1,,10:00:00", "10:00:00"),  # joined, then trimmed
])
def test_a_bad_value_read_from_two_columns_is_shown_as_read(row, value):
    exc = error(spec_of(ALSO), "Id,D,T\n1,15/07/2026,10:00:00\n" + row + "\n")
    assert (exc.line, exc.field, exc.value) == (3, "D + T", value)
    assert exc.reason == "not a date and time (%d/%m/%Y %H:%M:%S)"
    assert str(exc) == f"f.csv, line 3, field D + T: {exc.reason} (value {value!r})"


def test_an_empty_value_read_from_two_columns_names_both():
    exc = error(spec_of(ALSO), "Id,D,T\n1,15/07/2026,10:00:00\n2,, \n")
    assert (exc.line, exc.field, exc.reason, exc.value) == (3, "D + T", "required value is empty", "")


MONEY = """
[formats.t]
key = ["Id"]
record = "charge"
[formats.t.fields]
cost = { column = "Amount" }
"""


def test_amounts_up_to_the_int64_millionths_bound_are_read():
    amounts = ["1000000000000", "1000000000000.5", "9223372036854.775807", "-9223372036854.775808",
               "+9223372036854.7758070", "0009223372036854", "-1234567890123.000001"]
    rows = parse(spec_of(MONEY), "Id,Amount\n" + "".join(f"{i},{a}\n" for i, a in enumerate(amounts)))["charge"]
    assert [r["cost"] for r in rows] == [10 ** 18, 10 ** 18 + 500000, 2 ** 63 - 1, -2 ** 63,
                                         2 ** 63 - 1, 9223372036854000000, -1234567890123000001]
    # The same, each alone (every value canonical: the fast path), and with a decimal comma.
    for amount, millionths in [("9223372036854.775807", 2 ** 63 - 1), ("-9223372036854.775808", -2 ** 63),
                               ("1000000000000.5", 10 ** 18 + 500000)]:
        assert parse(spec_of(MONEY), f"Id,Amount\n1,{amount}\n")["charge"][0]["cost"] == millionths
    comma = spec_of(MONEY.replace('record = "charge"', 'record = "charge"\ndelimiter = ";"\ndecimal_separator = ","'))
    assert parse(comma, "Id;Amount\n1;9223372036854,775807\n")["charge"][0]["cost"] == 2 ** 63 - 1


@pytest.mark.parametrize("amount, reason", [
    ("9223372036854.775808", "out of range"),  # one millionth beyond
    ("-9223372036854.775809", "out of range"),
    ("10000000000000", "out of range"),
    ("99999999999999999999999999.5", "out of range"),
    ("9223372036854.7758071", "not a decimal amount (at most 6 decimal places)"),  # too precise, whatever its size
    ("1.0000001", "not a decimal amount (at most 6 decimal places)"),
])
def test_amounts_beyond_int64_millionths_are_refused_as_out_of_range(amount, reason):
    for data in (f"Id,Amount\n1,{amount}\n", f"Id,Amount\n1,1.5\n2, {amount}\n"):  # fast path, then row by row
        exc = error(spec_of(MONEY), data)
        assert (exc.field, exc.value.strip()) == ("Amount", amount)
        assert exc.reason.startswith(reason), exc.reason
    if reason == "out of range":
        assert exc.reason == "out of range (an amount is from -9223372036854.775808 to 9223372036854.775807)"


def test_a_money_constant_out_of_range_is_refused_with_the_configuration():
    exc = config_error(MONEY.replace('cost = { column = "Amount" }',
                                     'cost = { column = "Amount", default = "10000000000000" }'))
    assert "out of range" in str(exc)


def test_a_local_time_in_the_daylight_saving_gap_names_its_zone():
    spec = spec_of(ALSO.replace('format = "%d/%m/%Y %H:%M:%S" }',
                                'format = "%d/%m/%Y %H:%M:%S", timezone = "America/New_York" }'))
    exc = error(spec, "Id,D,T\n1,08/03/2026,01:59:59\n2,08/03/2026,02:30:00\n")  # 02:00 -> 03:00 in New York
    assert (exc.line, exc.field, exc.value) == (3, "D + T", "08/03/2026 02:30:00")
    assert exc.reason == ("not a date and time: it does not exist in America/New_York "
                          "(a daylight saving gap: the clocks go forward past it)")
    # Without a format, in the format's zone; a time with an offset is not local, so never in a gap.
    exc = error(spec_of(TYPES), "Start,Bill,Cost,Secs,Mins\n2026-03-29 01:00:00,,1,,\n")
    assert (exc.line, exc.field) == (2, "Start")
    assert "does not exist in Europe/London (a daylight saving gap" in exc.reason
    rows = _types("2026-03-29 01:30:00+01:00,,1,,\n2026-03-29 00:59:59,,1,,\n2026-03-29 02:00:00,,1,,\n")
    assert [r["start_time"] for r in rows] == ["2026-03-29 00:30:00", "2026-03-29 00:59:59", "2026-03-29 01:00:00"]
    # A time that is bad anyway keeps the general reason.
    assert error(spec_of(TYPES), "Start,Bill,Cost,Secs,Mins\n2026-03-29 25:30:00,,1,,\n").reason == \
        "not a date and time (YYYY-MM-DD HH:MM:SS, with T or a space, optional Z or offset)"


def test_ambiguous_local_time_is_the_earliest():
    rows = _types("2026-10-25 01:30:00,,1,,\n")  # London, clocks go back at 02:00 BST: 01:30 happens twice
    assert rows[0]["start_time"] == "2026-10-25 00:30:00"


def test_formats_also_map_default_value_epoch_and_int():
    spec = spec_of("""
[formats.t]
key = ["Ref"]
[formats.t.fields]
start_time = { column = "Day", also = "Clock", format = "%d.%m.%Y %H:%M", timezone = "America/New_York" }
end_time = { column = "Ended", type = "epoch", unit = "milliseconds" }
answer_time = { column = "Answered", type = "epoch", map = { "0" = "" } }
bill_date = { column = "Day", type = "date", format = "%d.%m.%Y" }
direction = { column = "Dir", map = { O = "outbound", I = "inbound" } }
currency = { value = "GBP" }
status = { column = "Status", default = "ANSWERED" }
billed_seconds = { column = "Secs", type = "int" }
""")
    rows = calls(spec, "Ref,Day,Clock,Ended,Answered,Dir,Status,Secs\n"
                       "r1,5.1.2026,9:05,1767607500123,1767607499.75, O ,,+42\n"
                       "r2,05.01.2026,09:05,0,0,X,BUSY,0\n")
    assert [r["start_time"] for r in rows] == ["2026-01-05 14:05:00"] * 2
    assert [r["end_time"] for r in rows] == ["2026-01-05 10:05:00", "1970-01-01 00:00:00"]
    assert [r["answer_time"] for r in rows] == ["2026-01-05 10:04:59", None]
    assert [r["bill_date"] for r in rows] == ["2026-01-05"] * 2
    assert [r["direction"] for r in rows] == ["outbound", "X"]
    assert [r["currency"] for r in rows] == ["GBP"] * 2
    assert [r["status"] for r in rows] == ["ANSWERED", "BUSY"]
    assert [r["billed_seconds"] for r in rows] == [42, 0]
    assert "Dir" not in (rows[0]["extra"] or "")
    exc = error(spec, "Ref,Day,Clock,Ended,Answered,Dir,Status,Secs\nr1,31.2.2026,9:05,0,0,O,,1\n")
    assert (exc.line, exc.field, exc.value) == (2, "Day + Clock", "31.2.2026 9:05")  # start_time reads both
    exc = error(spec, "Ref,Day,Clock,Ended,Answered,Dir,Status,Secs\nr1,5.1.2026,9:05,0,0,O,,1.5\n")
    assert (exc.line, exc.field, exc.reason) == (2, "Secs", "not a whole number (or out of range)")


# -- record kinds, keys, duplicates -------------------------------------------------------------------

RULES = """
[formats.t]
key = ["ID"]
[[formats.t.records]]
when = { column = "Type", in = ["rental", "broadband"], ignore_case = true }
record = "charge"
[[formats.t.records]]
when = { column = "Type", equals = "HEADER" }
record = "skip"
[formats.t.fields]
description = { column = "Text" }
[formats.t.call_fields]
start_time = { column = "When" }
charge = { column = "Cost", required = true }
[formats.t.charge_fields]
cost = { column = "Cost" }
charge_date = { column = "When", type = "datetime", required = true }
quantity = { value = "1" }
"""


def test_rules_split_calls_and_charges_and_skip_rows():
    spec = spec_of(RULES)
    assert FileParser(spec, "acme").kinds == frozenset({"call", "charge"})
    out = parse(spec, "ID,Type,When,Cost,Text\n0,HEADER,,,\n1,Mobile,2026-01-01 10:00:00,0.5,call\n"
                      "2, Rental ,2026-01-31 00:00:00,10,line\n3,Broadband,2026-01-31 00:00:00,20,bb\n")
    assert [(r["record_key"], r["position"], r["charge"]) for r in out["call"]] == [("1", 2, 500000)]
    assert [(r["record_key"], r["position"], r["charge_date"], r["cost"], r["quantity"], r["description"])
            for r in out["charge"]] == [("2", 3, "2026-01-31", 10000000, 1000000, "line"),
                                        ("3", 4, "2026-01-31", 20000000, 1000000, "bb")]
    assert json.loads(out["charge"][0]["extra"]) == {"ID": "2", "Type": " Rental "}
    # start_time is required for calls only; a skipped row is not checked at all.
    assert "charge" in parse(spec, "ID,Type,When,Cost,Text\n0,HEADER,x,y,\n4,rental,2026-01-31 00:00:00,1,\n")
    exc = error(spec, "ID,Type,When,Cost,Text\n4,rental,2026-01-31 00:00:00,1,\n5,Mobile,,1,\n")
    assert (exc.line, exc.field, exc.reason) == (3, "When", "required value is empty")


def test_composite_key_and_empty_key():
    spec = spec_of('[formats.t]\nkey = ["A", "B"]\n[formats.t.fields]\nstart_time = { column = "S" }\n')
    assert calls(spec, "A,B,S\n x ,y,2026-01-01 00:00:00\n")[0]["record_key"] == "x\x1fy"
    exc = error(spec, "A,B,S\nx,y,2026-01-01 00:00:00\nx, ,2026-01-01 00:00:00\n")
    assert (exc.line, exc.field, exc.reason) == (3, "B", "required value is empty")


ROWS = '[formats.t]\nkey = "row"\n{dup}[formats.t.fields]\nstart_time = {{ column = "S" }}\n'


def test_row_keys_hash_the_row_and_count_occurrences():
    data = "S,N\n2026-01-01 00:00:00,a\n2026-01-01 00:00:00,b\n2026-01-01 00:00:00,a\n"
    digest = xxhash.xxh3_128_hexdigest("2026-01-01 00:00:00\x1fa".encode())
    once = FileParser(spec_of(ROWS.format(dup="")), "acme")
    rows = parse(None, data, parser=once)["call"]
    assert [r["record_key"] for r in rows] == [f"h:{digest}:1", rows[1]["record_key"]]
    assert [r["position"] for r in rows] == [1, 2] and once.rows_dropped == 1
    distinct = FileParser(spec_of(ROWS.format(dup='duplicate_rows = "distinct"\n')), "acme")
    rows = parse(None, data, parser=distinct)["call"]
    assert [r["record_key"] for r in rows][::2] == [f"h:{digest}:1", f"h:{digest}:2"]
    assert distinct.rows_dropped == 0
    # The same row in another file has the same key.
    assert parse(None, "S,N\n2026-01-01 00:00:00,a\n", parser=once)["call"][0]["record_key"] == f"h:{digest}:1"
    assert once.rows_dropped == 0


def test_charges_keep_identical_rows_by_default():
    spec = spec_of('[formats.t]\nrecord = "charge"\n[formats.t.fields]\ncost = { column = "C" }\n')
    parser = FileParser(spec, "acme")
    assert parser.duplicate_rows(CHARGE) == "distinct"
    rows = parse(None, "C\n1\n1\n", parser=parser)["charge"]
    assert [r["record_key"][-2:] for r in rows] == [":1", ":2"]


# -- fixed width -------------------------------------------------------------------------------------

FIXED = """
[formats.t]
kind = "fixed"
header = "skip:1"
key = ["Id"]
columns = [{ name = "Id", start = 1, width = 4 }, { name = "Start", start = 5, width = 19 },
           { name = "Cost", start = 25, width = 6 }]
[formats.t.fields]
start_time = { column = "Start" }
charge = { column = "Cost" }
"""


def test_fixed_width():
    spec = spec_of(FIXED)
    assert FileParser(spec, "acme").file_format(source("x")) == "fixed"
    data = "HEADER LINE\n0001" + "2026-01-01 10:00:00" + " 1.50\n\n0002" + "2026-01-01 10:00:01" + " 2\n"
    rows = calls(spec, data, name="f.dat")
    assert [(r["record_key"], r["charge"], r["position"]) for r in rows] == [("0001", 1500000, 1), ("0002", 2000000, 2)]
    short = error(spec, "HEADER\n0001" + "2026-01-01 10:00:00" + " 1\n\n0002 2026\n")
    assert (short.line, short.field) == (4, "Cost") and "too short" in short.reason
    bad = error(spec, "HEADER\n0001" + "2026-01-01 10:00:00" + " 1\n\n0002" + "2026-01-01 10:00:01" + " x\n")
    assert (bad.line, bad.field, bad.value) == (4, "Cost", "x")


# -- JSON ---------------------------------------------------------------------------------------------

JSON_SPEC = """
[formats.t]
kind = "json"
column_names = "loose"
key = ["Id"]
[formats.t.fields]
start_time = { column = "Start" }
charge = { column = "Cost", required = true }
"""


def test_json_array():
    spec = spec_of(JSON_SPEC)
    data = '[\n {"id": 12345678901234567890, "Start": "2026-01-01T00:00:00Z", "Cost": 0.10, "More": null, "X": [1]},\n' \
           ' {"Id": "2", "start": "2026-01-01 00:00:01", "cost": "1", "More": "m"}\n]'
    rows = calls(spec, data, name="f.json")
    assert [(r["record_key"], r["charge"]) for r in rows] == [("12345678901234567890", 100000), ("2", 1000000)]
    # Keys spelt loosely are shown by the format's name; an explicit null is left out.
    assert json.loads(rows[0]["extra"]) == {"Id": "12345678901234567890", "X": '["1"]'}
    assert json.loads(rows[1]["extra"]) == {"Id": "2", "More": "m"}


def test_json_errors_name_the_elements_line():
    spec = spec_of(JSON_SPEC)
    wrong = error(spec, '[\n{"Id": 1, "Start": "2026-01-01 00:00:00", "Cost": 1},\n{"Id": 2, "Start": true, "Cost": 1}]')
    assert (wrong.line, wrong.field, wrong.reason) == (3, "Start", "true/false where a number or text is expected")
    missing = error(spec, '[{"Id": 1, "Start": "2026-01-01 00:00:00", "Cost": 1},\n\n{"Id": 2, "Start": "2026-01-01 00:00:00"}]')
    assert (missing.line, missing.field, missing.reason) == (3, "Cost", "required field missing")
    assert error(spec, '[{"Id": 1, "Cost": 1, "Start": "2026-01-01 00:00:00"},\n').reason == "the JSON array is not closed (file truncated?)"
    parser = FileParser(spec, "acme")
    assert parser.record_lines(source('[\n{"Id": 1},\n\n{"Id": 2}]'), [2]) == {2: 4}


# -- encodings ---------------------------------------------------------------------------------------


def test_encodings():
    latin = spec_of(SIMPLE.replace('key = ["Id"]', 'key = ["Id"]\nencoding = "latin-1"'))
    rows = calls(latin, "Id,Start,Secs,Cost,Name\n1,2026-01-01 00:00:00,1,1,Zoë\n".encode("latin-1"))
    assert json.loads(rows[0]["extra"]) == {"Name": "Zoë"}
    cp1252 = spec_of(SIMPLE.replace('key = ["Id"]', 'key = ["Id"]\nencoding = "cp1252"'))
    exc = error(cp1252, b"Id,Start,Secs,Cost\n1,2026-01-01 00:00:00,1,1\n\n2,2026-01-01 00:00:00,1,\x81\n")
    assert exc.line == 4 and "not valid cp1252 text" in exc.reason
    utf8 = error(spec_of(SIMPLE), b"Id,Start,Secs,Cost,Name\n1,2026-01-01 00:00:00,1,1,a\n2,2026-01-01 00:00:00,1,1,\xff\n")
    assert utf8.line == 3 and "not valid utf-8 text" in utf8.reason
    replace = spec_of(SIMPLE.replace('key = ["Id"]', 'key = ["Id"]\nencoding_errors = "replace"'))
    rows = calls(replace, b"\xef\xbb\xbfId,Start,Secs,Cost,Name\n1,2026-01-01 00:00:00,1,1,a\xffb\n")
    assert rows[0]["record_key"] == "1" and json.loads(rows[0]["extra"]) == {"Name": "a\ufffdb"}


def test_compile_once_parser_per_file():
    compiled = compile_format(spec_of(SIMPLE))
    first, second = compiled.parser("a"), compiled.parser("b")
    assert first is not second and first.compiled is second.compiled
    assert calls(None, "Id,Start,Secs,Cost\n1,2026-01-01 00:00:00,1,1\n", parser=first)[0]["record_key"] == "1"


def test_times_with_and_without_an_offset_in_one_column():
    rows = calls(spec_of(SIMPLE), "Id,Start,Secs,Cost\n1,2026-10-01 00:05:09+13:00,1,1\n2,2026-10-01 00:05:09,1,1\n"
                                  "3,2026-10-01T00:05:09-0130,1,1\n4,2026-10-01 00:05:09 UTC,1,1\n")
    assert [r["start_time"] for r in rows] == ["2026-09-30 11:05:09", "2026-10-01 00:05:09",
                                               "2026-10-01 01:35:09", "2026-10-01 00:05:09"]


def test_a_rule_on_a_column_the_file_lacks_does_not_hold():
    spec = spec_of(RULES.replace('when = { column = "Type", equals = "HEADER" }',
                                 'when = [{ column = "BParty", equals = "" }, { column = "Cost", in = ["", "0"] }]'))
    out = parse(spec, "ID,When,Cost\n1,2026-01-01 10:00:00,0\n")
    assert list(out) == ["call"]
    assert "charge" not in parse(spec, "ID,When,Cost,BParty\n1,2026-01-01 10:00:00,1,\n")
    assert parse(spec, "ID,When,Cost,BParty\n1,2026-01-01 10:00:00,0,\n") == {}  # skipped


def test_a_pipe_file_named_txt_with_a_bad_row_names_that_row():
    spec = spec_of('[formats.t]\nkind = "auto"\nheader = "auto"\ncolumns = ["ID", "Start", "Cost"]\nkey = ["ID"]\n'
                   '[formats.t.fields]\nstart_time = { column = "Start" }\ncharge = { column = "Cost" }\n')
    data = "ID|Start|Cost\n1|2026-01-01 00:00:00|1\n2|2026-01-01 00:00:00\n"
    assert FileParser(spec, "acme").file_format(source(data, file_format="txt")) == "pipe"
    exc = error(spec, data, name="f.txt", file_format="txt")
    assert (exc.line, exc.reason) == (3, "expected 3 fields, found 2")


def double_costs(table):
    """A hook (tests): every Cost doubled, as text."""
    import pyarrow.compute as pc

    index = table.column_names.index("Cost")
    doubled = pc.cast(pc.multiply(pc.cast(table.column("Cost"), "int64"), 2), "string")
    return table.set_column(index, "Cost", doubled)


def test_hook_sees_each_block_before_conversion():
    spec = spec_of(SIMPLE.replace('key = ["Id"]', 'key = ["Id"]\nhook = "tests.test_format_engine:double_costs"'))
    assert calls(spec, "Id,Start,Secs,Cost\n1,2026-01-01 00:00:00,1,21\n")[0]["charge"] == 42000000


def test_hex_and_exponents_are_not_numbers_and_unknown_columns_may_repeat():
    spec = spec_of(SIMPLE)
    assert error(spec, "Id,Start,Secs,Cost\n1,2026-01-01 00:00:00,0x10,1\n").field == "Secs"
    assert error(spec, "Id,Start,Secs,Cost\n1,2026-01-01 00:00:00,1,1E2\n").field == "Cost"
    rows = calls(spec, "Id,Start,Secs,Cost,,\n1,2026-01-01 00:00:00,1,1,a,b\n")
    assert rows[0]["extra"] == '{"":"a","":"b"}'


def test_a_required_column_a_short_row_does_not_reach_names_that_row():
    spec = spec_of('[formats.t]\nheader = "none"\ncolumns = ["A", "B", "C"]\nmin_columns = 2\n'
                   '[formats.t.fields]\nstart_time = { column = "B" }\ncharge = { column = "C", required = true }\n')
    exc = error(spec, "x,2026-01-01 00:00:00,1\ny,2026-01-01 00:00:00\n")
    assert (exc.line, exc.field, exc.reason) == (2, "C", "required value is empty")


def test_a_hook_that_does_not_load_is_a_configuration_error():
    with pytest.raises(ConfigError) as info:
        compile_format(spec_of(SIMPLE.replace('key = ["Id"]', 'key = ["Id"]\nhook = "tests.test_format_engine:nope"')))
    assert info.value.key == "formats.t.hook"


def test_a_durations_or_an_epochs_format_names_its_unit():
    """`{ type = "duration", format = "hh:mm:ss" }` (as the issue spells it) reads as `unit = "hh:mm:ss"`."""
    both = spec_of(TYPES.replace('unit = "hh:mm:ss"', 'format = "hh:mm:ss"').replace('unit = "minutes"',
                                                                                     'format = "minutes"'))
    assert both == spec_of(TYPES)
    epoch = spec_of('[formats.t]\n[formats.t.fields]\nstart_time = { column = "At", type = "epoch", '
                    'format = "milliseconds" }\n')
    assert calls(epoch, "At\n1404121212123\n")[0]["start_time"] == "2014-06-30 09:40:12"
    assert config_error(TYPES.replace('unit = "hh:mm:ss"', 'format = "%H:%M"')).key.endswith("billed_seconds.format")
    assert "differ" in config_error(TYPES.replace('unit = "hh:mm:ss"',
                                                  'unit = "minutes", format = "hh:mm:ss"')).reason


# -- extra by position (what the loader asks for: files.extra_columns) ------------------------------------------


def by_position(spec, data, name="f.csv", file_format=None) -> tuple[dict[str, list[dict]], dict[str, list[str]]]:
    """The batches a loader gets (``extra_by_position``), by kind, and the names the parser gives their values."""
    parser = FileParser(spec, "acme")
    return parse(spec, data, name, file_format, parser, extra_by_position=True), parser.extra_columns


def test_extra_by_position_is_an_array_of_the_values_named_once_for_the_file():
    spec = spec_of(SIMPLE)
    data = 'Id,Start,Secs,Cost,Note,Tag\n1,2026-03-01 10:00:00,1,1,"say ""hi""",a\\b\n2,2026-03-01 10:00:01,2,2,x,\n'
    rows, names = by_position(spec, data)
    assert names == {"call": ["Note", "Tag"]}
    assert [r["extra"] for r in rows["call"]] == ['["say \\"hi\\"","a\\\\b"]', '["x",""]']
    # Every other column is what a plain parse gives; a plain parse (every reader but the loader) keeps objects.
    plain = calls(spec, data)
    assert [dict(r, extra=None) for r in rows["call"]] == [dict(r, extra=None) for r in plain]
    assert [extra_mapping(r["extra"], names["call"]) for r in rows["call"]] == [json.loads(r["extra"]) for r in plain]
    assert plain[0]["extra"] == '{"Note":"say \\"hi\\"","Tag":"a\\\\b"}'


def test_extra_by_position_keeps_objects_where_names_or_values_would_not_line_up(monkeypatch):
    # A control character in a value: the batch keeps objects (the careful path), and the file names nothing.
    rows, names = by_position(spec_of(SIMPLE), 'Id,Start,Secs,Cost,Note\n1,2026-03-01 10:00:00,1,1,"two\nlines"\n')
    assert names == {} and json.loads(rows["call"][0]["extra"]) == {"Note": "two\nlines"}
    # JSON records that leave a member out (null): objects.
    spec = spec_of('[formats.t]\nkind = "json"\nkey = ["ID"]\n[formats.t.fields]\nstart_time = { column = "S" }\n')
    rows, names = by_position(spec, '[{"ID": 1, "S": "2026-01-01T00:00:00Z", "X": "a"}, {"ID": 2, '
                                    '"S": "2026-01-01T00:00:01Z"}]', name="f.json", file_format="json")
    assert names == {} and [r["extra"] and json.loads(r["extra"]) for r in rows["call"]] == [
        {"ID": "1", "X": "a"}, {"ID": "2"}]
    # One JSON record per block: each block whole, but the third under other names than the file's (those of
    # its first batch): that batch keeps objects.
    import ingest.formats.engine as engine

    monkeypatch.setattr(engine, "read_json_array", functools.partial(engine.read_json_array, rows_per_block=1))
    rows, names = by_position(spec, '[{"ID": 1, "S": "2026-01-01T00:00:00Z", "X": "a"}, {"ID": 2, "S": '
                                    '"2026-01-01T00:00:01Z", "X": "b"}, {"ID": 3, "S": "2026-01-01T00:00:02Z", '
                                    '"Y": "c"}]', name="f.json", file_format="json")
    assert names == {"call": ["ID", "X"]}
    assert [r["extra"] for r in rows["call"]] == ['["1","a"]', '["2","b"]', '{"ID":"3","Y":"c"}']


def test_extra_by_position_is_for_calls_and_charges_never_for_legs():
    """The legs join reads a leg's extra members by name in SQL: legs keep objects whatever the loader asks."""
    spec = parse_format("radius-detail", builtin_format_tables()["radius-detail"])
    data = (SAMPLES / "radius-detail" / "detail-20260211").read_bytes()
    rows, names = by_position(spec, data, name="detail-20260211")
    assert rows["leg"] and "leg" not in names
    assert all(r["extra"] is None or r["extra"].startswith("{") for r in rows["leg"])
    # A format with calls and charges names each kind's values apart.
    spec = spec_of('[formats.t]\nkey = ["Id"]\n[[formats.t.records]]\nwhen = { column = "T", equals = "fee" }\n'
                   'record = "charge"\n[[formats.t.records]]\nwhen = { column = "T", equals = "call" }\n'
                   'record = "call"\n[formats.t.call_fields]\nstart_time = { column = "When" }\n'
                   '[formats.t.charge_fields]\ncharge_date = { column = "When", type = "date" }\n'
                   'cost = { column = "Cost" }\n')
    rows, names = by_position(spec, "Id,T,When,Cost\n1,call,2026-01-01 00:00:00,1\n2,fee,2026-01-01,5\n")
    assert names == {"call": ["Id", "T", "Cost"], "charge": ["Id", "T"]}
    assert rows["call"][0]["extra"] == '["1","call","1"]' and rows["charge"][0]["extra"] == '["2","fee"]'
