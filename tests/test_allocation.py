"""Allocation of carrier charges (ingest.billing.allocation, ``cdr charges``): real charge files in the built-in
``generic-charges-csv`` format, received and loaded by the real loader into the real catalog, customer data put
straight into its tables. Every test runs on SQLite and on PostgreSQL (``database_url``)."""

from __future__ import annotations

import io
import json
import logging
import threading
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import event, func, insert, select, text

from ingest.billing import allocation
from ingest.billing.allocation import allocate_charge, allocate_pending, list_charges, rematch
from ingest.catalog.schema import (
    accounts,
    bill_runs,
    billed_sources,
    billing_events,
    carrier_references,
    charge_allocations,
    charges,
    features,
    numbers,
)
from ingest.cli import cli
from ingest.errors import DatabaseBusy, NotFound, PermanentError
from ingest.intake import Origin, receive
from ingest.load import load_queued
from tests.conftest import app_with, wait_until

UTC = timezone.utc
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

CARRIERS = """
[carriers.telco]
format = "generic-charges-csv"
default_type = "sdr"
[carriers.telco.products]
"LR" = "line-rental"
"BB" = "broadband"

[carriers.other]
format = "generic-charges-csv"
default_type = "sdr"
[carriers.other.products]
"LR" = "line-rental"
"""

HEADER = ("customer_reference,number_reference,product_code,description,period_start,period_end,quantity,unit_cost,"
          "cost,currency")


@pytest.fixture
def billing(make_config, apps, monkeypatch):
    """:func:`live_billing` with allocation on load deferred, as when it fails after a load (the loaded charges
    stay pending; the load stands), so that each test allocates when it chooses.
    :func:`test_charges_are_allocated_as_they_load` covers the real path."""
    def postponed(app, *, actor=None):
        raise DatabaseBusy("database is locked (deferred by the test)")

    monkeypatch.setattr(allocation, "allocate_pending", postponed)
    return billing_app(make_config, apps)


@pytest.fixture
def live_billing(make_config, apps):
    return billing_app(make_config, apps)


def billing_app(make_config, apps):
    """An App whose configuration has the carriers ``telco`` and ``other`` (generic charges CSV, products
    mapped)."""
    application = app_with(make_config, CARRIERS)
    apps.append(application)
    return application


def add_customer_data(app, *, accounts_=(), numbers_=(), features_=(), references=()):
    """Insert customer data rows: accounts (account, name), numbers (number, account, from, to), features
    (account, number or '', feature, from, to), references (carrier, reference, account). Returns the feature
    ids in the order given."""
    ids = []
    with app.catalog.write() as conn:
        for account, name in accounts_:
            conn.execute(insert(accounts).values(account=account, name=name, tariff=None, updated_at=NOW))
        for number, account, valid_from, valid_to in numbers_:
            conn.execute(insert(numbers).values(number=number, account=account, valid_from=valid_from,
                                                valid_to=valid_to, number_type="geographic", updated_at=NOW))
        for account, number, feature, valid_from, valid_to in features_:
            ids.append(conn.execute(insert(features).values(
                account=account, number=number, feature=feature, quantity=Decimal(1), valid_from=valid_from,
                valid_to=valid_to, updated_at=NOW).returning(features.c.id)).scalar_one())
        for carrier, reference, account in references:
            conn.execute(insert(carrier_references).values(carrier=carrier, reference=reference, account=account,
                                                           updated_at=NOW))
    return ids


def load_charges(app, rows: list[str], name: str, carrier: str = "telco") -> list[dict]:
    """Receive and load a generic charges CSV of ``rows`` (each a CSV line after the header); the file's
    charges, in file order."""
    data = (HEADER + "\n" + "\n".join(rows) + "\n").encode()
    [got] = receive(app, io.BytesIO(data), Origin("upload", name, carrier=carrier, file_type="sdr"))
    [result] = load_queued(app)
    assert (result.status, result.loaded) == ("loaded", len(rows)), result.message
    with app.catalog.read() as conn:
        return [dict(r) for r in conn.execute(select(charges).where(charges.c.file_id == got.id)
                                              .order_by(charges.c.position)).mappings()]


