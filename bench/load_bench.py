#!/usr/bin/env python3
"""Load benchmark: `cdr upload` + load of a 1,000,000-row Hero CSV against the database's own bulk import.

Side by side, in the same run, on the same file:
- SQLite: the sqlite3 CLI's `.import` into a typed table, versus `cdr upload` (stage, fingerprint, catalog,
  parse, validate, load) into a fresh catalog. Goal: ratio <= 1.3.
- PostgreSQL (unless --no-postgres): `cdr upload` into a fresh schema versus two server-side
  `COPY table FROM 'file'` runs: the floor, into a typed table with the same unique constraint as ours (the
  carrier and the record's ID, both text in the "C" collation: what our `calls` table has), goal ratio <= 1.25;
  and into a plain typed table without any constraint, for reference. And the server's share alone: the rows the
  upload sent, copied in again by the server from a file (:func:`server_alone`).

Each side runs --repeat times (default 3) and the median is compared. The peak memory (max RSS) of the
`cdr upload` process is printed too: it should not grow with the file (try --rows 250000 to compare).

    .venv/bin/python bench/load_bench.py [--rows 1000000] [--repeat 3] [--postgres URL | --no-postgres] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
COLUMNS = ("ID", "AccountCode", "Direction", "CallType", "BillDate", "Time", "UTCDateTime", "UTCOffset", "AParty",
           "BParty", "BillNumber", "Seconds", "NetworkSeconds", "ConnectSeconds", "Charge", "ChargeExcl",
           "FreeUnitsUsed", "TextDesc1", "TextDesc2", "ReleaseCause", "Status", "ServiceType", "BillingGroup",
           "CallingGroup", "Profile")
SQLITE_TYPES = {"ID": "INTEGER", "Seconds": "INTEGER", "NetworkSeconds": "INTEGER", "ConnectSeconds": "INTEGER"}
PG_TYPES = {"ID": "BIGINT", "Seconds": "BIGINT", "NetworkSeconds": "BIGINT", "ConnectSeconds": "BIGINT",
            "BillDate": "DATE", "UTCDateTime": "TIMESTAMP", "Charge": "NUMERIC", "ChargeExcl": "NUMERIC",
            "FreeUnitsUsed": "NUMERIC"}


def generate(path: Path, rows: int) -> None:
    rng = random.Random(20261122)
    start = datetime(2026, 10, 1)
    directions = ("outbound", "inbound", "onnet")
    types = ("Mobile", "Local", "National", "International", "SMS")
    with open(path, "w", newline="") as out:
        out.write(",".join(COLUMNS) + "\r\n")
        for i in range(1, rows + 1):
            at = start + timedelta(seconds=i * 2)
            seconds = rng.randint(0, 3600)
            charge = rng.randint(0, 500000)
            n = i % 1000
            out.write(
                f"{i},8123{i % 97:04d},{directions[i % 3]},{types[i % 5]},{at:%Y-%m-%d},{at:%H:%M:%S},"
                f"{at - timedelta(hours=1):%Y-%m-%d %H:%M:%S},1,02079460{n:03d},07700900{i % 997:03d},"
                f"02079460{n:03d},{seconds},{max(seconds - 3, 0)},{i % 9},{charge / 10000:.4f},"
                f"{charge / 12000:.4f},0,UK Mobile,\"Vodafone, mobile\",0016,Ok,UKSTD,Default,Default,Default\r\n"
            )


def timed(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> tuple[float, int]:
    """Wall time of a command, and its peak RSS in MiB. Dirty pages are flushed first, so neither side pays
    for the other's writes (both fsync hundreds of MiB)."""
    os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return elapsed, max(peak, before) // 1024


