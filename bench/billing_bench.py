"""Billing run benchmark: the time to build (and rebuild) a period's run beside the time to load its records.

Generates 1M Hero calls (``bench/load_bench.py``'s generator: October 2026, bill numbers 02079460000-999) and
20k generic charges (``generic-charges-csv``, carrier ``acme``), imports 2k accounts, 10k numbers (the 1000 bill
numbers but the last 10, so about 1% of the calls are unmatched, and 9000 more for the charges) and 2k carrier
references through the importers, loads the records with ``cdr upload``, then times ``build_run`` for 2026-10,
a rebuild, and the report, and prints each beside the load time as a ratio.

    .venv/bin/python bench/billing_bench.py                      # SQLite and PostgreSQL, 1M calls
    .venv/bin/python bench/billing_bench.py --calls 100000 --no-postgres
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load_bench import REPO, cdr_bin, generate, postgres_schema  # noqa: E402

TARIFFS = """
[carriers.acme]
format = "generic-charges-csv"
wholesale_tariff = "acme-wholesale"
[carriers.acme.products]
LR = "line-rental"
BB = "broadband"
SUP = "support"

[tariffs.standard]
[[tariffs.standard.fixed]]
transaction_type = "line-rental"
charge = "fixed"
amount = "12.00"
[[tariffs.standard.fixed]]
transaction_type = "broadband"
charge = "pro-rata"
amount = "25.00"
[[tariffs.standard.fixed]]
transaction_type = "support"
charge = "markup"
markup_percent = "20"
[[tariffs.standard.usage]]
call_type = "Mobile"
per_minute = "0.15"
increment_seconds = 60
minimum_seconds = 60
[[tariffs.standard.usage]]
call_type = "Local"
per_minute = "0.02"
[[tariffs.standard.usage]]
call_type = "National"
per_minute = "0.05"
increment_seconds = 6
minimum_seconds = 30
[[tariffs.standard.usage]]
call_type = "International"
markup_percent = "10"
[[tariffs.standard.usage]]
direction = "onnet"
per_minute = "0.00"
[[tariffs.standard.usage]]
per_minute = "0.10"

