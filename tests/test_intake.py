"""The intake door: staging, fingerprints, classification, duplicate holds, archives and limits."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest

from ingest.catalog import files as catalog_files
from ingest.errors import NotFound
from ingest.intake import Origin, receive
from ingest.staging import Staging, safe_name
from tests.conftest import app_with
from tests.records import record, render

UPLOAD = "upload"


def offer(app, data: bytes, name: str, **given):
    return receive(app, io.BytesIO(data), Origin(UPLOAD, name, **given))


def row(app, file_id):
    with app.catalog.read() as conn:
        return catalog_files.get_file(conn, file_id)


def links(app, file_id):
    with app.catalog.read() as conn:
        return catalog_files.links_of(conn, file_id)


def test_staged_bytes_are_exactly_what_was_received(app):
    data = render([record(1)], newline="\r\n", bom=True)
    [got] = offer(app, data, "hero_cdr_20261001.csv")
    stored = row(app, got.id)
    assert app.staging.path_of(stored["blob"]).read_bytes() == data
    assert stored["size"] == len(data) and stored["blob_size"] == len(data)
    assert len(stored["fingerprint"]) == 32


def test_classified_by_carrier_rules_with_billing_period(app):
    [daily] = offer(app, render([record(1)]), "hero_cdr_20261001.csv")
    [monthly] = offer(app, render([record(2)]), "hero_cdr_202609.csv")
    d, m = row(app, daily.id), row(app, monthly.id)
    assert (d["carrier"], d["type"], d["cadence"], d["billing_period"], d["format"]) == (
        "hero", "cdr", "daily", "2026-10", "csv")
    assert (m["carrier"], m["type"], m["cadence"], m["billing_period"]) == ("hero", "cdr", "monthly", "2026-09")


def test_unrecognised_file_is_ignored_with_a_reason_never_held(app):
    [first] = offer(app, b"\x89PNG logo bytes", "logo.png")
    [again] = offer(app, b"\x89PNG logo bytes", "logo.png")
    for got in (first, again):
        stored = row(app, got.id)
        assert stored["status"] == "ignored"
        assert stored["reason"] == "unrecognised"
        assert "logo.png" in stored["error"]
    assert links(app, again.id) == []


def test_same_content_is_held_and_linked_to_every_earlier_copy(app):
    data = render([record(1), record(2)])
    [first] = offer(app, data, "hero_cdr_20261001.csv")
    [second] = offer(app, data, "hero_cdr_20261001_resent.csv")
    [third] = offer(app, data, "hero_cdr_20261001.csv")
    assert second.status == "held" and second.reason == "duplicate-content"
    assert [link["id"] for link in links(app, second.id)] == [first.id]
    assert third.status == "held"
    assert sorted(link["id"] for link in links(app, third.id)) == [first.id, second.id]


def test_a_discarded_file_no_longer_counts_as_an_earlier_copy(app):
    from ingest import admin

    data = render([record(1)])
    [first] = offer(app, data, "hero_cdr_20261001.csv")
    admin.discard(app, first.id, reason="wrong account", actor="alice")
    [second] = offer(app, data, "hero_cdr_20261001.csv")
    assert second.status == "queued"


def test_gzipped_copy_of_a_received_file_is_held(app):
    data = render([record(1), record(2)])
    [plain] = offer(app, data, "hero_cdr_20261001.csv")
    [gz] = offer(app, gzip.compress(data), "hero_cdr_20261001.csv.gz")
    assert gz.status == "held" and gz.reason == "duplicate-content"
    assert row(app, gz.id)["fingerprint"] == row(app, plain.id)["fingerprint"]
    assert row(app, gz.id)["compression"] == "gzip"
    assert [link["id"] for link in links(app, gz.id)] == [plain.id]


def test_multi_member_gzip_is_fingerprinted_as_its_whole_content(app):
    data = render([record(1), record(2), record(3)])
    half = len(data) // 2
    [plain] = offer(app, data, "hero_cdr_20261001.csv")
    [gz] = offer(app, gzip.compress(data[:half]) + gzip.compress(data[half:]), "hero_cdr_20261001.csv.gz")
    assert gz.status == "held"


def test_zip_with_several_members_becomes_one_file_per_member(app):
    a, b = render([record(1)]), render([record(2)])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("hero_cdr_20261001.csv", a)
        archive.writestr("sub/hero_cdr_20261002.csv", b)
        archive.writestr("readme.txt", b"notes")
        archive.writestr("__MACOSX/._hero_cdr_20261001.csv", b"junk")
    got = offer(app, buffer.getvalue(), "october.zip")
    by_name = {g.name: g for g in got}
    assert set(by_name) == {"hero_cdr_20261001.csv", "hero_cdr_20261002.csv", "readme.txt"}
    assert by_name["hero_cdr_20261001.csv"].status == "queued"
    assert by_name["readme.txt"].status == "ignored"
    member = row(app, by_name["hero_cdr_20261002.csv"].id)
    assert (member["container"], member["member"], member["compression"]) == ("october.zip", "sub/hero_cdr_20261002.csv", "zip")
    # the same CSV received on its own later is recognised as a copy of the zip member
    [alone] = offer(app, a, "hero_cdr_20261001.csv")
    assert alone.status == "held" and links(app, alone.id)[0]["id"] == by_name["hero_cdr_20261001.csv"].id


def test_decompression_bomb_is_refused_with_a_clear_error_and_bytes_kept(make_config):
    app = app_with(make_config, "[intake]\nmax_ratio = 10\nratio_floor_bytes = 1000\n")
    try:
        bomb = gzip.compress(b"0" * 5_000_000)
        [got] = offer(app, bomb, "hero_cdr_20261001.csv.gz")
        stored = row(app, got.id)
        assert stored["status"] == "failed" and stored["reason"] == "unreadable"
        assert "10:1" in stored["error"] and "intake.max_ratio" in stored["error"]
        assert app.staging.path_of(stored["blob"]).read_bytes() == bomb
    finally:
        app.close()


def test_zip_member_beyond_the_size_limit_is_refused(make_config):
    app = app_with(make_config, "[intake]\nmax_expanded_bytes = 100000\n")
    try:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("hero_cdr_20261001.csv", b"1" * 200_000)
        [got] = offer(app, buffer.getvalue(), "big.zip")
        assert got.status == "failed"
        assert "intake.max_expanded_bytes" in row(app, got.id)["error"]
    finally:
        app.close()


def test_corrupt_gzip_fails_but_keeps_the_bytes(app):
    broken = gzip.compress(render([record(1)]))[:-12]
    [got] = offer(app, broken, "hero_cdr_20261001.csv.gz")
    stored = row(app, got.id)
    assert stored["status"] == "failed" and "gzip" in stored["error"]
    assert app.staging.path_of(stored["blob"]).read_bytes() == broken


def test_same_name_rule_holds_a_different_file_with_an_earlier_name(make_config):
    on = app_with(make_config, "")  # techconnections ships with same_name_rule = true
    try:
        [first] = offer(on, render([record(1)], carrier="techconnections"), "TC_CDR_20261001.csv")
        [second] = offer(on, render([record(2)], carrier="techconnections"), "TC_CDR_20261001.csv")
        assert second.status == "held" and second.reason == "duplicate-name"
        assert [(link["kind"], link["id"]) for link in links(on, second.id)] == [("duplicate-name", first.id)]
    finally:
        on.close()


def test_without_the_same_name_rule_a_different_file_with_an_earlier_name_is_queued(app):
    # hero ships with same_name_rule = false
    offer(app, render([record(1)]), "hero_cdr_20261001.csv")
    [second] = offer(app, render([record(2)]), "hero_cdr_20261001.csv")
    assert second.status == "queued"


def test_caller_classification_wins_over_rules(app):
    [got] = offer(app, render([record(1)]), "whatever.dat", carrier="hero", file_type="sdr", cadence="monthly",
                  file_format="csv")
    stored = row(app, got.id)
    assert (stored["carrier"], stored["type"], stored["cadence"], stored["format"], stored["status"]) == (
        "hero", "sdr", "monthly", "csv", "queued")


def test_unknown_carrier_is_refused_before_anything_is_staged(app):
    with pytest.raises(NotFound, match="unknown carrier"):
        offer(app, b"x", "a.csv", carrier="nobody")
    assert list(app.staging.blobs.rglob("*")) == [] or all(p.is_dir() for p in app.staging.blobs.rglob("*"))


def test_every_new_file_is_audited(app):
    [got] = receive(app, io.BytesIO(render([record(1)])), Origin(UPLOAD, "hero_cdr_20261001.csv"), actor="bob")
    with app.catalog.read() as conn:
        [event] = catalog_files.events_of(conn, got.id)
    assert (event["actor"], event["action"], event["to_status"]) == ("bob", "received", "queued")
    assert event["at"].tzinfo is not None


def test_remote_names_are_data_not_paths():
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("/abs/path/x.csv") == "x.csv"
    assert safe_name("..\\..\\win.csv") == "win.csv"
    assert safe_name("a\x00b\nc.csv") == "a_b_c.csv"
    assert safe_name("..") == "unnamed"


def test_staging_is_content_addressed_and_immutable(tmp_path):
    staging = Staging(tmp_path)
    first = staging.receive(io.BytesIO(b"hello"))
    second = staging.receive(io.BytesIO(b"hello"))
    assert first.key == second.key and first.path == second.path
    assert first.path.read_bytes() == b"hello"
    assert oct(first.path.stat().st_mode & 0o777) == "0o444"
    assert list(staging.tmp.iterdir()) == []


def test_delivery_offered_again_returns_the_files_already_recorded(app):
    data = render([record(1)])
    origin = Origin("drop", "hero_cdr_20261001.csv", delivery="/in/hero_cdr_20261001.csv|1|2|3")
    first = receive(app, io.BytesIO(data), origin)
    again = receive(app, io.BytesIO(data), origin)
    assert again == first
    with app.catalog.read() as conn:
        assert len(catalog_files.list_files(conn)) == 1
