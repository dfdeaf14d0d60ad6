"""Encodings across every kind of file (JSON honours ``encoding``; UTF-16/32 for delimited, fixed and JSON,
with physical lines right in errors) and the check that a ``names+types`` file's second row is a types row."""

from __future__ import annotations

import json

import pytest

from tests.test_format_engine import SIMPLE, calls, error, spec_of

JSON_SPEC = SIMPLE.replace('key = ["Id"]', 'key = ["Id"]\nkind = "json"')
FIXED_SPEC = """
[formats.t]
kind = "fixed"
key = ["Id"]
columns = [{ name = "Id", start = 1, width = 3 }, { name = "Start", start = 4, width = 19 },
           { name = "Name", start = 23, width = 6 }]
[formats.t.fields]
carrier_record_id = { column = "Id" }
start_time = { column = "Start" }
description = { column = "Name" }
"""


def with_encoding(text: str, encoding: str, errors: str | None = None) -> str:
    extra = f'\nencoding = "{encoding}"' + (f'\nencoding_errors = "{errors}"' if errors else "")
    return text.replace('key = ["Id"]', 'key = ["Id"]' + extra, 1)


JSON_ROWS = ('[\n{"Id": "1", "Start": "2026-01-01 00:00:00", "Secs": "1", "Cost": "1", "Name": "Zoë"},\n'
             '{"Id": "2", "Start": "2026-01-01 00:00:00", "Secs": "1", "Cost": "1", "Name": "Ćevapi ∑"}\n]\n')


# -- JSON honours encoding ------------------------------------------------------------------------------

def test_json_in_latin1_is_read_in_latin1():
    spec = spec_of(with_encoding(JSON_SPEC, "latin-1"))
    rows = calls(spec, '[{"Id": "1", "Start": "2026-01-01 00:00:00", "Secs": "1", "Cost": "1", "Name": "Zoë"}]'
                 .encode("latin-1"), name="f.json")
    assert json.loads(rows[0]["extra"]) == {"Name": "Zoë"}


def test_json_in_cp1252_with_an_undecodable_byte_names_file_and_line():
    spec = spec_of(with_encoding(JSON_SPEC, "cp1252"))
    data = (b'[\n{"Id": "1", "Start": "2026-01-01 00:00:00", "Secs": "1", "Cost": "1"},\n\n'
            b'{"Id": "2", "Start": "2026-01-01 00:00:00", "Secs": "1", "Cost": "\x81"}\n]\n')
    exc = error(spec, data, name="f.json")
    assert exc.file == "f.json" and exc.line == 4 and "not valid cp1252 text" in exc.reason


def test_json_with_replace_keeps_the_row():
    spec = spec_of(with_encoding(JSON_SPEC, "utf-8", "replace"))
    rows = calls(spec, b'[{"Id": "1", "Start": "2026-01-01 00:00:00", "Secs": "1", "Cost": "1", "Name": "a\xffb"}]',
                 name="f.json")
    assert json.loads(rows[0]["extra"]) == {"Name": "a\ufffdb"}


# -- UTF-16 and UTF-32 -----------------------------------------------------------------------------------

CSV_ROWS = "Id,Start,Secs,Cost,Name\n1,2026-01-01 00:00:00,1,1,Zoë\n2,2026-01-01 00:00:00,1,1,Ċ∑\n"


@pytest.mark.parametrize("encoding, codec", [("utf-16", "utf-16"), ("utf-16", "utf-16-be"),
                                             ("utf-16-le", "utf-16-le"), ("utf-16-be", "utf-16-be"),
                                             ("utf-32", "utf-32")])
def test_delimited_utf16_and_utf32(encoding, codec):
    data = CSV_ROWS.encode(codec)
    if encoding == "utf-16" and codec == "utf-16-be":
        data = b"\xfe\xff" + data  # the BOM decides the byte order
    rows = calls(spec_of(with_encoding(SIMPLE, encoding)), data)
    assert [r["record_key"] for r in rows] == ["1", "2"]
    assert [json.loads(r["extra"])["Name"] for r in rows] == ["Zoë", "Ċ∑"]


def test_delimited_utf16_errors_name_the_physical_line():
    spec = spec_of(with_encoding(SIMPLE, "utf-16"))
    # U+010A ('Ċ') is 0A 01 in UTF-16-LE: a 0x0A byte that is not a newline must not be counted as one
    data = "Id,Start,Secs,Cost,Name\nĊĊ1,2026-01-01 00:00:00,1,1,ĊĊ\n\n2,2026-01-01 00:00:00,1,x,a\n"
    exc = error(spec, data.encode("utf-16"))
    assert exc.line == 4
    short = "Id,Start,Secs,Cost,Name\n1,2026-01-01 00:00:00,1,1,ĊĊĊ\n2,2026-01-01 00:00:00,1\n"
    exc = error(spec, short.encode("utf-16"))
    assert exc.line == 3 and "expected 5 fields" in exc.reason


