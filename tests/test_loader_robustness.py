"""One file never stops the loader: whatever goes wrong with a file fails that file (with the error) and the
loader goes on with the next; a transient error (the database busy) leaves the file queued, never failed."""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager
import sys

import pytest
from click.testing import CliRunner

from ingest.formats.engine import FileParser
from ingest import admin
from ingest import load as load_module
from ingest.app import App
from ingest.cli import cli
from ingest.config import load_config
from ingest.load import load_queued
from tests.conftest import app_with
from tests.records import record, render
from tests.test_load import row, upload

NUL_TEXT = "Mobile\x00call"


def line_of_second_record(data: bytes, fmt: str) -> int:
    lines = data.decode().split("\n")
    if fmt == "json":  # each object starts on a line of its own
        return [number for number, text in enumerate(lines, 1) if text.strip() == "{"][1]
    return 3  # the header, then the first record


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_nul_in_a_text_field_fails_the_file_naming_line_and_field_and_the_next_file_loads(app, fmt):
    data = render([record(1), record(2, TextDesc1=NUL_TEXT), record(3)], fmt=fmt)
    bad = upload(app, data, f"hero_cdr_20261001.{fmt}", file_format=fmt)
    good = upload(app, render([record(4)]), "hero_cdr_20261002.csv")
    results = load_queued(app)
    assert [(r.file_id, r.status) for r in results] == [(bad.id, "failed"), (good.id, "loaded")]
    stored = row(app, bad.id)
    assert (stored["status"], stored["reason"]) == ("failed", "parse-error")
    line = line_of_second_record(data, fmt)
    assert f"(hero_cdr_20261001.{fmt}), line {line}, field TextDesc1: contains a NUL character" in stored["error"]
    assert "\x00" not in stored["error"] and "\n" not in stored["error"]
    assert admin.list_records(app, file_id=bad.id) == []
    assert app.staging.path_of(stored["blob"]).exists()


