"""Pricing (ingest.billing.pricing), exact, on both databases: fixed, pro-rata and markup charges, usage
increments and minimums, per-second rates, markups on calls, half-up rounding to the currency's minor unit
(sign-aware for credits), the most specific rate winning (ties: the first in the file), match keys feature and
number type. Every expected price is worked by hand in the comments."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from ingest.app import App
from ingest.billing import pricing
from ingest.billing.pricing import const, markup_factor, minor_unit, rate_rows, round_half_up
from ingest.billing.run import BillingError, build_run, list_runs
from ingest.plugins import load_checked_config
from tests.test_billing_run import call, charge, customer_data, exceptions, lines, load_calls, load_charges

PRICING = """
[carriers.acme]
format = "generic-charges-csv"
[carriers.acme.products]
LR = "line-rental"
BB = "broadband"
SUP = "support"
CR = "credit"
XL = "extra"
MI = "misc"

[tariffs.retail]
[[tariffs.retail.fixed]]
charge = "fixed"
amount = "1.00"
[[tariffs.retail.fixed]]
transaction_type = "line-rental"
number_type = "mobile"
charge = "fixed"
amount = "20.00"
[[tariffs.retail.fixed]]
transaction_type = "line-rental"
charge = "fixed"
amount = "12.00"
[[tariffs.retail.fixed]]
transaction_type = "broadband"
charge = "pro-rata"
amount = "12.00"
[[tariffs.retail.fixed]]
transaction_type = "support"
charge = "markup"
markup_percent = "20"
[[tariffs.retail.fixed]]
transaction_type = "support"
feature = "support"
charge = "markup"
markup_percent = "50"
[[tariffs.retail.fixed]]
transaction_type = "credit"
charge = "markup"
markup_percent = "0"
[[tariffs.retail.fixed]]
transaction_type = "extra"
charge = "fixed"
amount = "3.871"
[[tariffs.retail.fixed]]
transaction_type = "extra"
charge = "fixed"
amount = "9.99"

