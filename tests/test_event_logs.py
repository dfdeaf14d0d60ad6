"""What the daemon tells the admin: one INFO line per file event, logged where the fact is decided (the intake
door, the loader) so every path logs it the same way, once; one line per source pass; each error printed once."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys

from click.testing import CliRunner

from ingest import admin
from ingest.cli import cli
from ingest.daemon import run_pass
from ingest.intake import Origin, receive
from tests.conftest import app_with, catalog_rows, wait_until
from tests.records import record, render
from tests.remote_contract import put
from tests.test_daemon import share_source

FILE_EVENTS = ("file_taken", "file_loaded", "file_held", "file_failed", "file_ignored")


def events(caplog, *names: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) in names]


def of_file(caplog, file_id: int) -> list[tuple[str, str]]:
    """The file events logged for one file, in order: (event, message)."""
    return [(r.event, r.getMessage()) for r in events(caplog, *FILE_EVENTS) if r.file_id == file_id]


def upload(app, tmp_path, name: str, content: bytes) -> list:
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    received = admin.upload(app, path, carrier="hero", file_type="cdr")
    admin.load_now(app, received)
    return received


def test_every_file_event_is_one_info_line_with_what_the_admin_needs(app, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    [good] = upload(app, tmp_path, "hero_cdr_20261001.csv", render([record(1), record(2)]))
    [again] = upload(app, tmp_path, "hero_cdr_20261002.csv", render([record(1), record(2)]))
    [overlap] = upload(app, tmp_path, "hero_cdr_20261003.csv", render([record(2), record(3)]))
    [bad] = upload(app, tmp_path, "hero_cdr_20261004.csv", b"ID,Nonsense\n1,2\n")
    [pdf] = upload(app, tmp_path, "hero_cdr_20261005.csv", b"%PDF-1.7\n\x00\x01\x02\xff\xfe binary")
    [unknown] = receive(app, io.BytesIO(b"a,b\n"), Origin(source="upload", name="notes.csv"))

    assert [e for e, _ in of_file(caplog, good.id)] == ["file_taken", "file_loaded"]
    [loaded] = [r for r in events(caplog, "file_loaded") if r.file_id == good.id]
    assert (loaded.records, loaded.skipped, loaded.source, loaded.file) == (2, 0, "upload", "hero_cdr_20261001.csv")

    assert of_file(caplog, again.id) == [
        ("file_taken", f"#{again.id} hero_cdr_20261002.csv: taken from upload"),
        ("file_held", f"#{again.id} hero_cdr_20261002.csv: held (duplicate-content): "
                      f"repeats #{good.id} (hero_cdr_20261001.csv, loaded)")]

    [(_, taken), (_, held)] = of_file(caplog, overlap.id)
    assert "held (overlap)" in held and f"1 of 2 records were already loaded, from #{good.id} (1)" in held

    [(_, _), (event, failed)] = of_file(caplog, bad.id)
    assert event == "file_failed" and "line 1" in failed and "field" in failed

    [(_, _), (event, ignored)] = of_file(caplog, pdf.id)
    assert event == "file_ignored" and "not a delimited or JSON text file" in ignored

    [(_, _), (event, unrecognised)] = of_file(caplog, unknown.id)
    assert event == "file_ignored" and "no carrier's file rule matches 'notes.csv'" in unrecognised

    assert all(r.levelno == logging.INFO for r in events(caplog, *FILE_EVENTS))


def test_a_source_pass_is_one_line_and_a_first_listing_says_what_waits(make_config, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    share = tmp_path / "share"
    put(share / "hero_cdr_20261001.csv", render([record(1)]))
    put(share / "hero_cdr_20261002.csv", render([record(2)]))
    app = app_with(make_config, share_source("share", share).replace("stable_listings = 1", "stable_listings = 2")
                   + share_source("gone", tmp_path / "unmounted"))
    try:
        first, _ = run_pass(app, "share")
        assert (first.received, first.entries_waiting) == ([], 2)
        second, _ = run_pass(app, "share")
        assert (len(second.received), second.entries_waiting) == (2, 0)
        run_pass(app, "gone")
    finally:
        app.close()
    passes = events(caplog, "source_pass", "source_failed")
    assert [(r.event, r.source, r.files_taken, r.entries_waiting) for r in passes] == [
        ("source_pass", "share", 0, 2), ("source_pass", "share", 2, 0), ("source_failed", "gone", 0, 0)]
    assert "2 entries seen and waiting: each is taken once the next listing shows it unchanged" in passes[0].getMessage()
    assert passes[2].levelno == logging.WARNING and "unmounted" in passes[2].error
    assert len(events(caplog, "file_taken")) == 2  # by the door, once each; not again by the pass


def _cdr(config, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CDR_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "ingest.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cdr_collect_prints_each_error_once(make_config, tmp_path):
    share = tmp_path / "share"
    put(share / "..\\evil.csv", render([record(1)]))
    put(share / "hero_cdr_20261001.csv", render([record(2)]))
    config = make_config(share_source("share", share) + share_source("gone", tmp_path / "unmounted"))
    done = _cdr(config, "collect")
    assert done.returncode == 1
    output = (done.stdout + done.stderr).splitlines()
    assert len([line for line in output if "unmounted" in line]) == 1, output
    assert len([line for line in output if "evil" in line]) == 1, output
    assert "share: #1 hero_cdr_20261001.csv: loaded, 1 records" in done.stdout

    logged = _cdr(config, "--log-json", "collect", "--source", "gone")
    lines = [json.loads(line) for line in logged.stderr.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines if "unmounted" in json.dumps(line)] == ["source_failed"]


def drop_with_a_symlink(make_config, tmp_path):
    """A configuration whose drop folder "drop" (``tmp_path/inbox``) holds ``linked.csv``, a symlink (never taken)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "elsewhere.csv").write_bytes(render([record(1)]))
    (inbox / "linked.csv").symlink_to(tmp_path / "elsewhere.csv")
    config = make_config(f'[[sources]]\nname = "drop"\nkind = "dropfolder"\npath = "{inbox}"\ncarrier = "hero"\n'
                         'type = "cdr"\n')
    return config


