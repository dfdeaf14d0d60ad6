import io
from ingest.intake import Origin, receive
from ingest.load import load_queued
from tests.records import record, render

def test_fixture_runs_on_both(app):
    got = receive(app, io.BytesIO(render([record(1), record(2)])), Origin("upload", "hero_cdr_20261001.csv"))
    assert got[0].status == "queued"
    assert load_queued(app)[0].loaded == 2