[[tariffs.retail.usage]]
call_type = "Mobile"
per_minute = "0.15"
increment_seconds = 60
minimum_seconds = 60
[[tariffs.retail.usage]]
call_type = "Mobile"
direction = "inbound"
per_minute = "0.01"
[[tariffs.retail.usage]]
call_type = "Local"
per_minute = "0.06"
[[tariffs.retail.usage]]
call_type = "National"
per_minute = "0.10"
increment_seconds = 6
minimum_seconds = 30
[[tariffs.retail.usage]]
call_type = "International"
markup_percent = "10"
"""


@pytest.fixture
def papp(make_config):
    application = App(load_checked_config(make_config(PRICING), env={}), actor="tester")
    customer_data(application, "account,name,tariff\nA1,Alpha Ltd,retail\nA2,Beta Ltd,retail\n",
                  "number,account,valid_from,valid_to,number_type\n"
                  "02079460001,A1,2026-01-01,,geographic\n07700900001,A1,2026-01-01,,mobile\n",
                  "carrier,reference,account\nacme,REF1,A1\nacme,REF2,A2\n",
                  "account,number,feature,quantity,valid_from,valid_to\nA1,,support,1,2026-01-01,\n")
    yield application
    application.close()


def priced(app, run_id) -> dict[str, tuple]:
    return {line["description"]: (line["retail"], line["rate"]) for line in lines(app, run_id)}


def test_fixed_pro_rata_and_markup_charges_exactly(papp):
    load_charges(papp, [
        charge(description="rental"),                                    # 12.00 x 1
        charge(description="rental x3", quantity="3"),                   # 12.00 x 3 = 36.00
        charge(description="rental x0.5", quantity="0.5"),               # 12.00 x 0.5 = 6.00
        charge(number_reference="07700900001", description="mobile rental"),  # number_type mobile: 20.00
        charge(product="BB", description="bb whole month"),              # 31 of 31 days: 12.00
        # 10 of October's 31 days and 21 of November's 30: 12.00 x (10/31 + 21/30) = 12.270967 -> 12.27
        charge(product="BB", start="2026-10-22", end="2026-11-21", description="bb 10 of 31"),
        charge(product="BB", start="2026-10-17", end="", description="bb open end"),  # 15 of 31: 5.806451 -> 5.81
        charge(product="BB", start="2026-10-30", end="2026-10-30", description="bb one day"),  # 0.387096 -> 0.39
        charge("REF2", "SUP", "7.125", description="support 20%"),       # 7.125 x 1.2 = 8.55
        charge("REF1", "SUP", "7.125", description="support feature 50%"),  # A1 has the feature: 10.6875 -> 10.69
        charge("REF2", "SUP", "-7.125", description="support credit"),   # -8.55
        charge("REF2", "CR", "-0.005", description="credit half"),       # -0.005 -> -0.01 (half away from zero)
        charge("REF2", "CR", "-0.004999", description="credit under half"),  # -> 0.00
        charge("REF2", "CR", "0.015", description="half up"),            # 0.015 -> 0.02
        charge(product="XL", description="extra"),                       # 3.871 -> 3.87; the first of two equals
        charge(product="MI", description="misc"),                        # only the catch-all: 1.00
    ])
    summary = build_run(papp, "2026-10", actor="tester")
    assert priced(papp, summary.run_id) == {
        "rental": (Decimal("12.00"), "retail.fixed[2]"),
        "rental x3": (Decimal("36.00"), "retail.fixed[2]"),
        "rental x0.5": (Decimal("6.00"), "retail.fixed[2]"),
        "mobile rental": (Decimal("20.00"), "retail.fixed[1]"),
        "bb whole month": (Decimal("12.00"), "retail.fixed[3]"),
        "bb 10 of 31": (Decimal("12.27"), "retail.fixed[3]"),
        "bb open end": (Decimal("5.81"), "retail.fixed[3]"),
        "bb one day": (Decimal("0.39"), "retail.fixed[3]"),
        "support 20%": (Decimal("8.55"), "retail.fixed[4]"),
        "support feature 50%": (Decimal("10.69"), "retail.fixed[5]"),
        "support credit": (Decimal("-8.55"), "retail.fixed[4]"),
        "credit half": (Decimal("-0.01"), "retail.fixed[6]"),
        "credit under half": (Decimal("0.00"), "retail.fixed[6]"),
        "half up": (Decimal("0.02"), "retail.fixed[6]"),
        "extra": (Decimal("3.87"), "retail.fixed[7]"),
        "misc": (Decimal("1.00"), "retail.fixed[0]"),
    }
    assert exceptions(papp, summary.run_id) == []


def test_pro_rata_in_a_28_day_month(papp):
    load_charges(papp, [charge(product="BB", start="2026-02-15", end="2026-03-14", description="feb half")],
                 name="acme_sdr_202602.csv")
    summary = build_run(papp, "2026-02", actor="tester")
    # 14 of February's 28 days and 14 of March's 31: 12.00 x (14/28 + 14/31) = 11.419354 -> 11.42
    assert priced(papp, summary.run_id) == {"feb half": (Decimal("11.42"), "retail.fixed[3]")}


def test_usage_increments_minimums_per_second_and_markup_exactly(papp):
    load_calls(papp, [
        call(1, seconds="61", TextDesc1="mobile 61"),      # 120 s x 0.15 / 60 = 0.30
        call(2, seconds="0", TextDesc1="mobile 0"),        # 0 s stays 0: 0.00
        call(3, seconds="1", TextDesc1="mobile 1"),        # minimum 60 s: 0.15
        call(4, seconds="60", TextDesc1="mobile 60"),      # 0.15
        call(5, seconds="61", Direction="inbound", TextDesc1="mobile inbound"),  # the more specific: 61 s at 0.01
        call(6, seconds="61", CallType="Local", TextDesc1="local 61"),  # 0.061 -> 0.06
        call(7, seconds="75", CallType="Local", TextDesc1="local 75"),  # 0.075 -> 0.08
        call(8, seconds="10", CallType="National", TextDesc1="national 10"),  # minimum 30 s: 0.05
        call(9, seconds="31", CallType="National", TextDesc1="national 31"),  # 36 s: 0.06
        call(10, CallType="International", ChargeExcl="1.0000", TextDesc1="intl 1.00"),  # 1.10
        call(11, CallType="International", ChargeExcl="0.0045", TextDesc1="intl tiny"),  # 0.00495 -> 0.00
        call(12, CallType="International", ChargeExcl="0.0455", TextDesc1="intl half"),  # 0.05005 -> 0.05
        call(13, seconds="", Seconds="90", TextDesc1="billed seconds only"),  # 90 -> 120 s: 0.30
    ])
    summary = build_run(papp, "2026-10", actor="tester")
    got = {line["description"]: (line["retail"], line["seconds"]) for line in lines(papp, summary.run_id)}
    assert got == {
        "mobile 61": (Decimal("0.30"), 120), "mobile 0": (Decimal("0.00"), 0), "mobile 1": (Decimal("0.15"), 60),
        "mobile 60": (Decimal("0.15"), 60), "mobile inbound": (Decimal("0.01"), 61),
        "local 61": (Decimal("0.06"), 61), "local 75": (Decimal("0.08"), 75),
        "national 10": (Decimal("0.05"), 30), "national 31": (Decimal("0.06"), 36),
        "intl 1.00": (Decimal("1.10"), 61), "intl tiny": (Decimal("0.00"), 61), "intl half": (Decimal("0.05"), 61),
        "billed seconds only": (Decimal("0.30"), 120),
    }


def test_rounding_follows_the_currencys_minor_unit(papp):
    load_charges(papp, [
        charge("REF2", "CR", "1234.5", currency="JPY", description="yen"),      # 0 places: 1235
        charge("REF2", "CR", "-1234.5", currency="JPY", description="yen credit"),  # -1235
        charge("REF2", "CR", "1.2345", currency="BHD", description="dinar"),    # 3 places: 1.235
        charge("REF2", "CR", "1.2344", currency="KWD", description="kuwaiti"),  # 1.234
        charge("REF2", "CR", "1.235", currency="USD", description="dollar"),    # 2 places: 1.24
        charge("REF2", "CR", "1.235", description="default"),                   # GBP: 1.24
    ])
    summary = build_run(papp, "2026-10", actor="tester")
    got = {line["description"]: (line["retail"], line["currency"]) for line in lines(papp, summary.run_id)}
    assert got == {"yen": (Decimal(1235), "JPY"), "yen credit": (Decimal(-1235), "JPY"),
                   "dinar": (Decimal("1.235"), "BHD"), "kuwaiti": (Decimal("1.234"), "KWD"),
                   "dollar": (Decimal("1.24"), "USD"), "default": (Decimal("1.24"), "GBP")}


@pytest.mark.parametrize(("n", "d", "step", "expected"), [
    (3_871_000, 1, 10_000, 3_870_000),       # 3.871 -> 3.87
    (3_875_000, 1, 10_000, 3_880_000),       # 3.875 -> 3.88
    (-5_000, 1, 10_000, -10_000),            # -0.005 -> -0.01
    (-4_999, 1, 10_000, 0),                  # -0.004999 -> 0.00
    (12_000_000 * 10, 31, 10_000, 3_870_000),  # 12.00 x 10 / 31 = 3.8709... -> 3.87
    (-12_000_000 * 10, 31, 10_000, -3_870_000),
    (15, 2, 1, 8),                           # 7.5 millionths -> 8
    (-15, 2, 1, -8),
    (0, 7, 10_000, 0),
    (499_999, 1, 1_000_000, 0),              # 0.499999 -> 0 (no minor unit)
    (500_000, 1, 1_000_000, 1_000_000),      # 0.5 -> 1
])
def test_round_half_up_in_sql(app, n, d, step, expected):
    with app.catalog.read() as conn:
        assert conn.execute(select(round_half_up(const(n), const(d), const(step)))).scalar_one() == expected


def test_minor_units_and_markup_factors():
    assert (minor_unit("GBP"), minor_unit(None), minor_unit("JPY"), minor_unit("krw"), minor_unit("OMR")) == (
        2, 2, 0, 0, 3)
    assert markup_factor(Decimal("20")) == (6, 5)
    assert markup_factor(Decimal("0")) == (1, 1)
    assert markup_factor(Decimal("12.5")) == (9, 8)
    assert markup_factor(Decimal("0.000001")) == (100000001, 100000000)


def test_rates_are_ranked_most_specific_first_then_in_file_order(make_config):
    config = load_checked_config(make_config(PRICING), env={})
    ranked = [(row["label"], row["rank"]) for row in rate_rows(config) if row["kind"] == "fixed"]
    assert [label for label, _ in ranked] == [
        "retail.fixed[1]", "retail.fixed[5]", "retail.fixed[2]", "retail.fixed[3]", "retail.fixed[4]",
        "retail.fixed[6]", "retail.fixed[7]", "retail.fixed[8]", "retail.fixed[0]"]
    usage = {row["label"]: row for row in rate_rows(config) if row["kind"] == "usage"}
    assert (usage["retail.usage[0]"]["amount"], usage["retail.usage[0]"]["increment"],
            usage["retail.usage[0]"]["minimum"]) == (150_000, 60, 60)
    assert (usage["retail.usage[4]"]["charge"], usage["retail.usage[4]"]["fnum"],
            usage["retail.usage[4]"]["fden"]) == ("markup", 11, 10)
    assert pricing.UNIT == 1_000_000


def test_a_price_beyond_64_bit_arithmetic_refuses_the_build(papp):
    # 12.00 x 10^12 units is 1.2 x 10^19 millionths: more than a 64-bit integer holds
    load_charges(papp, [charge(quantity="1000000000000", description="huge")])
    with pytest.raises(BillingError, match="64-bit integer arithmetic"):
        build_run(papp, "2026-10", actor="tester")
    assert list_runs(papp) == []


def test_a_whole_quantity_keeps_the_range_of_millionths(papp):
    """12.00 x 10,000,000 whole units, fixed and pro-rata, is exact (in 10^-12 units it would not fit)."""
    load_charges(papp, [charge(quantity="10000000", description="many"),
                        charge(product="BB", start="2026-10-22", end="2026-10-31", quantity="10000000",
                               description="many part month")])
    summary = build_run(papp, "2026-10", actor="tester")
    assert priced(papp, summary.run_id) == {
        "many": (Decimal("120000000.00"), "retail.fixed[2]"),
        "many part month": (Decimal("38709677.42"), "retail.fixed[3]"),  # x 10/31 = 38709677.419..
    }
