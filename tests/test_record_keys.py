"""Formats without an id (``key = "row"``): each record is keyed by a hash of its whole row as given plus its
occurrence in the file, so a record is still never loaded twice, while a file that truly repeats a call keeps
both (``duplicate_rows = "distinct"``) or takes it once (``"once"``, counted)."""

from __future__ import annotations

import io

import pytest

from ingest import admin
from ingest.intake import Origin, receive
from ingest.load import load_queued
from tests.conftest import app_with

CONFIG = """
[formats.noid]
header = "none"
columns = ["a", "b", "at", "charge"]
key = "row"
duplicate_rows = "{duplicates}"
[formats.noid.fields]
a_number = {{ column = "a" }}
b_number = {{ column = "b" }}
start_time = {{ column = "at" }}
charge = {{ column = "charge", type = "decimal" }}

[carriers.noid]
format = "noid"
[[carriers.noid.files]]
pattern = "noid_*.csv"
type = "cdr"
cadence = "daily"
"""
CALL = "0211111111,0222222222,2026-10-01 10:00:00,0.50\n"
OTHER = "0211111111,0233333333,2026-10-01 11:00:00,1.25\n"


@pytest.fixture(params=["distinct", "once"])
def noid_app(make_config, request):
    app = app_with(make_config, CONFIG.format(duplicates=request.param))
    yield app
    app.close()


def send(app, name, text):
    [got] = receive(app, io.BytesIO(text.encode()), Origin("upload", name))
    return got


def test_identical_records_in_one_file(noid_app):
    distinct = noid_app.config.format_spec("noid").duplicates("call") == "distinct"
    got = send(noid_app, "noid_1.csv", CALL + CALL + OTHER)
    [result] = load_queued(noid_app)
    assert (result.status, result.loaded) == ("loaded", 3 if distinct else 2)
    keys = [r["record_key"] for r in admin.list_records(noid_app, file_id=got.id)]
    assert all(r["carrier_record_id"] is None for r in admin.list_records(noid_app))
    shown = admin.show(noid_app, got.id)
    if distinct:  # two records: the same hash, occurrences 1 and 2
        assert keys[0].endswith(":1") and keys[1].endswith(":2") and keys[0][:-2] == keys[1][:-2]
        assert shown["records_dropped"] == 0
    else:  # one record, the repeat dropped and counted, and said so
        assert keys[0].endswith(":1") and len(keys) == 2
        assert shown["records_dropped"] == 1
        assert "dropped 1 identical rows" in shown["history"][-1]["reason"]


def test_the_same_records_in_another_file_are_not_loaded_again(noid_app):
    distinct = noid_app.config.format_spec("noid").duplicates("call") == "distinct"
    send(noid_app, "noid_1.csv", CALL + OTHER)
    load_queued(noid_app)
    second = send(noid_app, "noid_2.csv", OTHER + CALL + CALL)  # one more copy of CALL than loaded before
    [result] = load_queued(noid_app)
    if not distinct:  # the second copy is dropped as identical: nothing new, the file is an overlap
        assert result.status == "held"
        assert "2 of 2 records" in admin.show(noid_app, second.id)["error"]
        return
    assert result.status == "held"
    assert "2 of 3 records" in admin.show(noid_app, second.id)["error"]
    admin.release(noid_app, second.id)
    [result] = load_queued(noid_app)
    assert (result.loaded, result.skipped) == (1, 2)
    assert len(admin.list_records(noid_app)) == 3


def test_keys_ignore_position_and_differ_by_any_text(make_config):
    app = app_with(make_config, CONFIG.format(duplicates="distinct"))
    try:
        first = send(app, "noid_1.csv", CALL + CALL.replace("0.50", "0.5"))  # the same amount, other text
        load_queued(app)
        second = send(app, "noid_2.csv", OTHER + CALL)  # CALL again, on another line
        [result] = load_queued(app)
        a, b = (r["record_key"] for r in admin.list_records(app, file_id=first.id))
        assert a.rsplit(":", 1)[0] != b.rsplit(":", 1)[0]  # '0.50' and '0.5' are different texts
        assert result.status == "held" and "1 of 2 records" in admin.show(app, second.id)["error"]
    finally:
        app.close()
