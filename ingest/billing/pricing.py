"""Pricing by tariff, set-based, in exact integer arithmetic on millionths (both SQLite and PostgreSQL).

The typed tariffs (:mod:`.tariffs`) go into the SQL as a temporary table of rates (:func:`create_rates`), one
row per rate, each with a global ``rank``: its tariff's rates ordered most specific first (most match keys
given), then by their place in the file. The rate that prices a record is the lowest ranked of those that match
it (a correlated ``MIN(rank)``, :func:`best_rate`): "the most specific match wins; ties, the first in the
file". Charges look it up per charge; calls, once per distinct (tariff, call type, direction, carrier) of the
run's calls (:func:`fill_usage_picks`), joined on equality. No Python loop per record.

A wholesale tariff (``wholesale = true``) prices only the records of the carriers naming it
(``[carriers.NAME] wholesale_tariff``): their ``expected_cost``. It is NULL for a carrier without one, and when
none of its rates matches (that is not an exception: the retail price decides what is billed). An account's
``tariff`` must name a retail tariff; a wholesale one, or a name the configuration does not have, prices
nothing (``no-rate``, reason ``unknown-tariff``).

Money in SQL is BIGINT millionths. A price is computed as an exact fraction ``N / D`` of millionths (both whole
numbers) and rounded once, half-up (away from zero: a credit of -0.005 is -0.01), to the currency's minor unit
(:func:`round_half_up`; 2 places by default, 0 for JPY, KRW, ..., 3 for BHD, KWD, OMR, JOD, TND, ...:
:data:`MINOR_UNITS`). Integer division truncates on both databases for whole-number operands; the rounding is
written so that it only ever divides non-negative numbers.

Rules (a retail tariff prices ``retail``; the carrier's wholesale tariff, the same way, ``expected_cost``):

- Charges (``[[tariffs.NAME.fixed]]``; match keys ``transaction_type``, ``feature`` (the allocated feature's
  name), ``number_type`` (the allocated number's type on the charge's date), ``carrier``):

  - ``fixed``: amount × quantity (a charge without a quantity: 1).
  - ``pro-rata``: amount × quantity × the charge's period [period_start, period_end] in months: the days it
    covers of each month over that month's days, summed (22 October to 21 November: 10/31 + 21/30; 17 December
    to 16 January: 15/31 + 16/31, one month; a quarter: three). No period start: the whole amount (one month).
    No period end: to the end of its first month. A period that ends before it starts: nothing (0.00).
  - ``markup``: carrier cost × (1 + markup_percent / 100).

- Calls (``[[tariffs.NAME.usage]]``; match keys ``call_type``, ``direction``, ``carrier``): the seconds are the
  call's ``connected_seconds`` (else ``billed_seconds``, else 0). Billed seconds: 0 for a call of 0 seconds;
  else the seconds rounded UP to ``increment_seconds``, and at least ``minimum_seconds``
  (``max(minimum, ceil(seconds / increment) × increment)``). ``per_minute``: per_minute × billed seconds / 60.
  ``markup``: the carrier's charge (``charge_excl``, else ``charge``) × (1 + markup_percent / 100).

- Carrier cost: a charge's ``cost`` (tax excluded), else quantity × unit_cost (rounded half-up to a millionth),
  else 0; a call's ``charge_excl``, else ``charge``, else 0. Kept as given (not rounded to the minor unit).

- Currency: the record's own ``currency``, else ``[billing] currency`` (default GBP).

Range: the intermediate products are 64-bit integers, doubled by the rounding (amount × quantity in millionths
for a whole quantity; in 10^-12 units for a fractional one, which divides each range below by a million). They
hold a fixed amount × quantity up to about 4.6 × 10^12, a pro-rata one up to about 4.8 × 10^9 per month its
period spans (a month's days times the next's), a markup on a cost up to about 38,000 with a percentage given to six decimal places and far more
with a plain one ("20" is the factor 6/5: up to about 7.7 × 10^11). Beyond, PostgreSQL refuses the build
("bigint out of range"); SQLite would silently go to floating point, so the run checks that every price is an
integer there and refuses the build otherwise (:func:`ingest.billing.run.build_run`).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    type_coerce,
)

from ..catalog.db import drop_temp_table, fresh_temp_table
from ..config import Config
from ..layouts import MONEY_SCALE
from .tariffs import FIXED_KEYS, USAGE_KEYS, FixedRate, Tariff, UsageRate

UNIT = 10**MONEY_SCALE  # millionths in one

# Currencies whose minor unit is not two decimal places (ISO 4217); every other code has two.
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
                     "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def minor_unit(currency: str | None) -> int:
    """The decimal places of ``currency``'s minor unit (2 unless :data:`MINOR_UNITS` says otherwise)."""
    return MINOR_UNITS.get((currency or "").upper(), 2)


