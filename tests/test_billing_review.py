"""Review of the billing run (ingest.billing.run, pricing, matching) against issue 12, through real loads on both
databases: what a billing team fears most (billing twice, the wrong customer, dropping something silently).
Late records and two drafts, a number re-assigned mid-month, a call's UTC date whatever the PostgreSQL session
time zone, sign-aware half-up rounding, pro-rata day counting, tie-breaking of rates."""

from __future__ import annotations

from datetime import date, timezone
from decimal import Decimal

import pytest
from sqlalchemy import event, func, select

from ingest.app import App
from ingest.billing.matching import unmatched_calls
from ingest.billing.run import BillingError, build_run, lock_run
from ingest.catalog.schema import billed_sources
from ingest.plugins import load_checked_config
from tests.test_billing_run import (  # noqa: F401  (bapp: the fixture)
    BILLING,
    CUSTOMERS,
    NUMBERS,
    REFERENCES,
    bapp,
    call,
    charge,
    customer_data,
    exceptions,
    lines,
    load_calls,
    load_charges,
)


def billed(app) -> list[tuple[str, int, int]]:
    with app.catalog.read() as conn:
        return [tuple(r) for r in conn.execute(select(billed_sources.c.source_kind, billed_sources.c.source_id,
                                                      billed_sources.c.run_id)
                                               .order_by(billed_sources.c.source_kind,
                                                         billed_sources.c.source_id))]


# -- late records and two drafts -------------------------------------------------------------------------------------


def test_a_late_record_in_two_drafts_is_billed_once_and_the_second_lock_refused_in_one_line(bapp):
    load_charges(bapp, [charge()])
    october = build_run(bapp, "2026-10", actor="t")
    lock_run(bapp, october.run_id, actor="t")
    load_charges(bapp, [charge(description="late", cost="11.00")], name="acme_sdr_late.csv")
    december = build_run(bapp, "2026-12", actor="t")  # no November run yet: December takes it
    november = build_run(bapp, "2026-11", actor="t")  # November is the next run after October: it takes it too
    assert [(x["description"], x["late"]) for x in lines(bapp, november.run_id)] == [("late", True)]
    lock_run(bapp, november.run_id, actor="t")
    with pytest.raises(BillingError, match=r"already billed by locked run .*rebuild the draft") as refused:
        lock_run(bapp, december.run_id, actor="t")
    assert "\n" not in str(refused.value)
    rebuilt = build_run(bapp, "2026-12", actor="t")
    assert rebuilt.lines == 0
    lock_run(bapp, rebuilt.run_id, actor="t")
    assert len(billed(bapp)) == 2  # October's and the late one, each once


def test_an_unallocated_charge_of_a_locked_month_is_billed_late_once_after_a_rematch(bapp):
    from ingest.billing.allocation import rematch

    load_charges(bapp, [charge(), charge("REF9", description="ref9")])
    october = build_run(bapp, "2026-10", actor="t")
    assert october.exceptions == {"unallocated": 1}
    lock_run(bapp, october.run_id, actor="t")
    customer_data(bapp, "account,name,tariff\nA9,Nine Ltd,standard\n", references="carrier,reference,account\n"
                  "acme,REF9,A9\n")
    rematch(bapp, actor="t")
    november = build_run(bapp, "2026-11", actor="t")
    assert [(x["description"], x["account"], x["late"]) for x in lines(bapp, november.run_id)] == [
        ("ref9", "A9", True)]
    lock_run(bapp, november.run_id, actor="t")
    assert build_run(bapp, "2026-12", actor="t").lines == 0


# -- calls: the UTC start date, a number re-assigned mid-month, whatever the session time zone -------------------------


ZONES = ["UTC", "Pacific/Auckland", "America/Los_Angeles"]


def zone_of(app) -> str:
    return app._review_zone


