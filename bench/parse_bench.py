#!/usr/bin/env python3
"""Parse benchmark: the format engine (hero-feed format) against pyarrow's own CSV reader of the same file.

Side by side, in the same run, on the same generated 1,000,000-row Hero CSV (bench/load_bench.py's
generator): `ingest.formats` FileParser with the hero-feed format (ingest/formats/builtin/hero-feed.toml, else
the equivalent table below) versus `pyarrow.csv.read_csv` of the file with every column read as a string: the
floor of reading the file at all, with no field converted or checked, no key, no `extra`. Each side runs
--repeat times (default 3), alternating; both medians and their ratio (engine / floor) are printed. With
--format json the engine reads the file as a JSON array, which pyarrow cannot read: the floor is then still
`read_csv` of the CSV the JSON was made from (the same rows), and says so.

The baseline was the hand-written Hero parser the engine replaced (`carriers.billingfeed.HeroParser`): against
it the engine measured 1.74 s vs 1.88 s per 1M rows (ratio 0.93) on 2026-11-27, before that parser was removed.

    .venv/bin/python bench/parse_bench.py [--rows 1000000] [--repeat 3] [--format csv|json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from load_bench import COLUMNS, generate  # noqa: E402

HERO_FEED = """
[formats.hero-feed]
kind = "auto"
header = "auto"
column_names = "loose"
columns = ["ID", "AccountCode", "Direction", "CallType", "BillDate", "Time", "UTCDateTime", "UTCOffset",
           "AParty", "BParty", "BillNumber", "Seconds", "NetworkSeconds", "ConnectSeconds", "Charge",
           "ChargeExcl", "FreeUnitsUsed", "TextDesc1", "TextDesc2", "ReleaseCause", "Status", "ServiceType",
           "BillingGroup", "CallingGroup", "Profile"]
record = "call"
key = ["ID"]

[formats.hero-feed.fields]
carrier_record_id = { column = "ID", type = "int", required = true }
account_code = { column = "AccountCode" }
direction = { column = "Direction" }
call_type = { column = "CallType" }
bill_date = { column = "BillDate", required = true }
local_time = { column = "Time" }
start_time = { column = "UTCDateTime" }
utc_offset = { column = "UTCOffset" }
a_number = { column = "AParty" }
b_number = { column = "BParty" }
bill_number = { column = "BillNumber" }
billed_seconds = { column = "Seconds" }
connected_seconds = { column = "NetworkSeconds" }
charge = { column = "Charge", required = true }
charge_excl = { column = "ChargeExcl", required = true }
description = { column = "TextDesc1" }
release_cause = { column = "ReleaseCause" }
status = { column = "Status" }
"""


def hero_table() -> tuple[dict, str]:
    builtin = REPO / "ingest" / "formats" / "builtin" / "hero-feed.toml"
    if builtin.exists():
        return tomllib.loads(builtin.read_text())["formats"]["hero-feed"], str(builtin.relative_to(REPO))
    return tomllib.loads(HERO_FEED)["formats"]["hero-feed"], "the bench's own table"


def to_json(csv_path: Path, json_path: Path) -> None:
    import csv

    with open(csv_path, newline="") as src, open(json_path, "w") as out:
        out.write("[\n")
        for i, row in enumerate(csv.DictReader(src)):
            out.write(("," if i else "") + json.dumps(row) + "\n")
        out.write("]\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--format", choices=("csv", "json"), default="csv")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from ingest.formats import Source, compile_format, parse_format

    table, where = hero_table()
    compiled = compile_format(parse_format("hero-feed", table))
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = path = Path(tmp) / "hero.csv"
        generate(path, args.rows)
        if args.format == "json":
            json_path = Path(tmp) / "hero.json"
            to_json(path, json_path)
            path = json_path
        data = path.read_bytes()  # from memory: the readers are compared, not the disk
        csv_data = csv_path.read_bytes()
        print(f"{args.rows:,} rows, {len(data) / 2**20:.0f} MiB {args.format}; engine: hero-feed from {where}")
        floor_label = "pyarrow read_csv" + (" (of the CSV)" if args.format == "json" else "")
        # Every column as a string: read, split and decoded, nothing converted (the names are the header's).
        all_text = pacsv.ConvertOptions(column_types={name: pa.string() for name in COLUMNS})

        def floor() -> int:
            return pacsv.read_csv(io.BytesIO(csv_data), convert_options=all_text).num_rows

        def engine() -> int:
            source = Source(path.name, args.format, lambda: io.BytesIO(data))
            return sum(batch.num_rows for _layout, batch in compiled.parser("hero").batches(source))

        times: dict[str, list[float]] = {"floor": [], "engine": []}
        for _ in range(args.repeat):
            for name, run in (("floor", floor), ("engine", engine)):
                started = time.perf_counter()
                rows = run()
                times[name].append(time.perf_counter() - started)
                if rows != args.rows:
                    sys.exit(f"{name}: {rows} rows, expected {args.rows}")
        floor_s, engine_s = statistics.median(times["floor"]), statistics.median(times["engine"])
        width = max(len(floor_label), len("ratio engine/floor"))
        print(f"{floor_label:<{width}} : {floor_s:7.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times['floor'])})")
        print(f"{'engine hero-feed':<{width}} : {engine_s:7.2f} s  "
              f"(runs: {', '.join(f'{t:.2f}' for t in times['engine'])})")
        print(f"{'ratio engine/floor':<{width}} : {engine_s / floor_s:7.2f}")

if __name__ == "__main__":
    assert COLUMNS  # the generator's columns are Hero's
    main()
