"""Leg joining benchmark: the time to join 1M legs (250k calls) into xDRs beside the time to load those legs.

Generates the classic call PSTN -> gw-a -> IP -> gw-b -> PSTN 250k times (four Stop records a call: each gateway's
answer and originate legs, Cisco attributes, as ``tests/radius.py`` writes them), in two FreeRADIUS detail files,
one per gateway (gw-b's names gw-a, a trusted node, as its User-Name: every call waits for gw-a's file). 2k
accounts own the calls' numbers; 1% of the calls name no account (a security alert each). Then, in one process:

- **load**: both files received and loaded (``receive`` + ``load_queued``, the intake and loader ``cdr upload``
  runs), with the join that follows each load switched off;
- **join**: ``join_legs``, once: takes both files' legs and joins every call;

and prints the join's time beside the load's as a ratio, with the xDRs, alerts and what waits.

    .venv/bin/python bench/legs_join_bench.py                         # SQLite and PostgreSQL, 250k calls
    .venv/bin/python bench/legs_join_bench.py --calls 25000 --no-postgres
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load_bench import postgres_schema  # noqa: E402

GW_A, GW_B = "10.0.0.1", "10.0.0.2"
CONFIG = f"""
[carriers.network]
format = "radius-detail"
default_type = "acct"

[[nodes]]
name = "gw-a"
ip = "{GW_A}"
[[nodes]]
name = "gw-b"
ip = "{GW_B}"
"""
T0 = datetime(2026, 10, 1, tzinfo=timezone.utc)


def _cisco(moment: datetime) -> str:
    return f"{moment:%H:%M:%S}.000 UTC {moment:%a %b %d %Y}"


def generate(folder: Path, calls: int, accounts: int) -> tuple[Path, Path]:
    """gw-a's and gw-b's detail files of ``calls`` four-leg calls, one started every 10 seconds."""
    paths = folder / "detail-gw-a", folder / "detail-gw-b"
    with open(paths[0], "w") as a, open(paths[1], "w") as b:
        for i in range(calls):
            setup = T0 + timedelta(seconds=10 * i)
            seconds = 30 + i % 600
            connect, end = setup + timedelta(seconds=3), setup + timedelta(seconds=3 + seconds)
            received = end + timedelta(seconds=1)
            header = received.strftime("%a %b ") + f"{received.day:2d}" + received.strftime(" %H:%M:%S %Y")
            stamp = int(received.timestamp())
            conf = f"{i:08X} 52FA39EB 8C3F0012 3B1F9C1A"
            user = f"0207946{i % (accounts * 5):04d}" if i % 100 else f"unknown{i}"
            times = (f'\th323-setup-time = "h323-setup-time={_cisco(setup)}"\n'
                     f'\th323-connect-time = "h323-connect-time={_cisco(connect)}"\n'
                     f'\th323-disconnect-time = "h323-disconnect-time={_cisco(end)}"\n')
            for out, nas, name, legs in ((a, GW_A, user, (("answer", "Telephony", "192.0.2.1"),
                                                          ("originate", "VoIP", GW_B))),
                                         (b, GW_B, GW_A, (("answer", "VoIP", GW_A),
                                                          ("originate", "Telephony", "192.0.2.9")))):
                for n, (origin, kind, remote) in enumerate(legs):
                    session = f"{nas}-{i}-{n}"
                    out.write(f'{header}\n\tUser-Name = "{name}"\n\tNAS-IP-Address = {nas}\n'
                              f'\tAcct-Status-Type = Stop\n\tAcct-Session-Id = "{session}"\n'
                              f'\tCalling-Station-Id = "{user}"\n\tCalled-Station-Id = "07700900{i % 1000:03d}"\n'
                              f'\th323-conf-id = "h323-conf-id={conf}"\n'
                              f'\th323-call-origin = "h323-call-origin={origin}"\n'
                              f'\th323-call-type = "h323-call-type={kind}"\n{times}'
                              f'\th323-disconnect-cause = "h323-disconnect-cause=10"\n'
                              f'\th323-remote-address = "h323-remote-address={remote}"\n'
                              f'\tAcct-Session-Time = {seconds}\n'
                              f'\tCisco-AVPair = "h323-ivr-out=Tariff:Unknown"\n'
                              f'\tAcct-Unique-Session-Id = "{session}"\n\tTimestamp = {stamp}\n\n')
    return paths


def customers(folder: Path, accounts: int) -> dict[str, Path]:
    paths = {kind: folder / f"{kind}.csv" for kind in ("customers", "numbers")}
    with open(paths["customers"], "w") as out:
        out.write("account,name,tariff\n")
        for n in range(accounts):
            out.write(f"A{n:05d},Customer {n},\n")
    with open(paths["numbers"], "w") as out:
        out.write("number,account,valid_from,valid_to,number_type\n")
        for n in range(accounts * 5):
            out.write(f"0207946{n:04d},A{n % accounts:05d},2026-01-01,,geographic\n")
    return paths


def bench(label: str, database_url: str, work: Path, files: tuple[Path, Path], args) -> None:
    from ingest.app import App
    from ingest.billing.customers import import_file
    from ingest.config import load_config
    from ingest.intake import Origin, receive
    from ingest.legs.join import join_legs
    from ingest.load import load_queued

    class LoadOnly(App):
        def file_loaded(self, file_id, actor=None):  # the join is timed on its own
            pass

    run_dir = work / f"run-{label}"
    run_dir.mkdir()
    config = run_dir / "bench.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n[staging]\ndir = "{run_dir}/staging"\n' + CONFIG)
    app = LoadOnly(load_config(config, env={}), actor="bench")
    try:
        for kind, path in customers(run_dir, args.accounts).items():
            import_file(app, kind, path, actor="bench")
        started = time.perf_counter()
        for path in files:
            with open(path, "rb") as fh:
                receive(app, fh, Origin("upload", path.name, carrier="network", file_type="acct"))
        results = load_queued(app)
        load = time.perf_counter() - started
        assert all(r.status == "loaded" for r in results), results
        legs = sum(r.loaded for r in results)
        started = time.perf_counter()
        joined = join_legs(app, actor="bench")
        join = time.perf_counter() - started
    finally:
        app.close()
    assert joined.xdrs == args.calls and joined.waiting_calls == 0, joined.as_dict()
    print(f"\n{label}: {legs:,} legs, {args.calls:,} calls, {args.accounts:,} accounts")
    print(f"  load the legs (receive + load)   {load:8.2f} s")
    print(f"  join (join_legs)                 {join:8.2f} s  = {join / load:.2f} x the load "
          f"({joined.xdrs:,} xDRs, {len(joined.alerts):,} security alerts)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=250_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--postgres", default=os.environ.get("CDR_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()

    import logging

    logging.getLogger("ingest.legs").setLevel(logging.ERROR)  # a security alert per unknown caller: 1% of calls
    work = Path(tempfile.mkdtemp(prefix="legs-bench-"))
    try:
        started = time.perf_counter()
        files = generate(work, args.calls, args.accounts)
        print(f"generated {args.calls * 4:,} legs ({sum(p.stat().st_size for p in files) / 1e6:.0f} MB) "
              f"in {time.perf_counter() - started:.1f} s")
        if not args.no_sqlite:
            bench("SQLite", f"sqlite:///{work}/cdr.sqlite", work, files, args)
        if not args.no_postgres:
            with postgres_schema(args.postgres) as url:
                bench("PostgreSQL", url.replace("postgresql://", "postgresql+psycopg://", 1), work, files, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