@pytest.fixture(params=ZONES)
def zapp(request, make_config, monkeypatch, database_url):
    """bapp, its PostgreSQL sessions in a time zone. The catalog sets every session to UTC on connect (and PGTZ
    makes no difference): this sets the zone after that, as a server or role default the code did not expect
    would, to show that no date depends on it."""
    if database_url.startswith("sqlite") and request.param != "UTC":
        pytest.skip("the session time zone is PostgreSQL's")
    application = App(load_checked_config(make_config(BILLING), env={}), actor="tester")
    engine = application.catalog.engine
    if engine.dialect.name == "postgresql":
        def zone(dbapi_connection, _record):
            dbapi_connection.execute(f"SET TIME ZONE '{request.param}'")
            dbapi_connection.commit()

        event.listen(engine, "connect", zone)
        engine.dispose()
    customer_data(application, CUSTOMERS + "A4,Delta Ltd,standard\n",
                  NUMBERS + "02079460009,A1,2026-01-01,2026-10-15,geographic\n"
                            "02079460009,A4,2026-10-16,,geographic\n", REFERENCES)
    application.__dict__["_review_zone"] = request.param
    yield application
    application.close()


def test_calls_go_to_the_account_holding_the_number_on_their_utc_date(zapp):
    if zapp.catalog.engine.dialect.name == "postgresql":
        with zapp.catalog.read() as conn:
            assert conn.execute(select(func.current_setting("TimeZone"))).scalar_one() == \
                zone_of(zapp)
    load_calls(zapp, [call(1, number="02079460009", at="2026-10-15 23:30:00", TextDesc1="old holder last day"),
                      call(2, number="02079460009", at="2026-10-16 00:30:00", TextDesc1="new holder first day"),
                      call(3, at="2026-10-31 23:30:00", TextDesc1="october last half hour"),
                      call(4, at="2026-11-01 00:30:00", TextDesc1="november first half hour"),
                      call(5, at="2026-09-30 23:30:00", TextDesc1="september last half hour")])
    october = build_run(zapp, "2026-10", actor="t")
    got = {x["description"]: (x["account"], x["item_date"]) for x in lines(zapp, october.run_id)}
    assert got == {"old holder last day": ("A1", date(2026, 10, 15)),
                   "new holder first day": ("A4", date(2026, 10, 16)),
                   "october last half hour": ("A1", date(2026, 10, 31))}
    november = build_run(zapp, "2026-11", actor="t")
    assert [(x["description"], x["item_date"]) for x in lines(zapp, november.run_id)] == [
        ("november first half hour", date(2026, 11, 1))]
    september = build_run(zapp, "2026-09", actor="t")
    assert [x["description"] for x in lines(zapp, september.run_id)] == ["september last half hour"]
    assert unmatched_calls(zapp, period="2026-10") == []


# -- pricing through real loads --------------------------------------------------------------------------------------


def test_credits_round_half_up_away_from_zero_and_positives_up(bapp):
    # CR: markup 0: the carrier cost itself, rounded to pence half-up, away from zero for a credit
    load_charges(bapp, [charge(product="CR", cost="0.025", description="plus half"),
                        charge(product="CR", cost="-0.025", description="minus half"),
                        charge(product="CR", cost="-0.0249", description="minus under half"),
                        charge(product="CR", cost="-12.345", description="credit"),
                        # SUP: cost + 20%: -7.125 x 1.2 = -8.55 exactly; -0.0125 x 1.2 = -0.015 -> -0.02
                        charge(product="SUP", cost="-7.125", description="support credit"),
                        charge(product="SUP", cost="-0.0125", description="support tiny credit")])
    run = build_run(bapp, "2026-10", actor="t")
    got = {x["description"]: (x["retail"], x["margin"]) for x in lines(bapp, run.run_id)}
    assert got == {"plus half": (Decimal("0.03"), Decimal("0.005")),
                   "minus half": (Decimal("-0.03"), Decimal("-0.005")),
                   "minus under half": (Decimal("-0.02"), Decimal("0.0049")),
                   "credit": (Decimal("-12.35"), Decimal("-0.005")),
                   "support credit": (Decimal("-8.55"), Decimal("-1.425")),
                   "support tiny credit": (Decimal("-0.02"), Decimal("-0.0075"))}


