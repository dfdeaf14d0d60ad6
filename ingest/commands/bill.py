"""`cdr bill run|report|lock|export|list` and `cdr calls unmatched` (ingest.billing.run, ingest.billing.matching);
see the package docstring of ingest.commands."""

from __future__ import annotations

import re
import sys
from datetime import date
from pathlib import Path

import click

from ..cli import Context, cli, emit_field, emit_json, emit_table, handled, pass_ctx, period_option


def _cutoff(_ctx, _param, value):
    if value is None:
        return None
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise click.BadParameter("a cutoff is a date, YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value} is not a date") from None


def _required_period(_ctx, _param, value):
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value or ""):
        raise click.BadParameter("a billing period is YYYY-MM, e.g. 2026-10")
    return value


@cli.group()
def bill():
    """Billing runs: a period's draft built from its allocated charges and matched calls, priced by tariff;
    reported, locked (never changed again, nothing billed twice) and exported.

    \b
    Example:
      cdr bill run --period 2026-10
      cdr bill report 1
      cdr bill lock 1
      cdr bill export 1 --csv -o bill-2026-10.csv
    """


@bill.command("run")
@click.option("--period", required=True, callback=_required_period, help="Billing period, YYYY-MM.")
@click.option("--cutoff", callback=_cutoff, help="Only records dated up to this day, YYYY-MM-DD.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def bill_run(c: Context, period: str, cutoff: date | None, as_json: bool):
    """Build (or rebuild) the period's draft run: each allocated charge and matched call of the period that no
    locked run billed, plus late records of locked months, priced; the rest reported as exceptions. A locked
    period is refused.

    \b
    Example:
      cdr bill run --period 2026-10 --cutoff 2026-10-28
    """
    from ..billing.run import build_run

    summary = build_run(c.app, period, cutoff=cutoff, actor=c.actor)
    if as_json:
        emit_json(summary.view())
        return
    exceptions = ", ".join(f"{k} {v}" for k, v in summary.exceptions.items()) or "none"
    money = "".join(f"; {t['currency']}: retail {t['retail']}, cost {t['cost']}, margin {t['margin']}"
                    for t in summary.totals)
    click.echo(f"run {summary.run_id} ({summary.period}, {summary.status}, {summary.action}): {summary.lines} lines "
               f"({summary.late_lines} late){money}; exceptions: {exceptions}")


@bill.command("report")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def bill_report(c: Context, run_id: int, as_json: bool):
    """Per-account totals (retail, cost, expected cost, margin, lines), the run's totals, its exceptions
    (unallocated charges, unmatched calls, no-rate items) and each carrier file's total cost beside what the run
    billed of it.

    \b
    Example:
      cdr bill report 1 --json
    """
    from ..billing.run import report

    found = report(c.app, run_id)
    if as_json:
        emit_json(found.view())
        return
    run = found.run
    click.echo(f"run {run['id']} ({run['period']}, {run['status']})")
    money = ("currency", "lines", "retail", "cost", "expected_cost", "margin")
    emit_table(found.accounts, ("account", *money))
    click.echo("")
    for label in ("lines", "late_lines"):
        emit_field(label, found.totals[label])
    click.echo("\ntotals:")
    emit_table(found.totals["by_currency"], money)
    click.echo("\nexceptions:")
    if found.exceptions:
        emit_table(found.exceptions, ("exception", "reason", "currency", "count", "cost"))
    else:
        click.echo("(none)")
    click.echo("\nfiles:")
    emit_table(found.files, ("file_id", "name", "carrier", "file_cost", "lines", "billed_cost", "exceptions",
                             "excepted_cost", "difference"))
    if found.unloaded_files:
        click.echo(f"\nfiles of {run['period']} (or of no known period) not loaded: their records are in no run:")
        emit_table(found.unloaded_files, ("file_id", "name", "carrier", "type", "billing_period", "status", "reason"))


@bill.command("lock")
@click.argument("run_id", metavar="RUN", type=int)
@pass_ctx
@handled
def bill_lock(c: Context, run_id: int):
    """Lock a draft run: it never changes again, and each of its sources is billed (a source already billed by
    another locked run is refused). Audited.

    \b
    Example:
      cdr bill lock 1
    """
    from ..billing.run import lock_run

    locked = lock_run(c.app, run_id, actor=c.actor)
    click.echo(f"run {locked['id']} ({locked['period']}) locked: {locked['lines']} lines")


@bill.command("export")
@click.argument("run_id", metavar="RUN", type=int)
@click.option("--csv", "as_csv", is_flag=True, required=True, help="CSV: a header row, then one row per line.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default stdout).")
@pass_ctx
@handled
def bill_export(c: Context, run_id: int, as_csv: bool, output: Path | None):
    """Write the run's billing transactions for the invoicing system: run, period, account, number, item_date,
    late, source_kind, source_id, carrier, item_type, description, quantity, seconds, currency, retail, cost,
    expected_cost, margin, rate; money as exact decimals.

    \b
    Example:
      cdr bill export 1 --csv -o bill-2026-10.csv
    """
    from ..billing.run import export_run

    if output is None:
        export_run(c.app, run_id, sys.stdout)
        return
    with open(output, "w", newline="", encoding="utf-8") as out:
        count = export_run(c.app, run_id, out)
    click.echo(f"wrote {count} lines to {output}", err=True)


@bill.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def bill_list(c: Context, as_json: bool):
    """Every billing run: period, status, cutoff, when built and locked and by whom, lines, retail, exceptions.

    \b
    Example:
      cdr bill list --json
    """
    from ..billing.run import list_runs

    runs = list_runs(c.app)
    if as_json:
        emit_json(runs)
        return
    emit_table(runs, ("id", "period", "status", "cutoff", "lines", "retail", "exceptions", "built_at", "built_by",
                      "locked_at", "locked_by"))


@cli.group()
def calls():
    """Calls and the accounts they belong to (a call's bill number, else its a-number, on its UTC start date).

    \b
    Example:
      cdr calls unmatched --period 2026-10
    """


@calls.command("unmatched")
@period_option(help_text="Only calls of this month, YYYY-MM, by their UTC start date.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def calls_unmatched(c: Context, period: str | None, as_json: bool):
    """Calls that match no account, by number and carrier ("unregistered CLIs"): how many, their total charge
    (excluding tax where the carrier gives it), first and last start.

    \b
    Example:
      cdr calls unmatched --period 2026-10 --json
    """
    from ..billing.matching import unmatched_calls

    found = unmatched_calls(c.app, period=period)
    if as_json:
        emit_json(found)
        return
    emit_table(found, ("number", "carrier", "calls", "charge", "first_start", "last_start"))