def test_cdr_upload_of_a_file_with_a_nul_reports_it_failed_in_one_line(app, tmp_path):
    path = tmp_path / "hero_cdr_20261001.csv"
    path.write_bytes(render([record(1, TextDesc1=NUL_TEXT)]))
    result = CliRunner().invoke(cli, ["--config", str(app.config.path), "upload", str(path), "--carrier", "hero",
                                      "--type", "cdr"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stdout == (r"#1 hero_cdr_20261001.csv: failed (parse-error): file #1 (hero_cdr_20261001.csv), "
                             r"line 2, field TextDesc1: contains a NUL character (value 'Mobile\x00call')" "\n")


def test_an_unexpected_error_fails_that_file_with_the_error_and_the_loader_goes_on(app, monkeypatch):
    convert = FileParser._convert

    def convert_with_a_defect(self, source, *args):
        if "20261001" in source.name:
            raise RuntimeError("a defect of ours\nwith a second line")
        return convert(self, source, *args)

    monkeypatch.setattr(FileParser, "_convert", convert_with_a_defect)
    bad = upload(app, render([record(1)]), "hero_cdr_20261001.csv")
    good = upload(app, render([record(2)]), "hero_cdr_20261002.csv")
    results = load_queued(app)
    assert [(r.file_id, r.status) for r in results] == [(bad.id, "failed"), (good.id, "loaded")]
    stored = row(app, bad.id)
    assert (stored["status"], stored["reason"]) == ("failed", "load-error")
    assert stored["error"] == ("file #1 (hero_cdr_20261001.csv): unexpected error: RuntimeError: a defect of ours")
    assert admin.show(app, bad.id)["history"][-1]["action"] == "failed"


ACME = """
[carriers.acme]
parser = "hero"
"""


def test_a_file_of_a_carrier_no_longer_configured_fails_and_the_next_file_loads(make_config):
    before = app_with(make_config, ACME)
    try:
        orphan = upload(before, render([record(1)]), "acme_20261001.csv", carrier="acme", file_type="cdr")
    finally:
        before.close()
    after = app_with(make_config, "")  # the carrier's definition was removed meanwhile
    try:
        good = upload(after, render([record(2)]), "hero_cdr_20261002.csv")
        results = load_queued(after)
        assert [(r.file_id, r.status) for r in results] == [(orphan.id, "failed"), (good.id, "loaded")]
        assert "unknown carrier 'acme'" in row(after, orphan.id)["error"]
    finally:
        after.close()


# Holds the catalog busy from another process until its stdin closes: SQLite's write lock, or on PostgreSQL the
# first file's row.
HOLDER = """
import sys
kind, target = sys.argv[1:]
if kind == "sqlite":
    import sqlite3
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
else:
    import psycopg
    conn = psycopg.connect(target)
    conn.execute("SELECT 1 FROM files WHERE id = 1 FOR UPDATE")
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def busy_catalog(app, database_url, monkeypatch):
    """A context in which loading the first file meets a busy database, giving an App to load with: on SQLite
    the loader waits no time for the write lock; on PostgreSQL its sessions wait 200 ms for a lock (as a
    deployment's ``lock_timeout`` would)."""
    if app.catalog.is_sqlite:
        monkeypatch.setattr(load_module, "SQLITE_BUSY_SECONDS", 0)
        kind, target, url = "sqlite", app.catalog.sqlite_path, database_url
    else:
        kind, target, url = "postgresql", _libpq(database_url), database_url + "%20-clock_timeout%3D200"
    busy_app = App(load_config(app.config.path, env={"CDR_DATABASE_URL": url}), actor="tester")

    @contextmanager
    def held():
        with subprocess.Popen([sys.executable, "-c", HOLDER, kind, target], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) as holder:
            try:
                assert holder.stdout.readline() == "held\n"
                yield busy_app
            finally:
                holder.communicate(timeout=30)  # its stdin closes: it lets go and ends

    yield held
    busy_app.close()


def _libpq(url: str) -> str:
    """The URL as libpq takes it (no SQLAlchemy driver name)."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_a_busy_database_leaves_the_file_queued_not_failed_and_the_pass_goes_on(app, busy_catalog):
    first = upload(app, render([record(1)]), "hero_cdr_20261001.csv")
    second = upload(app, render([record(2)]), "hero_cdr_20261002.csv")
    with busy_catalog() as busy_app:
        results = load_queued(busy_app)
    assert results[0].file_id == first.id and results[0].status == "queued"
    assert results[0].message.startswith("file #1 (hero_cdr_20261001.csv) stays queued: catalog database busy")
    assert "\n" not in results[0].message
    stored = row(app, first.id)
    assert (stored["status"], stored["error"]) == ("queued", None)
    # SQLite's lock holds the whole database; PostgreSQL's only the first file's row, so the second loads.
    assert results[1].status == ("queued" if app.catalog.is_sqlite else "loaded")
    assert {r.file_id: r.status for r in load_queued(app)}.get(first.id) == "loaded"
    assert row(app, second.id)["status"] == "loaded"


def test_cdr_load_shows_a_file_left_queued_by_a_busy_database_in_one_line(app, busy_catalog):
    upload(app, render([record(1)]), "hero_cdr_20261001.csv")
    with busy_catalog() as busy_app:
        result = CliRunner().invoke(cli, ["--config", str(busy_app.config.path), "load", "--json"],
                                    env={"CDR_DATABASE_URL": busy_app.config.database_url}, catch_exceptions=False)
    [shown] = json.loads(result.stdout)
    assert (shown["id"], shown["status"], shown["records"]) == (1, "queued", 0)
    assert shown["message"].startswith("file #1 (hero_cdr_20261001.csv) stays queued: catalog database busy")


def test_the_daemons_loader_passes_over_a_file_a_busy_database_left_queued(app, busy_catalog):
    from ingest.daemon import load_while

    first = upload(app, render([record(1)]), "hero_cdr_20261001.csv")
    second = upload(app, render([record(2)]), "hero_cdr_20261002.csv")
    with busy_catalog() as busy_app:
        done = load_while(busy_app, lambda: True)  # ends once every queued file was tried this round
    assert row(app, first.id)["status"] == "queued"
    # PostgreSQL holds only the first file's row: the file behind it loads. SQLite's lock holds the database.
    assert (done, row(app, second.id)["status"]) == ((0, "queued") if app.catalog.is_sqlite else (1, "loaded"))
    assert load_while(app, lambda: True) == (2 if app.catalog.is_sqlite else 1)
