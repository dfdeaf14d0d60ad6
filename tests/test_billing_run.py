"""The billing run (ingest.billing.run), end to end on both databases: real loads of real files (Hero calls in
the hero-feed format, a carrier's charges in generic-charges-csv), customer data through the importers,
allocation through ``allocate_pending``; drafts rebuilt identically, locks, late records, duplicates never
billed, the report's totals, no-rate items, cutoff, export, and the database's own refusal to bill twice."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ingest.app import App
from ingest.billing.customers import import_file
from ingest.billing.matching import unmatched_calls
from ingest.billing.run import (
    EXPORT_COLUMNS,
    BillingError,
    build_run,
    export_run,
    list_runs,
    lock_run,
    report,
)
from ingest.catalog.schema import accounts, bill_exceptions, bill_lines, billed_sources, billing_events, charges
from ingest.intake import Origin, receive
from ingest.load import load_queued
from ingest.plugins import load_checked_config
from tests.records import record, render

BILLING = """
[carriers.acme]
format = "generic-charges-csv"
wholesale_tariff = "acme-wholesale"
[carriers.acme.products]
LR = "line-rental"
BB = "broadband"
SUP = "support"
CR = "credit"

[tariffs.standard]
[[tariffs.standard.fixed]]
transaction_type = "line-rental"
charge = "fixed"
amount = "12.00"
[[tariffs.standard.fixed]]
transaction_type = "broadband"
charge = "pro-rata"
amount = "12.00"
[[tariffs.standard.fixed]]
transaction_type = "support"
charge = "markup"
markup_percent = "20"
[[tariffs.standard.fixed]]
transaction_type = "credit"
charge = "markup"
markup_percent = "0"
[[tariffs.standard.usage]]
call_type = "Mobile"
per_minute = "0.15"
increment_seconds = 60
minimum_seconds = 60
[[tariffs.standard.usage]]
call_type = "Local"
per_minute = "0.06"
[[tariffs.standard.usage]]
call_type = "International"
markup_percent = "10"

[tariffs.acme-wholesale]
wholesale = true
[[tariffs.acme-wholesale.fixed]]
transaction_type = "line-rental"
charge = "fixed"
amount = "10.00"
"""

CHARGE_COLUMNS = ("customer_reference", "number_reference", "product_code", "description", "period_start",
                  "period_end", "quantity", "unit_cost", "cost", "currency")

CUSTOMERS = "account,name,tariff\nA1,Alpha Ltd,standard\nA2,Beta Ltd,standard\nA3,Gamma Ltd,\n"
NUMBERS = ("number,account,valid_from,valid_to,number_type\n"
           "02079460001,A1,2026-01-01,,geographic\n"
           "02079460002,A2,2026-10-01,,geographic\n"
           "02079460003,A3,2026-01-01,,geographic\n")
REFERENCES = "carrier,reference,account\nacme,REF1,A1\nacme,REF2,A2\nacme,REF3,A3\n"


# -- helpers (test_pricing.py uses them too) -----------------------------------------------------------------------


@pytest.fixture
def bapp(make_config):
    """An application with a charges carrier (acme), tariffs and customer data A1, A2 (standard), A3 (none)."""
    application = App(load_checked_config(make_config(BILLING), env={}), actor="tester")
    customer_data(application, CUSTOMERS, NUMBERS, REFERENCES)
    yield application
    application.close()


def customer_data(app, customers: str, numbers: str = "", references: str = "", features: str = "") -> None:
    folder = Path(app.config.staging_dir).parent
    for kind, content in (("customers", customers), ("numbers", numbers), ("references", references),
                          ("features", features)):
        if content:
            path = folder / f"{kind}.csv"
            path.write_text(content)
            import_file(app, kind, path, actor="tester")


def charge_file(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CHARGE_COLUMNS)
    for row in rows:
        writer.writerow([row.get(column, "") for column in CHARGE_COLUMNS])
    return out.getvalue().encode()


def charge(ref: str = "REF1", product: str = "LR", cost: str = "10.00", start: str = "2026-10-01",
           end: str = "2026-10-31", **more) -> dict[str, str]:
    return {"customer_reference": ref, "product_code": product, "description": more.pop("description", product),
            "period_start": start, "period_end": end, "quantity": more.pop("quantity", "1"), "cost": cost, **more}


def load(app, data: bytes, name: str, carrier: str, file_type: str) -> dict:
    """Receive and load one file; its catalog row (status loaded, or held for a duplicate)."""
    from ingest.catalog import files as catalog_files

    [got] = receive(app, io.BytesIO(data), Origin("upload", name, carrier=carrier, file_type=file_type))
    load_queued(app)
    with app.catalog.read() as conn:
        row = catalog_files.get_file(conn, got.id)
    # A file left queued (a transient error) would make the run's counts wrong for a reason not under test.
    assert row["status"] in ("loaded", "held"), (row["status"], row["error"])
    return row


def load_charges(app, rows, name="acme_sdr_202610.csv") -> dict:
    return load(app, charge_file(rows), name, "acme", "sdr")


def load_calls(app, rows, name="hero_cdr_20261001.csv") -> dict:
    return load(app, render(rows, carrier="hero"), name, "hero", "cdr")


def call(id: int, number: str = "02079460001", at: str = "2026-10-05 10:00:00", seconds: str = "61",
         **more) -> dict[str, str]:
    return record(id, **{"BillNumber": number, "AParty": number, "UTCDateTime": at, "NetworkSeconds": seconds,
                         "BillDate": at[:10], **more})


def lines(app, run_id: int) -> list[dict]:
    """The run's lines without their ids, in source order."""
    with app.catalog.read() as conn:
        rows = conn.execute(select(bill_lines).where(bill_lines.c.run_id == run_id)
                            .order_by(bill_lines.c.source_kind, bill_lines.c.source_id)).mappings().all()
    return [{k: v for k, v in row.items() if k != "id"} for row in rows]