def allocations(app) -> dict[int, dict]:
    with app.catalog.read() as conn:
        return {r["charge_id"]: dict(r) for r in conn.execute(select(charge_allocations)).mappings()}


def standard_customers(app) -> dict[str, int]:
    """ACME (numbers 0201, and 0215 only from 15 October) and BETA (0202); references on telco; features."""
    ids = add_customer_data(
        app,
        accounts_=[("ACME", "Acme Ltd"), ("BETA", "Beta plc")],
        numbers_=[("0201", "ACME", date(2026, 1, 1), None), ("0202", "BETA", date(2026, 1, 1), None),
                  ("0215", "ACME", date(2026, 10, 15), None),
                  ("0299", "BETA", date(2025, 1, 1), date(2026, 9, 30))],  # BETA's until September only
        features_=[("ACME", "", "line-rental", date(2026, 1, 1), None),  # the whole account's
                   ("ACME", "0201", "line-rental", date(2026, 1, 1), None),  # the number's own
                   ("ACME", "", "broadband", date(2026, 1, 1), date(2026, 9, 30)),  # ended before October
                   ("BETA", "", "line-rental", date(2026, 10, 20), None)],  # from the 20th: within the period
        references=[("telco", "REF-A", "ACME"), ("telco", "REF-B", "BETA"), ("other", "REF-Z", "BETA")],
    )
    return dict(zip(("acme_account_lr", "acme_0201_lr", "acme_bb", "beta_lr"), ids))


OCTOBER = "2026-10-01,2026-10-31,1,10.00,10.00,GBP"
ROWS = {  # description: (customer_reference, number_reference, product_code, dates etc.)
    "by-number": f",0201,LR,by-number,{OCTOBER}",
    "by-reference": f"REF-B,,LR,by-reference,{OCTOBER}",
    "both-agree": f"REF-A,0201,LR,both-agree,{OCTOBER}",
    "conflict": f"REF-A,0202,LR,conflict,{OCTOBER}",
    "unknown-number": f",0999,LR,unknown-number,{OCTOBER}",
    "unknown-reference": f"REF-Q,,LR,unknown-reference,{OCTOBER}",
    "other-carriers-reference": f"REF-Z,,LR,other-carriers-reference,{OCTOBER}",  # REF-Z is other's, not telco's
    "no-reference": f",,LR,no-reference,{OCTOBER}",
    "unknown-product": f",0201,ZZ,unknown-product,{OCTOBER}",
    "no-product": f",0201,,no-product,{OCTOBER}",
    "number-from-15th": f",0215,LR,number-from-15th,{OCTOBER}",
    "number-ended": f",0299,LR,number-ended,{OCTOBER}",
    "broadband": f",0201,BB,broadband,{OCTOBER}",
    "no-date": ",0201,LR,no-date,,,1,10.00,10.00,GBP",
    "reference-only-acme": f"REF-A,,LR,reference-only-acme,{OCTOBER}",
    "blank-number": f"REF-A,  ,LR,blank-number,{OCTOBER}",
}


def load_standard(app) -> dict[str, int]:
    """The standard customers and one charge per case of :data:`ROWS`; the charge ids by description."""
    loaded = load_charges(app, list(ROWS.values()), "telco_fees_202610.csv")
    return {row["description"]: row["id"] for row in loaded}


