"""Two processes at once: the same file uploaded twice is one queued and one held (never two queued); two
loaders on one queue load each file once."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import func, select

from ingest.catalog import files as catalog_files
from ingest.catalog.schema import calls as records
from tests.records import record, render

CDR = [sys.executable, "-m", "ingest.cli"]


def start(config, *args):
    env = {**os.environ, "CDR_CONFIG": str(config)}
    env.pop("CDR_FAULT", None)
    return subprocess.Popen([*CDR, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(*procs):
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def test_the_same_bytes_uploaded_twice_at_once_are_one_queued_one_held(app, tmp_path):
    for round_ in range(3):
        path = tmp_path / f"hero_cdr_2026100{round_ + 1}.csv"
        path.write_bytes(render([record(round_ * 10 + i) for i in range(1, 200)]))
        finish(*(start(app.config.path, "upload", str(path), "--carrier", "hero", "--type", "cdr", "--no-load")
                 for _ in range(2)))
    with app.catalog.read() as conn:
        statuses = sorted((f["name"], f["status"]) for f in catalog_files.list_files(conn))
    assert statuses == sorted([(f"hero_cdr_2026100{i}.csv", s) for i in (1, 2, 3) for s in ("held", "queued")])


def test_two_loaders_at_once_load_every_file_exactly_once(app, tmp_path):
    for day in range(1, 7):
        path = tmp_path / f"hero_cdr_202610{day:02d}.csv"
        path.write_bytes(render([record(day * 10_000 + i) for i in range(1, 3001)]))
        finish(start(app.config.path, "upload", str(path), "--carrier", "hero", "--type", "cdr", "--no-load"))
    finish(start(app.config.path, "load"), start(app.config.path, "load"))
    with app.catalog.read() as conn:
        files = catalog_files.list_files(conn)
        total = conn.execute(select(func.count()).select_from(records)).scalar_one()
        distinct = conn.execute(select(func.count(func.distinct(records.c.record_key)))).scalar_one()
    assert [(f["status"], f["records_loaded"]) for f in files] == [("loaded", 3000)] * 6
    assert total == distinct == 18_000
