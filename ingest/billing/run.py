"""The billing run of a period (``YYYY-MM``): build (or rebuild) its draft, report, lock, export, list.

One run per period (``bill_runs.period`` is unique), a draft until locked. :func:`build_run` works in ONE
transaction (serialised with every other build and lock): it first allocates every charge not yet looked at
(:func:`ingest.billing.allocation.allocate_pending_in`, in that same transaction, so that no charge loaded
meanwhile is left pending), then creates the period's draft, or rebuilds it (its own lines and exceptions are
deleted and inserted again, so a draft rebuilt twice on unchanged data has identical lines apart from their
ids; lines are inserted in source order), all by ``INSERT ... SELECT`` through a temporary work table (the scope
matched and priced once, then split into lines and exceptions):

- **Scope**: the charges and calls whose own date (a call's UTC start date; a charge's period start, else its
  charge date) is in the period (and on or before ``cutoff`` when given), and the **late** records: dated before
  the period, in a month whose run is locked, with no draft run of a month between theirs and this period (a
  late record goes to the next open run after its month), and billed by no locked run. A record a locked run
  billed (``billed_sources``) is never in scope. A record of an earlier month that has no run, or whose run is
  a draft, waits for that month's run.
- **Lines** (``bill_lines``): each allocated charge (status auto or manual) and each matched call
  (:mod:`.matching`) of the scope that a rate of its account's tariff prices (:mod:`.pricing`): account, number,
  date, late, item type (the charge's transaction type; the call's call type), description, quantity (a call:
  1), billed seconds (calls), currency, retail, carrier cost, expected cost (the carrier's wholesale tariff;
  NULL when it has none, or none of its rates matches), margin = retail − cost, the rate (``standard.fixed[0]``).
- **Exceptions** (``bill_exceptions``), never billed: ``unallocated`` charges (reason from the allocation, e.g.
  ``no-date`` for a charge with neither period start nor charge date: it is in the run of its file's billing
  period (a file without one: the month of its first dated record, else the month it was received), dated that
  period's first day;
  ``pending`` for one allocation has not looked at), ``unmatched`` calls (``unregistered-number``, or
  ``no-number`` when the call has neither a bill number nor an a-number), ``no-rate`` items (reason
  ``no-tariff``: the account has none; ``unknown-tariff``: it names no retail tariff of the configuration;
  ``no-matching-rate``). Never priced 0.

A locked period refuses a build in one line. :func:`lock_run` locks a draft in one transaction: its lines'
sources go into ``billed_sources``, whose primary key is the database's own refusal to bill a source twice (a
conflict is one line naming the source and the run that billed it). A draft one of whose lines no longer goes to
the account it names (a charge allocated elsewhere, or a call's number held by another account, since it was
built) is refused too, in one line: rebuild it first. A locked run never changes. Every build,
rebuild and lock is audited in ``billing_events`` (subject ``run``).

:func:`report` gives per-account totals, the grand totals (the sums of the lines), the exceptions by kind and
reason, and per carrier file its total cost (every record of the file in the catalog) beside what this run
billed and excepted of it. :func:`export_run` writes the lines as CSV (:data:`EXPORT_COLUMNS`, exact decimals).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, TextIO

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError

from ..app import App
from ..catalog.db import drop_temp_table, fresh_temp_table
from ..catalog.files import now as _now
from ..catalog.files import record_date, utc_date
from ..catalog.schema import (
    accounts,
    bill_exceptions,
    bill_lines,
    bill_runs,
    billed_sources,
    billing_events,
    calls,
    charge_allocations,
    charges,
    features,
    files,
    numbers,
    xdrs,
)
from ..errors import NotFound, PermanentError
from ..export import write_csv
from ..layouts import CALL, CHARGE, money_decimal
from . import period_bounds, pricing
from .allocation import allocate_pending_in
from .matching import call_number, number_on_date
from .pricing import best_rate, const, price_charge, rates, step_sql

ALLOCATED = ("auto", "manual")
# A file in one of these is not (yet) loaded: its records are in no run.
UNLOADED_STATUSES = ("queued", "held", "failed")
EXPORT_COLUMNS = ("run", "period", "account", "number", "item_date", "late", "source_kind", "source_id", "carrier",
                  "item_type", "description", "quantity", "seconds", "currency", "retail", "cost", "expected_cost",
                  "margin", "rate")
PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


class BillingError(PermanentError):
    """A billing run request refused: a locked period or run, a bad period or cutoff, a source billed twice."""


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    period: str
    cutoff: date | None
    status: str
    action: str  # build | rebuild
    lines: int
    late_lines: int
    exceptions: dict[str, int]
    # Money per currency, never summed across currencies: [{currency, lines, retail, cost, expected_cost, margin}].
    totals: list[dict[str, Any]]

    def view(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunReport:
    run: dict[str, Any]
    accounts: list[dict[str, Any]]
    totals: dict[str, Any]
    exceptions: list[dict[str, Any]]
    files: list[dict[str, Any]] = field(default_factory=list)
    # Files of the run's period (or of no known period) not loaded (queued, held as a potential duplicate,
    # failed): what the run cannot have billed yet, to settle before it is locked.
    unloaded_files: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return asdict(self)


# -- The work table: the scope, matched and priced, once ---------------------------------------------------------

_work_metadata = MetaData()
work = Table(
    "tmp_bill_work",
    _work_metadata,
    Column("source_kind", String, nullable=False),
    Column("source_id", BigInteger, nullable=False),
    Column("file_id", BigInteger, nullable=False),
    Column("carrier", String, nullable=False),
    Column("account", String),
    Column("number", String),
    Column("item_date", Date, nullable=False),
    Column("late", Boolean, nullable=False),
    Column("item_type", String),
    Column("description", String),
    Column("quantity", BigInteger),
    Column("seconds", BigInteger),
    Column("currency", String),
    Column("retail", BigInteger),
    Column("cost", BigInteger),
    Column("expected_cost", BigInteger),
    Column("rate", String),
    Column("exact", BigInteger, nullable=False),  # 0: a price overflowed 64-bit integers (SQLite; see pricing)
    Column("exception", String),
    Column("reason", String),
    prefixes=["TEMPORARY"],
)
WORK_COLUMNS = tuple(c.name for c in work.columns)


def _late_months(conn, period: str) -> list[str]:
    """The months whose late records this period's run takes: locked, before it, and no draft run between."""
    runs = dict(conn.execute(select(bill_runs.c.period, bill_runs.c.status)).all())
    drafts = [p for p, status in runs.items() if status == "draft" and p < period]
    return sorted(p for p, status in runs.items()
                  if status == "locked" and p < period and not any(p < d for d in drafts))


