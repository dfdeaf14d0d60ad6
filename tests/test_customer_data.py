"""Customer data (issue 12): customers, numbers, features and carrier references imported from CSV through the
real `cdr` command into a real catalog (SQLite and PostgreSQL), upserted by natural key in one transaction, all
or nothing, with line and field on error; dry runs; one account per number at a time; listings; the audit."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from ingest.cli import cli

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples" / "billing"

CUSTOMERS = "account,name,tariff\nACME001,Acme Widgets Ltd,standard\nBETA002,Beta Design LLP,\n0016,Zero Sixteen,standard\n"


@pytest.fixture
def run(app):
    runner = CliRunner()

    def invoke(*args, by="admin"):
        return runner.invoke(cli, ["--config", str(app.config.path), "--by", by, *args], catch_exceptions=False)

    return invoke


@pytest.fixture
def csv_file(tmp_path):
    def write(name: str, text: str | bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return write


@pytest.fixture
def imported(run, csv_file):
    """Import ``text`` as a ``kind`` file named ``kind``.csv; returns the result's JSON (fails on an error)."""

    def do(kind: str, text: str, *extra: str, name: str | None = None) -> dict:
        result = run(kind, "import", str(csv_file(name or f"{kind}.csv", text)), "--json", *extra)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return do


@pytest.fixture
def customers(imported):
    return imported("customers", CUSTOMERS)


def listed(run, *args) -> list[dict]:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def snapshot(app) -> dict[str, list]:
    """Every row of the customer data tables and the billing audit, for "nothing was written" checks."""
    from ingest.catalog.schema import accounts, billing_events, carrier_references, features, numbers

    with app.catalog.read() as conn:
        return {table.name: sorted(tuple(map(str, row)) for row in conn.execute(select(table)))
                for table in (accounts, numbers, features, carrier_references, billing_events)}


def counts(result: dict) -> tuple[int, int, int]:
    return result["inserted"], result["updated"], result["unchanged"]


def refused(run, csv_file, kind: str, text: str | bytes, name: str | None = None) -> str:
    """Import a file that must be refused: exit 1, one line on stderr, nothing on stdout; returns that line."""
    result = run(kind, "import", str(csv_file(name or f"{kind}.csv", text)))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")
    return result.stderr.strip().removeprefix("error: ")


# -- each kind -------------------------------------------------------------------------------------------------

def test_customers_import_and_list_keep_codes_as_text(run, customers):
    assert (customers["kind"], customers["file"], customers["dry_run"]) == ("customers", "customers.csv", False)
    assert counts(customers) == (3, 0, 0)
    shown = listed(run, "customers", "list")
    assert [(c["account"], c["name"], c["tariff"]) for c in shown] == [
        ("0016", "Zero Sixteen", "standard"), ("ACME001", "Acme Widgets Ltd", "standard"),
        ("BETA002", "Beta Design LLP", None)]
    assert all(c["updated_at"].endswith("Z") for c in shown)
    table = run("customers", "list").stdout.splitlines()
    assert table[0].split() == ["ACCOUNT", "NAME", "TARIFF", "UPDATED_AT"]
    assert table[1].startswith("0016 ")


def test_numbers_import_and_list_with_filters(run, customers, imported):
    done = imported("numbers", "number,account,valid_from,valid_to,number_type\n"
                               "02079460001,ACME001,2026-01-01,,geographic\n"
                               "  0016135550143 , 0016 ,2026-02-01,2026-12-31,\n"
                               "07700900123,ACME001,2026-01-01,2026-06-30,mobile\n")
    assert counts(done) == (3, 0, 0)
    assert [{k: n[k] for k in ("number", "account", "valid_from", "valid_to", "number_type")}
            for n in listed(run, "numbers", "list")] == [
        {"number": "0016135550143", "account": "0016", "valid_from": "2026-02-01", "valid_to": "2026-12-31",
         "number_type": None},
        {"number": "02079460001", "account": "ACME001", "valid_from": "2026-01-01", "valid_to": None,
         "number_type": "geographic"},
        {"number": "07700900123", "account": "ACME001", "valid_from": "2026-01-01", "valid_to": "2026-06-30",
         "number_type": "mobile"}]
    assert [n["number"] for n in listed(run, "numbers", "list", "--account", "ACME001")] == [
        "02079460001", "07700900123"]
    assert [n["account"] for n in listed(run, "numbers", "list", "--number", "0016135550143")] == ["0016"]
    assert listed(run, "numbers", "list", "--number", "16135550143") == []  # text: leading zeros matter