def exceptions(app, run_id: int) -> list[dict]:
    with app.catalog.read() as conn:
        return [dict(r) for r in conn.execute(
            select(bill_exceptions).where(bill_exceptions.c.run_id == run_id)
            .order_by(bill_exceptions.c.source_kind, bill_exceptions.c.source_id)).mappings()]


def by_description(app, run_id: int) -> dict[str, dict]:
    return {line["description"]: line for line in lines(app, run_id)}


# -- the tests -----------------------------------------------------------------------------------------------------


def test_a_run_bills_allocated_charges_and_matched_calls_and_reports_the_rest(bapp):
    load_charges(bapp, [charge(description="rental A1"), charge("REF2", "SUP", "7.125", description="support A2"),
                        charge("REF3", "LR", description="rental A3 no tariff"),
                        charge("NOPE", "LR", description="unknown reference"),
                        charge("REF1", "XX", description="unknown product"),
                        charge("REF2", "BB", "5.00", start="2026-10-22", end="2026-11-21", description="bb A2")])
    load_calls(bapp, [call(1, seconds="61", TextDesc1="mobile 61"),
                      call(2, number="02079460002", CallType="Local", seconds="61", TextDesc1="local 61"),
                      call(3, number="07999999999", TextDesc1="unregistered"),
                      call(4, CallType="Satellite", TextDesc1="satellite")])
    summary = build_run(bapp, "2026-10", actor="alice")
    assert (summary.action, summary.status, summary.lines) == ("build", "draft", 5)
    got = by_description(bapp, summary.run_id)
    assert {k: (v["account"], v["retail"], v["cost"], v["expected_cost"], v["margin"], v["rate"])
            for k, v in got.items()} == {
        "rental A1": ("A1", Decimal("12.00"), Decimal("10.00"), Decimal("10.00"), Decimal("2.00"),
                      "standard.fixed[0]"),
        "support A2": ("A2", Decimal("8.55"), Decimal("7.125"), None, Decimal("1.425"), "standard.fixed[2]"),
        # 22 October to 21 November: 12.00 x (10/31 + 21/30) = 12.270967... -> 12.27
        "bb A2": ("A2", Decimal("12.27"), Decimal("5.00"), None, Decimal("7.27"), "standard.fixed[1]"),
        "mobile 61": ("A1", Decimal("0.30"), Decimal("0.10"), None, Decimal("0.20"), "standard.usage[0]"),
        # per second: 0.06 x 61 / 60 = 0.061 -> 0.06
        "local 61": ("A2", Decimal("0.06"), Decimal("0.10"), None, Decimal("-0.04"), "standard.usage[1]"),
    }
    assert got["mobile 61"]["seconds"] == 120 and got["local 61"]["seconds"] == 61
    assert got["rental A1"]["seconds"] is None and got["rental A1"]["quantity"] == Decimal("1.00")
    assert {(e["exception"], e["reason"]) for e in exceptions(bapp, summary.run_id)} == {
        ("no-rate", "no-tariff"), ("unallocated", "unknown-reference"), ("unallocated", "unknown-product"),
        ("unmatched", "unregistered-number"), ("no-rate", "no-matching-rate")}
    assert summary.exceptions == {"no-rate": 2, "unallocated": 2, "unmatched": 1}
    with bapp.catalog.read() as conn:
        event = conn.execute(select(billing_events).where(billing_events.c.subject == "run")).mappings().one()
    assert (event["action"], event["actor"], event["subject_id"]) == ("build", "alice", str(summary.run_id))
    assert '"lines": 5' in event["detail"]
    [unregistered] = unmatched_calls(bapp, period="2026-10")
    assert (unregistered["number"], unregistered["carrier"], unregistered["calls"], unregistered["charge"]) == (
        "07999999999", "hero", 1, Decimal("0.10"))
    assert unregistered["first_start"].isoformat() == "2026-10-05T10:00:00+00:00"
    assert unmatched_calls(bapp, period="2026-11") == []