def _files_of(dialect: str, period: str):
    """The ids of the files whose undated records the run of ``period`` reports: the file's billing period; a
    file without one, the month of its first dated record (``records_from``); a file with neither, the month
    it was received (UTC). Each file in exactly one period, so an undated charge is reported by one run."""
    first, last = (literal(d, Date) for d in period_bounds(period))
    f = files.c
    received = utc_date(dialect, f.received_at)
    return select(f.id).where(or_(
        f.billing_period == period,
        and_(f.billing_period.is_(None), f.records_from >= first, f.records_from <= last),
        and_(f.billing_period.is_(None), f.records_from.is_(None), received >= first, received <= last)))


def _scope(dialect: str, kind: str, day, table, first: date, last: date, late_months: list[str],
           undated_period: str | None = None):
    """(the WHERE of a kind's records in the run's scope, the SQL of their ``late`` flag). ``undated_period``:
    also the records without an own date (charges with neither period start nor charge date: never billable,
    allocation leaves them unallocated, ``no-date``) of the files of that billing period (:func:`_files_of`) or
    of a late month, so that each is reported in its file's period's run (or the next) rather than in none."""
    low, high = literal(first, Date), literal(last, Date)
    late = false()
    if late_months:
        late = or_(*(and_(day >= literal(a, Date), day <= literal(b, Date))
                     for a, b in (period_bounds(month) for month in late_months)))
    billed = exists().where(billed_sources.c.source_kind == kind, billed_sources.c.source_id == table.c.id)
    dated = or_(and_(day >= low, day <= high), late)
    if undated_period is not None:
        # and those of the late months' files (a late file of a locked month), as its dated records are
        dated = or_(dated, and_(day.is_(None), or_(*(table.c.file_id.in_(_files_of(dialect, month))
                                                     for month in (undated_period, *late_months)))))
    return and_(dated, ~billed), type_coerce(func.coalesce(day < low, false()), Boolean)


def _no_rate_reason(tariff, retail_names: list[str]):
    known = tariff.in_(retail_names) if retail_names else false()
    return case((tariff.is_(None), "no-tariff"), (~known, "unknown-tariff"), else_="no-matching-rate")


