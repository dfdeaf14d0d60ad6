#!/usr/bin/env python3
"""Export benchmark: `cdr records --csv > /dev/null` over N loaded records, against a baseline, side by side.

Loads N Hero records (default 1,000,000; the generator of bench/load_bench.py) into a temporary SQLite catalog
(and a PostgreSQL schema, when the server answers), then times each way of writing them all as CSV to /dev/null
and measures its peak memory (that process's own max RSS):
- `cdr records --csv` (streamed: fetched a chunk at a time, each row written as it comes);
- the baseline: the approach before streaming, every row fetched into a list of dicts first, then written
  (re-implemented here, on the same catalog, with the same CSV writer);
- SQLite only, the floor: the sqlite3 CLI's `-csv` of the same table (``extra`` as stored, not named).

The ratios printed are ours over the baseline (memory: lower is better; it should stay flat as N grows, try
--rows 250000 against the default) and ours over the floor (time).

    .venv/bin/python bench/export_bench.py [--rows 1000000] [--postgres URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_bench import REPO, cdr_bin, cdr_env, generate  # noqa: E402  (one generator, one environment)

# The pre-streaming `cdr records --csv --limit 0`: every row fetched into memory as a dict, then written.
BASELINE = """
import os
import sys
from ingest import admin
from ingest.app import App
from ingest.export import write_csv
from ingest.layouts import CALL

app = App.from_config(os.environ["CDR_CONFIG"], actor="bench")
write_csv(CALL.columns, admin.list_records(app, limit=0), sys.stdout)
"""


def measure(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time of ``cmd`` with its output to /dev/null, and that process's own peak RSS in MiB."""
    with open(os.devnull, "w") as devnull:
        started = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, stdout=devnull, stderr=subprocess.PIPE, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{process.stderr.read().decode()}")
    process.stderr.close()
    return elapsed, usage.ru_maxrss // 1024


def load(env: dict[str, str], csv_path: Path) -> None:
    started = time.perf_counter()
    subprocess.run([cdr_bin(), "upload", str(csv_path), "--carrier", "hero", "--type", "cdr"], env=env, check=True,
                   capture_output=True)
    print(f"  loaded in {time.perf_counter() - started:.1f}s")


def compare(label: str, env: dict[str, str], floor: list[str] | None) -> None:
    ours_time, ours_rss = measure([cdr_bin(), "records", "--csv"], env)
    base_time, base_rss = measure([sys.executable, "-c", BASELINE], env)
    line = (f"{label}: cdr records --csv {ours_time:6.2f}s, peak {ours_rss:5d} MiB | all rows at once "
            f"{base_time:6.2f}s, peak {base_rss:5d} MiB | ratio time {ours_time / base_time:.2f}x, "
            f"memory {ours_rss / base_rss:.2f}x")
    if floor:
        floor_time, floor_rss = measure(floor, env)
        line += f" | sqlite3 -csv {floor_time:6.2f}s, peak {floor_rss} MiB: ours {ours_time / floor_time:.2f}x"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=os.environ.get("CDR_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cdr-export-bench-"))
    try:
        csv_path = work / "hero_cdr_20261001.csv"
        generate(csv_path, args.rows)
        print(f"{args.rows:,} Hero records")

        sqlite_dir = work / "sqlite"
        sqlite_dir.mkdir()
        database = sqlite_dir / "cdr.sqlite"
        env = cdr_env(sqlite_dir, f"sqlite:///{database}")
        load(env, csv_path)
        floor = ["sqlite3", "-csv", "-header", str(database), "SELECT * FROM calls ORDER BY id"]
        compare("SQLite    ", env, floor if shutil.which("sqlite3") else None)

        if not args.no_postgres:
            bench_postgres(args.postgres, work, csv_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_postgres(url: str, work: Path, csv_path: Path) -> None:
    import psycopg

    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL: skipped ({str(exc).strip().splitlines()[0]})")
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            run_dir = work / "postgres"
            run_dir.mkdir()
            env = cdr_env(run_dir, f"{url}?options=-csearch_path%3D{schema}")
            load(env, csv_path)
            compare("PostgreSQL", env, None)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