def test_features_import_whole_account_and_exact_quantity(app, run, customers, imported):
    done = imported("features", "account,number,feature,quantity,valid_from,valid_to\n"
                                "ACME001,02079460001,line-rental,,2026-01-01,\n"
                                "ACME001,,broadband,2.5,2026-01-01,2026-12-31\n"
                                "0016,0016135550143,line-rental,0.000001,2026-02-01,\n")
    assert counts(done) == (3, 0, 0)
    shown = listed(run, "features", "list")
    assert [{k: f[k] for k in ("account", "number", "feature", "quantity", "valid_from", "valid_to")}
            for f in shown] == [
        {"account": "0016", "number": "0016135550143", "feature": "line-rental", "quantity": "0.000001",
         "valid_from": "2026-02-01", "valid_to": None},
        {"account": "ACME001", "number": None, "feature": "broadband", "quantity": "2.50",
         "valid_from": "2026-01-01", "valid_to": "2026-12-31"},
        {"account": "ACME001", "number": "02079460001", "feature": "line-rental", "quantity": "1.00",
         "valid_from": "2026-01-01", "valid_to": None}]
    assert all(isinstance(f["id"], int) for f in shown)
    assert [f["feature"] for f in listed(run, "features", "list", "--account", "0016")] == ["line-rental"]
    # the library gives exact decimals and None for the whole account
    from ingest.billing.customers import list_features

    whole = [f for f in list_features(app, account="ACME001") if f["number"] is None]
    assert [f["quantity"] for f in whole] == [Decimal("2.5")]


def test_references_import_and_list(run, customers, imported):
    done = imported("references", "carrier,reference,account\n"
                                  "techconnections,81234567,ACME001\n"
                                  "hero,0016,0016\n"
                                  "techconnections,00123,BETA002\n")
    assert counts(done) == (3, 0, 0)
    assert [(r["carrier"], r["reference"], r["account"]) for r in listed(run, "references", "list")] == [
        ("hero", "0016", "0016"), ("techconnections", "00123", "BETA002"),
        ("techconnections", "81234567", "ACME001")]
    assert [r["reference"] for r in listed(run, "references", "list", "--carrier", "techconnections")] == [
        "00123", "81234567"]
    assert run("references", "list", "--carrier", "nobody").stdout == "(none)\n"


def test_header_in_any_order_with_a_bom_and_whitespace(run, imported):
    done = imported("customers", "\ufeff Tariff , account ,name\r\n gold ,  0042  , Forty Two \r\n\r\n,,\r\n")
    assert counts(done) == (1, 0, 0)
    assert [(c["account"], c["name"], c["tariff"]) for c in listed(run, "customers", "list")] == [
        ("0042", "Forty Two", "gold")]


def test_the_sample_files_import_in_order(run):
    for kind in ("customers", "numbers", "features", "references"):
        result = run(kind, "import", str(SAMPLES / f"{kind}.csv"))
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"{kind}.csv: ") and " 0 updated, 0 unchanged" in result.stdout
    assert {n["number"] for n in listed(run, "numbers", "list")} >= {"02079460001", "02079460002", "098765432"}
    assert listed(run, "numbers", "list", "--number", "07700900999") == []  # the one left unmatched on purpose


# -- upsert ----------------------------------------------------------------------------------------------------