def _charges_select(dialect: str, app: App, first: date, last: date, late_months: list[str], retail_names):
    c, al = charges, charge_allocations
    acct, num, feat = accounts.alias("acct"), numbers.alias("num"), features.alias("feat")
    day = record_date(dialect, CHARGE)
    allocated = al.c.status.in_(ALLOCATED)
    where, late = _scope(dialect, "charge", day, c, first, last, late_months, undated_period=f"{first:%Y-%m}")
    keys = {"transaction_type": al.c.transaction_type, "feature": feat.c.feature, "number_type": num.c.number_type,
            "carrier": c.c.carrier}
    base = (select(c.c.id, c.c.file_id, c.c.carrier, al.c.account, al.c.number,
                   func.coalesce(day, literal(first, Date)).label("item_date"),
                   late.label("late"), al.c.transaction_type, c.c.description,
                   func.coalesce(c.c.quantity, const(pricing.UNIT)).label("quantity"),
                   pricing.charge_cost(c.c).label("cost"),
                   func.coalesce(func.nullif(c.c.currency, ""), literal(app.config.billing.currency)).label("currency"),
                   c.c.period_start, c.c.period_end, al.c.status, al.c.reason, acct.c.tariff,
                   best_rate("fixed", retail_tariff=acct.c.tariff, keys=keys).label("retail_rank"),
                   best_rate("fixed", carrier=c.c.carrier, keys=keys,
                             wholesale_carriers=pricing.wholesale_users(app.config, "fixed")).label("wholesale_rank"))
            .select_from(c.outerjoin(al, al.c.charge_id == c.c.id)
                         .outerjoin(acct, and_(allocated, acct.c.account == al.c.account))
                         .outerjoin(num, and_(allocated, number_on_date(num, al.c.number, day)))
                         .outerjoin(feat, and_(allocated, feat.c.id == al.c.feature_id)))
            .where(where)
            .offset(0)  # a fence: the subquery is not flattened into the pricing, its rate looked up once a row
            .subquery("b"))
    r1, r2 = rates.alias("r1"), rates.alias("r2")
    step = step_sql(base.c.currency)

    def fraction(r):
        return pricing.charge_fraction(dialect, r, quantity=base.c.quantity, cost=base.c.cost,
                                       period_start=base.c.period_start, period_end=base.c.period_end,
                                       day=base.c.item_date)

    def price(r):
        return price_charge(dialect, r, quantity=base.c.quantity, cost=base.c.cost,
                            period_start=base.c.period_start, period_end=base.c.period_end,
                            day=base.c.item_date, step=step)

    exception = case((or_(base.c.status.is_(None), ~base.c.status.in_(ALLOCATED)), "unallocated"),
                     (r1.c.rank.is_(None), "no-rate"), else_=null())
    reason = case((base.c.status.is_(None), "pending"),
                  (~base.c.status.in_(ALLOCATED), func.coalesce(base.c.reason, base.c.status)),
                  (r1.c.rank.is_(None), _no_rate_reason(base.c.tariff, retail_names)), else_=null())
    return (select(literal("charge").label("source_kind"), base.c.id, base.c.file_id, base.c.carrier,
                   base.c.account, base.c.number, base.c.item_date, base.c.late,
                   base.c.transaction_type, base.c.description, base.c.quantity, null(), base.c.currency,
                   price(r1), base.c.cost, price(r2), r1.c.label,
                   pricing.exact(dialect, fraction(r1)[0], fraction(r2)[0], base.c.cost), exception, reason)
            .select_from(base.outerjoin(r1, r1.c.rank == base.c.retail_rank)
                         .outerjoin(r2, r2.c.rank == base.c.wholesale_rank)))


def _xdr_calls(dialect: str):
    """xDRs (ingest.legs) as calls of the run: the account the join found, the charged duration as the seconds
    priced, the calling number shown as the number, the UTC date of the setup as the date; no carrier cost."""
    x = xdrs
    day = utc_date(dialect, x.c.setup_time)
    return select(x.c.id, x.c.file_id, x.c.carrier, x.c.account, x.c.calling_number.label("number"),
                  type_coerce(day, Date).label("day"), cast(null(), String).label("call_type"),
                  cast(null(), String).label("direction"),
                  (literal("call to ") + func.coalesce(x.c.called_number, "?")).label("description"),
                  x.c.charged_seconds.label("connected_seconds"), cast(null(), BigInteger).label("billed_seconds"),
                  cast(null(), BigInteger).label("charge"), cast(null(), BigInteger).label("charge_excl"),
                  cast(null(), String).label("currency"),
                  x.c.status, x.c.reason).subquery("x")


