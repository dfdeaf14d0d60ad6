"""The ``cdr`` command: every listing, decision and error path, through click's runner and a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ingest.cli import cli
from tests.records import record, render

COMMANDS = ["upload", "files", "show", "release", "discard", "retry", "records", "load", "watch", "collect",
            "status", "daemon", "feed", "feed backfill", "init", "doctor", "cat", "compare", "formats", "formats list",
            "formats check",
            "customers", "customers import", "customers list", "numbers", "numbers import", "numbers list",
            "features", "features import", "features list", "references", "references import", "references list",
            "charges", "charges allocate", "charges allocate-new", "charges rematch", "calls", "calls unmatched",
            "bill", "bill run", "bill report", "bill lock", "bill export", "bill list",
            "xdrs", "xdrs show", "legs", "legs orphans", "legs waiting", "legs join", "legs close", "alerts"]


@pytest.fixture
def run(app):
    runner = CliRunner()

    def invoke(*args, by="admin"):
        result = runner.invoke(cli, ["--config", str(app.config.path), "--by", by, *args], catch_exceptions=False)
        return result

    return invoke


@pytest.fixture
def hero_file(tmp_path):
    def make(name="hero_cdr_20261001.csv", ids=(1, 2)):
        path = tmp_path / name
        path.write_bytes(render([record(i) for i in ids]))
        return path

    return make


def test_upload_prints_each_files_id_and_status(run, hero_file):
    path = hero_file()
    first = run("upload", str(path), "--carrier", "hero", "--type", "cdr")
    assert first.exit_code == 0, first.output
    assert first.output.strip() == "#1 hero_cdr_20261001.csv: loaded, 2 records"
    again = run("upload", str(path), "--carrier", "hero", "--type", "cdr", "--json")
    [shown] = json.loads(again.output)
    assert (shown["id"], shown["status"], shown["reason"]) == (2, "held", "duplicate-content")


def test_files_json_has_the_documented_fields(run, hero_file):
    run("upload", str(hero_file()), "--carrier", "hero", "--type", "cdr", "--cadence", "daily")
    result = run("files", "--json")
    [shown] = json.loads(result.output)
    for key in ("id", "name", "carrier", "type", "cadence", "source", "size", "fingerprint", "status", "reason",
                "billing_period", "received_at", "records"):
        assert key in shown
    assert (shown["carrier"], shown["type"], shown["cadence"], shown["source"], shown["status"], shown["records"],
            shown["billing_period"]) == ("hero", "cdr", "daily", "upload", "loaded", 2, "2026-10")
    assert shown["received_at"].endswith("Z")


def test_files_filters(run, hero_file):
    run("upload", str(hero_file()), "--carrier", "hero", "--type", "cdr")
    run("upload", str(hero_file()), "--carrier", "hero", "--type", "cdr")
    run("upload", str(hero_file("hero_cdr_202609.csv", ids=(9,))), "--carrier", "hero", "--type", "cdr")
    held = json.loads(run("files", "--status", "held", "--json").output)
    assert [f["id"] for f in held] == [2]
    september = json.loads(run("files", "--period", "2026-09", "--json").output)
    assert [f["id"] for f in september] == [3]
    monthly = json.loads(run("files", "--cadence", "monthly", "--json").output)
    assert [f["id"] for f in monthly] == [3]
    assert json.loads(run("files", "--carrier", "techconnections", "--json").output) == []
    table = run("files").output
    assert table.splitlines()[0].split()[:3] == ["ID", "NAME", "CARRIER"]
    assert "duplicate-content" in table


def test_show_lists_potential_duplicates_and_history(run, hero_file):
    run("upload", str(hero_file()), "--carrier", "hero", "--type", "cdr")
    run("upload", str(hero_file()), "--carrier", "hero", "--type", "cdr")
    shown = json.loads(run("show", "2", "--json").output)
    assert [(d["kind"], d["id"]) for d in shown["potential_duplicates"]] == [("duplicate-content", 1)]
    assert [(e["action"], e["actor"], e["to_status"]) for e in shown["history"]] == [("received", "admin", "held")]
    text = run("show", "2").output
    assert "Potential duplicates:" in text and "duplicate-content" in text


def test_release_and_discard_are_audited_with_who_and_why(run, hero_file):
    run("upload", str(hero_file()), "--carrier", "hero", "--type", "cdr")
    run("upload", str(hero_file()), "--carrier", "hero", "--type", "cdr")
    run("upload", str(hero_file()), "--carrier", "hero", "--type", "cdr")
    released = run("release", "2", "--reason", "carrier re-issued", by="erin")
    assert released.exit_code == 0
    assert "loaded, 0 records, 2 skipped" in released.output
    discarded = run("discard", "3", "--reason", "sent twice", by="frank")
    assert discarded.output.strip() == "#3 hero_cdr_20261001.csv: discarded (duplicate-content)"
    history2 = json.loads(run("show", "2", "--json").output)["history"]
    assert ("released", "erin", "carrier re-issued") in [(e["action"], e["actor"], e["reason"]) for e in history2]
    history3 = json.loads(run("show", "3", "--json").output)["history"]
    assert history3[-1]["action"] == "discarded" and history3[-1]["actor"] == "frank"
    assert history3[-1]["reason"] == "sent twice"
    again = run("release", "3")
    assert again.exit_code == 1 and "discarded" in again.output


def test_retry_after_failure(run, tmp_path):
    bad = tmp_path / "hero_cdr_20261001.csv"
    bad.write_bytes(render([record(1, Seconds="ten")]))
    result = run("upload", str(bad), "--carrier", "hero", "--type", "cdr")
    assert result.exit_code == 1
    assert "failed (parse-error)" in result.output and "line 2, field Seconds" in result.output
    again = run("retry", "1")  # nothing fixed: fails the same way, still exit 1
    assert again.exit_code == 1 and "line 2, field Seconds" in again.output


def test_records_json_keeps_money_exact_and_numbers_as_text(run, hero_file, tmp_path):
    path = tmp_path / "hero_cdr_20261001.csv"
    path.write_bytes(render([record(1, Charge="0.1000", AParty="0016491234567")]))
    run("upload", str(path), "--carrier", "hero", "--type", "cdr")
    [line] = run("records", "--file", "1", "--json").output.splitlines()  # JSON Lines: one object per record
    shown = json.loads(line)
    assert shown["charge"] == "0.10" and shown["a_number"] == "0016491234567"
    assert shown["start_time"] == "2026-10-01T00:05:09Z"


@pytest.mark.parametrize("args, message", [
    (["show", "99"], "no file with id 99"),
    (["records", "--file", "99"], "no file with id 99"),
    (["upload", "missing.csv", "--carrier", "hero", "--type", "cdr"], "cannot read missing.csv"),
    (["upload", "missing.csv", "--carrier", "nobody", "--type", "cdr"], "unknown carrier 'nobody'"),
    (["release", "99"], "no file with id 99"),
])
def test_bad_input_exits_non_zero_with_one_line(run, args, message):
    result = run(*args)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error: ")


def test_the_help_test_covers_every_command():
    def names(group, prefix=""):
        for name, command in group.commands.items():
            yield prefix + name
            if hasattr(command, "commands"):
                yield from names(command, f"{prefix}{name} ")

    assert sorted(names(cli)) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command):
    result = CliRunner().invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"cdr {command}" in result.output


def test_the_installed_command_runs_and_hides_the_database_password(tmp_path):
    env = {**os.environ, "CDR_CONFIG": str(tmp_path / "none.toml"),
           "CDR_DATABASE_URL": "postgresql://cdr:s3cret-pw@127.0.0.1:1/nowhere", "CDR_STAGING_DIR": str(tmp_path)}
    (tmp_path / "none.toml").write_text("")
    result = subprocess.run([sys.executable, "-m", "ingest.cli", "files", "--json"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: catalog database busy or unreachable")
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_malformed_period_is_refused(run):
    result = run("files", "--period", "2026-1")
    assert result.exit_code == 2 and "YYYY-MM" in result.output


def test_watch_once_takes_dropped_files_and_reports_their_final_status(make_config, tmp_path):
    import os
    import time as _time

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = make_config(f'[[sources]]\nname = "drop"\nkind = "dropfolder"\npath = "{inbox}"\n'
                         'carrier = "hero"\ntype = "cdr"\nsettle_seconds = 60\n')
    path = inbox / "hero_cdr_20261001.csv"
    path.write_bytes(render([record(1), record(2)]))
    old = _time.time() - 3600
    os.utime(path, (old, old))
    result = CliRunner().invoke(cli, ["--config", str(config), "watch", "--once"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "drop: #1 hero_cdr_20261001.csv: loaded" in result.output
    assert (inbox / "done" / "hero_cdr_20261001.csv").exists() and not path.exists()


@pytest.mark.parametrize("what", ["missing", "folder"])
def test_upload_of_a_missing_path_or_a_folder_is_one_line_on_stderr(run, tmp_path, what):
    path = tmp_path / "hero_cdr_20261001.csv"
    if what == "folder":
        path.mkdir()
    result = run("upload", str(path), "--carrier", "hero", "--type", "cdr")
    reason = "No such file or directory" if what == "missing" else "Is a directory"
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"error: cannot read {path}: {reason}\n")


def test_upload_of_several_paths_takes_every_readable_one_and_reports_the_others(run, tmp_path):
    good = tmp_path / "hero_cdr_20261001.csv"
    good.write_bytes(render([record(1)]))
    later = tmp_path / "hero_cdr_20261002.csv"
    later.write_bytes(render([record(2)]))
    missing = tmp_path / "hero_cdr_20261003.csv"
    result = run("upload", str(good), str(missing), str(later), "--carrier", "hero", "--type", "cdr")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["#1 hero_cdr_20261001.csv: loaded, 1 records",
                                          "#2 hero_cdr_20261002.csv: loaded, 1 records"]
    assert result.stderr == f"error: cannot read {missing}: No such file or directory\n"


def test_upload_of_a_file_the_user_may_not_read_is_one_line_on_stderr(tmp_path):
    from tests.conftest import REPO

    config = tmp_path / "cdr.toml"
    config.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n')
    secret = tmp_path / "hero_cdr_20261001.csv"
    secret.write_bytes(render([record(1)]))
    secret.chmod(0)
    # Root reads whatever the permission bits say, by these two capabilities: run without them.
    without_override = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search",
                        "--inh-caps", "-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []
    result = subprocess.run(
        [*without_override, sys.executable, "-m", "ingest.cli", "--config", str(config), "upload", str(secret),
         "--carrier", "hero", "--type", "cdr"],
        env={**os.environ, "CDR_DATABASE_URL": f"sqlite:///{tmp_path}/cdr.sqlite"}, cwd=REPO,
        capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (
        1, "", f"error: cannot read {secret}: Permission denied\n")


def test_retry_help_says_how_to_correct_a_malformed_file(run):
    text = " ".join(run("retry", "--help").output.split())
    assert "drop or upload the corrected file again" in text and "superseded" in text
