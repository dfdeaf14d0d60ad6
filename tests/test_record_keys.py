"""Layouts without an ID: each record is keyed by a hash of its normalised fields plus its occurrence in
the file, so a record is still never loaded twice, while a file that truly repeats a call keeps both."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pytest

import carriers
from carriers.base import CANONICAL_SCHEMA, ContentKeys, Parser
from ingest import admin
from ingest.intake import Origin, receive
from ingest.load import load_queued
from tests.conftest import app_with


class NoIdParser(Parser):
    """A minimal layout with no ID: a_party,b_party,utc_time,charge."""

    name = "test-no-id"

    def batches(self, source):
        keys = ContentKeys()
        with source.open() as fh:
            rows = list(csv.reader(io.StringIO(fh.read().decode("utf-8"))))
        n = len(rows)
        columns = {
            "a_party": pa.array([r[0] for r in rows]), "b_party": pa.array([r[1] for r in rows]),
            "utc_time": pa.array([r[2] for r in rows]), "charge": pa.array([r[3] for r in rows]),
            "record_type": pa.array(["cdr"] * n), "position": pa.array(range(1, n + 1), pa.int64()),
            "bill_date": pa.array(["2026-10-01"] * n),
        }
        arrays = [columns.get(f.name, pa.nulls(n, f.type)) for f in CANONICAL_SCHEMA]
        yield keys.apply(pa.RecordBatch.from_arrays(arrays, schema=CANONICAL_SCHEMA))


CONFIG = """
[carriers.noid]
parser = "test-no-id"
[[carriers.noid.files]]
pattern = "noid_*.csv"
type = "cdr"
cadence = "daily"
"""
CALL = "0211111111,0222222222,2026-10-01 10:00:00,0.50\n"
OTHER = "0211111111,0233333333,2026-10-01 11:00:00,1.25\n"


@pytest.fixture
def noid_app(make_config, monkeypatch):
    monkeypatch.setitem(carriers.PARSERS, NoIdParser.name, NoIdParser)
    app = app_with(make_config, CONFIG)
    yield app
    app.close()


def send(app, name, text):
    [got] = receive(app, io.BytesIO(text.encode()), Origin("upload", name))
    return got


def test_identical_records_in_one_file_are_two_records(noid_app):
    got = send(noid_app, "noid_1.csv", CALL + CALL + OTHER)
    [result] = load_queued(noid_app)
    assert (result.status, result.loaded) == ("loaded", 3)
    keys = [r["record_key"] for r in admin.list_records(noid_app, file_id=got.id)]
    assert keys[0].endswith(":1") and keys[1].endswith(":2") and keys[0][:-2] == keys[1][:-2]
    assert all(r["feed_id"] is None for r in admin.list_records(noid_app))


def test_the_same_records_in_another_file_are_not_loaded_again(noid_app):
    send(noid_app, "noid_1.csv", CALL + OTHER)
    load_queued(noid_app)
    second = send(noid_app, "noid_2.csv", OTHER + CALL + CALL)  # one more copy of CALL than loaded before
    [result] = load_queued(noid_app)
    assert result.status == "held"
    assert "2 of 3 records" in admin.show(noid_app, second.id)["error"]
    admin.release(noid_app, second.id)
    [result] = load_queued(noid_app)
    assert (result.loaded, result.skipped) == (1, 2)
    assert len(admin.list_records(noid_app)) == 3


def test_content_keys_ignore_position_and_differ_by_any_field():
    keys = ContentKeys()
    a = pa.RecordBatch.from_pylist([{"a_party": "1", "charge": "0.5", "position": 1}, {"a_party": "1", "charge": "0.50", "position": 2}])
    first, second = keys.keys(a).to_pylist()
    assert first.rsplit(":", 1)[0] != second.rsplit(":", 1)[0]  # '0.5' and '0.50' are different texts
    again = ContentKeys().keys(pa.RecordBatch.from_pylist([{"a_party": "1", "charge": "0.5", "position": 9}]))
    assert again.to_pylist() == [first]