def _calls_select(dialect: str, app: App, first: date, last: date, late_months: list[str], retail_names, conn,
                  kind: str = "call"):
    """The work rows of the run's calls (``kind`` call: the carriers' calls, matched to accounts by number) or
    xDRs (``kind`` xdr: our own network's calls, whose account the join found)."""
    acct = accounts.alias("acct")
    if kind == "call":
        c = calls
        n = numbers.alias("n")
        day = record_date(dialect, CALL)
        number = call_number(c)
        account = n.c.account
        source = c.outerjoin(n, number_on_date(n, number, day))
        status, status_reason = cast(null(), String), cast(null(), String)
    else:
        c = _xdr_calls(dialect)
        day, number, account, source = c.c.day, c.c.number, c.c.account, c
        status, status_reason = c.c.status, c.c.reason
    where, late = _scope(dialect, kind, day, c, first, last, late_months)
    picks = pricing.fill_usage_picks(conn, app.config, c, where)
    p1, p2 = picks.alias("p1"), picks.alias("p2")
    call_type, direction, carrier = pricing.usage_key(c)
    same_key = lambda p: and_(p.c.call_type == call_type, p.c.direction == direction,  # noqa: E731
                              p.c.carrier == carrier)
    base = (select(c.c.id, c.c.file_id, c.c.carrier, account.label("account"), number.label("number"),
                   day.label("item_date"), late.label("late"), c.c.call_type,
                   func.coalesce(c.c.description, c.c.call_type).label("description"),
                   func.coalesce(c.c.connected_seconds, c.c.billed_seconds, const(0)).label("basis"),
                   pricing.call_cost(c.c).label("cost"),
                   func.coalesce(func.nullif(c.c.currency, ""), literal(app.config.billing.currency)).label("currency"),
                   acct.c.tariff, p1.c.rank.label("retail_rank"), p2.c.rank.label("wholesale_rank"),
                   status.label("status"), status_reason.label("status_reason"))
            .select_from(source.outerjoin(acct, acct.c.account == account)
                         .outerjoin(p1, and_(p1.c.role == "retail", p1.c.tariff == acct.c.tariff, same_key(p1)))
                         .outerjoin(p2, and_(p2.c.role == "wholesale", p2.c.tariff == "", same_key(p2))))
            .where(where)
            .offset(0)  # a fence: the subquery is not flattened into the pricing (each value computed once)
            .subquery("b"))
    # The rates joined and each price's exact fraction computed once a row (behind a second fence), rounded above.
    r1, r2 = rates.alias("r1"), rates.alias("r2")
    n1, d1 = pricing.call_fraction(r1, seconds=base.c.basis, cost=base.c.cost)
    n2, d2 = pricing.call_fraction(r2, seconds=base.c.basis, cost=base.c.cost)
    m = (select(*base.c, r1.c.rank.label("rank1"), r1.c.label.label("rate"), r2.c.rank.label("rank2"),
                pricing.billed_seconds(r1, base.c.basis).label("seconds"), step_sql(base.c.currency).label("step"),
                n1.label("n1"), d1.label("d1"), n2.label("n2"), d2.label("d2"))
         .select_from(base.outerjoin(r1, r1.c.rank == base.c.retail_rank)
                      .outerjoin(r2, r2.c.rank == base.c.wholesale_rank))
         .offset(0)
         .subquery("m"))
    # An xDR the window closed before all its legs came is never billed as it is (exception incomplete); one
    # whose User-Name named no account is unmatched (no-account: a security alert was raised).
    exception = case((m.c.status == "incomplete", "incomplete"), (m.c.account.is_(None), "unmatched"),
                     (m.c.rank1.is_(None), "no-rate"), else_=null())
    reason = case((m.c.status == "incomplete", m.c.status_reason),
                  (and_(m.c.account.is_(None), m.c.status.is_not(None)), "no-account"),
                  (and_(m.c.account.is_(None), func.coalesce(m.c.number, "") == ""), "no-number"),
                  (m.c.account.is_(None), "unregistered-number"),
                  (m.c.rank1.is_(None), _no_rate_reason(m.c.tariff, retail_names)), else_=null())

    def rounded(rank, n, d):
        return case((rank.is_(None), None), else_=pricing.round_half_up(n, d, m.c.step))

    return select(literal(kind).label("source_kind"), m.c.id, m.c.file_id, m.c.carrier, m.c.account, m.c.number,
                  m.c.item_date, m.c.late, m.c.call_type, m.c.description, const(pricing.UNIT), m.c.seconds,
                  m.c.currency, rounded(m.c.rank1, m.c.n1, m.c.d1), m.c.cost, rounded(m.c.rank2, m.c.n2, m.c.d2),
                  m.c.rate, pricing.exact(dialect, m.c.n1, m.c.n2), exception, reason)


