"""`cdr charges ...`: see the package docstring of ingest.commands."""

from __future__ import annotations

import click

from ..cli import Context, cli, emit_json, emit_listing, handled, pass_ctx, period_option

CHARGE_STATUSES = ("unallocated", "auto", "manual", "pending")
# The columns of the table on screen (--json has every one: ingest.billing.allocation.CHARGE_COLUMNS).
CHARGE_TABLE = ("id", "carrier", "product_code", "transaction_type", "customer_reference", "number_reference",
                "period_start", "cost", "status", "reason", "account", "number")


@cli.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(CHARGE_STATUSES),
              help="Only charges of this allocation status (pending: not looked at yet).")
@click.option("--carrier", help="Only this carrier's charges.")
@period_option(help_text="Only charges of this month, YYYY-MM, by their own date (period start, else charge date).")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many (0 or none: all).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (every column, money as exact decimals).")
@click.pass_context
@handled
def charges(ctx: click.Context, status, carrier, period, limit, as_json):
    """Carrier charges (fixed fees) and where each is allocated: an account, number and feature, found by the
    references in the carrier's file (auto), chosen by hand (manual), or unallocated with the reason
    (conflict, unknown-number, unknown-reference, unknown-product, no-reference, no-date). Without a
    subcommand: list them, lowest id first. Listing changes nothing.

    \b
    Example:
      cdr charges --status unallocated
      cdr charges --carrier hero --period 2026-10 --json
      cdr charges allocate 42 --account ACME --number 02079460001
      cdr charges rematch --period 2026-10
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..billing.allocation import list_charges

    found = list_charges(ctx.find_object(Context).app, status=status, carrier=carrier, period=period, limit=limit)
    emit_listing(found, CHARGE_TABLE, as_json)


@charges.command("allocate")
@click.argument("charge_id", metavar="ID", type=int)
@click.option("--account", required=True, help="The account the charge belongs to.")
@click.option("--number", help="One of the account's numbers, valid on the charge's date.")
@click.option("--json", "as_json", is_flag=True, help="Print the charge as JSON.")
@pass_ctx
@handled
def charges_allocate(c: Context, charge_id: int, account: str, number: str | None, as_json: bool):
    """Allocate charge ID by hand (status manual), audited with who did it and what it was before. Refused: an
    unknown charge or account, a number that is not the account's on the charge's date, a charge with no date,
    a charge a locked billing run has billed.

    \b
    Example:
      cdr charges allocate 42 --account ACME
      cdr --by alice charges allocate 43 --account ACME --number 02079460001 --json
    """
    from ..billing.allocation import allocate_charge

    shown = allocate_charge(c.app, charge_id, account, number, actor=c.actor)
    if as_json:
        emit_json(shown)
        return
    on = f" number {shown['number']}" if shown["number"] else ""
    feature = f", feature {shown['feature']} (#{shown['feature_id']})" if shown["feature_id"] is not None else ""
    click.echo(f"charge {charge_id}: manual, account {shown['account']}{on}{feature}")


@charges.command("rematch")
@period_option(help_text="Only unallocated charges of this month, YYYY-MM, by their own date.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_ctx
@handled
def charges_rematch(c: Context, period: str | None, as_json: bool):
    """Decide the unallocated charges again, after customer data or the carrier's products map was fixed: one
    transaction, audited. Auto and manual allocations are left alone.

    \b
    Example:
      cdr numbers import numbers.csv && cdr charges rematch --period 2026-10
    """
    from ..billing.allocation import rematch

    summary = rematch(c.app, period=period, actor=c.actor)
    if as_json:
        emit_json(summary.view())
    else:
        click.echo(f"rematched {summary.rematched} unallocated; {summary.text()}")


@charges.command("allocate-new")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_ctx
@handled
def charges_allocate_new(c: Context, as_json: bool):
    """Allocate every charge not looked at yet (status pending), by the references in its file. The billing run
    does this first; this is for seeing the outcome before a run.

    \b
    Example:
      cdr charges allocate-new && cdr charges --status unallocated
    """
    from ..billing.allocation import allocate_pending

    summary = allocate_pending(c.app, actor=c.actor)
    if as_json:
        emit_json(summary.view())
    else:
        click.echo(summary.text())