def test_a_second_import_updates_changed_rows_and_counts_unchanged_ones(app, run, customers, imported):
    first = imported("numbers", "number,account,valid_from,valid_to,number_type\n"
                                "02079460001,ACME001,2026-01-01,,geographic\n"
                                "02079460002,ACME001,2026-01-01,,geographic\n")
    assert counts(first) == (2, 0, 0)
    second = imported("numbers", "number_type,number,account,valid_from,valid_to\n"
                                 "geographic,02079460001,ACME001,2026-01-01,\n"
                                 "geographic,02079460002,ACME001,2026-01-01,2026-10-31\n"
                                 "geographic,02079460002,BETA002,2026-11-01,\n")
    assert counts(second) == (1, 1, 1)
    assert [(n["number"], n["account"], n["valid_from"], n["valid_to"]) for n in listed(run, "numbers", "list")] == [
        ("02079460001", "ACME001", "2026-01-01", None),
        ("02079460002", "ACME001", "2026-01-01", "2026-10-31"),
        ("02079460002", "BETA002", "2026-11-01", None)]
    again = imported("customers", "account,name,tariff\nACME001,Acme Widgets Limited,standard\n")
    assert counts(again) == (0, 1, 0)
    # rows the file does not mention are left alone
    assert [(c["account"], c["name"]) for c in listed(run, "customers", "list")] == [
        ("0016", "Zero Sixteen"), ("ACME001", "Acme Widgets Limited"), ("BETA002", "Beta Design LLP")]
    features = "account,number,feature,quantity,valid_from,valid_to\nACME001,,broadband,1,2026-01-01,\n"
    assert counts(imported("features", features)) == (1, 0, 0)
    assert counts(imported("features", features.replace(",1,", ",1.000,"))) == (0, 0, 1)  # the same decimal
    assert counts(imported("features", features.replace(",1,", ",2,"))) == (0, 1, 0)
    references = "carrier,reference,account\nhero,R1,ACME001\n"
    assert counts(imported("references", references)) == (1, 0, 0)
    assert counts(imported("references", references.replace("ACME001", "BETA002"))) == (0, 1, 0)
    assert counts(imported("references", references.replace("ACME001", "BETA002"))) == (0, 0, 1)


def test_each_real_import_is_audited(app, customers, imported):
    from ingest.catalog.schema import billing_events

    imported("customers", CUSTOMERS, name="again.csv")
    with app.catalog.read() as conn:
        rows = conn.execute(select(billing_events).order_by(billing_events.c.id)).mappings().all()
    assert [(r["subject"], r["action"], r["actor"], r["detail"]) for r in rows] == [
        ("customers", "import", "admin", "customers.csv: 3 inserted, 0 updated, 0 unchanged"),
        ("customers", "import", "admin", "again.csv: 0 inserted, 0 updated, 3 unchanged")]
    assert rows[0]["at"].tzinfo is not None


# -- dry run ---------------------------------------------------------------------------------------------------