def _check_period(period: str) -> None:
    if not isinstance(period, str) or not PERIOD.fullmatch(period):
        raise BillingError(f"a billing period is YYYY-MM, e.g. 2026-10 (not {period!r})")


def build_run(app: App, period: str, *, cutoff: date | None = None, actor: str | None = None) -> RunSummary:
    """Create or rebuild the draft run of ``period``; refused (BillingError, one line) when it is locked."""
    _check_period(period)
    first, last = period_bounds(period)
    if cutoff is not None:
        if cutoff < first:
            raise BillingError(f"cutoff {cutoff} is before period {period} starts")
        last = min(last, cutoff)
    try:
        return _build(app, period, first, last, cutoff, actor or app.actor)
    except DataError as exc:  # PostgreSQL: bigint out of range (see ingest.billing.pricing, Range)
        raise BillingError(f"period {period} cannot be priced in 64-bit integer arithmetic "
                           f"({str(exc.orig).strip().splitlines()[0]}); nothing was built") from None


def _build(app: App, period: str, first: date, last: date, cutoff: date | None, actor: str) -> RunSummary:
    retail_names = sorted(name for name, t in app.config.tariffs.items() if not t.wholesale)
    with app.catalog.write() as conn:
        app.catalog.serialize(conn, "cdr-billing")
        allocate_pending_in(conn, app.config, actor=actor)  # every charge not looked at yet, in this transaction
        dialect = conn.dialect.name
        if dialect == "postgresql":  # the sort of a million lines in memory, not in temporary files
            conn.execute(text("SET LOCAL work_mem = '256MB'"))
        run = conn.execute(select(bill_runs).where(bill_runs.c.period == period)).mappings().first()
        now = _now()
        if run is not None and run["status"] == "locked":
            raise BillingError(f"period {period} is locked (run {run['id']}, locked by {run['locked_by']}): "
                               "its run never changes")
        values = {"cutoff": cutoff, "built_at": now, "built_by": actor}
        if run is None:
            run_id = conn.execute(insert(bill_runs).values(period=period, status="draft", **values)
                                  .returning(bill_runs.c.id)).scalar_one()
            action = "build"
        else:
            run_id = run["id"]
            conn.execute(update(bill_runs).where(bill_runs.c.id == run_id).values(**values))
            conn.execute(delete(bill_lines).where(bill_lines.c.run_id == run_id))
            conn.execute(delete(bill_exceptions).where(bill_exceptions.c.run_id == run_id))
            action = "rebuild"
        late_months = _late_months(conn, period)

        pricing.create_rates(conn, app.config)
        fresh_temp_table(conn, work)
        conn.execute(insert(work).from_select(WORK_COLUMNS, _charges_select(dialect, app, first, last, late_months,
                                                                            retail_names)))
        conn.execute(insert(work).from_select(WORK_COLUMNS, _calls_select(dialect, app, first, last, late_months,
                                                                          retail_names, conn)))
        conn.execute(insert(work).from_select(WORK_COLUMNS, _calls_select(dialect, app, first, last, late_months,
                                                                          retail_names, conn, kind="xdr")))
        w = work.c
        (inexact,) = conn.execute(select(func.count()).where(w.exact == 0)).one()
        if inexact:  # SQLite turned an integer overflow into a float: refuse rather than bill a rounded price
            raise BillingError(f"{inexact} prices of period {period} exceed 64-bit integer arithmetic "
                               "(see ingest.billing.pricing, Range); nothing was built")
        line_columns = ("run_id", "source_kind", "source_id", "file_id", "carrier", "account", "number", "item_date",
                        "late", "item_type", "description", "quantity", "seconds", "currency", "retail", "cost",
                        "expected_cost", "margin", "rate")
        conn.execute(insert(bill_lines).from_select(
            line_columns,
            select(literal(run_id, BigInteger), w.source_kind, w.source_id, w.file_id, w.carrier, w.account,
                   w.number, w.item_date, w.late, w.item_type, w.description, w.quantity, w.seconds, w.currency,
                   w.retail, w.cost, w.expected_cost, w.retail - w.cost, w.rate)
            .where(w.exception.is_(None)).order_by(w.source_kind, w.source_id)))
        conn.execute(insert(bill_exceptions).from_select(
            ("run_id", "source_kind", "source_id", "file_id", "carrier", "exception", "reason", "account", "number",
             "item_date", "cost", "currency"),
            select(literal(run_id, BigInteger), w.source_kind, w.source_id, w.file_id, w.carrier, w.exception,
                   w.reason, w.account, w.number, w.item_date, w.cost, w.currency)
            .where(w.exception.is_not(None)).order_by(w.source_kind, w.source_id)))
        drop_temp_table(conn, work)
        pricing.drop_usage_picks(conn)
        pricing.drop_rates(conn)

        summary = _summary(conn, run_id, period, cutoff, action)
        conn.execute(insert(billing_events).values(
            at=now, actor=actor, subject="run", subject_id=str(run_id), action=action,
            detail=json.dumps({"period": period, "cutoff": cutoff.isoformat() if cutoff else None,
                               "lines": summary.lines, "late_lines": summary.late_lines,
                               "exceptions": summary.exceptions,
                               "totals": [{k: str(v) if isinstance(v, Decimal) else v for k, v in t.items()}
                                          for t in summary.totals]}, sort_keys=True)))
        return summary


