"""A corrected file supersedes the failed one: when a file of the same carrier and name loads after a failed
file, the failed one becomes ``superseded``, linked to its replacement and audited, in the load's
transaction; it leaves the backlog. Through the SQLite fast path (ADBC) and PostgreSQL's COPY (an upload),
and the set-based load of a released file on both."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from click.testing import CliRunner

from ingest import admin
from ingest.cli import cli
from ingest.intake import Origin, receive
from ingest.load import load_file
from tests.conftest import app_with
from tests.conftest import catalog_rows as rows
from tests.records import record, render


@pytest.fixture
def run(app):
    def invoke(*args, by="admin"):
        return CliRunner().invoke(cli, ["--config", str(app.config.path), "--by", by, *args], catch_exceptions=False)

    return invoke


def write(folder, name: str, data: bytes):
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    return str(folder / name)


def malformed(carrier: str = "hero", first_id: int = 1) -> bytes:
    return render([record(first_id), record(first_id + 1, Seconds="ten")], carrier=carrier)


def by_id(app) -> dict[int, dict]:
    return {r["id"]: r for r in rows(app)}


def test_uploading_the_corrected_file_supersedes_the_failed_one(run, app, tmp_path):
    bad = write(tmp_path / "bad", "hero_cdr_20261001.csv", malformed())
    other = write(tmp_path / "bad", "hero_cdr_20261002.csv", malformed(first_id=5))
    failed = run("upload", bad, "--carrier", "hero", "--type", "cdr")
    assert "#1 hero_cdr_20261001.csv: failed (parse-error)" in failed.output
    assert run("upload", other, "--carrier", "hero", "--type", "cdr").exit_code == 1
    corrected = write(tmp_path / "fixed", "hero_cdr_20261001.csv", render([record(1), record(2)]))

    result = run("upload", corrected, "--carrier", "hero", "--type", "cdr", by="alice")

    assert (result.exit_code, result.output.strip()) == (0, "#3 hero_cdr_20261001.csv: loaded, 2 records")
    first = json.loads(run("show", "1", "--json").output)
    assert (first["status"], first["superseded_by"]) == ("superseded", 3)
    event = first["history"][-1]
    assert (event["action"], event["from_status"], event["to_status"], event["actor"]) == (
        "superseded", "failed", "superseded", "alice")
    assert "#3" in event["reason"]
    assert "superseded_by: 3" in run("show", "1").output
    assert by_id(app)[2]["status"] == "failed"  # another name: not replaced
    assert json.loads(run("status", "--json").output)["files"]["failed"] == 1
    refused = run("retry", "1")
    assert refused.exit_code != 0 and "superseded" in refused.output and len(refused.output.splitlines()) == 1


def test_a_corrected_file_is_not_held_for_the_name_of_the_failed_one(app):
    name = "TC_CDR_20261001.csv"  # techconnections holds a file named like an earlier one (same_name_rule)
    [loaded] = receive(app, io.BytesIO(render([record(7)], carrier="techconnections")), Origin("upload", name))
    assert admin.load_now(app, [loaded])[loaded.id].status == "loaded"
    [again] = receive(app, io.BytesIO(render([record(8)], carrier="techconnections")), Origin("upload", name))
    assert (again.status, again.reason) == ("held", "duplicate-name")  # the rule holds for a loaded file
    other = "TC_CDR_20261002.csv"
    [failed] = receive(app, io.BytesIO(malformed("techconnections")), Origin("upload", other))
    assert admin.load_now(app, [failed])[failed.id].status == "failed"

    [corrected] = receive(app, io.BytesIO(render([record(1), record(2)], carrier="techconnections")),
                          Origin("upload", other))

    assert (corrected.status, corrected.reason) == ("queued", None)
    assert admin.load_now(app, [corrected])[corrected.id].status == "loaded"
    assert by_id(app)[failed.id]["status"] == "superseded"


def test_a_released_corrected_file_supersedes_the_failed_one_through_the_set_based_load(app):
    name = "TC_CDR_20261001.csv"
    [earlier] = receive(app, io.BytesIO(render([record(9)], carrier="techconnections")),
                        Origin("upload", "TC_CDR_20260930.csv"))
    assert admin.load_now(app, [earlier])[earlier.id].status == "loaded"
    [failed] = receive(app, io.BytesIO(malformed("techconnections")), Origin("upload", name))
    assert admin.load_now(app, [failed])[failed.id].status == "failed"
    # The correction also repeats record 9, already loaded: held as an overlap, released, loaded set-based.
    [corrected] = receive(app, io.BytesIO(render([record(1), record(2), record(9)], carrier="techconnections")),
                          Origin("upload", name))
    assert admin.load_now(app, [corrected])[corrected.id].status == "held"

    admin.release(app, corrected.id, actor="bob")
    loaded = load_file(app, corrected.id, actor="bob")

    assert (loaded.status, loaded.loaded, loaded.skipped) == ("loaded", 2, 1)
    replaced = by_id(app)[failed.id]
    assert (replaced["status"], replaced["superseded_by"]) == ("superseded", corrected.id)
    event = admin.show(app, failed.id)["history"][-1]
    assert (event["action"], event["actor"], event["to_status"]) == ("superseded", "bob", "superseded")


def archive(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
        for member, data in members.items():
            zipped.writestr(member, data)
    return buffer.getvalue()


def test_a_corrected_archive_supersedes_the_unreadable_one_of_its_name_and_carrier_only(make_config):
    app = app_with(make_config, "[intake]\nmax_zip_members = 1\n")
    try:
        too_many = archive(**{"a.csv": render([record(1)]), "b.csv": render([record(2)])})
        name = "hero_cdr_202610.zip"  # the name carries the billing period (Hero's monthly rule)
        [hero_zip] = receive(app, io.BytesIO(too_many), Origin("upload", name, carrier="hero", file_type="cdr"))
        [tc_zip] = receive(app, io.BytesIO(too_many), Origin("upload", name, carrier="techconnections",
                                                             file_type="cdr"))
        assert {hero_zip.reason, tc_zip.reason} == {"unreadable"}
        [member] = receive(app, io.BytesIO(archive(**{"a.csv": render([record(1), record(2)])})),
                           Origin("upload", name, carrier="hero", file_type="cdr"))

        assert admin.load_now(app, [member])[member.id].status == "loaded"

        stored = by_id(app)
        assert (stored[hero_zip.id]["status"], stored[hero_zip.id]["superseded_by"]) == ("superseded", member.id)
        assert (stored[tc_zip.id]["status"], stored[tc_zip.id]["superseded_by"]) == ("failed", None)
    finally:
        app.close()


def test_the_bad_file_sent_again_is_held_as_a_repeat_of_the_superseded_one(app):
    name = "hero_cdr_20261001.csv"
    [failed] = receive(app, io.BytesIO(malformed()), Origin("upload", name))
    admin.load_now(app, [failed])
    [corrected] = receive(app, io.BytesIO(render([record(1), record(2)])), Origin("upload", name))
    admin.load_now(app, [corrected])
    assert by_id(app)[failed.id]["status"] == "superseded"

    [again] = receive(app, io.BytesIO(malformed()), Origin("upload", name))

    assert (again.status, again.reason) == ("held", "duplicate-content")
    assert [(d["id"], d["status"]) for d in admin.show(app, again.id)["potential_duplicates"]] == [
        (failed.id, "superseded")]


def test_a_kill_before_the_replacements_load_commits_leaves_the_failed_file_failed(app, tmp_path):
    from tests.test_crash import cdr

    bad = write(tmp_path / "bad", "hero_cdr_20261001.csv", malformed())
    assert cdr(app.config.path, "upload", bad, "--carrier", "hero", "--type", "cdr").returncode == 1
    corrected = write(tmp_path / "fixed", "hero_cdr_20261001.csv", render([record(1), record(2)]))
    assert cdr(app.config.path, "upload", corrected, "--carrier", "hero", "--type", "cdr", "--no-load").returncode == 0

    killed = cdr(app.config.path, "load", fault="load.before-commit")

    assert killed.returncode == 86, killed.stderr
    assert [(r["status"], r["superseded_by"]) for r in rows(app)] == [("failed", None), ("queued", None)]
    assert load_file(app, 2).status == "loaded"
    assert [(r["status"], r["superseded_by"]) for r in rows(app)] == [("superseded", 2), ("loaded", None)]


@pytest.mark.parametrize("carrier, name_identifies", [("hero", False), ("techconnections", True)])
def test_a_name_without_a_period_identifies_the_failed_file_only_where_the_carrier_says_names_do(
        app, carrier, name_identifies):
    # usage.csv: no date in the name. Hero reuses names (no same_name_rule): September's failed usage.csv is
    # not October's to bury. Tech Connections' names identify its files (same_name_rule): it is replaced.
    [failed] = receive(app, io.BytesIO(malformed(carrier)), Origin("upload", "usage.csv", carrier=carrier,
                                                                   file_type="cdr"))
    assert admin.load_now(app, [failed])[failed.id].status == "failed"

    [later] = receive(app, io.BytesIO(render([record(1), record(2)], carrier=carrier)),
                      Origin("upload", "usage.csv", carrier=carrier, file_type="cdr"))
    assert admin.load_now(app, [later])[later.id].status == "loaded"

    expected = ("superseded", later.id) if name_identifies else ("failed", None)
    assert (by_id(app)[failed.id]["status"], by_id(app)[failed.id]["superseded_by"]) == expected


def test_a_file_of_another_type_never_supersedes(app):
    [calls] = receive(app, io.BytesIO(malformed()), Origin("upload", "hero_cdr_20261001.csv"))
    assert admin.load_now(app, [calls])[calls.id].status == "failed"
    [fees] = receive(app, io.BytesIO(render([record(5)])), Origin("upload", "hero_cdr_20261001.csv", carrier="hero",
                                                                  file_type="sdr"))
    assert admin.load_now(app, [fees])[fees.id].status == "loaded"
    assert by_id(app)[calls.id]["status"] == "failed"  # fees do not replace calls


def test_a_file_of_another_billing_period_never_supersedes(app):
    [september] = receive(app, io.BytesIO(malformed()), Origin("upload", "hero_cdr_202609.csv"))
    assert admin.load_now(app, [september])[september.id].status == "failed"
    # An October file carrying September's name in a zip of October's name: its period is October's.
    [october] = receive(app, io.BytesIO(archive(**{"hero_cdr_202609.csv": render([record(1)])})),
                        Origin("upload", "hero_cdr_202610.zip", carrier="hero", file_type="cdr",
                               billing_period="2026-10"))
    assert admin.load_now(app, [october])[october.id].status == "loaded"
    assert by_id(app)[september.id]["status"] == "failed"