def test_a_draft_rebuilt_twice_gives_identical_lines(bapp):
    load_charges(bapp, [charge(), charge("REF2", "SUP", "7.125"), charge("REF3")])
    load_calls(bapp, [call(1), call(2, number="02079460002"), call(3, number="07999999999")])
    first = build_run(bapp, "2026-10", actor="tester")
    before, excepted = lines(bapp, first.run_id), exceptions(bapp, first.run_id)
    second = build_run(bapp, "2026-10", actor="tester")
    third = build_run(bapp, "2026-10", actor="tester")
    assert first.run_id == second.run_id == third.run_id and third.action == "rebuild"
    assert lines(bapp, third.run_id) == before and len(before) == 4
    assert exceptions(bapp, third.run_id) == excepted and len(excepted) == 2
    assert [r["period"] for r in list_runs(bapp)] == ["2026-10"]


def test_a_locked_run_never_changes_and_nothing_is_billed_twice(bapp):
    load_charges(bapp, [charge(), charge("REF2")])
    load_calls(bapp, [call(1), call(2, at="2026-11-02 09:00:00")])
    october = build_run(bapp, "2026-10", actor="tester")
    locked = lock_run(bapp, october.run_id, actor="bob")
    assert (locked["status"], locked["locked_by"], locked["lines"]) == ("locked", "bob", 3)
    frozen = lines(bapp, october.run_id)
    with pytest.raises(BillingError, match="period 2026-10 is locked"):
        build_run(bapp, "2026-10", actor="tester")
    with pytest.raises(BillingError, match="already locked"):
        lock_run(bapp, october.run_id, actor="bob")
    assert lines(bapp, october.run_id) == frozen
    november = build_run(bapp, "2026-11", actor="tester")
    got = lines(bapp, november.run_id)
    assert [(line["source_kind"], line["late"]) for line in got] == [("call", False)]
    billed = {(line["source_kind"], line["source_id"]) for line in frozen}
    assert not billed & {(line["source_kind"], line["source_id"]) for line in got}
    lock_run(bapp, november.run_id, actor="bob")
    december = build_run(bapp, "2026-12", actor="tester")
    assert december.lines == 0 and lines(bapp, december.run_id) == []
    with bapp.catalog.read() as conn:
        assert conn.execute(select(func.count()).select_from(billed_sources)).scalar_one() == 4
        actions = conn.execute(select(billing_events.c.action).where(billing_events.c.subject == "run")
                               .order_by(billing_events.c.id)).scalars().all()
    assert actions == ["build", "lock", "build", "lock", "build"]


def test_a_late_charge_file_lands_in_the_next_run_marked_late(bapp):
    load_charges(bapp, [charge()])
    october = build_run(bapp, "2026-10", actor="tester")
    lock_run(bapp, october.run_id, actor="tester")
    late = load_charges(bapp, [charge(description="late rental", cost="11.00")], name="acme_sdr_late.csv")
    assert late["status"] == "loaded"
    november = build_run(bapp, "2026-11", actor="tester")
    [line] = lines(bapp, november.run_id)
    assert (line["description"], line["late"], line["item_date"], line["retail"], line["file_id"]) == (
        "late rental", True, date(2026, 10, 1), Decimal("12.00"), late["id"])
    assert (november.lines, november.late_lines) == (1, 1)
    assert lines(bapp, october.run_id)[0]["description"] == "LR"  # the locked run is as it was