def _currency_totals(conn, run_id: int, *group: Any) -> list[dict[str, Any]]:
    """The run's lines summed per currency (and per each ``group`` column first, e.g. the account): lines,
    retail, cost, expected cost (None when no line has one), margin. Amounts in two currencies are never added."""
    L = bill_lines.c
    zero = Decimal("0.00")
    rows = conn.execute(
        select(*group, L.currency, func.count(), *_money_sums(L.retail, L.cost, L.expected_cost, L.margin))
        .where(L.run_id == run_id).group_by(*group, L.currency).order_by(*group, L.currency)).all()
    names = [column.name for column in group]
    return [{**dict(zip(names, row[:len(group)])), "currency": currency, "lines": n, "retail": r or zero,
             "cost": c or zero, "expected_cost": e, "margin": m or zero}
            for row in rows for currency, n, r, c, e, m in [row[len(group):]]]


def _summary(conn, run_id: int, period: str, cutoff: date | None, action: str) -> RunSummary:
    lines, late = conn.execute(
        select(func.count(), func.coalesce(func.sum(case((bill_lines.c.late, 1), else_=0)), 0))
        .where(bill_lines.c.run_id == run_id)).one()
    exceptions = dict(conn.execute(select(bill_exceptions.c.exception, func.count())
                                   .where(bill_exceptions.c.run_id == run_id)
                                   .group_by(bill_exceptions.c.exception)).all())
    status = conn.execute(select(bill_runs.c.status).where(bill_runs.c.id == run_id)).scalar_one()
    return RunSummary(run_id=run_id, period=period, cutoff=cutoff, status=status, action=action, lines=lines,
                      late_lines=int(late), exceptions=dict(sorted(exceptions.items())),
                      totals=_currency_totals(conn, run_id))


# -- Lock ---------------------------------------------------------------------------------------------------------


def _get_run(conn, run_id: int) -> dict[str, Any]:
    run = conn.execute(select(bill_runs).where(bill_runs.c.id == run_id)).mappings().first()
    if run is None:
        raise NotFound(f"no billing run {run_id}")
    return dict(run)


def lock_run(app: App, run_id: int, *, actor: str | None = None) -> dict[str, Any]:
    """Lock draft run ``run_id``: it never changes again, and its lines' sources are billed (``billed_sources``).
    A locked run, or a source another locked run billed, is refused in one line."""
    actor = actor or app.actor
    try:
        with app.catalog.write() as conn:
            app.catalog.serialize(conn, "cdr-billing")
            run = _get_run(conn, run_id)
            if run["status"] == "locked":
                raise BillingError(f"run {run_id} ({run['period']}) is already locked "
                                   f"(by {run['locked_by']}): a locked run never changes")
            clash = conn.execute(
                select(bill_lines.c.source_kind, bill_lines.c.source_id, billed_sources.c.run_id)
                .join(billed_sources, and_(billed_sources.c.source_kind == bill_lines.c.source_kind,
                                           billed_sources.c.source_id == bill_lines.c.source_id))
                .where(bill_lines.c.run_id == run_id)
                .order_by(bill_lines.c.source_kind, bill_lines.c.source_id).limit(1)).first()
            if clash is not None:
                raise _billed_twice(run_id, *clash)
            app.catalog.serialize(conn, "charge-allocation")  # no allocation changes under the check below
            _refuse_stale(conn, run_id)
            now = _now()
            conn.execute(update(bill_runs).where(bill_runs.c.id == run_id)
                         .values(status="locked", locked_at=now, locked_by=actor))
            conn.execute(insert(billed_sources).from_select(
                ("source_kind", "source_id", "run_id"),
                select(bill_lines.c.source_kind, bill_lines.c.source_id, bill_lines.c.run_id)
                .where(bill_lines.c.run_id == run_id)))
            lines = conn.execute(select(func.count()).where(bill_lines.c.run_id == run_id)).scalar_one()
            conn.execute(insert(billing_events).values(
                at=now, actor=actor, subject="run", subject_id=str(run_id), action="lock",
                detail=json.dumps({"period": run["period"], "lines": lines}, sort_keys=True)))
            return {**_get_run(conn, run_id), "lines": lines}
    except IntegrityError as exc:  # the database's own refusal (a lock racing another): one line
        raise BillingError(f"run {run_id} cannot be locked: one of its sources is already billed by another "
                           f"locked run ({str(exc.orig).strip().splitlines()[0]})") from None