def test_each_allocation_path(billing):
    app = billing
    feature = standard_customers(app)
    ids = load_standard(app)
    assert {c["status"] for c in list_charges(app)} == {"pending"}

    summary = allocate_pending(app, actor="alloc")

    got = allocations(app)
    decided = {name: (got[i]["status"], got[i]["reason"], got[i]["account"], got[i]["number"],
                      got[i]["transaction_type"]) for name, i in ids.items()}
    assert decided == {
        "by-number": ("auto", None, "ACME", "0201", "line-rental"),
        "by-reference": ("auto", None, "BETA", None, "line-rental"),
        "both-agree": ("auto", None, "ACME", "0201", "line-rental"),
        "conflict": ("unallocated", "conflict", None, None, "line-rental"),
        "unknown-number": ("unallocated", "unknown-number", None, None, "line-rental"),
        "unknown-reference": ("unallocated", "unknown-reference", None, None, "line-rental"),
        "other-carriers-reference": ("unallocated", "unknown-reference", None, None, "line-rental"),
        "no-reference": ("unallocated", "no-reference", None, None, "line-rental"),
        "unknown-product": ("unallocated", "unknown-product", None, None, None),
        "no-product": ("unallocated", "unknown-product", None, None, None),
        "number-from-15th": ("unallocated", "unknown-number", None, None, "line-rental"),
        "number-ended": ("unallocated", "unknown-number", None, None, "line-rental"),
        "broadband": ("auto", None, "ACME", "0201", "broadband"),
        "no-date": ("unallocated", "no-date", None, None, "line-rental"),
        "reference-only-acme": ("auto", None, "ACME", None, "line-rental"),
        "blank-number": ("auto", None, "ACME", None, "line-rental"),  # a blank number reference is none
    }
    features_of = {name: got[i]["feature_id"] for name, i in ids.items()}
    assert features_of["by-number"] == feature["acme_0201_lr"]  # the number's own feature preferred
    assert features_of["both-agree"] == feature["acme_0201_lr"]
    assert features_of["reference-only-acme"] == feature["acme_account_lr"]  # no number: the account's
    assert features_of["by-reference"] == feature["beta_lr"]  # valid from the 20th: within the period
    assert features_of["broadband"] is None  # the broadband feature ended in September
    assert all(features_of[name] is None for name in ids if got[ids[name]]["status"] == "unallocated")
    assert {r["actor"] for r in got.values()} == {"alloc"}

    assert summary.total == len(ROWS)
    assert summary.by_status == {"auto": 6, "unallocated": 10}
    assert summary.by_reason == {"conflict": 1, "unknown-number": 3, "unknown-reference": 2, "no-reference": 1,
                                 "unknown-product": 2, "no-date": 1}
    # Nothing pending any more: a second pass decides nothing and changes nothing.
    again = allocate_pending(app)
    assert (again.total, again.by_status) == (0, {})
    assert allocations(app) == got


def test_a_number_valid_from_the_15th_matches_a_charge_from_the_15th_only(billing):
    app = billing
    standard_customers(app)
    loaded = load_charges(app, [",0215,LR,from-1st,2026-10-01,2026-10-31,1,5,5,GBP",
                                ",0215,LR,from-15th,2026-10-15,2026-10-31,1,5,5,GBP",
                                ",0215,LR,from-14th,2026-10-14,2026-10-31,1,5,5,GBP"], "telco_0215.csv")
    allocate_pending(app)
    got = allocations(app)
    assert [(got[c["id"]]["status"], got[c["id"]]["reason"], got[c["id"]]["account"]) for c in loaded] == [
        ("unallocated", "unknown-number", None), ("auto", None, "ACME"), ("unallocated", "unknown-number", None)]


def test_the_account_wide_feature_when_the_number_has_none_and_a_feature_outside_the_period_never(billing):
    app = billing
    ids = add_customer_data(
        app, accounts_=[("ACME", "Acme")],
        numbers_=[("0201", "ACME", date(2026, 1, 1), None), ("0203", "ACME", date(2026, 1, 1), None)],
        features_=[("ACME", "", "line-rental", date(2026, 1, 1), None),
                   ("ACME", "0201", "line-rental", date(2026, 11, 1), None),  # starts after October
                   ("ACME", "0203", "line-rental", date(2026, 1, 1), date(2026, 10, 1)),  # its last day: the 1st
                   ("ACME", "0203", "broadband", date(2026, 1, 1), None)])
    loaded = load_charges(app, [f",0201,LR,a,{OCTOBER}", f",0203,LR,b,{OCTOBER}", f",0203,BB,c,{OCTOBER}",
                                ",0201,LR,d,2026-11-01,2026-11-30,1,10.00,10.00,GBP"], "telco_features.csv")
    allocate_pending(app)
    got = allocations(app)
    assert [got[c["id"]]["feature_id"] for c in loaded] == [ids[0], ids[2], ids[3], ids[1]]