def test_a_resent_charge_file_held_as_a_duplicate_never_reaches_a_run(bapp):
    rows = [charge(), charge("REF2")]
    first = load_charges(bapp, rows)
    resent = load_charges(bapp, rows, name="acme_sdr_202610_resend.csv")
    assert (first["status"], resent["status"]) == ("loaded", "held")
    summary = build_run(bapp, "2026-10", actor="tester")
    got = lines(bapp, summary.run_id)
    assert len(got) == 2 and {line["file_id"] for line in got} == {first["id"]}
    assert summary.exceptions == {}
    with bapp.catalog.read() as conn:
        assert conn.execute(select(func.count()).select_from(charges)).scalar_one() == 2
    # The report says the held file is there, not loaded, for whoever decides on it before the run is locked.
    [held] = report(bapp, summary.run_id).unloaded_files
    assert (held["file_id"], held["name"], held["status"], held["reason"]) == (
        resent["id"], "acme_sdr_202610_resend.csv", "held", "duplicate-content")


def test_the_report_totals_equal_the_sum_of_its_lines(bapp):
    charges_file = load_charges(bapp, [charge(), charge("REF2", "SUP", "7.125"), charge("REF1", "BB", "5.00"),
                                       charge("NOPE")])
    calls_file = load_calls(bapp, [call(1), call(2, seconds="0"), call(3, number="02079460002", CallType="Local"),
                                   call(4, number="07999999999"), call(5, at="2026-11-01 00:00:00")])
    summary = build_run(bapp, "2026-10", actor="tester")
    got = report(bapp, summary.run_id)
    all_lines = lines(bapp, summary.run_id)
    total = lambda key, rows: sum((row[key] for row in rows if row[key] is not None), Decimal(0))  # noqa: E731
    [gbp] = got.totals["by_currency"]  # every record here is in pounds
    assert gbp["currency"] == "GBP" and {a["currency"] for a in got.accounts} == {"GBP"}
    for key in ("retail", "cost", "margin"):
        assert gbp[key] == total(key, all_lines) == total(key, got.accounts)
    assert got.totals["lines"] == gbp["lines"] == len(all_lines) == sum(a["lines"] for a in got.accounts) == 6
    assert [(a["account"], a["lines"], a["retail"]) for a in got.accounts] == [
        ("A1", 4, Decimal("12.00") + Decimal("12.00") + Decimal("0.30") + Decimal("0.00")),
        ("A2", 2, Decimal("8.55") + Decimal("0.06"))]
    assert got.exceptions == [
        {"exception": "unallocated", "reason": "unknown-reference", "currency": "GBP", "count": 1,
         "cost": Decimal("10.00")},
        {"exception": "unmatched", "reason": "unregistered-number", "currency": "GBP", "count": 1,
         "cost": Decimal("0.10")}]
    files = {f["file_id"]: f for f in got.files}
    # the charges file: 10 + 7.125 + 5 + 10; billed 22.125, excepted 10
    assert (files[charges_file["id"]]["file_cost"], files[charges_file["id"]]["billed_cost"],
            files[charges_file["id"]]["excepted_cost"], files[charges_file["id"]]["difference"]) == (
        Decimal("32.125"), Decimal("22.125"), Decimal("10.00"), Decimal("0.00"))
    # the calls file: five calls of 0.10; one is November's (not in this run)
    assert (files[calls_file["id"]]["file_cost"], files[calls_file["id"]]["billed_cost"],
            files[calls_file["id"]]["difference"]) == (Decimal("0.50"), Decimal("0.30"), Decimal("0.10"))


def test_no_rate_items_are_reported_not_billed(bapp):
    load_charges(bapp, [charge("REF3", description="no tariff"), charge("REF1", "BB", description="bb"),
                        charge("REF1", "XX")])
    load_calls(bapp, [call(1, CallType="Satellite", TextDesc1="satellite"),
                      call(2, number="02079460003", TextDesc1="no tariff call")])
    # an account naming a tariff that does not exist (the importer refuses one: say the configuration changed)
    with bapp.catalog.write() as conn:
        conn.execute(update(accounts).where(accounts.c.account == "A1").values(tariff="gold"))
    summary = build_run(bapp, "2026-10", actor="tester")
    assert summary.lines == 0 and lines(bapp, summary.run_id) == []
    got = {(e["source_kind"], e["exception"], e["reason"]) for e in exceptions(bapp, summary.run_id)}
    assert got == {("charge", "no-rate", "no-tariff"), ("charge", "no-rate", "unknown-tariff"),
                   ("charge", "unallocated", "unknown-product"), ("call", "no-rate", "unknown-tariff"),
                   ("call", "no-rate", "no-tariff")}