def _refuse_stale(conn, run_id: int) -> None:
    """Refuse (one line) to lock a draft one of whose lines no longer goes to the account it names: a charge
    allocated elsewhere (or unallocated) since the draft was built, or a call whose number another account holds
    on its date by the customer data now. Locking it would bill the wrong customer for good (a billed charge's
    allocation can no longer change): the draft must be rebuilt first."""
    L, al = bill_lines.c, charge_allocations.c
    moved = conn.execute(
        select(L.source_id, L.account, al.status, al.account)
        .select_from(bill_lines.outerjoin(charge_allocations, al.charge_id == L.source_id))
        .where(L.run_id == run_id, L.source_kind == "charge",
               or_(al.charge_id.is_(None), ~al.status.in_(ALLOCATED), al.account != L.account,
                   al.number.is_distinct_from(L.number)))
        .order_by(L.source_id).limit(1)).first()
    if moved is not None:
        source_id, was, status, account = moved
        now = f"allocated to {account}" if status in ALLOCATED else f"{status or 'pending'}"
        raise BillingError(f"run {run_id} cannot be locked: charge {source_id} is now {now}, its line says "
                           f"{was}; rebuild the draft")
    n = numbers.alias("n")
    moved = conn.execute(
        select(L.source_id, L.account, L.number, n.c.account)
        .select_from(bill_lines.outerjoin(n, number_on_date(n, L.number, L.item_date)))
        .where(L.run_id == run_id, L.source_kind == "call", or_(n.c.id.is_(None), n.c.account != L.account))
        .order_by(L.source_id).limit(1)).first()
    if moved is not None:
        source_id, was, number, account = moved
        now = f"goes to {account}" if account is not None else "matches no account"
        raise BillingError(f"run {run_id} cannot be locked: call {source_id} (number {number}) now {now}, its line "
                           f"says {was}; rebuild the draft")


def _billed_twice(run_id: int, kind: str, source_id: int, other: int) -> BillingError:
    return BillingError(f"run {run_id} cannot be locked: {kind} {source_id} is already billed by locked run "
                        f"{other}; rebuild the draft")


# -- Report, export, list -----------------------------------------------------------------------------------------


def _money_sums(*columns):
    return [func.sum(column) for column in columns]


