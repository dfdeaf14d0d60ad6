#!/usr/bin/env python3
"""Remote benchmarks, each side by side in the same run:

1. list+diff vs listing: a directory of N entries (default 100,000), every one already collected. A
   collector pass (list, load the remote state, diff, nothing to fetch) against a plain listing of the same
   directory through the same transport. Goal: ratio <= 1.2.
2. (--kind sftp) download rate: paramiko (our SFTP transport) against OpenSSH's `sftp` client, on the same
   file from the same server. Goal: ratio >= 0.5.

    .venv/bin/python bench/remote_bench.py [--kind directory|sftp] [--entries 100000] [--size-mib 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sqlalchemy import insert  # noqa: E402

from ingest.app import App  # noqa: E402
from ingest.catalog.schema import remote_collected  # noqa: E402
from ingest.collectors import collector_for  # noqa: E402
from ingest.config import load_config  # noqa: E402

OLD = time.time() - 86400


def make_entries(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"hero_cdr_{20200101 + i:08d}.csv"
        path.touch()
        os.utime(path, (OLD, OLD))


def app_for(work: Path, source_toml: str) -> App:
    config = work / "bench.toml"
    config.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n[database]\nurl = "sqlite:///{work}/cdr.sqlite"\n'
                      f'[staging]\ndir = "{work}/staging"\n' + source_toml)
    return App(load_config(config, env={}), actor="bench")


def mark_all_collected(app: App, source: str, directory: str, entries) -> None:
    stamp = datetime.now(timezone.utc)
    rows = [{"source": source, "path": f"{directory.rstrip('/')}/{e.name}", "size": e.size, "mtime": e.mtime,
             "file_id": None, "collected_at": stamp} for e in entries if e.is_file]
    with app.catalog.write() as conn:
        conn.execute(insert(remote_collected), rows)


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def bench_list_diff(app: App, directory: str, repeat: int) -> None:
    collector = collector_for(app, app.config.source("bench"))
    with collector.session() as transport:
        entries = transport.list(directory)
    mark_all_collected(app, "bench", directory, entries)

    def plain_listing():
        with collector.session() as transport:
            assert len(transport.list(directory)) == len(entries)

    def collector_pass():
        result = collector.collect()
        assert result.received == [] and result.errors == [], result.errors

    listing = timed(plain_listing, repeat)
    full = timed(collector_pass, repeat)
    print(f"list+diff : {len(entries):,} entries | listing {listing:6.2f}s | list+diff {full:6.2f}s | "
          f"ratio {full / listing:.2f}x (goal <= 1.2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("directory", "sftp"), default="directory")
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=256)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cdr-remote-bench-"))
    try:
        folder = work / "share" / "daily"
        started = time.perf_counter()
        make_entries(folder, args.entries)
        print(f"made {args.entries:,} entries in {time.perf_counter() - started:.1f}s")
        if args.kind == "directory":
            source = ('[[sources]]\nname = "bench"\nkind = "directory"\nstable_listings = 1\n'
                      f'[[sources.dirs]]\npath = "{folder}"\ncarrier = "hero"\ntype = "cdr"\n')
            app = app_for(work, source)
            try:
                bench_list_diff(app, str(folder), args.repeat)
            finally:
                app.close()
        else:
            from bench_sftp import bench_sftp  # the SFTP side lives beside this script

            bench_sftp(work, folder, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