def test_watch_once_prints_each_error_once(make_config, tmp_path):
    config = drop_with_a_symlink(make_config, tmp_path)
    done = _cdr(config, "watch", "--once")
    output = (done.stdout + done.stderr).splitlines()
    assert len([line for line in output if "linked.csv" in line]) == 1, output


def test_cdr_upload_of_a_held_file_names_the_earlier_files_it_repeats(make_config, tmp_path):
    config = make_config()
    for name in ("x.csv", "y.csv"):
        (tmp_path / name).write_bytes(render([record(1)]))
    runner = CliRunner()
    runner.invoke(cli, ["--config", str(config), "upload", str(tmp_path / "x.csv"), "--carrier", "hero", "--type", "cdr"])
    held = runner.invoke(cli, ["--config", str(config), "upload", str(tmp_path / "x.csv"), str(tmp_path / "y.csv"),
                               "--carrier", "hero", "--type", "cdr"])
    assert held.stdout.splitlines() == ["#2 x.csv: held (duplicate-content): repeats #1 (x.csv, loaded)",
                                        "#3 y.csv: held (duplicate-content): repeats #1 (x.csv, loaded), #2 (x.csv, held)"]
    [shown] = json.loads(runner.invoke(cli, ["--config", str(config), "upload", str(tmp_path / "y.csv"), "--carrier",
                                             "hero", "--type", "cdr", "--json"]).stdout)
    assert [link["id"] for link in shown["potential_duplicates"]] == [1, 2, 3]


def test_the_daemon_logs_every_file_event_without_being_asked(make_config, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    drop = (f'[[sources]]\nname = "drop"\nkind = "dropfolder"\npath = "{inbox}"\ncarrier = "hero"\ntype = "cdr"\n'
            'min_age_seconds = 0\nsettle_seconds = 0.5\nrescan_seconds = 0.2\n')
    config = make_config(drop)
    app = app_with(make_config, drop)  # the same file, written again
    env = {**os.environ, "CDR_CONFIG": str(config)}
    proc = subprocess.Popen([sys.executable, "-m", "ingest.cli", "daemon"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        (inbox / "hero_cdr_20261001.csv").write_bytes(render([record(1)]))
        (inbox / "hero_cdr_20261002.csv").write_bytes(render([record(1)]))
        wait_until(lambda: sorted(f["status"] for f in catalog_rows(app)) == ["held", "loaded"],
                   what="one file loaded and its copy held")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        app.close()
    assert proc.returncode == 0, err
    lines = err.splitlines()
    for event, count in (("file_taken", 2), ("file_loaded", 1), ("file_held", 1), ("source_pass", None)):
        found = [line for line in lines if f"event={event} " in line + " "]
        assert len(found) == count if count else found, (event, lines)
    [held] = [line for line in lines if "event=file_held" in line]
    assert "repeats #1 (hero_cdr_20261001.csv, loaded)" in held or "repeats #1 (hero_cdr_20261001.csv, queued)" in held