def report(app: App, run_id: int) -> RunReport:
    """The run's per-account totals, grand totals, exceptions by kind and reason, and per-file reconciliation."""
    L, E = bill_lines.c, bill_exceptions.c
    zero = Decimal("0.00")
    with app.catalog.read() as conn:
        run = _get_run(conn, run_id)
        per_account = _currency_totals(conn, run_id, L.account)
        n, late = conn.execute(
            select(func.count(), func.coalesce(func.sum(case((L.late, 1), else_=0)), 0))
            .where(L.run_id == run_id)).one()
        totals = {"lines": n, "late_lines": int(late), "by_currency": _currency_totals(conn, run_id)}
        exception_rows = conn.execute(
            select(E.exception, E.reason, E.currency, func.count(), func.sum(E.cost)).where(E.run_id == run_id)
            .group_by(E.exception, E.reason, E.currency).order_by(E.exception, E.reason, E.currency)).all()
        exceptions = [{"exception": x, "reason": why, "currency": cur, "count": k, "cost": s or zero}
                      for x, why, cur, k, s in exception_rows]
        billed = {f: (k, s) for f, k, s in conn.execute(
            select(L.file_id, func.count(), func.sum(L.cost)).where(L.run_id == run_id).group_by(L.file_id))}
        excepted = {f: (k, s) for f, k, s in conn.execute(
            select(E.file_id, func.count(), func.sum(E.cost)).where(E.run_id == run_id).group_by(E.file_id))}
        per_file = []
        for file_id in sorted(set(billed) | set(excepted)):
            info = conn.execute(select(files.c.id, files.c.name, files.c.carrier, files.c.type)
                                .where(files.c.id == file_id)).mappings().first()
            total = _file_cost(conn, file_id)
            lines, billed_cost = billed.get(file_id, (0, zero))
            count, excepted_cost = excepted.get(file_id, (0, zero))
            per_file.append({"file_id": file_id, "name": info["name"] if info else None,
                             "carrier": info["carrier"] if info else None, "file_cost": total,
                             "lines": lines, "billed_cost": billed_cost or zero, "exceptions": count,
                             "excepted_cost": excepted_cost or zero,
                             "difference": total - (billed_cost or zero) - (excepted_cost or zero)})
        # Of this period, or of a period not known (a file whose name gives none has one once its records load).
        unloaded = [dict(row) for row in conn.execute(
            select(files.c.id.label("file_id"), files.c.name, files.c.carrier, files.c.type, files.c.billing_period,
                   files.c.status, files.c.reason)
            .where(or_(files.c.billing_period == run["period"], files.c.billing_period.is_(None)),
                   files.c.status.in_(UNLOADED_STATUSES))
            .order_by(files.c.id)).mappings()]
    return RunReport(run=run, accounts=per_account, totals=totals, exceptions=exceptions, files=per_file,
                     unloaded_files=unloaded)


def _file_cost(conn, file_id: int) -> Decimal:
    """The carrier cost of every record of a file in the catalog (charges' cost, calls' charge excl. tax)."""
    span = conn.execute(select(files.c.first_call_id, files.c.last_call_id, files.c.first_charge_id,
                               files.c.last_charge_id).where(files.c.id == file_id)).first()
    total = 0
    for table, cost, low, high in ((calls, pricing.call_cost(calls.c), *(span[0:2] if span else (None, None))),
                                   (charges, pricing.charge_cost(charges.c), *(span[2:4] if span else (None, None)))):
        query = select(func.sum(type_coerce(cost, BigInteger))).where(table.c.file_id == file_id)
        if low is not None and high is not None:
            query = query.where(table.c.id.between(low, high))
        total += int(conn.execute(query).scalar() or 0)
    return money_decimal(total)


def export_run(app: App, run_id: int, out: TextIO) -> int:
    """Write the run's lines as CSV (header :data:`EXPORT_COLUMNS`; money as exact decimals, ``late``
    true/false), ordered by account, date, kind and source; returns how many lines."""
    L = bill_lines.c
    with app.catalog.read() as conn:
        run = _get_run(conn, run_id)
        rows = conn.execution_options(yield_per=10_000).execute(  # streamed: a run may have millions of lines
            select(L.account, L.number, L.item_date, L.late, L.source_kind, L.source_id, L.carrier, L.item_type,
                   L.description, L.quantity, L.seconds, L.currency, L.retail, L.cost, L.expected_cost, L.margin,
                   L.rate)
            .where(L.run_id == run_id)
            .order_by(L.account, L.item_date, L.source_kind, L.source_id)).mappings()
        return write_csv(EXPORT_COLUMNS, ({"run": run_id, "period": run["period"], **row,
                                           "late": "true" if row["late"] else "false"} for row in rows), out)


def list_runs(app: App) -> list[dict[str, Any]]:
    """Every run, by period: id, period, status, cutoff, built and locked (when, by whom), lines, retail,
    exceptions."""
    L, E = bill_lines.c, bill_exceptions.c
    lines = (select(L.run_id, func.count().label("lines"), func.sum(L.retail).label("retail"))
             .group_by(L.run_id).subquery("l"))
    excepted = select(E.run_id, func.count().label("exceptions")).group_by(E.run_id).subquery("e")
    with app.catalog.read() as conn:
        rows = conn.execute(
            select(bill_runs, func.coalesce(lines.c.lines, 0).label("lines"), lines.c.retail,
                   func.coalesce(excepted.c.exceptions, 0).label("exceptions"))
            .select_from(bill_runs.outerjoin(lines, lines.c.run_id == bill_runs.c.id)
                         .outerjoin(excepted, excepted.c.run_id == bill_runs.c.id))
            .order_by(bill_runs.c.period)).mappings().all()
    return [{**row, "retail": row["retail"] if row["retail"] is not None else Decimal("0.00")} for row in rows]