def test_a_carrier_without_the_code_in_its_products_map_leaves_it_unallocated(billing):
    app = billing
    standard_customers(app)
    # "BB" is telco's broadband, but "other" maps only LR.
    loaded = load_charges(app, [f"REF-Z,,BB,bb,{OCTOBER}", f"REF-Z,,LR,lr,{OCTOBER}"], "other_fees.csv",
                          carrier="other")
    allocate_pending(app)
    got = allocations(app)
    assert [(got[c["id"]]["status"], got[c["id"]]["reason"], got[c["id"]]["account"]) for c in loaded] == [
        ("unallocated", "unknown-product", None), ("auto", None, "BETA")]


def test_allocation_is_one_statement_whatever_the_number_of_charges(billing):
    app = billing
    standard_customers(app)
    load_charges(app, [f",0201,LR,n{i},{OCTOBER}" for i in range(60)], "telco_many.csv")
    inserts = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "charge_allocations" in statement and statement.lstrip().upper().startswith("INSERT"):
            inserts.append(statement)

    event.listen(app.catalog.engine, "before_cursor_execute", count)
    try:
        summary = allocate_pending(app)
    finally:
        event.remove(app.catalog.engine, "before_cursor_execute", count)
    assert summary.by_status == {"auto": 60}
    assert len(inserts) == 1


