"""`cdr customers|numbers|features|references import|list`: customer data (ingest.billing.customers); see the
package docstring of ingest.commands."""

from __future__ import annotations

from pathlib import Path

import click

from ..cli import Context, cli, emit_json, emit_table, handled, pass_ctx
from ..export import cell_text

CSV_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
DRY_RUN_HELP = "Check and compare, then say what would change; write nothing."

LIST_COLUMNS = {
    "customers": ("account", "name", "tariff", "updated_at"),
    "numbers": ("number", "account", "valid_from", "valid_to", "number_type"),
    "features": ("id", "account", "number", "feature", "quantity", "valid_from", "valid_to"),
    "references": ("carrier", "reference", "account"),
}


def _import(c: Context, kind: str, path: Path, dry_run: bool, as_json: bool) -> None:
    from ..billing.customers import import_file

    result = import_file(c.app, kind, path, dry_run=dry_run, actor=c.actor)
    if as_json:
        emit_json(result.view())
        return
    if not dry_run:
        click.echo(f"{result.file}: {result.inserted} inserted, {result.updated} updated, "
                   f"{result.unchanged} unchanged")
        return
    click.echo(f"{result.file} (dry run, nothing written): {result.inserted} to insert, {result.updated} to "
               f"update, {result.unchanged} unchanged")
    for change in result.changes:
        key = " ".join(f"{name} {cell_text(value)}" for name, value in change.key.items())
        if change.action == "insert":
            fields = ", ".join(f"{name} {cell_text(new)}" for name, (_old, new) in change.fields.items())
        else:
            fields = ", ".join(f"{name} {cell_text(old)} -> {cell_text(new)}"
                               for name, (old, new) in change.fields.items())
        click.echo(f"  line {change.line}: {change.action} {key}: {fields}")


def _list(rows: list[dict], kind: str, as_json: bool) -> None:
    if as_json:
        emit_json(rows)
    elif rows:
        emit_table(rows, LIST_COLUMNS[kind])
    else:
        click.echo("(none)")


# -- customers -------------------------------------------------------------------------------------------------

@cli.group()
def customers():
    """Customers (accounts): imported from CSV (account,name,tariff) and listed.

    \b
    Example:
      cdr customers import customers.csv --dry-run
      cdr customers list
    """


@customers.command("import")
@click.argument("path", metavar="FILE.csv", type=CSV_FILE)
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def customers_import(c: Context, path: Path, dry_run: bool, as_json: bool):
    """Upsert customers from a CSV file with exactly the columns account,name,tariff (a header row; UTF-8): new
    accounts are added, changed ones updated, the others left alone. One transaction: an error (file, line and
    field) writes nothing. Audited.

    \b
    Example:
      cdr customers import samples/billing/customers.csv --dry-run
      cdr customers import samples/billing/customers.csv
    """
    _import(c, "customers", path, dry_run, as_json)


@customers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def customers_list(c: Context, as_json: bool):
    """Show every customer: account, name, tariff.

    \b
    Example:
      cdr customers list --json
    """
    from ..billing.customers import list_customers

    _list(list_customers(c.app), "customers", as_json)


# -- numbers ---------------------------------------------------------------------------------------------------

@cli.group()
def numbers():
    """Numbers: which account a number belongs to, from which day to which (one account at a time).

    \b
    Example:
      cdr numbers import numbers.csv --dry-run
      cdr numbers list --account ACME001
    """


@numbers.command("import")
@click.argument("path", metavar="FILE.csv", type=CSV_FILE)
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def numbers_import(c: Context, path: Path, dry_run: bool, as_json: bool):
    """Upsert numbers from a CSV file with exactly the columns number,account,valid_from,valid_to,number_type
    (dates YYYY-MM-DD, valid_to the last day, empty while open), by number and valid_from. Each account must be
    a customer already; a number that would belong to two accounts on one day is refused. One transaction: an
    error (file, line and field) writes nothing. Audited.

    \b
    Example:
      cdr numbers import samples/billing/numbers.csv --dry-run
      cdr numbers import samples/billing/numbers.csv
    """
    _import(c, "numbers", path, dry_run, as_json)


@numbers.command("list")
@click.option("--account", help="Only this account's numbers.")
@click.option("--number", help="Only this number (exactly).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def numbers_list(c: Context, account: str | None, number: str | None, as_json: bool):
    """Show numbers with their account and validity (valid_to '-': open).

    \b
    Example:
      cdr numbers list --number 02079460001 --json
    """
    from ..billing.customers import list_numbers

    _list(list_numbers(c.app, account=account, number=number), "numbers", as_json)


# -- features --------------------------------------------------------------------------------------------------

@cli.group()
def features():
    """Features: what an account (or one of its numbers) has, how many, from which day to which.

    \b
    Example:
      cdr features import features.csv --dry-run
      cdr features list --account ACME001
    """


@features.command("import")
@click.argument("path", metavar="FILE.csv", type=CSV_FILE)
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def features_import(c: Context, path: Path, dry_run: bool, as_json: bool):
    """Upsert features from a CSV file with exactly the columns account,number,feature,quantity,valid_from,
    valid_to (number empty: the whole account; quantity an exact decimal, 1 when empty), by account, number,
    feature and valid_from. One transaction: an error (file, line and field) writes nothing. Audited.

    \b
    Example:
      cdr features import samples/billing/features.csv --dry-run
      cdr features import samples/billing/features.csv
    """
    _import(c, "features", path, dry_run, as_json)


@features.command("list")
@click.option("--account", help="Only this account's features.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def features_list(c: Context, account: str | None, as_json: bool):
    """Show features (number '-': the whole account).

    \b
    Example:
      cdr features list --account ACME001 --json
    """
    from ..billing.customers import list_features

    _list(list_features(c.app, account=account), "features", as_json)


# -- references ------------------------------------------------------------------------------------------------

@cli.group()
def references():
    """Carrier references: how each carrier names a customer in its files.

    \b
    Example:
      cdr references import references.csv --dry-run
      cdr references list --carrier techconnections
    """


@references.command("import")
@click.argument("path", metavar="FILE.csv", type=CSV_FILE)
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def references_import(c: Context, path: Path, dry_run: bool, as_json: bool):
    """Upsert carrier references from a CSV file with exactly the columns carrier,reference,account, by carrier
    and reference (a configured carrier; an account already a customer). One transaction: an error (file, line
    and field) writes nothing. Audited.

    \b
    Example:
      cdr references import samples/billing/references.csv --dry-run
      cdr references import samples/billing/references.csv
    """
    _import(c, "references", path, dry_run, as_json)


@references.command("list")
@click.option("--carrier", help="Only this carrier's references.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def references_list(c: Context, carrier: str | None, as_json: bool):
    """Show carrier references: carrier, reference, account.

    \b
    Example:
      cdr references list --carrier techconnections --json
    """
    from ..billing.customers import list_references

    _list(list_references(c.app, carrier=carrier), "references", as_json)
