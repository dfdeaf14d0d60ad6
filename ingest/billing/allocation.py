"""Allocation of carrier charges: each loaded charge (a carrier transaction) put on an account, a number and a
feature by the references its file gives, set-based; manual allocation; rematch; the listing.

Every charge gets one ``charge_allocations`` row once allocation has looked at it (a charge without one is
*pending*: :func:`allocate_pending` takes it next). ``status`` is ``auto`` (allocated by the rules below),
``manual`` (a person chose the account: :func:`allocate_charge`) or ``unallocated`` with a ``reason``. An
unallocated charge is never billed and never dropped silently: it stays listed (``cdr charges --status
unallocated``) and in the billing run's exceptions until it is fixed.

The rules, in this order (the first that applies decides; "given" means a value that is not empty or blank, and
references compare after trimming the surrounding blanks, otherwise exactly: ``0016...`` and ``+6416...`` are
different numbers):

1. ``no-date``: the charge has neither a period start nor a charge date. Its own date (period start, else charge
   date: :func:`ingest.catalog.files.record_date`) decides which number was whose, which features were valid
   and which billing period bills it; without one it can be none of that, whatever its references say.
2. ``unknown-product``: its product code is missing, or its carrier's ``[carriers.NAME.products]`` does not map
   it to a transaction type (a carrier no longer configured maps nothing).
3. ``no-reference``: neither a number reference nor a customer reference is given.
4. ``unknown-number``: a number reference is given and no number of that value is valid on the charge's own
   date (``valid_from <= date <= valid_to``, ``valid_to`` NULL: open). A number assigned only from the 15th does
   not match a charge whose period starts on the 1st. This holds even when the customer reference would name
   an account: the number the carrier bills is unknown to us, so whoever fixes the numbers must look at it.
5. ``unknown-reference``: a customer reference is given and the charge's carrier has no such reference in
   ``carrier_references``. Every reference the file gives must resolve, even when the number alone would: a
   reference we cannot check is never taken on trust.
6. ``conflict``: both are given and the number's account is not the reference's account.
7. Otherwise ``auto``: the account (and, when the number reference gave it, the number) found.

Should two numbers rows ever both be valid for one number on one day (the import refuses that), the one
assigned last (the latest ``valid_from``) is taken. An unallocated row keeps its transaction type when the
product code mapped, and never an account or a number: only ``auto`` and ``manual`` rows name an account.

The feature (``feature_id``, auto and manual alike): the account's feature whose ``feature`` equals the
transaction type and that is valid at some day of the charge's period (``valid_from <= period end`` and
``valid_to``, NULL: open, ``>= period start``; no period end: the period is its own date alone). One of the
charge's number (``features.number`` = the number) is preferred over one of the whole account
(``features.number = ''``); a charge allocated without a number only matches features of the whole account.
Among equals, the latest ``valid_from``, then the lowest id. No such feature: ``feature_id`` is NULL (the
charge is still allocated).

Manual allocation (:func:`allocate_charge`): a person names the account (and optionally a number, which must be
one of that account's numbers valid on the charge's own date). Refused: an unknown charge or account, a number
that is not the account's on that date, a charge with no date (it could never be billed: fix its file), and a
charge a locked billing run has billed (``billed_sources``). The transaction type is the product code's mapping
now (NULL when unmapped: a tariff rate without a transaction type may still price it); the feature is matched
as above for the chosen account and number. Allocating a charge again (manual over auto or manual) is allowed
and audited like the first time. Number none given: the charge is the account's, with no number.

Rematch (:func:`rematch`): after customer data or the products map is fixed, the ``unallocated`` rows (of one
period, by the charge's own date, when one is given) are decided again by the same rules, in one transaction,
with one audit event. ``auto`` and ``manual`` rows are never touched; pending charges of that period are
allocated on the way (they would be by the next :func:`allocate_pending` anyway).

Concurrency: the allocation is one ``INSERT ... SELECT`` of the charges with no row yet, ``ON CONFLICT DO
NOTHING``: two processes allocating at once each insert what the other did not, neither fails. A manual
allocation is an upsert that wins over a concurrent automatic one; a rematch deletes and re-inserts its rows in
one transaction, so no other transaction ever sees them missing, and a row made manual meanwhile is kept.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    literal,
    null,
    or_,
    select,
)

from ..catalog.db import drop_temp_table, fresh_temp_table
from ..catalog.files import now as _now
from ..catalog.files import record_date
from ..catalog.schema import (
    UTCDateTime,
    accounts,
    billed_sources,
    billing_events,
    carrier_references,
    charge_allocations,
    charges,
    features,
    numbers,
)
from ..errors import NotFound, PermanentError
from ..layouts import CHARGE
from . import period_bounds

if TYPE_CHECKING:
    from ..app import App
    from ..config import Config

STATUSES = ("unallocated", "auto", "manual")
# A charge allocation has not looked at yet: it has no charge_allocations row. Listings show it with this status.
PENDING = "pending"
REASONS = ("no-date", "unknown-product", "no-reference", "unknown-number", "unknown-reference", "conflict")

# The columns of a listed charge, in order (list_charges, ``cdr charges --json``).
CHARGE_COLUMNS = ("id", "file_id", "carrier", "carrier_record_id", "product_code", "transaction_type",
                  "customer_reference", "number_reference", "description", "period_start", "period_end",
                  "charge_date", "quantity", "cost", "currency", "status", "reason", "account", "number",
                  "feature_id", "feature")


@dataclass
class AllocationSummary:
    """What one allocation (or rematch) decided: how many charges it looked at, by status (``auto``,
    ``unallocated``; ``manual`` is never decided here but kept for a complete shape) and the unallocated ones by
    reason. ``rematched``: for a rematch, how many unallocated rows it decided again (the rest of ``total`` were
    pending charges allocated on the way)."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)
    rematched: int = 0

    @property
    def auto(self) -> int:
        return self.by_status.get("auto", 0)

    @property
    def unallocated(self) -> int:
        return self.by_status.get("unallocated", 0)

    def view(self) -> dict[str, Any]:
        """A plain dict (JSON output)."""
        return {"total": self.total, "auto": self.auto, "unallocated": self.unallocated,
                "by_status": dict(self.by_status), "by_reason": dict(self.by_reason), "rematched": self.rematched}

    def text(self) -> str:
        """One line: ``3 charges allocated: 2 auto, 1 unallocated (conflict 1)``."""
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(self.by_reason.items()))
        return (f"{self.total} charge{'' if self.total == 1 else 's'} allocated: {self.auto} auto, "
                f"{self.unallocated} unallocated" + (f" ({reasons})" if reasons else ""))