def test_dry_run_shows_the_changes_and_writes_nothing(app, run, customers, imported, csv_file):
    imported("numbers", "number,account,valid_from,valid_to,number_type\n"
                        "02079460001,ACME001,2026-01-01,,geographic\n"
                        "02079460002,ACME001,2026-01-01,,\n")
    before = snapshot(app)
    text = ("number,account,valid_from,valid_to,number_type\n"
            "02079460001,ACME001,2026-01-01,,geographic\n"
            "02079460002,ACME001,2026-01-01,2026-10-31,mobile\n"
            "02079460002,BETA002,2026-11-01,,\n")
    done = imported("numbers", text, "--dry-run")
    assert done == {
        "kind": "numbers", "file": "numbers.csv", "dry_run": True, "inserted": 1, "updated": 1, "unchanged": 1,
        "changes": [
            {"line": 3, "action": "update", "key": {"number": "02079460002", "valid_from": "2026-01-01"},
             "fields": {"valid_to": {"old": None, "new": "2026-10-31"},
                        "number_type": {"old": None, "new": "mobile"}}},
            {"line": 4, "action": "insert", "key": {"number": "02079460002", "valid_from": "2026-11-01"},
             "fields": {"account": {"old": None, "new": "BETA002"}, "valid_to": {"old": None, "new": None},
                        "number_type": {"old": None, "new": None}}}]}
    assert snapshot(app) == before
    shown = run("numbers", "import", str(csv_file("numbers.csv", text)), "--dry-run")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines() == [
        "numbers.csv (dry run, nothing written): 1 to insert, 1 to update, 1 unchanged",
        "  line 3: update number 02079460002 valid_from 2026-01-01: valid_to - -> 2026-10-31, "
        "number_type - -> mobile",
        "  line 4: insert number 02079460002 valid_from 2026-11-01: account BETA002, valid_to -, number_type -"]
    assert snapshot(app) == before
    assert counts(imported("numbers", text)) == (1, 1, 1)  # what the dry run said


def test_dry_run_refuses_what_the_import_would(app, customers, imported, run, csv_file):
    imported("numbers", "number,account,valid_from,valid_to,number_type\n02079460001,ACME001,2026-01-01,,\n")
    before = snapshot(app)
    result = run("numbers", "import", str(csv_file("numbers.csv", "number,account,valid_from,valid_to,number_type\n"
                                                   "02079460001,BETA002,2026-06-01,,\n")), "--dry-run")
    assert result.exit_code == 1 and "a number belongs to one account at a time" in result.stderr
    assert snapshot(app) == before


# -- errors: one line, file, line, field; nothing written ------------------------------------------------------

NUMBERS_HEADER = "number,account,valid_from,valid_to,number_type\n"

