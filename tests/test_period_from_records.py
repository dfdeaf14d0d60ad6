"""A loaded file's records give it its dates: ``records_from``/``records_to`` (the first and last of its records'
own dates) and, when its name carries no date and every record falls in one month, its billing period; so
``cdr files --period`` finds it. On both databases and both load paths (the bulk insert; the set-based move a
released file takes)."""

from __future__ import annotations

import io
import json
from datetime import date

from click.testing import CliRunner

from ingest import admin
from ingest.catalog import files as catalog_files
from ingest.cli import cli
from ingest.intake import Origin, receive
from ingest.load import load_queued
from tests.records import record, render

UNDATED = "october usage export.csv"


def call(id: int, utc: str, bill: str = "2026-10-01") -> dict[str, str]:
    return record(id, UTCDateTime=utc, BillDate=bill)


def upload_and_load(app, rows, name=UNDATED, carrier="hero", **given):
    [got] = receive(app, io.BytesIO(render(rows, carrier=carrier)),
                    Origin("upload", name, carrier=carrier, file_type="cdr", **given))
    load_queued(app)
    return stored(app, got.id)


def stored(app, file_id):
    with app.catalog.read() as conn:
        return catalog_files.get_file(conn, file_id)


def files_in(app, period: str) -> list[int]:
    result = CliRunner().invoke(cli, ["--config", str(app.config.path), "files", "--period", period, "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return [shown["id"] for shown in json.loads(result.output)]


def test_an_undated_file_gets_the_month_of_its_records_on_the_bulk_path(app):
    row = upload_and_load(app, [call(1, "2026-10-01 00:05:09"), call(2, "2026-10-31 23:59:59")])
    assert (row["status"], row["billing_period"]) == ("loaded", "2026-10")
    assert (row["records_from"], row["records_to"]) == (date(2026, 10, 1), date(2026, 10, 31))
    history = admin.show(app, row["id"])["history"]
    assert history[-1]["reason"] == "loaded 2 records; billing period 2026-10 from its records"
    assert files_in(app, "2026-10") == [row["id"]]
    assert files_in(app, "2026-11") == []


def test_a_call_is_dated_by_its_utc_time_and_a_service_fee_by_its_bill_date(app):
    rows = [
        call(1, "2026-09-30 23:30:00", bill="2026-10-01"),  # a call: its UTC date, not the bill date
        record(2, CallType="Line Rental", BParty="", Seconds="0", UTCDateTime="", BillDate="2026-10-15"),
    ]
    row = upload_and_load(app, rows, name="tc usage.csv", carrier="techconnections")
    assert (row["records_from"], row["records_to"]) == (date(2026, 9, 30), date(2026, 10, 15))
    assert row["billing_period"] is None


def test_a_file_spanning_two_months_keeps_the_span_and_is_found_in_both(app):
    row = upload_and_load(app, [call(1, "2026-09-29 10:00:00"), call(2, "2026-10-02 10:00:00")])
    assert row["billing_period"] is None
    assert (row["records_from"], row["records_to"]) == (date(2026, 9, 29), date(2026, 10, 2))
    assert files_in(app, "2026-09") == files_in(app, "2026-10") == [row["id"]]
    assert files_in(app, "2026-08") == files_in(app, "2026-11") == []


def test_a_file_with_a_dated_name_keeps_its_period(app):
    row = upload_and_load(app, [call(1, "2026-11-03 10:00:00")], name="hero_cdr_20261001.csv")
    assert row["billing_period"] == "2026-10"
    assert (row["records_from"], row["records_to"]) == (date(2026, 11, 3), date(2026, 11, 3))
    assert admin.show(app, row["id"])["history"][-1]["reason"] == "loaded 1 records"
    assert files_in(app, "2026-10") == files_in(app, "2026-11") == [row["id"]]


def test_a_released_overlap_is_dated_by_the_records_it_loaded(app):
    """The set-based path: only the records the release loaded date the file, not those it skipped."""
    first = upload_and_load(app, [call(1, "2026-10-30 10:00:00")], name="hero_cdr_20261030.csv")
    held = upload_and_load(app, [call(1, "2026-10-30 10:00:00"), call(2, "2026-11-01 08:00:00"),
                                 call(3, "2026-11-02 08:00:00")], name="november resend.csv")
    assert (held["status"], held["reason"], held["records_from"]) == ("held", "overlap", None)
    admin.release(app, held["id"])
    load_queued(app)
    row = stored(app, held["id"])
    assert (row["status"], row["records_loaded"], row["records_skipped"]) == ("loaded", 2, 1)
    assert (row["records_from"], row["records_to"], row["billing_period"]) == (date(2026, 11, 1), date(2026, 11, 2),
                                                                               "2026-11")
    assert files_in(app, "2026-11") == [row["id"]]
    assert files_in(app, "2026-10") == [first["id"]]


def test_a_release_that_loads_nothing_new_gives_no_dates(app):
    upload_and_load(app, [call(1, "2026-10-30 10:00:00")], name="hero_cdr_20261030.csv")
    held = upload_and_load(app, [call(1, "2026-10-30 10:00:00")], name="resend.csv")
    assert held["status"] == "held"
    admin.release(app, held["id"])
    load_queued(app)
    row = stored(app, held["id"])
    assert (row["status"], row["records_loaded"], row["records_from"], row["billing_period"]) == ("loaded", 0, None,
                                                                                                  None)


def test_show_and_its_json_give_the_records_dates(app):
    row = upload_and_load(app, [call(1, "2026-10-05 10:00:00"), call(2, "2026-10-06 10:00:00")])
    runner = CliRunner()
    shown = runner.invoke(cli, ["--config", str(app.config.path), "show", str(row["id"]), "--json"],
                          catch_exceptions=False)
    assert (json.loads(shown.output)["records_from"], json.loads(shown.output)["records_to"]) == ("2026-10-05",
                                                                                                 "2026-10-06")
    text = runner.invoke(cli, ["--config", str(app.config.path), "show", str(row["id"])], catch_exceptions=False)
    assert "records_from: 2026-10-05" in text.output and "records_to: 2026-10-06" in text.output