def test_cutoff_takes_only_records_dated_up_to_it(bapp):
    load_charges(bapp, [charge(start="2026-10-01", description="early"),
                        charge(start="2026-10-20", description="late in month")])
    load_calls(bapp, [call(1, at="2026-10-15 23:59:59", TextDesc1="on the day"),
                      call(2, at="2026-10-16 00:00:00", TextDesc1="after")])
    summary = build_run(bapp, "2026-10", cutoff=date(2026, 10, 15), actor="tester")
    assert sorted(by_description(bapp, summary.run_id)) == ["early", "on the day"]
    assert list_runs(bapp)[0]["cutoff"] == date(2026, 10, 15)
    again = build_run(bapp, "2026-10", actor="tester")  # the cutoff dropped on a rebuild
    assert sorted(by_description(bapp, again.run_id)) == ["after", "early", "late in month", "on the day"]
    with pytest.raises(BillingError, match="before period 2026-10 starts"):
        build_run(bapp, "2026-10", cutoff=date(2026, 9, 30), actor="tester")


def test_export_writes_the_lines_as_csv_with_exact_decimals(bapp):
    charges_file = load_charges(bapp, [charge(description="rental, line 1"), charge("REF2", "SUP", "7.125")])
    load_calls(bapp, [call(7, TextDesc1="mobile")])
    summary = build_run(bapp, "2026-10", actor="tester")
    out = io.StringIO()
    assert export_run(bapp, summary.run_id, out) == 3
    with bapp.catalog.read() as conn:
        ids = dict(conn.execute(select(charges.c.description, charges.c.id)).all())
        call_id = conn.execute(select(bill_lines.c.source_id).where(bill_lines.c.source_kind == "call")).scalar_one()
    calls_file = lines(bapp, summary.run_id)[0]["file_id"]
    assert calls_file != charges_file["id"]
    run = summary.run_id
    assert out.getvalue() == (
        ",".join(EXPORT_COLUMNS) + "\n"
        f'{run},2026-10,A1,,2026-10-01,false,charge,{ids["rental, line 1"]},acme,line-rental,'
        f'"rental, line 1",1.00,,GBP,12.00,10.00,10.00,2.00,standard.fixed[0]\n'
        f"{run},2026-10,A1,02079460001,2026-10-05,false,call,{call_id},hero,Mobile,mobile,1.00,120,GBP,0.30,"
        f"0.10,,0.20,standard.usage[0]\n"
        f"{run},2026-10,A2,,2026-10-01,false,charge,{ids['SUP']},acme,support,SUP,1.00,,GBP,8.55,7.125,,1.425,"
        f"standard.fixed[2]\n")


def test_the_database_refuses_a_second_billed_row_for_one_source(bapp):
    load_charges(bapp, [charge()])
    october = build_run(bapp, "2026-10", actor="tester")
    lock_run(bapp, october.run_id, actor="tester")
    [line] = lines(bapp, october.run_id)
    november = build_run(bapp, "2026-11", actor="tester")
    with pytest.raises(IntegrityError):
        with bapp.catalog.write() as conn:
            conn.execute(insert(billed_sources).values(source_kind="charge", source_id=line["source_id"],
                                                       run_id=november.run_id))
    # and a lock whose draft holds a source billed meanwhile is refused in one line, changing nothing
    with bapp.catalog.write() as conn:
        conn.execute(insert(bill_lines).values({**{k: v for k, v in line.items() if k != "run_id"},
                                                "run_id": november.run_id}))
    with pytest.raises(BillingError, match=f"charge {line['source_id']} is already billed by locked run "
                                           f"{october.run_id}"):
        lock_run(bapp, november.run_id, actor="tester")
    assert [r["status"] for r in list_runs(bapp)] == ["locked", "draft"]


