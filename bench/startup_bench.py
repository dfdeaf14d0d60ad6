#!/usr/bin/env python3
"""Start-up benchmark: `cdr --version` and `cdr --help` against `python3 -c pass`, side by side.

Each command is a fresh interpreter (the same one that runs this script), started --runs times (default 15)
round-robin, so every command sees the same machine load; the median wall time of each is printed with its
ratio to the bare interpreter. `cdr` is run as its console script does (`from ingest.cli import main`), from
an empty working directory with no CDR_* variables, so no configuration is read.

--tree PATH (repeatable) times the `cdr` of another checkout side by side with this one, e.g. the commit
before a change (`git worktree add --detach /tmp/head HEAD`):

    .venv/bin/python bench/startup_bench.py [--runs 15] [--tree /tmp/head]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_CDR = "import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'cdr'; from ingest.cli import main; main()"


def commands(trees: list[Path]) -> dict[str, list[str]]:
    """The label and argv of every command timed: the bare interpreter, then each tree's `cdr --version`
    and `cdr --help`."""
    out = {"python3 -c pass": [sys.executable, "-c", "pass"]}
    for tree in trees:
        suffix = "" if tree == REPO else f"  [{tree}]"
        for args in (["--version"], ["--help"]):
            out[f"cdr {args[0]}{suffix}"] = [sys.executable, "-c", RUN_CDR, str(tree), *args]
    return out


def wall_time(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="Starts of each command (default 15).")
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="Another checkout whose `cdr` is timed side by side (repeatable).")
    args = parser.parse_args()
    trees = [REPO, *(tree.resolve() for tree in args.tree)]
    timed = commands(trees)
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDR_")}
    times: dict[str, list[float]] = {label: [] for label in timed}
    with tempfile.TemporaryDirectory(prefix="cdr-startup-") as cwd:
        for argv in timed.values():  # warm the OS file cache once; not counted
            wall_time(argv, cwd, env)
        for _ in range(args.runs):
            for label, argv in timed.items():
                times[label].append(wall_time(argv, cwd, env))
    baseline = statistics.median(times["python3 -c pass"])
    width = max(map(len, timed))
    print(f"{'command':<{width}}  median (s)  ratio to python3 -c pass   ({args.runs} runs each, {sys.executable})")
    for label, samples in times.items():
        median = statistics.median(samples)
        print(f"{label:<{width}}  {median:10.3f}  {median / baseline:6.1f}x")


if __name__ == "__main__":
    main()
