"""A kill at any step of intake or load leaves no partial state, and the next attempt succeeds.

Each case runs the real ``cdr`` command in a subprocess that dies (``os._exit``) at a named step
(``CDR_FAULT``, see ingest/faults.py), then inspects the catalog and runs the step again.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from ingest.catalog import files as catalog_files
from ingest.catalog.schema import calls as records, file_events
from ingest.load import load_queued
from tests.records import record, render

CDR = [sys.executable, "-m", "ingest.cli"]


def cdr(config, *args, fault=None):
    env = {**os.environ, "CDR_CONFIG": str(config)}
    env.pop("CDR_FAULT", None)
    if fault:
        env["CDR_FAULT"] = fault
    return subprocess.run([*CDR, *args], env=env, capture_output=True, text=True, timeout=120)


def counts(app):
    with app.catalog.read() as conn:
        return (
            conn.execute(select(func.count()).select_from(records)).scalar_one(),
            [(f["status"], f["records_loaded"]) for f in catalog_files.list_files(conn)],
            conn.execute(select(func.count()).select_from(file_events)).scalar_one(),
        )


@pytest.mark.parametrize("fault", ["intake.staged", "intake.before-commit"])
def test_kill_during_intake_leaves_no_row_and_no_false_duplicate(app, make_config, tmp_path, fault):
    config = app.config.path
    data = tmp_path / "hero_cdr_20261001.csv"
    data.write_bytes(render([record(1), record(2)]))
    killed = cdr(config, "upload", str(data), "--carrier", "hero", "--type", "cdr", "--no-load", fault=fault)
    assert killed.returncode == 86, killed.stderr
    assert counts(app) == (0, [], 0)
    again = cdr(config, "upload", str(data), "--carrier", "hero", "--type", "cdr")
    assert again.returncode == 0, again.stderr
    assert "loaded, 2 records" in again.stdout
    assert counts(app)[:2] == (2, [("loaded", 2)])


@pytest.mark.parametrize("fault", ["load.bulk-written", "load.inserted", "load.before-commit"])
def test_kill_during_load_leaves_the_file_queued_with_nothing_loaded(app, tmp_path, fault):
    config = app.config.path
    data = tmp_path / "hero_cdr_20261001.csv"
    data.write_bytes(render([record(i) for i in range(1, 501)]))
    staged = cdr(config, "upload", str(data), "--carrier", "hero", "--type", "cdr", "--no-load")
    assert staged.returncode == 0, staged.stderr
    killed = cdr(config, "load", fault=fault)
    assert killed.returncode == 86, killed.stderr
    assert counts(app)[:2] == (0, [("queued", 0)])
    [result] = load_queued(app)
    assert (result.status, result.loaded) == ("loaded", 500)
    assert counts(app)[:2] == (500, [("loaded", 500)])