[tariffs.acme-wholesale]
wholesale = true
[[tariffs.acme-wholesale.fixed]]
transaction_type = "line-rental"
charge = "fixed"
amount = "10.00"
"""


def generate_customers(folder: Path, accounts: int, numbers: int) -> dict[str, Path]:
    paths = {kind: folder / f"{kind}.csv" for kind in ("customers", "numbers", "references")}
    with open(paths["customers"], "w") as out:
        out.write("account,name,tariff\n")
        for a in range(accounts):
            out.write(f"A{a:05d},Customer {a},standard\n")
    with open(paths["references"], "w") as out:
        out.write("carrier,reference,account\n")
        for a in range(accounts):
            out.write(f"acme,REF{a:05d},A{a:05d}\n")
    with open(paths["numbers"], "w") as out:
        out.write("number,account,valid_from,valid_to,number_type\n")
        for n in range(990):  # the calls' bill numbers, but 02079460990-999: those calls are unmatched
            out.write(f"02079460{n:03d},A{n % accounts:05d},2026-01-01,,geographic\n")
        for j in range(numbers - 990):
            out.write(f"07700{j:06d},A{j % accounts:05d},2026-01-01,,mobile\n")
    return paths


def generate_charges(path: Path, rows: int, accounts: int, numbers: int) -> None:
    rng = random.Random(20261127)
    products = ("LR", "BB", "SUP", "ZZ")  # ZZ: unmapped (unallocated, unknown-product)
    with open(path, "w") as out:
        out.write("customer_reference,number_reference,product_code,description,period_start,period_end,quantity,"
                  "unit_cost,cost,currency\n")
        for i in range(rows):
            a = i % accounts
            number = f"07700{(a + accounts * rng.randint(0, 3)) % (numbers - 990):06d}" if i % 2 else ""
            if number and (int(number[5:]) % accounts) != a:
                number = ""
            product = products[i % 4] if i % 50 else "ZZ"
            start = 1 if i % 7 else rng.randint(2, 28)
            cost = f"{rng.randint(100, 5000) / 100:.2f}"
            out.write(f"REF{a:05d},{number},{product},charge {i},2026-10-{start:02d},2026-10-31,1,,{cost},GBP\n")


def timed(cmd: list[str], env: dict[str, str]) -> float:
    os.sync()
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - started


def bench(label: str, database_url: str, work: Path, calls_csv: Path, charges_csv: Path, args) -> None:
    run_dir = work / f"run-{label}"
    run_dir.mkdir()
    config = run_dir / "bench.toml"
    config.write_text(f'include = ["{REPO}/config/carriers/*.toml"]\n' + TARIFFS)
    env = {**os.environ, "CDR_CONFIG": str(config), "CDR_DATABASE_URL": database_url,
           "CDR_STAGING_DIR": str(run_dir / "staging")}
    subprocess.run([cdr_bin(), "files"], env=env, check=True, capture_output=True)  # the schema first

    os.environ.update({k: env[k] for k in ("CDR_CONFIG", "CDR_DATABASE_URL", "CDR_STAGING_DIR")})
    from ingest.app import App
    from ingest.billing.customers import import_file
    from ingest.billing.run import build_run, report

    app = App.from_config(str(config), actor="bench")
    try:
        started = time.perf_counter()
        for kind, path in generate_customers(run_dir, args.accounts, args.numbers).items():
            import_file(app, kind, path, actor="bench")
        customers = time.perf_counter() - started

        load_calls = timed([cdr_bin(), "upload", str(calls_csv), "--carrier", "hero", "--type", "cdr", "-q"], env)
        load_charges = timed([cdr_bin(), "upload", str(charges_csv), "--carrier", "acme", "--type", "sdr", "-q"],
                             env)
        load = load_calls + load_charges

        started = time.perf_counter()
        built = build_run(app, "2026-10", actor="bench")
        build = time.perf_counter() - started
        started = time.perf_counter()
        rebuilt = build_run(app, "2026-10", actor="bench")
        rebuild = time.perf_counter() - started
        started = time.perf_counter()
        found = report(app, built.run_id)
        reported = time.perf_counter() - started
        assert rebuilt.lines == built.lines and found.totals["lines"] == built.lines
    finally:
        app.close()
    print(f"\n{label}: {args.calls:,} calls, {args.charges:,} charges, {args.numbers:,} numbers, "
          f"{args.accounts:,} accounts")
    print(f"  customer data import      {customers:8.2f} s")
    print(f"  load (cdr upload)         {load:8.2f} s  (calls {load_calls:.2f} s, charges {load_charges:.2f} s)")
    print(f"  build_run                 {build:8.2f} s  = {build / load:.2f} x the load "
          f"({built.lines:,} lines, exceptions {built.exceptions})")
    print(f"  rebuild                   {rebuild:8.2f} s  = {rebuild / load:.2f} x the load")
    print(f"  report                    {reported:8.2f} s")
    for totals in built.totals:
        print(f"  {totals['currency']}: retail {totals['retail']}, cost {totals['cost']}, margin {totals['margin']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--charges", type=int, default=20_000)
    parser.add_argument("--numbers", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--postgres", default=os.environ.get("CDR_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    try:
        calls_csv = work / "hero_cdr_20261001.csv"
        charges_csv = work / "acme_sdr_202610.csv"
        generate(calls_csv, args.calls)
        generate_charges(charges_csv, args.charges, args.accounts, args.numbers)
        if not args.no_sqlite:
            bench("SQLite", f"sqlite:///{work}/cdr.sqlite", work, calls_csv, charges_csv, args)
        if not args.no_postgres:
            with postgres_schema(args.postgres) as url:
                bench("PostgreSQL", url, work, calls_csv, charges_csv, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
