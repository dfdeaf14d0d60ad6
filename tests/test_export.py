"""``cdr records`` and ``cdr files``: filters, exact CSV / JSON Lines / JSON array output, sorting, the default
limit of a table on a terminal, and streaming (rows fetched a chunk at a time and written as they come)."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import subprocess
import sys

import pytest
from click.testing import CliRunner
from sqlalchemy import event

from ingest.catalog import files as catalog_files
from ingest.catalog.db import STREAM_CHUNK
from ingest.catalog.records import iter_records
from ingest.layouts import CALL, CHARGE
from ingest.cli import cli
from ingest.export import TTY_LIMIT, write_listing
from ingest.intake import Origin, receive
from ingest.load import load_queued
from tests.conftest import REPO
from tests.records import record, render


@pytest.fixture
def run(app):
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(cli, ["--config", str(app.config.path), *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    return invoke


def take(app, name: str, rows, carrier: str = "hero", load: bool = True) -> int:
    """Receive one file (and load what is queued); its id."""
    [got] = receive(app, io.BytesIO(render(rows, carrier=carrier)), Origin("upload", name, carrier=carrier,
                                                                            file_type="cdr"))
    if load:
        load_queued(app)
    return got.id


def numbers(n: int, **fields):
    """Fields giving record ``n`` its own a-party, b-party and bill number."""
    return {"AParty": f"00163{n:04d}", "BParty": f"02770{n:04d}", "BillNumber": f"0099{n:04d}", **fields}


@pytest.fixture
def catalog(app):
    """Hero calls on 30 Sep, 1 Oct (at 00:05:09 exactly) and 31 Oct; a Tech Connections call on 1 Nov and a
    line rental (an SDR: no time, no b-party) billed on 15 Oct."""
    take(app, "hero_cdr_20261001.csv", [
        record(1, Charge="0.1150", ReleaseCause="0016", **numbers(1)),
        record(2, UTCDateTime="2026-09-30 23:59:59", AccountCode="99999999", Charge="0.0000000", **numbers(2)),
        record(3, UTCDateTime="2026-10-31 23:59:59", **numbers(3)),
    ])
    take(app, "TC_CDR_20261101.csv", [
        record(11, UTCDateTime="2026-11-01 00:00:00", **numbers(11)),
        record(12, CallType="Line Rental", UTCDateTime="", BParty="", Seconds="0", BillDate="2026-10-15",
               **{k: v for k, v in numbers(12).items() if k != "BParty"}),
    ], carrier="techconnections")
    return app


def feed_ids(jsonl: str) -> list[int]:
    return [int(json.loads(line)["carrier_record_id"]) for line in jsonl.splitlines()]


@pytest.mark.parametrize("args, expected", [
    ([], [1, 2, 3, 11]),  # calls, unless charges are asked for
    (["--file", "2"], [11]),  # a file's calls
    (["--file", "2", "--type", "sdr"], [12]),  # and its charges
    (["--carrier", "techconnections"], [11]),
    (["--type", "sdr"], [12]),
    (["--type", "cdr"], [1, 2, 3, 11]),
    (["--period", "2026-10"], [1, 3]),  # by the record's own date: a call's UTC start date
    (["--period", "2026-10", "--type", "sdr"], [12]),  # a charge's period start, else its charge date
    (["--period", "2026-11", "--type", "sdr"], []),
    (["--period", "2026-09"], [2]),
    (["--account", "99999999"], [2]),
    (["--account", "81234567", "--type", "sdr"], [12]),  # a charge's customer reference
    (["--number", "001630001"], [1]),  # a-number
    (["--number", "027700002"], [2]),  # b-number
    (["--number", "00990003"], [3]),  # bill number
    (["--number", "00990012", "--type", "sdr"], [12]),  # a charge's number reference
    (["--number", "0016300"], []),  # exact, not a prefix
    (["--since", "2026-10-01"], [1, 3, 11]),
    (["--since", "2026-10-01T00:05:09Z"], [1, 3, 11]),  # at or after: the very instant included
    (["--since", "2026-10-01 00:05:10"], [3, 11]),
    (["--since", "2026-10-01T13:05:09+13:00"], [1, 3, 11]),  # an offset is converted to UTC
    (["--until", "2026-09-30"], [2]),  # a date: that whole day
    (["--until", "2026-10-01T00:05:09Z"], [1, 2]),  # a date-time: inclusive
    (["--since", "2026-10-16", "--until", "2026-10-31"], [3]),
    (["--since", "2026-10-15", "--until", "2026-10-15", "--type", "sdr"], [12]),  # a charge on its own date
    (["--since", "2026-10-16", "--type", "sdr"], []),
    (["--carrier", "hero", "--period", "2026-10", "--limit", "1"], [1]),
])
def test_records_filters(run, catalog, args, expected):
    assert feed_ids(run("records", "--json", *args)) == expected


def test_records_csv_has_every_column_and_exact_values(run, catalog):
    rows = list(csv.reader(io.StringIO(run("records", "--csv", "--type", "cdr"))))
    header, first, second = rows[0], rows[1], rows[2]
    assert tuple(header) == CALL.columns
    one, two = dict(zip(header, first)), dict(zip(header, second))
    # Money as its exact decimal, at least two places (stored as millionths: '0.0000000' is zero).
    assert (one["charge"], one["charge_excl"], two["charge"]) == ("0.115", "0.10", "0.00")
    assert (one["a_number"], one["release_cause"], one["account_code"]) == ("001630001", "0016", "81234567")
    assert (one["start_time"], two["start_time"], one["bill_date"]) == ("2026-10-01T00:05:09Z", "2026-09-30T23:59:59Z",
                                                                         "2026-10-01")
    assert one["local_date"] == "" and one["carrier_record_id"] == "1"  # none is empty; a number is its digits
    # The columns the format does not map, as a JSON object of their text as given.
    assert json.loads(one["extra"]) == {"ConnectSeconds": "3", "FreeUnitsUsed": "0", "TextDesc2": "Spark, mobile",
                                        "ServiceType": "STD", "BillingGroup": "Default", "CallingGroup": "Default",
                                        "Profile": "Default"}


def test_records_json_is_one_object_per_line(run, catalog):
    lines = run("records", "--json").splitlines()
    assert len(lines) == 4
    objects = [json.loads(line) for line in lines]
    assert all(tuple(o) == CALL.columns for o in objects)
    assert objects[0]["extra"]["TextDesc2"] == "Spark, mobile"  # an object, not its text
    [fee] = [json.loads(line) for line in run("records", "--json", "--type", "sdr").splitlines()]
    assert tuple(fee) == CHARGE.columns
    assert (fee["product_code"], fee["charge_date"], fee["cost_incl"], fee["cost"], fee["quantity"]) == (
        "Line Rental", "2026-10-15", "0.115", "0.10", "1.00")


def test_records_table_shows_the_table_columns_and_says_how_many_more(run, catalog):
    lines = run("records", "--limit", "2").splitlines()
    assert lines[0].split() == ["ID", "FILE_ID", "CARRIER", "CARRIER_RECORD_ID", "CALL_TYPE", "START_TIME",
                                "BILLED_SECONDS", "A_NUMBER", "B_NUMBER", "CHARGE", "CHARGE_EXCL"]
    assert len(lines) == 4 and lines[-1].startswith("… 2 more: --limit 0 shows them all")
    assert "… " not in run("records", "--limit", "4")  # none more: no such line
    assert len(run("records").splitlines()) == 5  # not a terminal: all, whatever their number
    charges = run("records", "--type", "sdr").splitlines()
    assert charges[0].split()[3:7] == ["CARRIER_RECORD_ID", "CUSTOMER_REFERENCE", "NUMBER_REFERENCE", "PRODUCT_CODE"]


def test_two_output_forms_at_once_are_refused(app):
    result = CliRunner().invoke(cli, ["--config", str(app.config.path), "records", "--csv", "--json"])
    assert result.exit_code == 2 and "--csv and --json cannot be used together" in result.output


def test_files_sort_and_since(run, app):
    for name in ("hero_cdr_20261003.csv", "hero_cdr_20261001.csv", "hero_cdr_20261002.csv"):
        take(app, name, [record(int(name[15:17]))], load=False)
    by_id = json.loads(run("files", "--json"))  # not a terminal: oldest first, as scripts always had it
    assert [f["id"] for f in by_id] == [1, 2, 3]
    assert [f["id"] for f in json.loads(run("files", "--json", "--sort", "-id"))] == [3, 2, 1]
    assert [f["id"] for f in json.loads(run("files", "--json", "--sort", "-received"))] == [3, 2, 1]
    assert [f["id"] for f in json.loads(run("files", "--json", "--sort", "name"))] == [2, 3, 1]
    assert [f["id"] for f in json.loads(run("files", "--json", "--sort", "-name"))] == [1, 3, 2]
    second = by_id[1]["received_at"]  # at or after the very instant file 2 was received
    assert [f["id"] for f in json.loads(run("files", "--json", "--since", second))] == [2, 3]
    assert [json.loads(line)["id"] for line in run("files", "--jsonl", "--since", "2000-01-01").splitlines()] == [1, 2, 3]
    assert json.loads(run("files", "--json", "--since", "2999-01-01")) == []
    assert run("files", "--sort", "name").splitlines()[1].split()[:2] == ["2", "hero_cdr_20261001.csv"]


def run_on_terminal(config, *args) -> str:
    """``cdr ARGS`` with its output on a pseudo-terminal; what it printed."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "250"}
    process = subprocess.Popen([sys.executable, "-m", "ingest.cli", "--config", str(config), *args], cwd=REPO,
                               stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_a_table_on_a_terminal_shows_the_newest_first_and_at_most_the_default_limit(app):
    count = TTY_LIMIT + 3
    for n in range(1, count + 1):
        take(app, f"hero_cdr_batch_{n}.csv", [record(n)], load=False)
    lines = run_on_terminal(app.config.path, "files").splitlines()
    assert lines[0].split()[:2] == ["ID", "NAME"]
    assert [line.split()[0] for line in lines[1:3]] == [str(count), str(count - 1)]  # newest first
    assert len(lines) == 1 + TTY_LIMIT + 1
    assert lines[-1] == "… 3 more: --limit 0 shows them all, --json or --jsonl for scripts"
    every = run_on_terminal(app.config.path, "files", "--limit", "0").splitlines()
    assert len(every) == 1 + count and "more" not in every[-1]


def test_records_on_a_terminal_show_the_default_limit(app):
    take(app, "hero_cdr_20261001.csv", [record(n) for n in range(1, TTY_LIMIT + 11)])
    lines = run_on_terminal(app.config.path, "records").splitlines()
    assert len(lines) == 1 + TTY_LIMIT + 1 and lines[1].split()[3] == "1"
    assert lines[-1].startswith("… 10 more: --limit 0 shows them all")
    csv_lines = run_on_terminal(app.config.path, "records", "--csv").splitlines()
    assert len(csv_lines) == 1 + TTY_LIMIT + 10  # data forms are never cut short


def test_records_are_fetched_a_chunk_at_a_time(app):
    take(app, "hero_cdr_20261001.csv", [record(n) for n in range(1, STREAM_CHUNK + 501)])
    executions = []

    def seen(_conn, cursor, statement, _parameters, context, _executemany):
        if "FROM calls" in statement and "count(" not in statement:
            executions.append((cursor, context.execution_options))

    event.listen(app.catalog.engine, "after_cursor_execute", seen)
    try:
        with app.catalog.read() as conn, iter_records(conn) as rows:
            assert next(rows)["carrier_record_id"] == "1"
            if not app.catalog.is_sqlite:  # the rest waits in a server-side cursor, not in this process
                assert conn.exec_driver_sql("SELECT count(*) FROM pg_cursors").scalar_one() == 1
            assert sum(1 for _ in rows) == STREAM_CHUNK + 499
    finally:
        event.remove(app.catalog.engine, "after_cursor_execute", seen)
    [(cursor, options)] = executions
    assert options["stream_results"] is True and options["yield_per"] == STREAM_CHUNK
    if not app.catalog.is_sqlite:
        import psycopg

        assert isinstance(cursor, psycopg.ServerCursor)


def test_files_are_fetched_a_chunk_at_a_time(app):
    take(app, "hero_cdr_20261001.csv", [record(1)], load=False)
    executions = []
    event.listen(app.catalog.engine, "after_cursor_execute",
                 lambda _c, cursor, statement, _p, context, _m: executions.append(context.execution_options)
                 if "FROM files" in statement else None)
    with app.catalog.read() as conn, catalog_files.iter_files(conn) as rows:
        assert [f["id"] for f in rows] == [1]
    assert executions[-1]["stream_results"] is True and executions[-1]["yield_per"] == STREAM_CHUNK


@pytest.mark.parametrize("form, written", [
    ("csv", "a,b\n1,0.10\n2,0.10\n"),
    ("jsonl", '{"a": 1, "b": "0.10"}\n{"a": 2, "b": "0.10"}\n'),
    ("json", '[\n  {"a": 1, "b": "0.10"},\n  {"a": 2, "b": "0.10"}'),
    ("table", ""),  # a table sizes its columns on a first sample before writing
])
def test_rows_are_written_as_they_come(form, written):
    from decimal import Decimal

    def rows():
        yield {"a": 1, "b": Decimal("0.10")}
        yield {"a": 2, "b": Decimal("0.10")}
        raise RuntimeError("the database went away")

    out = io.StringIO()
    with pytest.raises(RuntimeError):
        write_listing(form, ("a", "b"), rows(), out)
    assert out.getvalue() == written


def test_a_reader_that_stops_early_ends_the_export_quietly(app):
    take(app, "hero_cdr_20261001.csv", [record(n) for n in range(1, 2001)])  # far more than a pipe holds
    process = subprocess.Popen([sys.executable, "-m", "ingest.cli", "--config", str(app.config.path), "records",
                                "--csv"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(b"id,file_id,carrier,")
    process.stdout.close()  # as `| head -1` does
    assert process.wait(timeout=60) == 1
    assert process.stderr.read() == b""  # no traceback, no BrokenPipeError message
    process.stderr.close()