class AllocationError(PermanentError):
    """A manual allocation is refused (one line saying why)."""


# -- the products map, as a temporary table ---------------------------------------------------------------------

_products_metadata = MetaData()
_products = Table(
    "cdr_alloc_products",
    _products_metadata,
    Column("carrier", String, primary_key=True),
    Column("code", String, primary_key=True),
    Column("transaction_type", String, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


def _product_rows(config: "Config") -> list[dict[str, str]]:
    return [{"carrier": name, "code": code.strip(), "transaction_type": ttype}
            for name, spec in sorted(config.carriers.items())
            for code, ttype in sorted(spec.products.items()) if code.strip()]


def _with_products(conn: Connection, config: "Config") -> Table:
    """Fill this transaction's temporary table of (carrier, product code, transaction type) from the
    configuration and return it (dropped again at the end of :func:`_insert_decisions`)."""
    fresh_temp_table(conn, _products)
    rows = _product_rows(config)
    if rows:
        conn.execute(_products.insert(), rows)
    return _products


def _transaction_type(conn: Connection, config: "Config", carrier: str, code: str | None) -> str | None:
    """One charge's transaction type (manual allocation), by the same rule as the set-based one."""
    code = (code or "").strip()
    spec = config.carriers.get(carrier)
    if not code or spec is None:
        return None
    return {k.strip(): v for k, v in spec.products.items()}.get(code)


# -- the set-based allocation -----------------------------------------------------------------------------------

def _given(column):
    """A reference as given: trimmed, NULL when empty or blank."""
    return func.nullif(func.trim(column), "")


def _feature_of(account, number, transaction_type, day, day_end):
    """The id of the feature a charge matches (module docs), as a correlated scalar subquery."""
    f = features.alias("f")
    return (select(f.c.id)
            .where(f.c.account == account, f.c.feature == transaction_type,
                   or_(f.c.number == number, f.c.number == ""),
                   f.c.valid_from <= day_end, func.coalesce(f.c.valid_to, day) >= day)
            .order_by(case((f.c.number == "", 1), else_=0), f.c.valid_from.desc(), f.c.id)
            .limit(1).scalar_subquery())


def _decisions(conn: Connection, products: Table, *, period: str | None = None):
    """A SELECT of (charge_id, status, reason, transaction_type, account, number, feature_id) for every charge
    with no allocation row (of ``period``, by its own date, when given): the rules of the module docs."""
    c = charges
    n = numbers.alias("n")
    r = carrier_references.alias("r")
    own_date = record_date(conn.dialect.name, CHARGE)
    number_ref = _given(c.c.number_reference)
    customer_ref = _given(c.c.customer_reference)
    number_account = (select(n.c.account)
                      .where(n.c.number == number_ref, n.c.valid_from <= own_date,
                             or_(n.c.valid_to.is_(None), n.c.valid_to >= own_date))
                      .order_by(n.c.valid_from.desc()).limit(1).scalar_subquery())
    reference_account = (select(r.c.account).where(r.c.carrier == c.c.carrier, r.c.reference == customer_ref)
                         .scalar_subquery())
    transaction_type = (select(products.c.transaction_type)
                        .where(products.c.carrier == c.c.carrier, products.c.code == _given(c.c.product_code))
                        .scalar_subquery())
    base = (select(c.c.id.label("charge_id"), own_date.label("day"),
                   func.coalesce(c.c.period_end, own_date).label("day_end"),
                   number_ref.label("number_ref"), customer_ref.label("customer_ref"),
                   number_account.label("number_account"), reference_account.label("reference_account"),
                   transaction_type.label("transaction_type"))
            .where(~exists().where(charge_allocations.c.charge_id == c.c.id)))
    if period is not None:
        first, last = period_bounds(period)
        base = base.where(own_date >= first, own_date <= last)
    # OFFSET 0 keeps each level a subquery of its own: merged into the next (PostgreSQL pulls them up), every
    # mention of a lookup there would run its subquery again, per charge.
    b = base.offset(0).subquery("b")
    reason = case(
        (b.c.day.is_(None), "no-date"),
        (b.c.transaction_type.is_(None), "unknown-product"),
        (and_(b.c.number_ref.is_(None), b.c.customer_ref.is_(None)), "no-reference"),
        (and_(b.c.number_ref.is_not(None), b.c.number_account.is_(None)), "unknown-number"),
        (and_(b.c.customer_ref.is_not(None), b.c.reference_account.is_(None)), "unknown-reference"),
        (and_(b.c.number_account.is_not(None), b.c.reference_account.is_not(None),
              b.c.number_account != b.c.reference_account), "conflict"),
        else_=null(),
    )
    decided = select(
        b.c.charge_id, b.c.day, b.c.day_end, b.c.transaction_type, reason.label("reason"),
        case((reason.is_(None), func.coalesce(b.c.number_account, b.c.reference_account)), else_=null())
        .label("account"),
        case((and_(reason.is_(None), b.c.number_account.is_not(None)), b.c.number_ref), else_=null())
        .label("number"),
    ).offset(0).subquery("d")
    d = decided.c
    return select(
        d.charge_id,
        case((d.reason.is_(None), "auto"), else_="unallocated").label("status"),
        d.reason,
        d.transaction_type,
        d.account,
        d.number,
        case((d.account.is_not(None), _feature_of(d.account, d.number, d.transaction_type, d.day, d.day_end)),
             else_=null()).label("feature_id"),
    ).where(d.charge_id.is_not(None))  # SQLite: a WHERE before ON CONFLICT, so that ON is not read as a join's


def _insert_decisions(conn: Connection, config: "Config", *, actor: str, period: str | None = None,
                      at: datetime | None = None) -> AllocationSummary:
    """Insert an allocation row for every pending charge (of ``period``), set-based, skipping any another
    transaction inserted meanwhile; the summary of what this one inserted."""
    products = _with_products(conn, config)
    decisions = _decisions(conn, products, period=period).subquery("decisions")
    at = at or _now()
    query = select(decisions, literal(at, UTCDateTime()).label("allocated_at"), literal(actor, String).label("actor"))
    query = query.where(decisions.c.charge_id.is_not(None))
    names = ["charge_id", "status", "reason", "transaction_type", "account", "number", "feature_id",
             "allocated_at", "actor"]
    statement = (_dialect_insert(conn)(charge_allocations).from_select(names, query)
                 .on_conflict_do_nothing(index_elements=["charge_id"])
                 .returning(charge_allocations.c.status, charge_allocations.c.reason))
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for status, reason in conn.execute(statement):
        statuses[status] += 1
        if reason is not None:
            reasons[reason] += 1
    drop_temp_table(conn, products)
    return AllocationSummary(total=sum(statuses.values()), by_status=dict(statuses), by_reason=dict(reasons))


def _dialect_insert(conn: Connection):
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert


def allocate_pending_in(conn: Connection, config: "Config", *, actor: str) -> AllocationSummary:
    """:func:`allocate_pending` within a write transaction the caller holds (the billing run's own): every
    charge with no allocation row gets one."""
    return _insert_decisions(conn, config, actor=actor)


def allocate_pending(app: "App", *, actor: str | None = None) -> AllocationSummary:
    """Allocate every charge allocation has not looked at yet (no ``charge_allocations`` row), by the rules of
    the module docs, in one set-based statement and one transaction. Safe to run in two processes at once.
    Returns what it decided (nothing pending: an empty summary)."""
    with app.catalog.write() as conn:
        return _insert_decisions(conn, app.config, actor=actor or app.actor)


def rematch(app: "App", *, period: str | None = None, actor: str | None = None) -> AllocationSummary:
    """Decide the ``unallocated`` charges again (only those whose own date falls in ``period``, YYYY-MM, when
    given) by the current customer data and products map, in one transaction, audited by one
    ``billing_events`` row (subject ``charge``, action ``rematch``, the counts as JSON). ``auto`` and ``manual``
    ones are left alone; pending charges (of the period) are allocated on the way."""
    if period is not None:
        period_bounds(period)
    actor = actor or app.actor
    with app.catalog.write() as conn:
        app.catalog.serialize(conn, "charge-allocation")
        c = charges
        again = select(charge_allocations.c.charge_id).where(charge_allocations.c.status == "unallocated")
        if period is not None:
            first, last = period_bounds(period)
            own_date = record_date(conn.dialect.name, CHARGE)
            again = again.where(charge_allocations.c.charge_id.in_(
                select(c.c.id).where(own_date >= first, own_date <= last)))
        # The rows are deleted and inserted again in this transaction: nobody else sees them missing.
        deleted = conn.execute(charge_allocations.delete()
                               .where(charge_allocations.c.charge_id.in_(again))
                               .where(charge_allocations.c.status == "unallocated"))
        summary = _insert_decisions(conn, app.config, actor=actor, period=period)
        summary.rematched = deleted.rowcount
        conn.execute(billing_events.insert().values(
            at=_now(), actor=actor, subject="charge", subject_id=None, action="rematch",
            detail=json.dumps({"period": period, **summary.view()}, separators=(",", ":"))))
    return summary


# -- manual allocation ------------------------------------------------------------------------------------------

def allocate_charge(app: "App", charge_id: int, account: str, number: str | None = None, *,
                    actor: str | None = None) -> dict[str, Any]:
    """Allocate charge ``charge_id`` to ``account`` (and ``number``, which must be the account's on the
    charge's own date) by hand: status ``manual``, audited in ``billing_events`` (subject ``charge``, action
    ``allocate``, the previous status, reason, account and number in the detail). Refusals (one line): an
    unknown charge (:class:`~ingest.errors.NotFound`) or account, a number not the account's on that date, a
    charge with no date, a charge a locked run billed (:class:`AllocationError`). Returns the charge as
    :func:`list_charges` shows it."""
    actor = actor or app.actor
    number = (number or "").strip() or None
    account = account.strip()
    with app.catalog.write() as conn:
        app.catalog.serialize(conn, "charge-allocation")
        own_date = record_date(conn.dialect.name, CHARGE)
        row = conn.execute(select(charges.c.id, charges.c.carrier, charges.c.product_code, charges.c.period_end,
                                  own_date.label("day"))
                           .where(charges.c.id == charge_id)).mappings().first()
        if row is None:
            raise NotFound(f"charge {charge_id} does not exist")
        if conn.execute(select(accounts.c.account).where(accounts.c.account == account)).first() is None:
            raise NotFound(f"account {account!r} does not exist")
        billed = conn.execute(select(billed_sources.c.run_id).where(billed_sources.c.source_kind == "charge",
                                                                    billed_sources.c.source_id == charge_id)).first()
        if billed is not None:
            raise AllocationError(f"charge {charge_id} was billed by locked run {billed.run_id}: its allocation "
                                  "cannot change")
        day = _as_date(row["day"])
        if day is None:
            raise AllocationError(f"charge {charge_id} has no date (no period start, no charge date): it could "
                                  "never be billed; correct its file instead")
        if number is not None:
            valid = conn.execute(select(numbers.c.id).where(
                numbers.c.number == number, numbers.c.account == account, numbers.c.valid_from <= day,
                or_(numbers.c.valid_to.is_(None), numbers.c.valid_to >= day))).first()
            if valid is None:
                raise AllocationError(f"number {number!r} does not belong to account {account!r} on "
                                      f"{day.isoformat()} (the date of charge {charge_id})")
        previous = conn.execute(select(charge_allocations).where(charge_allocations.c.charge_id == charge_id)
                                .with_for_update()).mappings().first()
        transaction_type = _transaction_type(conn, app.config, row["carrier"], row["product_code"])
        day_end = _as_date(row["period_end"]) or day
        feature_id = conn.execute(select(
            _feature_of(literal(account, String), literal(number, String), literal(transaction_type, String),
                        literal(day, features.c.valid_from.type), literal(day_end, features.c.valid_from.type))
        )).scalar()
        values = {"status": "manual", "reason": None, "transaction_type": transaction_type, "account": account,
                  "number": number, "feature_id": feature_id, "allocated_at": _now(), "actor": actor}
        conn.execute(_dialect_insert(conn)(charge_allocations).values(charge_id=charge_id, **values)
                     .on_conflict_do_update(index_elements=["charge_id"], set_=values))
        was = ({key: previous[key] for key in ("status", "reason", "account", "number")} if previous is not None
               else {"status": PENDING, "reason": None, "account": None, "number": None})
        conn.execute(billing_events.insert().values(
            at=values["allocated_at"], actor=actor, subject="charge", subject_id=str(charge_id), action="allocate",
            detail=json.dumps({"account": account, "number": number, "transaction_type": transaction_type,
                               "feature_id": feature_id, "previous": was}, separators=(",", ":"))))
        [shown] = _listed(conn, charges.c.id == charge_id)
    return shown


def _as_date(value: date | str | None) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else value


# -- the listing ------------------------------------------------------------------------------------------------

def _listed(conn: Connection, *conditions, limit: int | None = None) -> list[dict[str, Any]]:
    a = charge_allocations
    f = features
    c = charges
    query = (select(*(c.c[name] for name in CHARGE_COLUMNS if name in c.c and name != "number"),
                    a.c.transaction_type, func.coalesce(a.c.status, PENDING).label("status"), a.c.reason, a.c.account,
                    a.c.number, a.c.feature_id, f.c.feature)
             .select_from(c.outerjoin(a, a.c.charge_id == c.c.id).outerjoin(f, f.c.id == a.c.feature_id))
             .where(*conditions).order_by(c.c.id))
    if limit:
        query = query.limit(limit)
    return [{name: row[name] for name in CHARGE_COLUMNS} for row in conn.execute(query).mappings()]


def list_charges(app: "App", *, status: str | None = None, carrier: str | None = None, period: str | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
    """Each charge with its allocation (:data:`CHARGE_COLUMNS`; money as Decimal), lowest id first. ``status``:
    one of :data:`STATUSES` or ``pending`` (no allocation row yet); ``period`` YYYY-MM: by the charge's own date
    (period start, else charge date); ``limit`` 0 or None: all. Reads only: it allocates nothing."""
    if status is not None and status not in (*STATUSES, PENDING):
        raise PermanentError(f"unknown allocation status {status!r} (one of {', '.join((*STATUSES, PENDING))})")
    conditions = []
    if status == PENDING:
        conditions.append(charge_allocations.c.charge_id.is_(None))
    elif status is not None:
        conditions.append(charge_allocations.c.status == status)
    if carrier is not None:
        conditions.append(charges.c.carrier == carrier)
    with app.catalog.read() as conn:
        if period is not None:
            first, last = period_bounds(period)
            own_date = record_date(conn.dialect.name, CHARGE)
            conditions += [own_date >= first, own_date <= last]
        return _listed(conn, *conditions, limit=limit)


def allocation_events(app: "App", charge_id: int | None = None) -> list[dict[str, Any]]:
    """The audit of allocation (``billing_events`` of subject ``charge``), oldest first; of one charge when
    ``charge_id`` is given (its manual allocations; rematches name no charge)."""
    e = billing_events
    query = select(e).where(e.c.subject == "charge").order_by(e.c.id)
    if charge_id is not None:
        query = query.where(e.c.subject_id == str(charge_id))
    with app.catalog.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


__all__ = ["AllocationError", "AllocationSummary", "CHARGE_COLUMNS", "PENDING", "REASONS", "STATUSES",
           "allocate_charge", "allocate_pending", "allocate_pending_in", "allocation_events", "list_charges",
           "period_bounds", "rematch"]