def cdr_env(workdir: Path, database_url: str) -> dict[str, str]:
    config = workdir / "bench.toml"
    config.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n')
    return {**os.environ, "CDR_CONFIG": str(config), "CDR_DATABASE_URL": database_url,
            "CDR_STAGING_DIR": str(workdir / "staging")}


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A schema of its own on the PostgreSQL at ``url`` for one benchmark run, dropped afterwards: yields ``url``
    with its search_path set to it."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def cdr_bin() -> str:
    return str(Path(sys.executable).with_name("cdr"))


def bench_sqlite(csv_path: Path, work: Path, repeat: int) -> tuple[float, float, int]:
    import sqlite3

    baseline, ours, rss = [], [], 0
    for i in range(repeat):
        db = work / f"baseline-{i}.sqlite"
        table = ", ".join(f'"{c}" {SQLITE_TYPES.get(c, "TEXT")}' for c in COLUMNS)
        script = f"CREATE TABLE t ({table});\n.import --csv --skip 1 {csv_path} t\n"
        t, _ = timed(["sqlite3", str(db)], stdin=script)
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] > 0
        db.unlink()
        baseline.append(t)

        run_dir = work / f"cdr-{i}"
        run_dir.mkdir()
        env = cdr_env(run_dir, f"sqlite:///{run_dir}/cdr.sqlite")
        subprocess.run([cdr_bin(), "files"], env=env, check=True, capture_output=True)  # create the schema first
        t, peak = timed([cdr_bin(), "upload", str(csv_path), "--carrier", "hero", "--type", "cdr"], env=env)
        check = subprocess.run([cdr_bin(), "files", "--json"], env=env, check=True, capture_output=True, text=True)
        assert '"status": "loaded"' in check.stdout, check.stdout
        shutil.rmtree(run_dir)
        ours.append(t)
        rss = max(rss, peak)
    return statistics.median(baseline), statistics.median(ours), rss


def bench_postgres(csv_path: Path, work: Path, repeat: int, url: str) -> tuple[float, float, float, int]:
    """Medians of the floor, the plain table and ``cdr upload``, and the upload's peak RSS. Each timed run starts
    from a CHECKPOINT: the server writes every load (up to 500 MiB of WAL, more than half its max_wal_size), and a
    checkpoint the previous run (or its DROP) started would otherwise land, at random, on whichever run is next.
    The machine should be otherwise idle: another process's work lands the same way."""
    import psycopg

    floor, plain, ours, server, rss = [], [], [], [], 0
    os.chmod(csv_path, 0o644)
    for i in range(repeat):
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(url, autocommit=True) as conn:
            for constrained, times in ((True, floor), (False, plain)):
                conn.execute(f"CREATE SCHEMA {schema}")
                types = {**PG_TYPES, "ID": 'TEXT COLLATE "C"'} if constrained else PG_TYPES
                table = ", ".join(f'"{c}" {types.get(c, "TEXT")}' for c in COLUMNS)
                if constrained:
                    table = f"""carrier TEXT COLLATE "C" NOT NULL DEFAULT 'hero', {table}, UNIQUE (carrier, "ID")"""
                conn.execute(f"CREATE TABLE {schema}.t ({table})")
                columns = ", ".join(f'"{c}"' for c in COLUMNS)
                conn.execute("CHECKPOINT")  # the server's dirty pages too: see the docstring
                os.sync()
                started = time.perf_counter()
                conn.execute(f"COPY {schema}.t ({columns}) FROM '{csv_path}' (FORMAT csv, HEADER true)")
                times.append(time.perf_counter() - started)
                conn.execute(f"DROP SCHEMA {schema} CASCADE")

            conn.execute(f"CREATE SCHEMA {schema}")
            run_dir = work / f"cdr-pg-{i}"
            run_dir.mkdir()
            env = cdr_env(run_dir, f"{url}?options=-csearch_path%3D{schema}")
            subprocess.run([cdr_bin(), "files"], env=env, check=True, capture_output=True)
            conn.execute("CHECKPOINT")
            t, peak = timed([cdr_bin(), "upload", str(csv_path), "--carrier", "hero", "--type", "cdr"], env=env)
            check = subprocess.run([cdr_bin(), "files", "--json"], env=env, check=True, capture_output=True, text=True)
            assert '"status": "loaded"' in check.stdout, check.stdout
            ours.append(t)
            rss = max(rss, peak)
            shutil.rmtree(run_dir)
            server.append(server_alone(conn, schema, work))
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
    print("PostgreSQL runs (floor / ours / ratio): "
          + "; ".join(f"{f:.2f} / {o:.2f} / {o / f:.2f}x" for f, o in zip(floor, ours))
          + f" | median of the runs' ratios {statistics.median(o / f for f, o in zip(floor, ours)):.2f}x")
    print(f"PostgreSQL: the server alone, COPY of the rows `cdr upload` sent, from a file into a table like calls: "
          f"{statistics.median(server):.2f}s ({statistics.median(server) / statistics.median(floor):.2f}x the floor)")
    return statistics.median(floor), statistics.median(plain), statistics.median(ours), rss


