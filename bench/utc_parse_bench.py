"""UTC times as feeds send them (ISO 8601 with ``T`` and ``Z``): the strict vectorised path against the lenient
path, side by side, on the same values.

The lenient path (regex rewrites, then strptime/strftime round trips) is what a ``...T...Z`` column took
before it had a strict path of its own; here it is forced by one value of another shape at the column's end.
Prints the best of ``--repeat`` runs of each and the ratio (strict / lenient).

    .venv/bin/python bench/utc_parse_bench.py --rows 1000000
"""

from __future__ import annotations

import argparse
import time

import pyarrow as pa

from carriers.base import normalise


def best_of(repeat: int, values: pa.Array) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        normalise("utc", values, False)
        best = min(best, time.perf_counter() - started)
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