ERRORS = {
    "bad date": ("numbers", NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,,\n"
                                             "02079460002,ACME001,2026-01-01,,\n"
                                             "02079460003,ACME001,2026-13-01,,\n",
                 "numbers.csv line 4, valid_from: '2026-13-01' is not a date (YYYY-MM-DD)"),
    "not ISO date": ("numbers", NUMBERS_HEADER + "02079460001,ACME001,01/10/2026,,\n",
                     "numbers.csv line 2, valid_from: '01/10/2026' is not a date (YYYY-MM-DD)"),
    "missing column": ("numbers", "number,account,valid_from,number_type\n02079460001,ACME001,2026-01-01,\n",
                       "numbers.csv line 1, valid_to: missing column 'valid_to' (expected exactly the columns "
                       "number,account,valid_from,valid_to,number_type, in any order)"),
    "unknown column": ("customers", "account,name,tariff,email\nX1,X,standard,x@example.com\n",
                       "customers.csv line 1, email: unknown column 'email' (expected exactly the columns "
                       "account,name,tariff, in any order)"),
    "unknown account": ("numbers", NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,,\n"
                                                    "02079460002,NOSUCH9,2026-01-01,,\n",
                        "numbers.csv line 3, account: 'NOSUCH9' is not a customer (import it first: cdr customers "
                        "import)"),
    "unknown account of a feature": (
        "features", "account,number,feature,quantity,valid_from,valid_to\nNOSUCH9,,broadband,1,2026-01-01,\n",
        "features.csv line 2, account: 'NOSUCH9' is not a customer (import it first: cdr customers import)"),
    "unknown account of a reference": (
        "references", "carrier,reference,account\nhero,R1,ACME001\nhero,R2,acme001\n",
        "references.csv line 3, account: 'acme001' is not a customer (import it first: cdr customers import)"),
    "unknown carrier": ("references", "carrier,reference,account\nHero,R1,ACME001\n",
                        "references.csv line 2, carrier: 'Hero' is not a configured carrier (known: hero, "
                        "techconnections)"),
    "empty required field": ("customers", "account,name,tariff\nX1,X,standard\n  ,Nobody,standard\n",
                             "customers.csv line 3, account: is required and empty"),
    "empty feature": ("features", "account,number,feature,quantity,valid_from,valid_to\nACME001,,  ,1,2026-01-01,\n",
                      "features.csv line 2, feature: is required and empty"),
    "duplicate key": ("numbers", NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,,\n"
                                                  "02079460002,ACME001,2026-01-01,,\n"
                                                  "02079460001,BETA002,2026-01-01,,mobile\n",
                      "numbers.csv line 4, number: number 02079460001 from 2026-01-01 is also on line 2"),
    "duplicate feature of the whole account": (
        "features", "account,number,feature,quantity,valid_from,valid_to\n"
                    "ACME001,,broadband,1,2026-01-01,\nACME001,,broadband,2,2026-01-01,\n",
        "features.csv line 3, account: account ACME001 (the whole account) feature broadband from 2026-01-01 is "
        "also on line 2"),
    "valid_to before valid_from": ("numbers", NUMBERS_HEADER + "02079460001,ACME001,2026-11-01,2026-10-31,\n",
                                   "numbers.csv line 2, valid_to: '2026-10-31' is before valid_from 2026-11-01"),
    "bad quantity": ("features", "account,number,feature,quantity,valid_from,valid_to\n"
                                 "ACME001,,broadband,1e3,2026-01-01,\n",
                     "features.csv line 2, quantity: '1e3' is not a decimal number (e.g. 1 or 2.5)"),
    "too many fields": ("customers", "account,name,tariff\nX1,X,standard,extra\n",
                        "customers.csv line 2: the row has 4 fields where the header has 3"),
    "a space inside a number": ("numbers", NUMBERS_HEADER + "020 7946 0001,ACME001,2026-01-01,,\n",
                                "numbers.csv line 2, number: '020 7946 0001' has spaces inside (write it as the "
                                "carriers' files do, e.g. 02079460001)"),
    "empty file": ("customers", "", "customers.csv line 1: the file is empty (expected the header "
                                    "account,name,tariff)"),
    "not UTF-8": ("customers", "account,name,tariff\nX1,Caf\xe9,standard\n".encode("latin-1"),
                  "customers.csv line 2: not UTF-8 text (byte 0xe9)"),
}


@pytest.mark.parametrize("case", list(ERRORS), ids=list(ERRORS))
def test_a_refused_file_names_file_line_and_field_and_writes_nothing(app, run, customers, csv_file, case):
    kind, text, message = ERRORS[case]
    before = snapshot(app)
    assert refused(run, csv_file, kind, text) == message
    assert snapshot(app) == before