def server_alone(conn, schema: str, work: Path) -> float:
    """The server's own share of our load: the calls the upload loaded, written out by the server in COPY's
    binary format (what the loader sends), copied back in from that file, timed, into a table like ``calls``
    (its indexes and its cached id sequence). The rest of the upload's time is the client's (start-up, staging,
    parsing, building the rows) and the time the two do not overlap."""
    columns = ", ".join(row[0] for row in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'calls' "
        "AND column_name <> 'id' ORDER BY ordinal_position", (schema,)))
    folder = work / "server"
    folder.mkdir(exist_ok=True)
    os.chmod(folder, 0o777)  # the server writes and reads the file
    rows = folder / "calls.bin"
    conn.execute(f"COPY (SELECT {columns} FROM {schema}.calls) TO '{rows}' (FORMAT binary)")
    conn.execute(f"CREATE SEQUENCE {schema}.again_id CACHE 1000")
    conn.execute(f"CREATE TABLE {schema}.again (LIKE {schema}.calls INCLUDING ALL)")
    conn.execute(f"ALTER TABLE {schema}.again ALTER id SET DEFAULT nextval('{schema}.again_id')")
    conn.execute("CHECKPOINT")
    os.sync()
    started = time.perf_counter()
    conn.execute(f"COPY {schema}.again ({columns}) FROM '{rows}' (FORMAT binary)")
    elapsed = time.perf_counter() - started
    rows.unlink()
    return elapsed


def arguments(doc: str | None) -> argparse.Namespace:
    """The options the load benchmarks share: --rows, --repeat, --postgres URL, --no-postgres."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=os.environ.get("CDR_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL's side alone")
    return parser.parse_args()


def main() -> None:
    args = arguments(__doc__)

    work = Path(tempfile.mkdtemp(prefix="cdr-bench-"))
    os.chmod(work, 0o755)
    try:
        csv_path = work / "hero_cdr_20261001.csv"
        started = time.perf_counter()
        generate(csv_path, args.rows)
        size = csv_path.stat().st_size / 2**20
        print(f"generated {args.rows:,} Hero rows ({size:.0f} MiB) in {time.perf_counter() - started:.1f}s")

        if not args.no_sqlite:
            base, ours, rss = bench_sqlite(csv_path, work, args.repeat)
            print(f"SQLite    : sqlite3 .import {base:6.2f}s | cdr upload+load {ours:6.2f}s "
                  f"(peak RSS {rss} MiB) | ratio {ours / base:.2f}x (goal <= 1.3x)")
        if not args.no_postgres:
            floor, plain, ours, rss = bench_postgres(csv_path, work, args.repeat, args.postgres)
            print(f"PostgreSQL: server COPY, unique (floor) {floor:6.2f}s | plain typed table {plain:6.2f}s | "
                  f"cdr upload+load {ours:6.2f}s (peak RSS {rss} MiB) | ratio to the floor {ours / floor:.2f}x "
                  f"(goal <= 1.25x), to the plain table {ours / plain:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
