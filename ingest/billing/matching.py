"""Calls to accounts, set-based: a call belongs to the account whose number is the call's bill number (else,
when the bill number is NULL or empty, its a-number) on the call's UTC start date.

A number row matches when ``numbers.number`` equals that number exactly (as text: no normalisation; the
customer data and the carrier must write numbers alike) and ``valid_from <= date <= COALESCE(valid_to, date)``
(``valid_to`` inclusive). A number belongs to one account at a time (the import refuses overlapping validity),
so at most one row matches.

- :func:`call_number`, :func:`number_on_date`: the SQL the billing run joins with (``calls LEFT JOIN numbers``);
  :func:`matched_calls`: that join as a SELECT of each call's account.
- :func:`unmatched_calls`: the calls that match no account, grouped by that number and carrier ("unregistered
  CLIs"): how many, their total carrier charge (``charge_excl``, else ``charge``: excluding tax where the
  carrier gives it) and their first and last start. ``cdr calls unmatched [--period P]``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Date, and_, func, literal, or_, select

from ..app import App
from ..catalog.files import record_date
from ..catalog.schema import calls, numbers
from ..layouts import CALL
from . import period_bounds
from .pricing import call_cost


def call_number(table=calls):
    """The number a call is billed to: its bill number, else (NULL or empty) its a-number."""
    return func.coalesce(func.nullif(table.c.bill_number, ""), table.c.a_number)


def number_on_date(number_table, number, day):
    """The join condition of a ``numbers`` row (alias) holding ``number`` on ``day`` (both SQL expressions)."""
    return and_(number_table.c.number == number, number_table.c.valid_from <= day,
                or_(number_table.c.valid_to.is_(None), number_table.c.valid_to >= day))


def matched_calls(dialect_name: str):
    """Every call with the account it belongs to (a SELECT: ``id``, ``number``, ``item_date``, ``account``, NULL
    when it matches none), set-based: ``calls LEFT JOIN numbers``. The billing run builds on the same join."""
    day = record_date(dialect_name, CALL)
    n = numbers.alias("n")
    number = call_number()
    return (select(calls.c.id, number.label("number"), day.label("item_date"), n.c.account)
            .select_from(calls.outerjoin(n, number_on_date(n, number, day))))


def unmatched_calls(app: App, *, period: str | None = None) -> list[dict[str, Any]]:
    """Calls matching no account, by number and carrier: ``number``, ``carrier``, ``calls``, ``charge`` (Decimal
    total), ``first_start``, ``last_start``; the most calls first, then by number."""
    with app.catalog.read() as conn:
        dialect = conn.dialect.name
        day = record_date(dialect, CALL)
        n = numbers.alias("n")
        number = call_number()
        query = (select(number.label("number"), calls.c.carrier, func.count().label("calls"),
                        func.sum(call_cost(calls.c)).label("charge"),
                        func.min(calls.c.start_time).label("first_start"),
                        func.max(calls.c.start_time).label("last_start"))
                 .select_from(calls.outerjoin(n, number_on_date(n, number, day)))
                 .where(n.c.id.is_(None))
                 .group_by(number, calls.c.carrier))
        if period is not None:
            first, last = period_bounds(period)
            query = query.where(day >= literal(first, Date), day <= literal(last, Date))
        rows = conn.execute(query).all()
    found = [{"number": row.number, "carrier": row.carrier, "calls": row.calls,
              "charge": row.charge if row.charge is not None else Decimal("0.00"),
              "first_start": row.first_start, "last_start": row.last_start} for row in rows]
    return sorted(found, key=lambda r: (-r["calls"], r["number"] or "", r["carrier"]))