@pytest.mark.parametrize("period, start, end, expected", [
    # 12.00 x covered / days in the month, both ends included
    ("2026-11", "2026-11-16", "2026-11-30", Decimal("6.00")),     # 15 of 30
    ("2026-11", "2026-11-30", "2026-11-30", Decimal("0.40")),     # 1 of 30
    ("2027-02", "2027-02-15", "", Decimal("6.00")),               # 14 of 28 (open end: to the month's end)
    ("2028-02", "2028-02-15", "2028-02-29", Decimal("6.21")),     # 15 of 29 = 6.2068..
    ("2026-12", "2026-12-01", "2026-12-31", Decimal("12.00")),    # the whole of a 31-day month
    ("2026-12", "2026-12-17", "2027-01-16", Decimal("12.00")),    # 15 of 31 + 16 of 31: a whole month, in two parts
    ("2026-10", "2026-10-01", "2026-12-31", Decimal("36.00")),    # three whole months
    ("2026-10", "2026-10-22", "2026-12-05", Decimal("17.81")),    # 10/31 + November + 5/31 = 1.4838.. months
])
def test_pro_rata_counts_the_inclusive_days_of_each_month_it_covers(bapp, period, start, end, expected):
    load_charges(bapp, [charge(product="BB", start=start, end=end, description="bb")],
                 name=f"acme_sdr_{period.replace('-', '')}.csv")
    run = build_run(bapp, period, actor="t")
    [line] = lines(bapp, run.run_id)
    assert (line["item_date"], line["retail"]) == (date.fromisoformat(start), expected)


TIES = BILLING + """
[tariffs.ties]
[[tariffs.ties.usage]]
per_minute = "9.00"
[[tariffs.ties.usage]]
direction = "outbound"
per_minute = "0.20"
[[tariffs.ties.usage]]
call_type = "Mobile"
per_minute = "0.30"
[[tariffs.ties.usage]]
call_type = "Mobile"
carrier = "hero"
per_minute = "0.40"
[[tariffs.ties.fixed]]
carrier = "acme"
charge = "fixed"
amount = "1.00"
[[tariffs.ties.fixed]]
transaction_type = "line-rental"
charge = "fixed"
amount = "2.00"
[[tariffs.ties.fixed]]
charge = "fixed"
amount = "3.00"
"""


def test_the_most_specific_rate_wins_and_a_tie_goes_to_the_first_in_the_file(make_config):
    app = App(load_checked_config(make_config(TIES), env={}), actor="tester")
    try:
        customer_data(app, "account,name,tariff\nT1,Ties Ltd,ties\n",
                      "number,account,valid_from,valid_to,number_type\n02079460001,T1,2026-01-01,,geographic\n",
                      "carrier,reference,account\nacme,REF1,T1\n")
        load_charges(app, [charge(description="rental"), charge(product="SUP", description="support")])
        load_calls(app, [call(1, seconds="60", TextDesc1="mobile"),
                         call(2, seconds="60", CallType="Local", TextDesc1="local")])
        run = build_run(app, "2026-10", actor="t")
        got = {x["description"]: (x["retail"], x["rate"]) for x in lines(app, run.run_id)}
        # rental: carrier=acme and transaction_type=line-rental both one key: the first in the file wins
        assert got["rental"] == (Decimal("1.00"), "ties.fixed[0]")
        assert got["support"] == (Decimal("1.00"), "ties.fixed[0]")
        # mobile: call_type and carrier (two keys) beats call_type alone; local: direction beats no key
        assert got["mobile"] == (Decimal("0.40"), "ties.usage[3]")
        assert got["local"] == (Decimal("0.20"), "ties.usage[1]")
    finally:
        app.close()


# -- a lock of a draft the data has moved away from ------------------------------------------------------------------


