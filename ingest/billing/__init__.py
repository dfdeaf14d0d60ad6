"""From loaded records to a bill: customer data, allocation of carrier charges, usage matching, tariffs and the
billing run. A stage after loading: it reads the catalog (``calls``, ``charges``, ``files``) and never reaches
back into the collectors, intake or loaders.

- :mod:`.customers`: accounts, numbers, features and carrier references, imported from header-named CSV files
  (upsert by natural key, one transaction per file, all or nothing; ``dry_run`` says what would change) and
  listed.
- :mod:`.allocation`: each charge (a carrier transaction) allocated to an account, number and feature by the
  references in its file, set-based; manual allocation; rematch; which calls match no account (unregistered
  CLIs).
- :mod:`.tariffs`: ``[tariffs.NAME]`` from the configuration (typed, validated) and the SQL that prices by them.
- :mod:`.run`: the billing run of a period: build (or rebuild) its draft, report, lock, export, list.

Every change a person makes (an import, a manual allocation, a rematch, a run built or locked) is one
transaction and audited in ``billing_events`` (who, when, what). Money is exact: BIGINT millionths in SQL
(:data:`ingest.layouts.MONEY_SCALE`), :class:`~decimal.Decimal` in Python, rounded half-up to the currency's
minor unit once per billing transaction.

Dates: a number's or feature's ``valid_from`` and ``valid_to`` are whole days, both inclusive (``valid_to``
NULL: open). A call's date is its UTC start date; a charge's is its period start, else its charge date.
"""

from __future__ import annotations

from datetime import date

from ..core import month_bounds
from ..errors import PermanentError


def period_bounds(period: str) -> tuple[date, date]:
    """The first and last day of billing period ``YYYY-MM``; anything else is refused in one line."""
    try:
        return month_bounds(period)
    except ValueError:
        raise PermanentError(f"a billing period is YYYY-MM, e.g. 2026-10, not {period!r}") from None