def test_an_error_on_line_3_of_5_writes_nothing_at_all(app, run, customers, imported, csv_file):
    imported("numbers", NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,,\n")
    before = snapshot(app)
    # lines 2 and 4-6 are good (an update and three inserts); line 3 names an unknown account
    text = (NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,2026-10-31,\n"
                             "02079460002,NOSUCH9,2026-01-01,,\n"
                             "02079460003,ACME001,2026-01-01,,\n"
                             "02079460004,ACME001,2026-01-01,,\n"
                             "02079460005,ACME001,2026-01-01,,\n")
    assert refused(run, csv_file, "numbers", text).startswith("numbers.csv line 3, account: 'NOSUCH9'")
    assert snapshot(app) == before
    # the same with a refusal found only after writing: line 3 overlaps line 2
    text = (NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,2026-10-31,\n"
                             "02079460001,BETA002,2026-10-01,,\n"
                             "02079460003,ACME001,2026-01-01,,\n"
                             "02079460004,ACME001,2026-01-01,,\n")
    assert "line 2" in refused(run, csv_file, "numbers", text)
    assert snapshot(app) == before
    customers_text = "account,name,tariff\nNEW1,New One,standard\nACME001,Renamed,standard\n,Empty,\nNEW2,Two,\n"
    assert refused(run, csv_file, "customers", customers_text) == "customers.csv line 4, account: is required and empty"
    assert snapshot(app) == before


# -- a number belongs to one account at a time -----------------------------------------------------------------

def test_overlapping_validity_within_one_file_is_refused(app, run, customers, csv_file):
    before = snapshot(app)
    message = refused(run, csv_file, "numbers", NUMBERS_HEADER + "07700900123,ACME001,2026-01-01,,\n"
                                                                 "02079460001,ACME001,2026-01-01,2026-10-31,\n"
                                                                 "02079460001,BETA002,2026-10-31,,\n")
    assert message == ("numbers.csv line 3, number: number 02079460001 from 2026-01-01 to 2026-10-31 (account "
                       "ACME001) overlaps its validity from 2026-10-31 to open (account BETA002, line 4): a number "
                       "belongs to one account at a time")
    assert snapshot(app) == before
    # one account twice on the same days is an overlap too
    assert "overlaps" in refused(run, csv_file, "numbers", NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,,\n"
                                                                            "02079460001,ACME001,2026-03-01,,\n")


def test_overlapping_validity_against_the_catalog_is_refused(app, run, customers, imported, csv_file):
    imported("numbers", NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,2026-12-31,\n")
    before = snapshot(app)
    message = refused(run, csv_file, "numbers", NUMBERS_HEADER + "02079460009,BETA002,2026-01-01,,\n"
                                                                 "02079460001,BETA002,2026-06-01,2026-06-30,\n")
    assert message == ("numbers.csv line 3, number: number 02079460001 from 2026-06-01 to 2026-06-30 (account "
                       "BETA002) overlaps its validity from 2026-01-01 to 2026-12-31 (account ACME001, in the "
                       "catalog): a number belongs to one account at a time")
    assert snapshot(app) == before
    # an earlier row that starts before the kept one and runs into it
    assert "in the catalog" in refused(run, csv_file, "numbers",
                                       NUMBERS_HEADER + "02079460001,BETA002,2025-01-01,2026-01-01,\n")
    # an update that reopens a closed range over a later one
    imported("numbers", NUMBERS_HEADER + "02079460001,BETA002,2027-01-01,,\n")
    before = snapshot(app)
    message = refused(run, csv_file, "numbers", NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,,\n")
    assert message.startswith("numbers.csv line 2, number: number 02079460001 from 2026-01-01 to open (account "
                              "ACME001) overlaps its validity from 2027-01-01 to open (account BETA002, in the catalog)")
    assert snapshot(app) == before


def test_adjacent_validity_is_accepted(run, customers, imported):
    imported("numbers", NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,2026-10-31,\n")
    done = imported("numbers", NUMBERS_HEADER + "02079460001,BETA002,2026-11-01,,\n"
                                                "02079460002,ACME001,2026-01-01,2026-10-31,\n"
                                                "02079460002,BETA002,2026-11-01,2026-11-30,\n"
                                                "02079460002,ACME001,2026-12-01,,\n")
    assert counts(done) == (4, 0, 0)
    assert [(n["account"], n["valid_from"], n["valid_to"])
            for n in listed(run, "numbers", "list", "--number", "02079460001")] == [
        ("ACME001", "2026-01-01", "2026-10-31"), ("BETA002", "2026-11-01", None)]


def test_moving_a_number_closes_one_range_and_opens_the_next_in_one_file(run, customers, imported):
    imported("numbers", NUMBERS_HEADER + "02079460001,ACME001,2026-01-01,,\n")
    done = imported("numbers", NUMBERS_HEADER + "02079460001,BETA002,2026-11-01,,\n"
                                                "02079460001,ACME001,2026-01-01,2026-10-31,\n")
    assert counts(done) == (1, 1, 0)


# -- the library -----------------------------------------------------------------------------------------------

def test_known_tariffs_refuses_an_unknown_tariff(app, csv_file):
    from ingest.billing.customers import CustomerDataError, import_customers
    from ingest.errors import PermanentError

    path = csv_file("customers.csv", "account,name,tariff\nA1,One,standard\nA2,Two,\nA3,Three,gold\n")
    before = snapshot(app)
    with pytest.raises(CustomerDataError) as caught:
        import_customers(app, path, known_tariffs={"standard", "hero-wholesale"})
    assert isinstance(caught.value, PermanentError)
    assert (caught.value.file, caught.value.line, caught.value.field) == ("customers.csv", 4, "tariff")
    assert str(caught.value) == ("customers.csv line 4, tariff: 'gold' is not a configured tariff (known: "
                                 "hero-wholesale, standard)")
    assert snapshot(app) == before
    done = import_customers(app, path)  # no tariffs configured yet: any name
    assert (done.inserted, done.updated, done.unchanged, done.changes) == (3, 0, 0, [])
    assert done.view() == {"kind": "customers", "file": "customers.csv", "dry_run": False, "inserted": 3,
                           "updated": 0, "unchanged": 0}


def test_a_large_numbers_file_imports_in_a_few_statements(app, csv_file):
    """10,000 numbers: the rows are written by executemany, not a statement per row."""
    from sqlalchemy import event

    from ingest.billing.customers import import_customers, import_numbers

    import_customers(app, csv_file("customers.csv", "account,name,tariff\n"
                                   + "".join(f"A{i},Account {i},\n" for i in range(100))))
    text = NUMBERS_HEADER + "".join(f"0{7700000000 + i},A{i % 100},2026-01-01,,mobile\n" for i in range(10_000))
    path = csv_file("numbers.csv", text)
    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(executemany)

    event.listen(app.catalog.engine, "before_cursor_execute", count)
    try:
        done = import_numbers(app, path)
    finally:
        event.remove(app.catalog.engine, "before_cursor_execute", count)
    assert (done.inserted, done.updated, done.unchanged) == (10_000, 0, 0)
    assert len(statements) < 40, len(statements)  # PostgreSQL's insertmanyvalues sends 1,000 rows a statement
    with app.catalog.read() as conn:
        from ingest.catalog.schema import numbers

        assert conn.execute(select(func.count()).select_from(numbers)).scalar() == 10_000
    again = import_numbers(app, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 10_000)


def test_a_broken_quote_is_refused_with_its_line(app, run, customers, csv_file):
    before = snapshot(app)
    message = refused(run, csv_file, "customers", 'account,name,tariff\nX1,One,\nX2,"Two" Ltd,standard\n')
    assert message == "customers.csv line 3: not readable as CSV: ',' expected after '\"'"
    assert snapshot(app) == before


COMMANDS = ["customers", "customers import", "customers list", "numbers", "numbers import", "numbers list",
            "features", "features import", "features list", "references", "references import", "references list"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_customer_data_command_has_help_with_an_example(command):
    result = CliRunner().invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and f"cdr {command}" in result.output


def test_the_configured_retail_tariffs_are_the_known_ones(make_config, csv_file):
    """Once the configuration defines tariffs, a customer must name a retail one: a typo or a wholesale tariff
    would leave everything of the customer's unpriced."""
    from tests.conftest import app_with

    from ingest.billing.customers import CustomerDataError, import_customers

    app = app_with(make_config, '[tariffs.standard]\n[tariffs.hero-wholesale]\nwholesale = true\n')
    try:
        for tariff, line in (("standrad", 3), ("hero-wholesale", 3)):
            path = csv_file("customers.csv", f"account,name,tariff\nA1,One,standard\nA2,Two,{tariff}\n")
            with pytest.raises(CustomerDataError) as caught:
                import_customers(app, path)
            assert str(caught.value) == (f"customers.csv line {line}, tariff: '{tariff}' is not a configured tariff "
                                         "(known: standard)")
        done = import_customers(app, csv_file("customers.csv", "account,name,tariff\nA1,One,standard\nA2,Two,\n"))
        assert done.inserted == 2
    finally:
        app.close()
