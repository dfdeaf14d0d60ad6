#!/usr/bin/env python3
"""Hold and release benchmark: what an overlapping file costs, against a fresh load of the same file.

A catalog holds file A (Hero rows with IDs 1..N). File B (IDs N/2+1..3N/2: half of them already loaded) is
uploaded (it is held as an overlap), then released (it loads the half that is new). Side by side, in the same
run: the same file B uploaded into an empty catalog (a fresh load). The ratio (hold + release) / fresh shows
what the hold and the release cost beyond one parse: the file is parsed once, when it is held, and its release
loads from that parse. Before the parse was kept, hold + release cost about 1.8x a fresh load (three parses).

    .venv/bin/python bench/hold_release_bench.py [--rows 1000000] [--repeat 3] [--postgres URL | --no-postgres] [--no-sqlite]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_bench import arguments, cdr_bin, cdr_env, generate  # noqa: E402


def cdr(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([cdr_bin(), *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"cdr {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def timed(env: dict[str, str], *args: str) -> float:
    os.sync()
    started = time.perf_counter()
    cdr(env, *args)
    return time.perf_counter() - started


def status_of(env: dict[str, str], name: str) -> dict:
    files = json.loads(cdr(env, "files", "--json", "--limit", "0"))
    return next(f for f in files if f["name"] == name)


def one_round(work: Path, database_url: str, first: Path, second: Path) -> tuple[float, float]:
    run_dir = work / f"run-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir()
    env = cdr_env(run_dir, database_url(run_dir, "held"))
    cdr(env, "upload", str(first), "--carrier", "hero", "--type", "cdr")
    hold = timed(env, "upload", str(second), "--carrier", "hero", "--type", "cdr")
    held = status_of(env, second.name)
    assert held["status"] == "held", held
    release = timed(env, "release", str(held["id"]), "--reason", "bench")
    loaded = status_of(env, second.name)
    assert loaded["status"] == "loaded", loaded

    fresh_env = cdr_env(run_dir, database_url(run_dir, "fresh"))
    cdr(fresh_env, "files")  # the schema first, as the held side has it
    fresh = timed(fresh_env, "upload", str(second), "--carrier", "hero", "--type", "cdr")
    assert status_of(fresh_env, second.name)["status"] == "loaded"
    shutil.rmtree(run_dir)
    return hold + release, fresh


def main() -> None:
    args = arguments(__doc__)

    work = Path(tempfile.mkdtemp(prefix="cdr-hold-bench-"))
    try:
        whole = work / "whole.csv"
        generate(whole, args.rows + args.rows // 2)
        lines = whole.read_bytes().split(b"\r\n")
        header, rows = lines[0], lines[1:-1]
        first = work / "hero_cdr_20261001.csv"
        second = work / "hero_cdr_20261002.csv"
        first.write_bytes(b"\r\n".join([header, *rows[: args.rows]]) + b"\r\n")
        second.write_bytes(b"\r\n".join([header, *rows[args.rows // 2:]]) + b"\r\n")
        print(f"file A: IDs 1..{args.rows:,}; file B: IDs {args.rows // 2 + 1:,}..{args.rows + args.rows // 2:,}")

        def sqlite_url(run_dir: Path, name: str) -> str:
            return f"sqlite:///{run_dir}/{name}.sqlite"

        backends = [] if args.no_sqlite else [("SQLite", sqlite_url, None)]
        if not args.no_postgres:
            import psycopg

            schemas: list[str] = []

            def postgres_url(_run_dir: Path, _name: str) -> str:
                schema = f"bench_{uuid.uuid4().hex[:12]}"
                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f"CREATE SCHEMA {schema}")
                schemas.append(schema)
                return f"{args.postgres}?options=-csearch_path%3D{schema}"

            backends.append(("PostgreSQL", postgres_url, schemas))
        for label, url, schemas in backends:
            held, fresh = [], []
            for _ in range(args.repeat):
                a, b = one_round(work, url, first, second)
                held.append(a)
                fresh.append(b)
                if schemas:
                    import psycopg

                    with psycopg.connect(args.postgres, autocommit=True) as conn:
                        for schema in schemas:
                            conn.execute(f"DROP SCHEMA {schema} CASCADE")
                    schemas.clear()
            h, f = statistics.median(held), statistics.median(fresh)
            print(f"{label:10}: hold + release {h:6.2f}s | fresh load {f:6.2f}s | ratio {h / f:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