def test_a_charge_allocated_by_another_process_meanwhile_is_skipped_not_failed(billing):
    """Another transaction inserts charge A's row and holds it uncommitted while allocate_pending runs: the
    allocation waits, then skips A (no primary-key error) and allocates the rest."""
    app = billing
    standard_customers(app)
    loaded = load_charges(app, [f",0201,LR,a,{OCTOBER}", f",0202,LR,b,{OCTOBER}"], "telco_race.csv")
    first, second = (c["id"] for c in loaded)
    outcome: dict = {}

    def run():
        try:
            outcome["summary"] = allocate_pending(app)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    with app.catalog.engine.connect() as other:
        with other.begin():
            other.execute(insert(charge_allocations).values(
                charge_id=first, status="manual", account="BETA", allocated_at=NOW, actor="other"))
            worker = threading.Thread(target=run)
            worker.start()
            if not app.catalog.is_sqlite:
                wait_until(lambda: other.execute(text(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar() > 0, what="the allocation to wait")
        worker.join(timeout=60)
    assert "error" not in outcome, outcome.get("error")
    got = allocations(app)
    assert (got[first]["status"], got[first]["account"], got[first]["actor"]) == ("manual", "BETA", "other")
    assert (got[second]["status"], got[second]["account"]) == ("auto", "BETA")
    # What this allocation inserted: on SQLite the other transaction committed first, so only the second;
    # on PostgreSQL its statement saw the first as pending and skipped it at the conflict.
    assert outcome["summary"].by_status == {"auto": 1}


# -- manual allocation ------------------------------------------------------------------------------------------

def test_manual_allocation_is_audited_with_what_it_was(billing):
    app = billing
    feature = standard_customers(app)
    ids = load_standard(app)
    allocate_pending(app)

    shown = allocate_charge(app, ids["conflict"], "ACME", "0201", actor="alice")
    assert (shown["status"], shown["reason"], shown["account"], shown["number"], shown["feature_id"]) == (
        "manual", None, "ACME", "0201", feature["acme_0201_lr"])
    assert shown["cost"] == Decimal("10.00") and shown["transaction_type"] == "line-rental"
    row = allocations(app)[ids["conflict"]]
    assert (row["status"], row["account"], row["number"], row["actor"]) == ("manual", "ACME", "0201", "alice")

    # Again, to another account: allowed, audited with the manual allocation it replaces.
    allocate_charge(app, ids["conflict"], "BETA", actor="bob")
    [first, second] = allocation.allocation_events(app, ids["conflict"])
    assert (first["actor"], first["action"], first["subject"], first["subject_id"]) == (
        "alice", "allocate", "charge", str(ids["conflict"]))
    assert json.loads(first["detail"])["previous"] == {"status": "unallocated", "reason": "conflict",
                                                       "account": None, "number": None}
    detail = json.loads(second["detail"])
    assert (detail["account"], detail["number"], detail["feature_id"]) == ("BETA", None, feature["beta_lr"])
    assert detail["previous"] == {"status": "manual", "reason": None, "account": "ACME", "number": "0201"}

    # A pending charge (not looked at yet) can be allocated by hand too.
    [late] = load_charges(app, [f",0999,LR,late,{OCTOBER}"], "telco_late.csv")
    allocate_charge(app, late["id"], "BETA", actor="carol")
    assert json.loads(allocation.allocation_events(app, late["id"])[0]["detail"])["previous"]["status"] == "pending"
    assert allocate_pending(app).total == 0


def test_manual_allocation_refusals(billing):
    app = billing
    standard_customers(app)
    ids = load_standard(app)
    allocate_pending(app)
    before = allocations(app)

    with pytest.raises(NotFound, match="charge 999999 does not exist"):
        allocate_charge(app, 999999, "ACME", actor="alice")
    with pytest.raises(NotFound, match="account 'NOPE' does not exist"):
        allocate_charge(app, ids["conflict"], "NOPE", actor="alice")
    with pytest.raises(PermanentError,
                       match=r"number '0202' does not belong to account 'ACME' on 2026-10-01 \(the date of charge"):
        allocate_charge(app, ids["conflict"], "ACME", "0202", actor="alice")
    with pytest.raises(PermanentError, match="number '0215' does not belong to account 'ACME' on 2026-10-01"):
        allocate_charge(app, ids["conflict"], "ACME", "0215", actor="alice")  # ACME's only from the 15th
    with pytest.raises(PermanentError, match="has no date"):
        allocate_charge(app, ids["no-date"], "ACME", actor="alice")

    # Billed by a locked run: its allocation can no longer change.
    with app.catalog.write() as conn:
        run_id = conn.execute(insert(bill_runs).values(period="2026-10", status="locked", built_at=NOW,
                                                       built_by="t", locked_at=NOW, locked_by="t")
                              .returning(bill_runs.c.id)).scalar_one()
        conn.execute(insert(billed_sources).values(source_kind="charge", source_id=ids["by-number"], run_id=run_id))
    with pytest.raises(PermanentError, match=f"charge {ids['by-number']} was billed by locked run {run_id}"):
        allocate_charge(app, ids["by-number"], "BETA", "0202", actor="alice")

    assert allocations(app) == before
    assert allocation.allocation_events(app) == []


# -- rematch ----------------------------------------------------------------------------------------------------

def test_rematch_after_the_missing_number_is_added(billing):
    app = billing
    standard_customers(app)
    ids = load_standard(app)
    allocate_pending(app)
    allocate_charge(app, ids["unknown-reference"], "ACME", actor="alice")  # decided by hand
    before = allocations(app)

    add_customer_data(app, numbers_=[("0999", "BETA", date(2026, 10, 1), None)],
                      references=[("telco", "REF-Q", "BETA")])  # would now allocate the manual one elsewhere
    summary = rematch(app, actor="bob")

    after = allocations(app)
    assert (after[ids["unknown-number"]]["status"], after[ids["unknown-number"]]["account"],
            after[ids["unknown-number"]]["number"], after[ids["unknown-number"]]["actor"]) == (
        "auto", "BETA", "0999", "bob")
    assert after[ids["unknown-reference"]] == before[ids["unknown-reference"]]  # manual: untouched
    assert after[ids["by-number"]] == before[ids["by-number"]]  # auto: untouched
    assert after[ids["conflict"]]["reason"] == "conflict"  # still
    assert summary.rematched == 9 and summary.total == 9
    assert summary.by_status == {"auto": 1, "unallocated": 8}
    [audit] = [e for e in allocation.allocation_events(app) if e["action"] == "rematch"]
    assert audit["actor"] == "bob" and audit["subject"] == "charge"
    assert json.loads(audit["detail"])["by_status"] == {"auto": 1, "unallocated": 8}


def test_rematch_of_a_period_leaves_other_periods_alone(billing):
    app = billing
    standard_customers(app)
    loaded = load_charges(app, [f",0999,LR,oct,{OCTOBER}", ",0999,LR,nov,2026-11-01,2026-11-30,1,5,5,GBP"],
                          "telco_two_months.csv")
    allocate_pending(app)
    add_customer_data(app, numbers_=[("0999", "BETA", date(2026, 1, 1), None)])
    summary = rematch(app, period="2026-11", actor="bob")
    got = allocations(app)
    assert [(got[c["id"]]["status"], got[c["id"]]["reason"]) for c in loaded] == [
        ("unallocated", "unknown-number"), ("auto", None)]
    assert (summary.rematched, summary.by_status) == (1, {"auto": 1})
    with pytest.raises(PermanentError, match="YYYY-MM"):
        rematch(app, period="2026-13", actor="bob")


# -- the listing and the CLI ------------------------------------------------------------------------------------

def cdr(app, *args: str):
    return CliRunner().invoke(cli, ["--config", str(app.config.path), "--by", "cli-user", *args])


def test_list_charges_with_filters(billing):
    app = billing
    standard_customers(app)
    ids = load_standard(app)
    [other] = load_charges(app, [f"REF-Z,,LR,z,{OCTOBER}"], "other_fees.csv", carrier="other")
    allocate_pending(app)
    [nov] = load_charges(app, [",0201,LR,nov,2026-11-01,2026-11-30,1,7.5,7.5,GBP"], "telco_nov.csv")

    listed = list_charges(app)
    assert [c["id"] for c in listed] == sorted([*ids.values(), other["id"], nov["id"]])
    assert tuple(listed[0]) == allocation.CHARGE_COLUMNS
    assert [c["id"] for c in list_charges(app, status="pending")] == [nov["id"]]
    assert [c["id"] for c in list_charges(app, carrier="other")] == [other["id"]]
    assert [c["id"] for c in list_charges(app, period="2026-11")] == [nov["id"]]
    assert len(list_charges(app, status="auto", carrier="telco", period="2026-10")) == 6
    assert len(list_charges(app, limit=3)) == 3
    [first] = [c for c in listed if c["id"] == ids["by-number"]]
    assert (first["cost"], first["quantity"], first["period_start"], first["feature"]) == (
        Decimal("10.00"), Decimal("1.00"), date(2026, 10, 1), "line-rental")
    with pytest.raises(PermanentError, match="unknown allocation status"):
        list_charges(app, status="nope")


def test_cli_listing_json_and_status_filter(billing, monkeypatch):
    app = billing
    standard_customers(app)
    ids = load_standard(app)
    monkeypatch.undo()  # allocation works again
    result = cdr(app, "charges", "--json")
    assert result.exit_code == 0, result.output
    assert {c["status"] for c in json.loads(result.output)} == {"pending"}  # listing allocates nothing

    result = cdr(app, "charges", "allocate-new", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["by_status"] == {"auto": 6, "unallocated": 10}

    result = cdr(app, "charges", "--status", "unallocated", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert len(listed) == 10 and {c["status"] for c in listed} == {"unallocated"}
    [conflict] = [c for c in listed if c["id"] == ids["conflict"]]
    assert (conflict["reason"], conflict["cost"], conflict["period_start"], conflict["account"]) == (
        "conflict", "10.00", "2026-10-01", None)

    result = cdr(app, "charges", "--status", "auto", "--period", "2026-10")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["ID", "CARRIER", "PRODUCT_CODE"] and len(lines) == 1 + 6

    result = cdr(app, "charges", "--status", "manual")
    assert (result.exit_code, result.output.strip()) == (0, "(none)")


def test_cli_allocate_and_rematch(billing):
    app = billing
    standard_customers(app)
    ids = load_standard(app)
    allocate_pending(app)

    result = cdr(app, "charges", "allocate", str(ids["conflict"]), "--account", "BETA", "--number", "0202")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"charge {ids['conflict']}: manual, account BETA number 0202")
    assert allocation.allocation_events(app, ids["conflict"])[0]["actor"] == "cli-user"

    result = cdr(app, "charges", "allocate", str(ids["no-reference"]), "--account", "ACME", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["status"] == "manual"

    add_customer_data(app, numbers_=[("0999", "BETA", date(2026, 10, 1), None)])
    result = cdr(app, "charges", "rematch", "--period", "2026-10", "--json")
    assert result.exit_code == 0, result.output
    # The no-date charge is of no period: only a rematch of every period takes it.
    assert json.loads(result.output)["by_status"] == {"auto": 1, "unallocated": 6}
    result = cdr(app, "charges", "rematch")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("rematched 7 unallocated; 7 charges allocated: 0 auto, 7 unallocated (")


@pytest.mark.parametrize("args, message", [
    (["allocate", "999999", "--account", "ACME"], "error: charge 999999 does not exist"),
    (["allocate", "{conflict}", "--account", "NOPE"], "error: account 'NOPE' does not exist"),
    (["allocate", "{conflict}", "--account", "BETA", "--number", "0201"],
     "error: number '0201' does not belong to account 'BETA' on 2026-10-01 (the date of charge {conflict})"),
    (["allocate", "{no-date}", "--account", "ACME"], "error: charge {no-date} has no date"),
])
def test_cli_errors_are_one_line(billing, args, message):
    app = billing
    standard_customers(app)
    ids = load_standard(app)
    allocate_pending(app)
    result = CliRunner().invoke(cli, ["--config", str(app.config.path), "charges",
                                      *(a.format(**ids) for a in args)])
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(message.format(**ids))
    with app.catalog.read() as conn:
        assert conn.execute(select(func.count()).select_from(billing_events)).scalar_one() == 0


def test_charges_are_allocated_as_they_load(live_billing, caplog):
    """A charge file is allocated as it loads: no step between the load and ``cdr charges``."""
    app = live_billing
    standard_customers(app)
    ids = load_standard(app)
    got = allocations(app)
    assert set(got) == set(ids.values())
    assert (got[ids["by-number"]]["status"], got[ids["by-number"]]["account"]) == ("auto", "ACME")
    assert (got[ids["conflict"]]["status"], got[ids["conflict"]]["reason"]) == ("unallocated", "conflict")
    assert "postponed" not in caplog.text


def test_a_failed_allocation_after_a_load_never_fails_the_load(billing, caplog):
    """Allocation failing after the load (the database busy): the file stays loaded, its charges pending, one
    warning; the next allocation takes them."""
    app = billing
    standard_customers(app)
    with caplog.at_level(logging.WARNING, logger="ingest.billing"):
        ids = load_standard(app)  # asserts the file loaded
    [warning] = [r for r in caplog.records if r.name == "ingest.billing"]
    assert warning.getMessage().endswith(
        "loaded; allocating its charges is postponed: database is locked (deferred by the test)")
    assert {c["status"] for c in list_charges(app)} == {"pending"}
    assert allocate_pending(app).total == len(ids)