def test_a_lock_refuses_a_draft_whose_charge_was_reallocated_since_it_was_built(bapp):
    from ingest.billing.allocation import allocate_charge

    load_charges(bapp, [charge(description="moved"), charge("REF2", description="stays")])
    run = build_run(bapp, "2026-10", actor="t")
    moved = next(x for x in lines(bapp, run.run_id) if x["description"] == "moved")
    assert moved["account"] == "A1"
    allocate_charge(bapp, moved["source_id"], "A2", actor="t")  # corrected after the draft was built
    with pytest.raises(BillingError, match=rf"charge {moved['source_id']} .*A2.*rebuild the draft") as refused:
        lock_run(bapp, run.run_id, actor="t")
    assert "\n" not in str(refused.value)
    assert billed(bapp) == []
    rebuilt = build_run(bapp, "2026-10", actor="t")
    assert {x["description"]: x["account"] for x in lines(bapp, rebuilt.run_id)} == {"moved": "A2", "stays": "A2"}
    assert lock_run(bapp, rebuilt.run_id, actor="t")["lines"] == 2


def test_a_lock_refuses_a_draft_whose_call_number_changed_hands_since_it_was_built(bapp):
    load_calls(bapp, [call(1, number="02079460002", at="2026-10-20 10:00:00", TextDesc1="moved call")])
    run = build_run(bapp, "2026-10", actor="t")
    [line] = lines(bapp, run.run_id)
    assert line["account"] == "A2"
    # the number's holder corrected: A2 only from the 21st, A3 before (a late customer-data fix)
    customer_data(bapp, "account,name,tariff\nA4,Delta Ltd,standard\n",
                  "number,account,valid_from,valid_to,number_type\n"
                  "02079460002,A2,2026-10-21,,geographic\n02079460002,A4,2026-10-01,2026-10-20,geographic\n")
    with pytest.raises(BillingError, match=r"call .*A4.*rebuild the draft"):
        lock_run(bapp, run.run_id, actor="t")
    rebuilt = build_run(bapp, "2026-10", actor="t")
    assert [x["account"] for x in lines(bapp, rebuilt.run_id)] == ["A4"]
    lock_run(bapp, rebuilt.run_id, actor="t")


def test_a_lowercase_currency_code_rounds_to_its_minor_unit(bapp):
    # JPY has no minor unit: 100.4 -> 100, whether the carrier wrote the code in capitals or not
    load_charges(bapp, [charge(product="CR", cost="100.4", currency="jpy", description="lower"),
                        charge(product="CR", cost="100.5", currency="JPY", description="upper")])
    run = build_run(bapp, "2026-10", actor="t")
    assert {x["description"]: x["retail"] for x in lines(bapp, run.run_id)} == {
        "lower": Decimal("100"), "upper": Decimal("101")}


WHOLESALE_USAGE = BILLING + """
[carriers.hero]
format = "hero-feed"
same_name_rule = false
wholesale_tariff = "hero-wholesale"
[[carriers.hero.files]]
pattern = "hero_cdr_{year}{month}{day}*"
type = "cdr"
cadence = "daily"
[tariffs.hero-wholesale]
wholesale = true
[[tariffs.hero-wholesale.usage]]
call_type = "Mobile"
per_minute = "0.05"
increment_seconds = 30
[[tariffs.hero-wholesale.usage]]
markup_percent = "0"
"""


def test_the_expected_cost_of_calls_is_the_carriers_wholesale_tariff(make_config):
    app = App(load_checked_config(make_config(WHOLESALE_USAGE, carriers=False), env={}), actor="tester")
    try:
        customer_data(app, CUSTOMERS, NUMBERS, REFERENCES)
        load_calls(app, [call(1, seconds="61", TextDesc1="mobile"),
                         call(2, seconds="61", CallType="Local", TextDesc1="local", ChargeExcl="0.0125")])
        run = build_run(app, "2026-10", actor="t")
        got = {x["description"]: (x["retail"], x["cost"], x["expected_cost"], x["rate"])
               for x in lines(app, run.run_id)}
        # mobile: retail 0.15 x 120 s; wholesale 0.05 x 90 s / 60 = 0.075 -> 0.08
        # local: retail 0.06 x 61 / 60 = 0.061 -> 0.06; wholesale: the charge itself, 0.0125 -> 0.01
        assert got == {"mobile": (Decimal("0.30"), Decimal("0.10"), Decimal("0.08"), "standard.usage[0]"),
                       "local": (Decimal("0.06"), Decimal("0.0125"), Decimal("0.01"), "standard.usage[1]")}
    finally:
        app.close()


