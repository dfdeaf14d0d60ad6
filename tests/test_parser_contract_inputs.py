"""Loading files that are not what they claim, on both databases: a name that lies about the delimiter, content
that is not text, an ID repeated inside one file, calls without a time column."""

from __future__ import annotations

import io

import pytest

from ingest import admin
from ingest.catalog import files as catalog_files
from ingest.intake import Origin, receive
from ingest.load import load_queued
from tests.records import LAYOUTS, record, render
from tests.test_parsers import render_columns


def upload(app, data: bytes, name: str):
    [got] = receive(app, io.BytesIO(data), Origin("upload", name))
    return got


def stored(app, file_id: int) -> tuple[dict, list[dict]]:
    with app.catalog.read() as conn:
        return catalog_files.get_file(conn, file_id), catalog_files.events_of(conn, file_id)


def test_a_pipe_separated_txt_file_loads_as_pipe_and_says_so(app):
    rows = [record(1, TextDesc2="Spark mobile"), record(2, CallType="Line Rental", BParty="", Seconds="0")]
    got = upload(app, render(rows, carrier="techconnections", fmt="pipe", header=False), "TC_CDR_20261001.txt")
    assert got.status == "queued"
    [result] = load_queued(app)
    assert (result.status, result.loaded) == ("loaded", 2)
    assert [r["record_key"] for r in admin.list_records(app, file_id=got.id)] == ["1"]  # the call
    assert [r["record_key"] for r in admin.list_records(app, file_id=got.id, record_type="sdr")] == ["2"]  # the fee
    row, events = stored(app, got.id)
    assert row["format"] == "pipe"
    [event] = [e for e in events if e["action"] == "format"]
    assert (event["from_status"], event["to_status"], event["reason"]) == ("queued", "queued", "read as pipe (received as txt)")


@pytest.mark.parametrize("content", [
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(2000),
], ids=["pdf", "spreadsheet"])
def test_a_file_that_is_not_text_is_ignored_not_failed(app, content):
    got = upload(app, content, "TC_CDR_20261001.csv")
    assert got.status == "queued"
    [result] = load_queued(app)
    assert result.status == "ignored"
    row, events = stored(app, got.id)
    assert (row["status"], row["reason"]) == ("ignored", "not-text")
    assert "not a delimited or JSON text file" in row["error"] and "\n" not in row["error"]
    assert (events[-1]["action"], events[-1]["from_status"], events[-1]["to_status"]) == ("ignored", "queued", "ignored")
    assert admin.list_records(app, file_id=got.id) == []


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_id_repeated_inside_one_file_is_reported_by_line(app, fmt):
    rows = [record(7), record(8, TextDesc1="two\nlines"), record(9), record(7, Charge="5.00")]
    got = upload(app, render(rows, fmt=fmt), f"hero_cdr_20261001.{fmt}")
    [result] = load_queued(app)
    assert result.status == "failed"
    row, _ = stored(app, got.id)
    # csv: the header, record 7 on line 2, 8 on lines 3-4, 9 on 5, 7 again on 6. JSON: each object's '{'.
    if fmt == "json":
        braces = [n for n, text in enumerate(render(rows, fmt=fmt).split(b"\n"), 1) if text == b" {"]
        lines = (braces[0], braces[3])
    else:
        lines = (2, 6)
    assert f"record key 7 appears twice in the file (lines {lines[0]} and {lines[1]})" in row["error"]
    assert admin.list_records(app, file_id=got.id) == []


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_calls_without_a_time_column_fail_the_file(app, fmt):
    columns = [column for column in LAYOUTS["hero"] if column != "UTCDateTime"]
    got = upload(app, render_columns([record(1), record(2)], columns, columns, fmt), f"hero_cdr_20261001.{fmt}")
    [result] = load_queued(app)
    assert result.status == "failed"
    row, _ = stored(app, got.id)
    # csv: the header on line 1; JSON: the first object's '{' on line 2
    assert f"line {2 if fmt == 'json' else 1}, field UTCDateTime" in row["error"] and "missing" in row["error"]
    assert admin.list_records(app, file_id=got.id) == []