def test_the_cli_runs_reports_locks_exports_and_lists(bapp, tmp_path):
    from click.testing import CliRunner

    from ingest.cli import cli

    load_charges(bapp, [charge()])
    load_calls(bapp, [call(1), call(2, number="07999999999")])
    runner = CliRunner()
    base = ["--config", str(bapp.config.path), "--by", "carol"]
    done = runner.invoke(cli, [*base, "bill", "run", "--period", "2026-10", "--json"])
    assert done.exit_code == 0, done.output
    assert '"lines": 2' in done.output and '"retail": "12.30"' in done.output
    done = runner.invoke(cli, [*base, "bill", "report", "1"])
    assert done.exit_code == 0 and "A1" in done.output and "unregistered-number" in done.output, done.output
    done = runner.invoke(cli, [*base, "calls", "unmatched", "--period", "2026-10", "--json"])
    assert done.exit_code == 0 and '"number": "07999999999"' in done.output, done.output
    assert runner.invoke(cli, [*base, "bill", "lock", "1"]).output == "run 1 (2026-10) locked: 2 lines\n"
    done = runner.invoke(cli, [*base, "bill", "run", "--period", "2026-10"])
    assert done.exit_code == 1 and done.output.startswith("error: period 2026-10 is locked")
    out = tmp_path / "bill.csv"
    done = runner.invoke(cli, [*base, "bill", "export", "1", "--csv", "-o", str(out)])
    assert done.exit_code == 0 and out.read_text().splitlines()[0] == ",".join(EXPORT_COLUMNS)
    done = runner.invoke(cli, [*base, "bill", "list", "--json"])
    assert done.exit_code == 0 and '"status": "locked"' in done.output and '"locked_by": "carol"' in done.output


def test_matched_calls_by_bill_number_else_a_number_on_the_start_date(bapp):
    from ingest.billing.matching import matched_calls

    load_calls(bapp, [call(1),                                                   # bill number 02079460001: A1
                      call(2, number="", AParty="02079460002"),                  # no bill number: a-number, A2
                      call(3, number="02079460002", at="2026-09-30 23:59:59"),   # before A2 holds it: none
                      call(4, number="02079460002", at="2026-10-01 00:00:00")])  # its first day: A2
    with bapp.catalog.read() as conn:
        got = {row.id: (row.number, row.account)
               for row in conn.execute(matched_calls(conn.dialect.name).order_by("id"))}
    ids = sorted(got)
    assert [got[i] for i in ids] == [("02079460001", "A1"), ("02079460002", "A2"), ("02079460002", None),
                                     ("02079460002", "A2")]
    [unregistered] = unmatched_calls(bapp)
    assert (unregistered["number"], unregistered["calls"]) == ("02079460002", 1)


def test_a_late_record_goes_to_the_first_open_run_after_its_month(bapp):
    load_charges(bapp, [charge()])
    october = build_run(bapp, "2026-10", actor="tester")
    lock_run(bapp, october.run_id, actor="tester")
    build_run(bapp, "2026-11", actor="tester")  # November's draft exists: it takes October's late records
    load_charges(bapp, [charge(description="late")], name="acme_sdr_late.csv")
    load_calls(bapp, [call(1, at="2026-10-31 23:59:59", TextDesc1="late call")])
    november = build_run(bapp, "2026-11", actor="tester")
    december = build_run(bapp, "2026-12", actor="tester")
    assert sorted((line["description"], line["late"]) for line in lines(bapp, november.run_id)) == [
        ("late", True), ("late call", True)]
    assert lines(bapp, december.run_id) == []
    lock_run(bapp, november.run_id, actor="tester")
    assert build_run(bapp, "2026-12", actor="tester").lines == 0  # billed by November, never again


def test_a_charge_without_a_date_is_reported_in_its_files_period(bapp):
    loaded = load_charges(bapp, [charge(description="dated"), charge(start="", end="", description="undated")])
    assert loaded["billing_period"] == "2026-10"
    october = build_run(bapp, "2026-10", actor="tester")
    assert [line["description"] for line in lines(bapp, october.run_id)] == ["dated"]
    [undated] = exceptions(bapp, october.run_id)
    assert (undated["exception"], undated["reason"], undated["item_date"]) == ("unallocated", "no-date",
                                                                                date(2026, 10, 1))
    assert exceptions(bapp, build_run(bapp, "2026-11", actor="tester").run_id) == []