def const(value: int):
    """A whole number written into the SQL (a BIGINT-range literal: integer arithmetic on both databases)."""
    value = int(value)
    return literal_column(str(value) if value >= 0 else f"({value})", BigInteger)


def step_sql(currency):
    """Millionths in one minor unit of ``currency`` (a SQL expression): 10000 for 2 places."""
    by_places: dict[int, list[str]] = {}
    for code, places in MINOR_UNITS.items():
        by_places.setdefault(places, []).append(code)
    currency = func.upper(currency)  # as :func:`minor_unit`: a carrier may write the code in lower case
    return case(*((currency.in_(sorted(codes)), const(10 ** (MONEY_SCALE - places)))
                  for places, codes in sorted(by_places.items())),
                else_=const(10 ** (MONEY_SCALE - 2)))


def round_half_up(n, d, step):
    """``n / d`` millionths rounded half-up (away from zero on a tie) to a multiple of ``step`` millionths, as
    millionths. ``d`` and ``step`` are positive; only non-negative numbers are divided."""
    unit = d * step
    up = lambda x: ((x * const(2) + unit) // (unit * const(2))) * step  # noqa: E731  (x >= 0)
    return case((n < const(0), const(0) - up(const(0) - n)), else_=up(n))


def markup_factor(percent: Decimal) -> tuple[int, int]:
    """1 + percent/100 as a fraction in lowest terms (numerator, denominator): "20" -> (6, 5)."""
    factor = 1 + Fraction(percent) / 100
    return factor.numerator, factor.denominator


# -- The rates, as a temporary table ---------------------------------------------------------------------------

_rates_metadata = MetaData()
rates = Table(
    "tmp_bill_rates",
    _rates_metadata,
    Column("rank", Integer, primary_key=True),
    Column("tariff", String, nullable=False),
    Column("wholesale", Integer, nullable=False),  # 1: a wholesale rate, applying to for_carrier's records
    Column("for_carrier", String),
    Column("kind", String, nullable=False),  # fixed | usage
    Column("charge", String, nullable=False),  # fixed | pro-rata | markup | per-minute
    Column("amount", BigInteger),  # fixed, pro-rata: the amount; per-minute: the price of a minute (millionths)
    Column("fnum", BigInteger),  # markup: the factor 1 + percent/100 as fnum/fden
    Column("fden", BigInteger),
    Column("increment", BigInteger),
    Column("minimum", BigInteger),
    Column("transaction_type", String),
    Column("feature", String),
    Column("number_type", String),
    Column("carrier", String),
    Column("call_type", String),
    Column("direction", String),
    Column("label", String, nullable=False),  # "standard.fixed[0]"
    prefixes=["TEMPORARY"],
)


def rate_rows(config: Config) -> list[dict[str, Any]]:
    """The rows of :data:`rates` for the configuration's tariffs: every retail tariff's rates, and each
    carrier's wholesale tariff's rates (once per carrier naming it), ranked."""
    ordered: list[tuple[Tariff, int, str | None, str, FixedRate | UsageRate]] = []
    users: dict[str, list[str]] = {}
    for carrier in sorted(config.carriers.values(), key=lambda c: c.name):
        if getattr(carrier, "wholesale_tariff", None):
            users.setdefault(carrier.wholesale_tariff, []).append(carrier.name)
    for name, tariff in sorted(config.tariffs.items()):
        owners: list[str | None] = users.get(name, []) if tariff.wholesale else [None]  # type: ignore[assignment]
        for owner in owners:
            for kind, entries in (("fixed", tariff.fixed), ("usage", tariff.usage)):
                for rate in sorted(entries, key=lambda r: (-r.specificity, r.index)):
                    ordered.append((tariff, int(tariff.wholesale), owner, kind, rate))
    rows = []
    for rank, (tariff, wholesale, owner, kind, rate) in enumerate(ordered, start=1):
        row: dict[str, Any] = {key: None for key in (*FIXED_KEYS, *USAGE_KEYS)}
        row.update(rank=rank, tariff=tariff.name, wholesale=wholesale, for_carrier=owner, kind=kind,
                   label=f"{tariff.name}.{kind}[{rate.index}]", amount=None, fnum=None, fden=None,
                   increment=1, minimum=0)
        if isinstance(rate, FixedRate):
            row["charge"] = rate.charge
            row.update({key: getattr(rate, key) for key in FIXED_KEYS})
        else:
            row["charge"] = "per-minute" if rate.per_minute is not None else "markup"
            row.update({key: getattr(rate, key) for key in USAGE_KEYS})
            row.update(increment=rate.increment_seconds, minimum=rate.minimum_seconds)
        amount = rate.amount if isinstance(rate, FixedRate) else rate.per_minute
        if amount is not None:
            row["amount"] = int(amount * UNIT)
        if rate.markup_percent is not None:
            row["fnum"], row["fden"] = markup_factor(rate.markup_percent)
        rows.append(row)
    return rows


def create_rates(conn, config: Config) -> Table:
    """Create (in this transaction) and fill the temporary table of rates; :func:`drop_rates` drops it."""
    fresh_temp_table(conn, rates)
    rows = rate_rows(config)
    if rows:
        conn.execute(rates.insert(), rows)
    return rates


def drop_rates(conn) -> None:
    drop_temp_table(conn, rates)


def _key_matches(rate, record_values: dict[str, Any]):
    return and_(*(or_(rate.c[key].is_(None), rate.c[key] == value) for key, value in record_values.items()))


def best_rate(kind: str, *, retail_tariff=None, carrier=None, keys: dict[str, Any],
              wholesale_carriers: list[str] | None = None):
    """The rank of the rate pricing a record (a correlated scalar subquery; NULL when none matches): the
    retail rates of ``retail_tariff`` (an expression: the account's tariff), or with ``carrier`` the wholesale
    rates of that carrier's wholesale tariff. ``keys``: the record's value of each match key.
    ``wholesale_carriers``: the carriers whose wholesale tariff has rates of this kind (:func:`wholesale_users`);
    for any other carrier the subquery is not run at all."""
    r = rates.alias(f"r_{kind}_{'retail' if carrier is None else 'wholesale'}")
    which = (and_(r.c.wholesale == 0, r.c.tariff == retail_tariff) if carrier is None
             else and_(r.c.wholesale == 1, r.c.for_carrier == carrier))
    found = (select(func.min(r.c.rank)).where(r.c.kind == kind, which, _key_matches(r, keys))
             .scalar_subquery())
    if carrier is None:
        return found
    if not wholesale_carriers:
        return cast(null(), Integer)
    return case((carrier.in_(wholesale_carriers), found), else_=cast(null(), Integer))


def wholesale_users(config: Config, kind: str) -> list[str]:
    """The carriers whose wholesale tariff has rates of ``kind`` (fixed or usage)."""
    found = []
    for name, carrier in sorted(config.carriers.items()):
        tariff = config.tariffs.get(getattr(carrier, "wholesale_tariff", None) or "")
        if tariff is not None and tariff.wholesale and (tariff.fixed if kind == "fixed" else tariff.usage):
            found.append(name)
    return found


# Calls: the rate of each distinct (tariff, call type, direction, carrier) of the run's calls, looked up once
# (:func:`fill_usage_picks`) and joined on equality, rather than a correlated lookup per call. A NULL call type
# or direction is kept as '' (no rate key is ever '', so neither matches a rate that names one).
usage_picks = Table(
    "tmp_bill_usage_picks",
    _rates_metadata,
    Column("role", String, primary_key=True),  # retail | wholesale
    Column("tariff", String, primary_key=True),  # the retail tariff; '' for wholesale (by the carrier's)
    Column("call_type", String, primary_key=True),
    Column("direction", String, primary_key=True),
    Column("carrier", String, primary_key=True),
    Column("rank", Integer),
    prefixes=["TEMPORARY"],
)


def usage_key(table):
    """A call's (call_type, direction, carrier) as :data:`usage_picks` keeps them."""
    return (func.coalesce(table.c.call_type, ""), func.coalesce(table.c.direction, ""), table.c.carrier)


def fill_usage_picks(conn, config: Config, calls_table, scope) -> Table:
    """Create and fill :data:`usage_picks` for the calls of ``calls_table`` that ``scope`` selects: for each
    distinct key, the best retail rate of every retail tariff and the best rate of its carrier's wholesale tariff."""
    from sqlalchemy import true

    fresh_temp_table(conn, usage_picks)
    call_type, direction, carrier = usage_key(calls_table)
    k = (select(call_type.label("call_type"), direction.label("direction"), carrier.label("carrier"))
         .where(scope).distinct().subquery("k"))
    t = (select(rates.c.tariff).where(rates.c.kind == "usage", rates.c.wholesale == 0).distinct().subquery("t"))
    keys = {"call_type": k.c.call_type, "direction": k.c.direction, "carrier": k.c.carrier}
    columns = ("role", "tariff", "call_type", "direction", "carrier", "rank")
    conn.execute(usage_picks.insert().from_select(columns, select(
        literal_column("'retail'", String), t.c.tariff, k.c.call_type, k.c.direction, k.c.carrier,
        best_rate("usage", retail_tariff=t.c.tariff, keys=keys)).select_from(k.join(t, true()))))
    wholesale = wholesale_users(config, "usage")
    if wholesale:
        conn.execute(usage_picks.insert().from_select(columns, select(
            literal_column("'wholesale'", String), literal_column("''", String), k.c.call_type, k.c.direction,
            k.c.carrier, best_rate("usage", carrier=k.c.carrier, keys=keys, wholesale_carriers=wholesale))
            .select_from(k)))
    return usage_picks


def drop_usage_picks(conn) -> None:
    drop_temp_table(conn, usage_picks)


# -- Date arithmetic per dialect (charges' pro-rata) -----------------------------------------------------------


def month_start(dialect: str, day):
    if dialect == "sqlite":
        return func.date(day, "start of month")
    return cast(func.date_trunc("month", cast(day, DateTime())), Date)


def month_end(dialect: str, day):
    if dialect == "sqlite":
        return func.date(day, "start of month", "+1 month", "-1 day")
    return cast(func.date_trunc("month", cast(day, DateTime())) + text("interval '1 month' - interval '1 day'"),
                Date)


def days_between(dialect: str, first, last):
    """Days from ``first`` to ``last``, both included (a whole number; may be <= 0)."""
    if dialect == "sqlite":
        return type_coerce(cast(func.julianday(last) - func.julianday(first), Integer) + const(1), BigInteger)
    return type_coerce(type_coerce(last, BigInteger) - type_coerce(first, BigInteger) + const(1), BigInteger)


def day_of_month(dialect: str, day):
    if dialect == "sqlite":
        return cast(func.strftime("%d", day), BigInteger)
    return cast(func.extract("day", day), BigInteger)


def earlier(a, b):
    return case((a < b, a), else_=b)


def later(a, b):
    return case((a > b, a), else_=b)


def charge_cost(c):
    """A charge's carrier cost in millionths: ``cost``, else quantity × unit_cost (half-up to a millionth), else 0."""
    product = round_half_up(c.quantity * c.unit_cost, const(UNIT), const(1))
    return func.coalesce(c.cost, product, const(0))


def call_cost(c):
    """A call's carrier cost in millionths: ``charge_excl``, else ``charge``, else 0."""
    return func.coalesce(c.charge_excl, c.charge, const(0))


def month_number(dialect: str, day):
    """year × 12 + month: consecutive months are consecutive numbers."""
    if dialect == "sqlite":
        return (cast(func.strftime("%Y", day), BigInteger) * const(12)
                + cast(func.strftime("%m", day), BigInteger))
    return cast(func.extract("year", day), BigInteger) * const(12) + cast(func.extract("month", day), BigInteger)


def charge_fraction(dialect: str, r, *, quantity, cost, period_start, period_end, day):
    """A charge's exact price by rate alias ``r`` as (numerator, denominator) millionths.

    Pro-rata: the amount is a whole month's; the charge's period (``period_start`` to ``period_end``, both
    included; no end: to the end of its first month) is priced month by month, each month by the days it
    covers over that month's days, and summed: 10-31 October is 22/31; 17 December to 16 January is 15/31 +
    16/31, one whole month's amount; 1 October to 31 December, three. A charge without a period start is one
    whole month; a period that ends before it starts covers nothing (0.00)."""
    start = period_start
    end = func.coalesce(period_end, month_end(dialect, start))
    first_end = month_end(dialect, start)
    first_days = day_of_month(dialect, first_end)
    last_days = day_of_month(dialect, month_end(dialect, end))
    apart = month_number(dialect, end) - month_number(dialect, start)
    in_first = days_between(dialect, start, earlier(end, first_end))
    in_last = days_between(dialect, month_start(dialect, end), end)
    # Over the first month's days times the last's: days of the first month, of the last, and whole months between.
    spanned = case((apart <= 0, in_first * last_days),
                   else_=in_first * last_days + in_last * first_days + (apart - const(1)) * first_days * last_days)
    covered = case((period_start.is_(None), const(1)), (spanned < 0, const(0)), else_=spanned)
    month_days = case((period_start.is_(None), const(1)), else_=first_days * last_days)
    # amount × quantity: in millionths when the quantity is whole (nearly always), so that the products below
    # keep their range; in 10^-12 units over UNIT for a fractional quantity.
    whole = (quantity % const(UNIT)) == const(0)
    amount_n = case((whole, r.c.amount * (quantity // const(UNIT))), else_=r.c.amount * quantity)
    amount_d = case((whole, const(1)), else_=const(UNIT))
    n = case((r.c.charge == "fixed", amount_n),
             (r.c.charge == "pro-rata", amount_n * covered),
             else_=cost * r.c.fnum)
    d = case((r.c.charge == "fixed", amount_d),
             (r.c.charge == "pro-rata", amount_d * month_days),
             else_=r.c.fden)
    return n, d


def price_charge(dialect: str, r, *, quantity, cost, period_start, period_end, day, step):
    """A charge's price (millionths, rounded to ``step``) by rate alias ``r`` (NULL when ``r`` is NULL)."""
    n, d = charge_fraction(dialect, r, quantity=quantity, cost=cost, period_start=period_start,
                           period_end=period_end, day=day)
    return case((r.c.rank.is_(None), None), else_=round_half_up(n, d, step))


def billed_seconds(r, seconds):
    """A call's billed seconds by usage rate alias ``r``: 0 stays 0; else rounded up to the increment, and at
    least the minimum."""
    rounded = ((seconds + r.c.increment - const(1)) // r.c.increment) * r.c.increment
    return case((r.c.rank.is_(None), None), (seconds <= 0, const(0)), else_=later(r.c.minimum, rounded))


def call_fraction(r, *, seconds, cost):
    """A call's exact price by usage rate alias ``r`` as (numerator, denominator) millionths."""
    billed = billed_seconds(r, seconds)
    n = case((r.c.charge == "per-minute", r.c.amount * billed), else_=cost * r.c.fnum)
    d = case((r.c.charge == "per-minute", const(60)), else_=r.c.fden)
    return n, d


def price_call(r, *, seconds, cost, step):
    """A call's price (millionths, rounded to ``step``) by usage rate alias ``r`` (NULL when ``r`` is NULL)."""
    n, d = call_fraction(r, seconds=seconds, cost=cost)
    return case((r.c.rank.is_(None), None), else_=round_half_up(n, d, step))


LIMIT = 4 * 10**18  # a numerator the rounding can double (and add to) within a signed 64-bit integer


def exact(dialect: str, *numerators):
    """1 when every numerator was computed in integer arithmetic within :data:`LIMIT`, else 0. SQLite turns an
    integer overflow into a float silently; PostgreSQL raises an error instead, so there this is always 1."""
    if dialect != "sqlite":
        return const(1)
    ok = and_(*(or_(n.is_(None), and_(func.typeof(n) == "integer", func.abs(n) < const(LIMIT)))
                for n in numerators))
    return case((ok, const(1)), else_=const(0))
