"""UTC times as feeds send them (ISO 8601 with ``T`` and ``Z``): the strict vectorised path against the lenient
path, side by side, on the same values.

The lenient path (regex rewrites, then strptime/strftime round trips) is what a ``...T...Z`` column took
before it had a strict path of its own; here it is forced by one value of another shape at the column's end.
Both run through the format engine's conversion of a ``utc`` field (``ingest.formats.convert.convert``, a field
read as ``type = "datetime"`` in UTC, its column as the file gives it), as a file's ``start_time`` is read.
Prints the best of ``--repeat`` runs of each and the ratio (strict / lenient).

    .venv/bin/python bench/utc_parse_bench.py --rows 1000000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.formats.convert import Context, convert  # noqa: E402
from ingest.formats.spec import FieldSpec  # noqa: E402

# A call's start time as the formats read it: a utc field, type datetime, no pattern, in UTC.
START_TIME = FieldSpec(name="start_time", kind="utc", type="datetime", column="UTCDateTime")


def best_of(repeat: int, values: pa.Array) -> float:
    ctx = Context()
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        _values, bad = convert(START_TIME, values, ctx, trimmed=False)  # as given: the engine's call
        best = min(best, time.perf_counter() - started)
        assert not pc.any(bad).as_py(), "every value is a valid UTC time"
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    times = [f"2025-12-{1 + i % 31:02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}Z" for i in range(args.rows)]
    strict = best_of(args.repeat, pa.array(times))
    lenient = best_of(args.repeat, pa.array(times[:-1] + ["31/12/2025 11:00"]))
    print(f"{args.rows:,} UTC times 'YYYY-MM-DDTHH:MM:SSZ', best of {args.repeat}")
    print(f"strict (Arrow cast)   {strict:8.3f} s")
    print(f"lenient (round trips) {lenient:8.3f} s")
    print(f"ratio strict/lenient  {strict / lenient:8.3f}")


if __name__ == "__main__":
    main()