# -- a charge without a date is reported in some run, whatever its file's billing period -------------------------------


def test_an_undated_charge_of_a_file_with_no_billing_period_is_reported_in_the_month_of_its_first_record(bapp):
    mixed = load_charges(bapp, [charge(description="oct"),
                                charge(start="2026-11-01", end="2026-11-30", description="nov"),
                                charge(start="", end="", description="undated")], name="acme_sdr_mixed.csv")
    assert mixed["billing_period"] is None  # records of two months, no date in its name
    october = build_run(bapp, "2026-10", actor="t")
    [undated] = exceptions(bapp, october.run_id)
    assert (undated["exception"], undated["reason"], undated["item_date"]) == ("unallocated", "no-date",
                                                                                date(2026, 10, 1))
    assert exceptions(bapp, build_run(bapp, "2026-11", actor="t").run_id) == []  # once, not in every run


def test_a_file_of_undated_charges_only_is_reported_in_the_month_it_was_received(bapp):
    only = load_charges(bapp, [charge(start="", end="", description="undated")], name="acme_sdr_nodate.csv")
    assert only["billing_period"] is None and only["records_from"] is None
    received = only["received_at"]
    received = date.fromisoformat(str(received)[:10]) if not hasattr(received, "astimezone") else \
        received.astimezone(timezone.utc).date()
    period = f"{received:%Y-%m}"
    run = build_run(bapp, period, actor="t")
    assert [(e["exception"], e["reason"]) for e in exceptions(bapp, run.run_id)] == [("unallocated", "no-date")]


def test_an_undated_charge_of_a_late_file_for_a_locked_month_is_reported_in_the_next_run(bapp):
    load_charges(bapp, [charge()])
    october = build_run(bapp, "2026-10", actor="t")
    lock_run(bapp, october.run_id, actor="t")
    late = load_charges(bapp, [charge(description="late"), charge(start="", end="", description="undated")],
                        name="acme_sdr_late.csv")
    assert late["billing_period"] == "2026-10"
    november = build_run(bapp, "2026-11", actor="t")
    assert [(x["description"], x["late"]) for x in lines(bapp, november.run_id)] == [("late", True)]
    assert [(e["exception"], e["reason"], e["file_id"]) for e in exceptions(bapp, november.run_id)] == [
        ("unallocated", "no-date", late["id"])]


# -- a lock racing a rebuild ------------------------------------------------------------------------------------------


def test_a_lock_racing_a_rebuild_waits_for_it_and_locks_the_rebuilt_lines(bapp, monkeypatch):
    import threading
    import time

    from ingest.billing import run as run_module

    load_charges(bapp, [charge(description="first")])
    october = build_run(bapp, "2026-10", actor="t")
    load_charges(bapp, [charge("REF2", description="second")], name="acme_sdr_202610b.csv")
    inside = threading.Event()
    slow = run_module._late_months

    def late_months_slowly(conn, period):  # called inside the rebuild's transaction, its lines deleted
        inside.set()
        time.sleep(1.0)
        return slow(conn, period)

    monkeypatch.setattr(run_module, "_late_months", late_months_slowly)
    rebuilt: list = []
    rebuild = threading.Thread(target=lambda: rebuilt.append(build_run(bapp, "2026-10", actor="t")))
    rebuild.start()
    assert inside.wait(10)
    locked = lock_run(bapp, october.run_id, actor="t")  # waits for the rebuild to commit
    rebuild.join(10)
    assert rebuilt and rebuilt[0].lines == 2
    assert locked["lines"] == 2 and len(billed(bapp)) == 2
