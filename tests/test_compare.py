"""Compare before deciding: ``cdr cat`` (a file's stored content), ``cdr compare`` (bytes, content, lines and, for
one carrier's files, records by key) and ``cdr show`` (whole values, wrapped; each earlier file's status and
record count), on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import zipfile

import pytest
from click.testing import CliRunner

from ingest.cli import cli
from tests.conftest import REPO
from tests.records import record, render

HERO = ("--carrier", "hero", "--type", "cdr")


@pytest.fixture
def run(app):
    def invoke(*args):
        return CliRunner().invoke(cli, ["--config", str(app.config.path), "--by", "admin", *args],
                                  catch_exceptions=False)

    return invoke


@pytest.fixture
def upload(run, tmp_path):
    """Write ``data`` as ``name`` and upload it as the carrier's (hero's, by default) CDRs."""

    def send(name: str, data: bytes, carrier: str = "hero") -> None:
        folder = tmp_path / f"upload-{len(list(tmp_path.glob('upload-*')))}"
        folder.mkdir()
        (folder / name).write_bytes(data)
        run("upload", str(folder / name), "--carrier", carrier, "--type", "cdr")

    return send


def compared(run, first: int, other: int) -> dict:
    result = run("compare", str(first), str(other), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_identical_files_and_a_gzip_copy_same_content_in_other_bytes(run, upload):
    plain = render([record(1), record(2), record(3)])
    upload("hero_cdr_20261001.csv", plain)
    upload("hero_cdr_20261001.csv", plain)  # the same bytes again (held as a duplicate)
    upload("hero_cdr_20261001.csv.gz", gzip.compress(plain))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("hero_cdr_20261001.csv", plain)
    upload("hero_cdr_202610.zip", archive.getvalue())

    same = compared(run, 1, 2)
    assert (same["same_bytes"], same["same_content"], same["first_difference"]) == (True, True, None)
    assert same["verdict"].startswith("byte-identical")
    assert (same["first"]["lines"], same["other"]["lines"], same["first"]["records"]) == (4, 4, 3)
    records = same["records"]
    assert (records["in_both"], records["changed"], records["only_in_first"], records["only_in_other"]) == (3, 0, 0, 0)

    zipped = compared(run, 1, 3)
    assert (zipped["same_bytes"], zipped["same_content"], zipped["first_difference"]) == (False, True, None)
    assert zipped["verdict"] == "the same content in different bytes (#3 is gzip-compressed)"
    assert zipped["other"]["size"] == len(plain) and zipped["records"]["in_both"] == 3

    member = compared(run, 4, 1)
    assert (member["same_bytes"], member["same_content"]) == (False, True)
    assert member["verdict"] == "the same content in different bytes (#4 is a member of hero_cdr_202610.zip)"

    table = run("compare", "1", "3").output
    assert "the same content in different bytes (#3 is gzip-compressed)" in table
    assert "3 in both (0 of them differ), 0 only in #1, 0 only in #3" in table


def test_overlapping_files_counts_samples_and_a_changed_record(run, upload, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # whatever terminal runs the test: tables are cut to its width
    upload("hero_cdr_20261001.csv", render([record(1), record(2), record(3)]))
    upload("hero_cdr_20261002.csv", render([record(2, Charge="0.2000", Seconds="61"), record(3), record(4),
                                            record(5)]))  # held: overlap with #1

    result = compared(run, 1, 2)
    assert (result["same_bytes"], result["same_content"]) == (False, False)
    assert result["first"]["status"] == "loaded" and result["other"]["status"] == "held"  # loaded or not
    records = result["records"]
    assert (records["in_both"], records["changed"], records["only_in_first"], records["only_in_other"]) == (2, 1, 1, 2)
    # Each sample: its key and the line it is on in each file (the header is line 1).
    assert [(s["key"], s["first_line"], s["other_line"]) for s in records["samples_in_both"]] == [
        ("call:2", 3, 2), ("call:3", 4, 3)]
    assert [(s["key"], s["first_line"], s["other_line"]) for s in records["samples_only_in_first"]] == [("call:1", 2, None)]
    assert [(s["key"], s["first_line"], s["other_line"]) for s in records["samples_only_in_other"]] == [
        ("call:4", None, 4), ("call:5", None, 5)]
    [changed] = records["samples_changed"]
    assert (changed["key"], changed["first_line"], changed["other_line"]) == ("call:2", 3, 2)
    assert {(f["field"], f["first"], f["other"]) for f in changed["fields"]} == {
        ("charge", "0.115", "0.20"), ("billed_seconds", 60, 61)}

    table = run("compare", "1", "2").output
    assert "2 in both (1 of them differ), 1 only in #1, 2 only in #2" in table
    changed_line = next(line for line in table.splitlines() if line.startswith("differ "))
    assert changed_line.split()[:4] == ["differ", "call:2", "3", "2"]
    assert "charge: 0.115 -> 0.20" in changed_line and "billed_seconds: 60 -> 61" in changed_line
    assert [line.split()[:3] for line in table.splitlines() if line.startswith("only in #2")] == [
        ["only", "in", "#2"]] * 2


def test_files_of_different_layouts_are_compared_by_lines(run, upload):
    hero = render([record(1), record(2)])
    techconnections = render([record(1), record(2), record(3)], carrier="techconnections", fmt="pipe")
    upload("hero_cdr_20261001.csv", hero)
    upload("TC_CDR_20261001.pipe", techconnections, carrier="techconnections")

    result = compared(run, 1, 2)
    assert result["records"] is None
    assert result["records_not_compared"] == "different carriers (hero, techconnections): compared by lines only"
    assert (result["first"]["lines"], result["other"]["lines"]) == (3, 4)
    assert result["first_difference"] == {"number": 1, "first": hero.decode().splitlines()[0],
                                          "other": techconnections.decode().splitlines()[0], "note": None}
    assert "records not compared: different carriers" in run("compare", "1", "2").output


def test_an_unparsable_file_is_compared_by_lines_naming_why(run, upload):
    good = render([record(1), record(2), record(3)])
    bad = render([record(1), record(2), record(3, Seconds="ten")])
    upload("hero_cdr_20261001.csv", good)
    upload("hero_cdr_20261002.csv", bad)  # fails at load: line 4, field Seconds

    result = compared(run, 1, 2)
    assert result["records"] is None
    assert "line 4, field Seconds" in result["records_not_compared"]
    assert result["records_not_compared"].endswith("compared by lines only")
    assert (result["first"]["lines"], result["other"]["lines"]) == (4, 4)
    difference = result["first_difference"]
    assert (difference["number"], difference["first"], difference["other"]) == (
        4, good.decode().splitlines()[3], bad.decode().splitlines()[3])


def test_a_missing_line_break_at_the_end_is_named(run, upload):
    with_break = render([record(1)])
    upload("hero_cdr_20261001.csv", with_break)
    upload("hero_cdr_20261002.csv", with_break.rstrip(b"\n"))

    difference = compared(run, 1, 2)["first_difference"]
    assert difference["number"] == 2 and difference["first"] == difference["other"]
    assert difference["note"] == "the same text, but only one of them ends with a line break"


@pytest.mark.parametrize("args", [["compare", "1", "99"], ["compare", "99", "1"], ["cat", "99"]])
def test_unknown_ids_are_one_line(run, upload, args):
    upload("hero_cdr_20261001.csv", render([record(1)]))
    result = run(*args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and lines == ["error: no file with id 99"]


def test_staged_bytes_removed_by_hand_are_one_line(run, upload, app):
    upload("hero_cdr_20261001.csv", render([record(1)]))
    upload("hero_cdr_20261002.csv", render([record(2)]))
    with app.catalog.read() as conn:
        blob = conn.exec_driver_sql("SELECT blob FROM files WHERE id = 2").scalar_one()
    app.staging.path_of(blob).unlink()
    for args in (["cat", "2"], ["compare", "1", "2"]):
        result = run(*args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and lines == ["error: file #2: cannot open its staged bytes: No such file or directory"]


def test_cat_writes_the_stored_content_of_a_plain_file_a_gzip_and_a_zip_member(run, upload):
    plain = render([record(1), record(2)], newline="\r\n", bom=True)
    other = render([record(7)])
    upload("hero_cdr_20261001.csv", plain)
    upload("hero_cdr_20261002.csv.gz", gzip.compress(other))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("hero_cdr_20261003.csv", render([record(8)]))
        zipped.writestr("hero_cdr_20261004.csv", render([record(9), record(10)]))
    upload("hero_cdr_202610.zip", archive.getvalue())
    binary = bytes(range(256)) * 4  # not text: ignored at load, its bytes stored all the same
    upload("hero_cdr_20261005.csv", binary)

    outputs = {file_id: run("cat", str(file_id)) for file_id in range(1, 6)}
    assert all(result.exit_code == 0 for result in outputs.values())
    assert outputs[1].stdout_bytes == plain
    assert outputs[2].stdout_bytes == other
    assert outputs[3].stdout_bytes == render([record(8)])
    assert outputs[4].stdout_bytes == render([record(9), record(10)])
    assert outputs[5].stdout_bytes == binary


def test_cat_into_a_pipe_closed_early_is_not_an_error(app, upload):
    upload("hero_cdr_20261001.csv", render([record(i) for i in range(1, 3001)]))  # beyond a pipe's buffer
    with subprocess.Popen([sys.executable, "-m", "ingest.cli", "--config", str(app.config.path), "cat", "1"],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout.read(10) == b"ID,Account"
        process.stdout.close()  # as `| head` does
        stderr = process.stderr.read()
        assert (process.wait(timeout=60), stderr) == (0, b"")


def test_show_wraps_long_values_and_the_duplicates_table_shows_status_and_records(run, upload, monkeypatch):
    monkeypatch.setenv("COLUMNS", "72")
    long_name = "hero_cdr_20261001_" + "re-issued-after-the-october-billing-run-" * 3 + ".csv"
    upload(long_name, render([record(1), record(2, Seconds="ten")]))  # fails: a long error
    upload("hero_cdr_20261002.csv", render([record(3), record(4)]))
    upload("hero_cdr_20261002.csv", render([record(3), record(4)]))  # held: repeats #2 (loaded, 2 records)
    upload("hero_cdr_20261003.csv", render([record(4), record(5)]))  # held: overlap, 1 record from #2

    failed = run("show", "1").output
    assert "…" not in failed and max(len(line) for line in failed.splitlines()) <= 72
    error = json.loads(run("show", "1", "--json").output)["error"]
    assert long_name in error and len(error) > 72
    fields = failed.split("\nPotential duplicates:")[0]
    error_block = fields[fields.index("           error: "):]
    assert "".join(error_block.removeprefix("           error: ").split()) == "".join(error.split())
    name_block = fields[fields.index("            name: "):fields.index("         carrier: ")]
    assert "".join(name_block.removeprefix("            name: ").split()) == long_name

    monkeypatch.setenv("COLUMNS", "120")  # room for the tables on one line each
    duplicate = run("show", "3").output
    header, row = duplicate.split("Potential duplicates:\n")[1].splitlines()[:2]
    assert header.split()[:6] == ["KIND", "ID", "NAME", "STATUS", "RECORDS", "REPEATED"]
    assert row.split()[:6] == ["duplicate-content", "2", "hero_cdr_20261002.csv", "loaded", "2", "-"]
    overlap = run("show", "4").output
    row = overlap.split("Potential duplicates:\n")[1].splitlines()[1]
    assert row.split()[:6] == ["overlap", "2", "hero_cdr_20261002.csv", "loaded", "2", "1"]
    [link] = json.loads(run("show", "4", "--json").output)["potential_duplicates"]
    assert (link["status"], link["records_loaded"], link["records"]) == ("loaded", 2, 1)


@pytest.mark.parametrize("command", ["cat", "compare"])
def test_the_commands_have_help_with_an_example(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Example:" in result.output and f"cdr {command} 42" in result.output
