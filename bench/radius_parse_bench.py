#!/usr/bin/env python3
"""Parse benchmark: the radius-detail format (FreeRADIUS detail files of Cisco gateways) against two floors.

Generates --legs records (default 200,000), half Start and half Stop, as a Cisco gateway's RADIUS accounting
writes them through FreeRADIUS (20 to 27 attribute lines each: h323-* times and ids, repeated Cisco-AVPair,
Acct-* counters), and times, in the same run, on the same bytes held in memory:

- ``engine radius-detail``: ``ingest.formats`` FileParser with the built-in radius-detail format (every field
  converted, Cisco times to UTC, keys with the row-hash fallback for Start records, ``extra``);
- ``read_lines floor``: ``ingest.formats.read.read_lines`` over the same file: its lines read and split by
  Arrow, nothing else; the floor of touching the file at all;
- ``hero-feed, same rows``: the engine reading as many rows of the hero-feed CSV (bench/load_bench.py's
  generator): what a record of a carrier's CSV costs, for comparison.

Each runs --repeat times (default 3), alternating; the medians are printed, and each per million legs.

    .venv/bin/python bench/radius_parse_bench.py [--legs 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from load_bench import generate as generate_hero  # noqa: E402

_START = datetime(2026, 2, 11, tzinfo=timezone.utc)


def _cisco(at: datetime, zone: str, hours: int) -> str:
    local = at + timedelta(hours=hours)
    return f"{local:%H:%M:%S}.000 {zone} {local:%a %b} {local.day} {local.year}"


def generate(path: Path, legs: int) -> int:
    """Write ``legs`` records (a Start then a Stop for every session) to ``path``; return its size in bytes."""
    zones = (("UTC", 0), ("GMT+4", 4), ("EST", -5), ("GMT+05:30", 5))
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for i in range(legs):
            session, stop = divmod(i, 2)
            setup = _START + timedelta(seconds=session * 3)
            seconds = 30 + session % 900
            connect = setup + timedelta(seconds=6)
            disconnect = connect + timedelta(seconds=seconds)
            at = disconnect if stop else setup
            zone, hours = zones[session % len(zones)]
            gateway = 1 + session % 2
            answer = session % 4 < 2
            voip = session % 3 != 0
            conf = f"{session:08X} 52FA39EB 8C3F0012 3B1F9C1A"
            lines = [f"{at:%a %b} {at.day:2d} {at:%H:%M:%S %Y}",
                     f'\tAcct-Session-Id = "{session:08X}"',
                     f'\tUser-Name = "0163296{session % 10000:04d}"']
            if voip:
                lines.append(f'\tCisco-AVPair = "call-id={session:08X}-1A2B11B2@10.0.0.{gateway}"')
            lines += [f'\th323-setup-time = "h323-setup-time={_cisco(setup, zone, hours)}"',
                      f'\th323-gw-id = "h323-gw-id=gw-{"ab"[gateway - 1]}."',
                      f'\th323-conf-id = "h323-conf-id={conf}"',
                      f'\th323-call-origin = "h323-call-origin={"answer" if answer else "originate"}"',
                      f'\th323-call-type = "h323-call-type={"VoIP" if voip else "Telephony"}"',
                      f'\tCisco-AVPair = "h323-incoming-conf-id={conf}"']
            if voip:
                lines.append(f'\th323-remote-address = "h323-remote-address=10.0.0.{3 - gateway}"')
            if stop:
                lines += [f'\th323-connect-time = "h323-connect-time={_cisco(connect, zone, hours)}"',
                          f'\th323-disconnect-time = "h323-disconnect-time={_cisco(disconnect, zone, hours)}"',
                          '\th323-disconnect-cause = "h323-disconnect-cause=10"',
                          f'\tCisco-AVPair = "release-source={1 if answer else 4}"',
                          f"\tAcct-Input-Octets = {seconds * 160}", f"\tAcct-Output-Octets = {seconds * 158}",
                          f"\tAcct-Input-Packets = {seconds}", f"\tAcct-Output-Packets = {seconds - 1}",
                          f"\tAcct-Session-Time = {seconds}"]
            lines += [f"\tAcct-Status-Type = {'Stop' if stop else 'Start'}",
                      "\tNAS-Port-Type = Async", "\tNAS-Port = 0",
                      f'\tCalling-Station-Id = "0163296{session % 10000:04d}"',
                      f'\tCalled-Station-Id = "0770090{session % 9973:04d}"',
                      "\tService-Type = Login-User", f"\tNAS-IP-Address = 10.0.0.{gateway}", "\tAcct-Delay-Time = 0",
                      f'\tAcct-Unique-Session-Id = "{session * 2654435761 % 2**64:016x}"',
                      f"\tTimestamp = {int(at.timestamp())}", ""]
            out.write("\n".join(lines) + "\n")
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--legs", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from ingest.formats import Source, compile_format, parse_format
    from ingest.formats.read import Dialect, read_lines
    from ingest.formats.spec import builtin_format_tables

    tables = builtin_format_tables()
    radius = compile_format(parse_format("radius-detail", tables["radius-detail"]))
    hero = compile_format(parse_format("hero-feed", tables["hero-feed"]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "detail-20260211"
        size = generate(path, args.legs)
        data = path.read_bytes()  # from memory: the readers are compared, not the disk
        hero_path = Path(tmp) / "hero.csv"
        generate_hero(hero_path, args.legs)
        hero_data = hero_path.read_bytes()
        lines = data.count(b"\n")
        print(f"{args.legs:,} legs, {lines:,} lines, {size / 2**20:.0f} MiB detail; "
              f"{len(hero_data) / 2**20:.0f} MiB hero-feed CSV of as many rows")

        def engine() -> int:
            source = Source(path.name, None, lambda: io.BytesIO(data))
            return sum(batch.num_rows for _layout, batch in radius.parser("gw").batches(source))

        def floor() -> int:
            source = Source(path.name, None, lambda: io.BytesIO(data))
            return sum(block.num_rows for block in read_lines(source, Dialect())) and args.legs

        def hero_csv() -> int:
            source = Source(hero_path.name, "csv", lambda: io.BytesIO(hero_data))
            return sum(batch.num_rows for _layout, batch in hero.parser("hero").batches(source))

        runs = (("engine radius-detail", engine), ("read_lines floor", floor), ("hero-feed, same rows", hero_csv))
        times: dict[str, list[float]] = {name: [] for name, _run in runs}
        for _ in range(args.repeat):
            for name, run in runs:
                started = time.perf_counter()
                rows = run()
                times[name].append(time.perf_counter() - started)
                if rows != args.legs:
                    sys.exit(f"{name}: {rows} rows, expected {args.legs}")
        per_million = 1_000_000 / args.legs
        for name, _run in runs:
            median = statistics.median(times[name])
            print(f"{name:<22}: {median:7.2f} s, {median * per_million:7.2f} s per 1M legs  "
                  f"(runs: {', '.join(f'{t:.2f}' for t in times[name])})")
        engine_s = statistics.median(times["engine radius-detail"])
        print(f"{'ratio engine/floor':<22}: {engine_s / statistics.median(times['read_lines floor']):7.2f}")
        print(f"{'ratio engine/hero-feed':<22}: {engine_s / statistics.median(times['hero-feed, same rows']):7.2f}")


if __name__ == "__main__":
    main()