def test_utf16_with_a_lone_surrogate_names_its_line():
    spec = spec_of(with_encoding(SIMPLE, "utf-16-le"))
    data = "Id,Start,Secs,Cost\n1,2026-01-01 00:00:00,1,1\n2,2026-01-01 00:00:00,1,".encode("utf-16-le")
    data += b"\x00\xd8" + "\n".encode("utf-16-le")  # a high surrogate followed by a newline
    exc = error(spec, data)
    assert exc.line == 3 and "not valid utf-16-le text" in exc.reason


def test_json_utf16():
    spec = spec_of(with_encoding(JSON_SPEC, "utf-16"))
    rows = calls(spec, JSON_ROWS.encode("utf-16"), name="f.json")
    assert [json.loads(r["extra"])["Name"] for r in rows] == ["Zoë", "Ćevapi ∑"]
    bad = JSON_ROWS.replace('"Cost": "1", "Name": "Ć', '"Cost": "x", "Name": "Ć')
    exc = error(spec, bad.encode("utf-16"), name="f.json")
    assert exc.line == 3 and exc.field == "Cost"


def test_fixed_utf16():
    spec = spec_of(with_encoding(FIXED_SPEC, "utf-16"))
    text = "0012026-01-01 00:00:00Zoë   \n\n0022026-01-01 00:00:00Ċ∑    \n"
    rows = calls(spec, text.encode("utf-16"), name="f.txt")
    assert [r["description"] for r in rows] == ["Zoë", "Ċ∑"]
    exc = error(spec, (text + "0032026-01-01 00:0\n").encode("utf-16"), name="f.txt")
    assert exc.line == 4 and "line too short" in exc.reason


def test_utf16_file_is_still_refused_when_the_format_reads_utf8():
    from ingest.errors import NotText
    from ingest.formats import FileParser
    from tests.test_format_engine import source
    with pytest.raises(NotText) as info:
        FileParser(spec_of(SIMPLE), "acme").file_format(source(CSV_ROWS.encode("utf-16")))
    assert "UTF-16" in str(info.value)


# -- names+types --------------------------------------------------------------------------------------

NAMES_TYPES = ('[formats.t]\nheader = "names+types"\nkey = ["pkid"]\n'
               '[formats.t.fields]\nstart_time = { column = "dateTimeOrigination", type = "epoch" }\n')


def test_names_types_accepts_real_type_rows():
    spec = spec_of(NAMES_TYPES)
    data = ('"cdrRecordType","pkid","dateTimeOrigination","origDeviceName","when","amount"\n'
            'INTEGER,UNIQUEIDENTIFIER,integer,"VARCHAR(129)",DateTime,"decimal(10, 2)"\n'
            '1,"a1b2",1700000000,"SEP00",x,1.5\n')
    assert [r["record_key"] for r in calls(spec, data)] == ["a1b2"]


@pytest.mark.parametrize("second", ['1,"a1b2",1700000000', '1,INTEGER,INTEGER', 'INTEGER,SEP001122,INTEGER'])
def test_names_types_refuses_a_data_row_as_the_types_row(second):
    spec = spec_of(NAMES_TYPES)
    data = f'"cdrRecordType","pkid","dateTimeOrigination"\n{second}\n1,"c3",1700000000\n'
    exc = error(spec, data, name="cdr_x")
    assert exc.file == "cdr_x" and exc.line == 2
    assert "types row" in exc.reason and "\n" not in exc.reason


def test_utf16_le_with_a_bom_and_auto_kind():
    rows = calls(spec_of(with_encoding(SIMPLE, "utf-16-le")), b"\xff\xfe" + CSV_ROWS.encode("utf-16-le"))
    assert [r["record_key"] for r in rows] == ["1", "2"]
    auto = spec_of(with_encoding(SIMPLE.replace('key = ["Id"]', 'key = ["Id"]\nkind = "auto"'), "utf-16"))
    assert [r["record_key"] for r in calls(auto, CSV_ROWS.replace(",", "|").encode("utf-16"), name="f.txt")] == ["1", "2"]
    assert [r["record_key"] for r in calls(auto, JSON_ROWS.encode("utf-16"), name="f.dat")] == ["1", "2"]


def test_names_types_in_utf16():
    spec = spec_of(with_encoding(NAMES_TYPES.replace('key = ["pkid"]', 'key = ["Id"]'), "utf-16")
                   .replace('key = ["Id"]', 'key = ["pkid"]'))
    good = '"pkid","dateTimeOrigination"\nUNIQUEIDENTIFIER,INTEGER\n"a",1700000000\n'
    assert [r["record_key"] for r in calls(spec, good.encode("utf-16"))] == ["a"]
    exc = error(spec, '"pkid","dateTimeOrigination"\n"a",1700000000\n'.encode("utf-16"))
    assert exc.line == 2 and "types row" in exc.reason
