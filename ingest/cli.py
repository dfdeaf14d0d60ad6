"""The ``cdr`` command: a thin layer over :mod:`ingest.admin`, :mod:`ingest.load` and the collectors.

Each command is a few lines calling the library. Listings print a table (``--json`` for machines).
Bad input exits non-zero with one line on stderr.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import sys
import textwrap
import threading
import traceback
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import click

from . import __version__
from .app import App, default_actor
from .config import CADENCES, FILE_TYPES, FORMATS, STATUSES
from .errors import CdrError, IntakeError
from .export import TTY_LIMIT, sort_keys, write_table  # the standard library only: cheap at start-up
from .export import cell as _cell, cell_text as _text, exact as _jsonable  # a table's and JSON's forms of a value


class LazyModule:
    """A module imported on first attribute access, so `cdr --help` and `cdr --version` do not pay for what only
    the commands use (the catalog brings SQLAlchemy, loading pyarrow, collectors paramiko and aioftp).
    Import anything else a command needs inside the command."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attribute)


admin = LazyModule("ingest.admin")
catalog_files = LazyModule("ingest.catalog.files")


def load_queued(app: App, **options: Any) -> list:
    """:func:`ingest.load.load_queued`, imported on first use."""
    from .load import load_queued as load_all_queued

    return load_all_queued(app, **options)


FILE_FIELDS = ("id", "name", "carrier", "type", "cadence", "source", "size", "fingerprint", "status", "reason",
               "billing_period", "records_from", "records_to", "received_at", "records", "records_skipped",
               "records_dropped", "format",
               "container", "member", "origin", "compression", "released", "superseded_by", "error")
FILE_TABLE = ("id", "name", "carrier", "type", "cadence", "status", "reason", "billing_period", "records",
              "received_at")
FILE_SORT_KEYS = sort_keys()


def file_json(row: dict[str, Any]) -> dict[str, Any]:
    """The public shape of a file: the documented fields first, then the rest (no internal paths)."""
    out = {
        "id": row["id"],
        "name": row["name"],
        "carrier": row["carrier"],
        "type": row["type"],
        "cadence": row["cadence"],
        "source": row["source"],
        "size": row["size"],
        "fingerprint": row["fingerprint"],
        "status": row["status"],
        "reason": row["reason"],
        "billing_period": row["billing_period"],
        "records_from": row["records_from"],  # the first and last of its records' own dates, once loaded
        "records_to": row["records_to"],
        "received_at": row["received_at"],
        "records": row["records_loaded"],
        "records_skipped": row["records_skipped"],
        # Rows dropped as identical to an earlier row of the file (a format's duplicate_rows = "once").
        "records_dropped": row["records_dropped"],
        "error": row["error"],
        "format": row["format"],
        "container": row["container"],
        "member": row["member"],
        "origin": row["origin"],
        "compression": row["compression"],
        "released": row["released"],
        "superseded_by": row["superseded_by"],
        "updated_at": row["updated_at"],
    }
    for extra in ("potential_duplicates", "history"):
        if extra in row:
            out[extra] = row[extra]
    return out


def emit_json(value: Any) -> None:
    click.echo(json.dumps(_jsonable(value), indent=2))


def emit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """An aligned table of ``columns``, each value shortened to 48 characters (:func:`ingest.export.write_table`,
    sized on every row)."""
    write_table(columns, rows, sys.stdout, sample_size=None)


def emit_listing(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    """A listing command's output: every row as JSON (``--json``, every column), else a table of ``columns``,
    or ``(none)``."""
    if as_json:
        emit_json(list(rows))
    elif rows:
        emit_table(rows, columns)
    else:
        click.echo("(none)")


NARROWEST = 12  # a wrapped table narrows no column below this (nor below its heading)


def emit_wrapped_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """A table like :func:`emit_table` that cuts no value: wider than the terminal, its widest columns are
    narrowed and their values wrapped onto more lines."""
    if not rows:
        click.echo("(none)")
        return
    cells = [[_text(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    room = _terminal_width() - 2 * (len(columns) - 1)
    while sum(widths) > room:
        narrowable = [i for i, c in enumerate(columns) if widths[i] > max(len(c), NARROWEST)]
        if not narrowable:
            break
        widths[max(narrowable, key=lambda i: widths[i])] -= 1
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for r in cells:
        wrapped = [textwrap.wrap(v, w, break_on_hyphens=False) or [""] for v, w in zip(r, widths)]
        for line in itertools.zip_longest(*wrapped, fillvalue=""):
            click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())


def emit_field(label: str, value: Any) -> None:
    """``label: value``, labels right-aligned, the value whole: wrapped under itself past the terminal's width."""
    prefix = f"{label:>16}: "
    width = max(_terminal_width(), len(prefix) + NARROWEST)
    click.echo(textwrap.fill(_text(value), width, initial_indent=prefix, subsequent_indent=" " * len(prefix),
                             break_on_hyphens=False) or prefix.rstrip())


def _terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def period_option(func: Callable | None = None, *, help_text: str = "Billing period, YYYY-MM.") -> Callable:
    """``--period YYYY-MM``, checked; as ``@period_option`` or ``@period_option(help_text=...)``."""
    def check(_ctx, _param, value):
        if value is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            raise click.BadParameter("a billing period is YYYY-MM, e.g. 2026-10")
        return value

    option = click.option("--period", callback=check, help=help_text)
    return option(func) if func is not None else option


def moment_option(bound: str) -> Callable:
    """A ``--since`` (``bound`` "since": the first instant included) or ``--until`` ("until": inclusive, given
    as the first instant excluded) callback: a UTC date or date-time (:func:`ingest.export.parse_moment`)."""
    def check(_ctx, _param, value):
        from .export import since_bound, until_bound

        if value is None:
            return None
        try:
            return (since_bound if bound == "since" else until_bound)(value)
        except ValueError:
            raise click.BadParameter("a UTC date or date-time, e.g. 2026-10-01 or 2026-10-01T13:05Z") from None

    return check


def quiet_option(func: Callable) -> Callable:
    """``-q/--quiet``: no progress bar (on a terminal, staging or loading a file over 8 MiB draws one on stderr)."""
    return click.option("-q", "--quiet", is_flag=True,
                        help="No progress bar (a terminal gets one for a file over 8 MiB).")(func)


def handled(func: Callable) -> Callable:
    """Turn the project's errors into one line on stderr and exit status 1."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except CdrError as exc:
            if os.environ.get("CDR_DEBUG"):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


class Context:
    def __init__(self, config_path: str | None, actor: str):
        self.config_path = config_path
        self.actor = actor
        self._app: App | None = None

    @property
    def app(self) -> App:
        """The application on the configuration found (see ``ingest.config.find_config``). Found nowhere: one line
        naming the places searched, exit 2 (asked only by a command that runs, never by --help)."""
        if self._app is None:
            from .config import ConfigNotFound

            try:
                self._app = App.from_config(self.config_path, actor=self.actor)
            except ConfigNotFound as exc:
                click.echo(f"error: {exc}", err=True)
                sys.exit(2)
        return self._app


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", envvar="CDR_CONFIG", type=click.Path(dir_okay=False),
              help="Configuration file (default: $CDR_CONFIG, else the first of ./cdr.toml, ./config/cdr.toml, "
                   "~/.config/cdr-ingest/cdr.toml, /etc/cdr-ingest/cdr.toml).")
@click.option("--by", "actor", default=default_actor, show_default="your user name",
              help="Who is acting, for the audit trail.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line (implies --verbose).")
@click.version_option(__version__)  # not package_name: reading the installed metadata costs ~30 ms a start
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, actor: str, verbose: bool, log_json: bool) -> None:
    """cdr-ingest: carrier billing files in, each record loaded exactly once.

    \b
    Example:
      cdr upload samples/hero/hero_cdr_20261001.csv --carrier hero --type cdr
      cdr files --status held
    """
    from .logs import configure

    configure(verbose, log_json)
    ctx.obj = Context(config_path, actor)
    ctx.call_on_close(lambda: ctx.obj._app.close() if ctx.obj._app else None)


@cli.command()
# Not click's readable check: it answers with a usage block, and asks os.access, not the open that counts.
# admin.upload opens each file and reports one it cannot read (missing, a folder, no permission) in one line.
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("--carrier", help="The carrier the files come from (as configured). Required but for .eml files.")
@click.option("--type", "file_type", type=click.Choice(FILE_TYPES), help="cdr (calls) or sdr (fees). Required but for .eml.")
@click.option("--cadence", type=click.Choice(CADENCES), help="daily, monthly, ... (else from the carrier's rules).")
@period_option
@click.option("--format", "file_format", type=click.Choice(FORMATS), help="csv, txt, pipe or json (else from the name).")
@click.option("--no-load", is_flag=True, help="Only stage and catalog; leave loading to `cdr load` or the daemon.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@quiet_option
@pass_ctx
@handled
def upload(c: Context, paths, carrier, file_type, cadence, period, file_format, no_load, as_json, quiet):
    """Upload files by hand: stage, fingerprint, hold potential duplicates, load the rest.

    \b
    Example:
      cdr upload hero_cdr_20261001.csv --carrier hero --type cdr --cadence daily
      cdr upload forwarded-october-cdrs.eml      # a saved email: its attachments
    """
    if (carrier is None or file_type is None) and any(path.suffix.lower() != ".eml" for path in paths):
        raise click.UsageError("--carrier and --type are required for a file upload (not for .eml)")
    from .progress import ProgressBars

    app = c.app
    received = []
    refused = []  # one path that cannot be read is reported; the others are still uploaded
    with ProgressBars(quiet) as bars:
        for path in paths:
            try:
                if path.suffix.lower() == ".eml":  # a saved email: its attachments, routed like mailed ones
                    batch = admin.upload_email(app, path, carrier=carrier, progress=bars)
                else:
                    batch = admin.upload(app, path, carrier=carrier, file_type=file_type, cadence=cadence,
                                         period=period, file_format=file_format, progress=bars)
            except IntakeError as exc:
                refused.append(str(exc))
                continue
            if not no_load:
                admin.load_now(app, batch, progress=bars)
            received += batch
    for message in refused:
        click.echo(f"error: {message}", err=True)
    _report_files(app, received, as_json, failed=bool(refused))


def _report_files(app: App, received, as_json: bool, failed: bool = False) -> None:
    """Print each file's id and current status; exit 1 if any failed (or ``failed``: something else did)."""
    rows = _current_rows(app, received)
    if as_json:
        emit_json(rows)
    else:
        for row in rows:
            click.echo(_file_line(row))
    if failed or any(row["status"] == "failed" for row in rows):
        sys.exit(1)


def _current_rows(app: App, received) -> list[dict[str, Any]]:
    """The received files as they stand now (loaded, held, failed ... after any loading), in their public shape;
    a held one with the earlier files it may repeat (``potential_duplicates``)."""
    with app.catalog.read() as conn:
        rows = [catalog_files.get_file(conn, r.id) for r in received]
        for row in rows:
            if row["status"] == "held":
                row["potential_duplicates"] = catalog_files.links_of(conn, row["id"])
    return [file_json(row) for row in rows]


def _file_line(row: dict[str, Any]) -> str:
    """One file's id, name and status, with its reason, records loaded or error; held, the earlier files it
    repeats: ``#3 x.csv: held (duplicate-content): repeats #1 (x.csv, loaded)`` (an overlap's error names them)."""
    line = f"#{row['id']} {row['name']}: {row['status']}"
    if row["reason"]:
        line += f" ({row['reason']})"
    if row["status"] == "loaded":
        line += f", {row['records']} records" + (
            f", {row['records_skipped']} skipped as already loaded" if row["records_skipped"] else "")
    if row["error"] and row["status"] in ("failed", "held", "ignored"):
        line += f": {row['error']}"
    elif row["status"] == "held" and row.get("potential_duplicates"):
        line += f": repeats {catalog_files.repeats_text(row['potential_duplicates'])}"
    return line


@cli.command()
@click.option("--carrier")
@click.option("--type", "file_type", type=click.Choice(FILE_TYPES))
@click.option("--cadence", type=click.Choice(CADENCES))
@click.option("--status", type=click.Choice(STATUSES))
@period_option
@click.option("--since", callback=moment_option("since"),
              help="Only files received at or after this UTC date or date-time (2026-10-01, 2026-10-01T13:05Z).")
@click.option("--sort", type=click.Choice(FILE_SORT_KEYS),
              help="By id, received or name; -KEY for descending. Default: newest first (-received) on a terminal, "
                   "else by id, oldest first.")
@click.option("--limit", type=click.IntRange(min=0),
              help=f"At most this many files (0: all). A table on a terminal shows {TTY_LIMIT} by default.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array (written as it streams).")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="Print JSON Lines: one object per file and line.")
@pass_ctx
@handled
def files(c: Context, carrier, file_type, cadence, status, period, since, sort, limit, as_json, as_jsonl):
    """List received files (the "View CDRs" list), streamed as they are read: a table, or --json (one array,
    as always) or --jsonl (one object per line). On a terminal: newest first, and a table stops after
    50 rows, saying how many more.

    \b
    Example:
      cdr files --carrier hero --status held --period 2026-10
      cdr files --since 2026-10-01 --sort name
      cdr files --json > files.json
    """
    form = _output_form(("--json", as_json, "json"), ("--jsonl", as_jsonl, "jsonl"))
    terminal = sys.stdout.isatty()
    limit = _default_limit(limit, form, terminal)
    filters = {"carrier": carrier, "file_type": file_type, "cadence": cadence, "status": status, "period": period,
               "since": since}
    with c.app.catalog.read() as conn, catalog_files.iter_files(
            conn, sort=sort or ("-received" if terminal else "id"), limit=limit + 1 if limit else None,
            **filters) as rows:
        _write_listing(form, FILE_TABLE, map(file_json, rows), limit=limit,
                       total=lambda: catalog_files.count_files(conn, **filters),
                       how_to_see="--limit 0 shows them all, --json or --jsonl for scripts")


@cli.command()
@click.argument("file_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def show(c: Context, file_id: int, as_json: bool):
    """Show one file: its fields, the files it may repeat, its records, error and history.

    \b
    Example:
      cdr show 42
    """
    row = file_json(admin.show(c.app, file_id))
    if as_json:
        emit_json(row)
        return
    for key in FILE_FIELDS:
        if row.get(key) is not None:
            emit_field(key, row[key])
    click.echo("\nPotential duplicates:")
    # Each earlier file's status and own record count; "repeated": how many of this file's records it loaded first.
    earlier = [{**link, "records": link["records_loaded"], "repeated": link["records"]}
               for link in row["potential_duplicates"]]
    emit_wrapped_table(earlier, ("kind", "id", "name", "status", "records", "repeated", "received_at"))
    click.echo("\nHistory:")
    emit_wrapped_table(row["history"], ("at", "actor", "action", "from_status", "to_status", "reason"))


@cli.command(name="cat")
@click.argument("file_id", type=int)
@pass_ctx
@handled
def cat(c: Context, file_id: int):
    """Write a file's stored content to stdout, byte for byte: a plain file's bytes, a gzip's decompressed
    content, a zip member's content.

    \b
    Example:
      cdr cat 42 > hero_cdr_20261001.csv
      cdr cat 42 | head
    """
    sys.stdout.flush()
    out = sys.stdout.buffer
    with admin.open_content(c.app, file_id) as content, _until_the_reader_stops(out, exit_code=0):
        shutil.copyfileobj(content, out, 1 << 20)  # the reader having what it wanted (`| head`) is no error


@cli.command()
@click.argument("file_id", type=int)
@click.argument("other_id", metavar="OTHER", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def compare(c: Context, file_id: int, other_id: int, as_json: bool):
    """Compare two files before deciding on one (loaded or not): the same bytes? the same content (a gzipped
    copy is)? their line counts and first differing line; and for two files of one carrier, the records (by
    the carrier's ID) in both, and of those the ones that differ, only in FILE_ID and only in OTHER, with the
    first few of each.

    \b
    Example:
      cdr compare 42 17
      cdr compare 42 17 --json
    """
    from dataclasses import asdict

    from .compare import compare as compare_files

    result = compare_files(c.app, file_id, other_id)
    if as_json:
        emit_json(asdict(result))
        return
    first, other = f"#{file_id}", f"#{other_id}"
    emit_wrapped_table([asdict(result.first), asdict(result.other)],
                       ("id", "name", "carrier", "status", "compression", "size", "lines", "records"))
    click.echo(f"\n{result.verdict}")
    difference = result.first_difference
    if difference is not None:
        click.echo(f"first difference, line {difference.number}" + (f" ({difference.note})" if difference.note else ""))
        for label, line in ((first, difference.first), (other, difference.other)):
            emit_field(label, "(no such line)" if line is None else line)
    records = result.records
    if records is None:
        click.echo(f"records not compared: {result.records_not_compared}")
        return
    click.echo(f"\nrecords by key: {records.in_both} in both ({records.changed} of them differ), "
               f"{records.only_in_first} only in {first}, {records.only_in_other} only in {other}; the first few:")
    in_first, in_other = f"line in {first}", f"line in {other}"
    emit_wrapped_table(
        [{"records": kind, "key": s.key, in_first: s.first_line, in_other: s.other_line,
          "fields": "; ".join(f"{f.field}: {_text(f.first)} -> {_text(f.other)}" for f in s.fields) or None}
         for kind, samples in (("in both", records.samples_in_both), ("differ", records.samples_changed),
                               (f"only in {first}", records.samples_only_in_first),
                               (f"only in {other}", records.samples_only_in_other))
         for s in samples],
        ("records", "key", in_first, in_other, "fields"))


def _decision(command_name: str, help_text: str):
    """A command deciding on one file by :mod:`ingest.admin`'s function of the same name (release, discard)."""

    @cli.command(name=command_name, help=help_text)
    @click.argument("file_id", type=int)
    @click.option("--reason", help="Why (kept in the audit trail).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @pass_ctx
    @handled
    def command(c: Context, file_id: int, reason: str | None, as_json: bool):
        from .intake import Received

        row = getattr(admin, command_name)(c.app, file_id, reason=reason)
        received = [Received(row["id"], row["name"], row["status"], row["reason"])]
        if row["status"] == "queued":
            admin.load_now(c.app, received)
        _report_files(c.app, received, as_json)

    return command


_decision("release", """Release a held file: it is queued and loaded now; records already
loaded from other files are skipped (and counted).

\b
Example:
  cdr release 42 --reason "carrier confirmed: re-issued file"
""")
_decision("discard", """Discard a held, failed, queued or ignored file (its bytes stay staged).

\b
Example:
  cdr discard 42 --reason "resent last month's file by mistake"
""")


@cli.command()
@click.argument("file_id", type=int)
@click.option("--no-load", is_flag=True, help="Only queue it again.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@quiet_option
@pass_ctx
@handled
def retry(c: Context, file_id: int, no_load: bool, as_json: bool, quiet: bool):
    """Process a failed or ignored file again after fixing the configuration (a file rule, a carrier,
    the intake limits): an ignored or unreadable file is classified again with what its source said it
    is (carrier, type, cadence, period, format), a load failure queued again; then it is loaded.

    A malformed file is not fixed by a retry: drop or upload the corrected file again (same carrier and
    name). When it loads, the failed file becomes superseded, linked to it, and leaves the backlog.

    \b
    Example:
      cdr retry 42
    """
    from .progress import ProgressBars

    received = admin.retry(c.app, file_id)
    if not no_load:
        with ProgressBars(quiet) as bars:
            admin.load_now(c.app, received, progress=bars)
    _report_files(c.app, received, as_json)


@cli.command()
@click.option("--file", "file_id", type=int, help="Only the records of this file.")
@click.option("--carrier", help="Only this carrier's records.")
@click.option("--type", "record_type", type=click.Choice(FILE_TYPES),
              help="cdr: calls; sdr: charges (fixed fees). Default: the --file's kind, else calls.")
@period_option(help_text="Only records of this month, YYYY-MM, by their own date (a call's UTC start date; a "
                         "charge's period start, else its charge date).")
@click.option("--account", help="Only records of this account (a call's account code, a charge's customer reference).")
@click.option("--number", help="Only records whose a-, b- or bill number (a charge: its number reference) is exactly this.")
@click.option("--since", callback=moment_option("since"),
              help="Only records at or after this UTC date or date-time (a call's start, a charge's own date).")
@click.option("--until", callback=moment_option("until"),
              help="Only records up to this UTC date (that whole day) or date-time (inclusive).")
@click.option("--limit", type=click.IntRange(min=0),
              help=f"At most this many (0: all). Default: all, but {TTY_LIMIT} in a table on a terminal.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV: a header row, then every column of every record.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON Lines: one object per record and line (a stream, not one array).")
@pass_ctx
@handled
def records(c: Context, file_id, carrier, record_type, period, account, number, since, until, limit, as_csv,
            as_json):
    """List loaded calls or charges, oldest first, streamed as they are read (any number, in constant memory): a
    table, --csv (every column; money as exact decimal text, times UTC ISO 8601 with Z, numbers as text, the
    columns the format did not map as a JSON object in ``extra``) or --json (JSON Lines: one object per line).

    \b
    Example:
      cdr records --file 42 --limit 20
      cdr records --carrier hero --period 2026-10 --csv > hero-2026-10.csv
      cdr records --number 0016321234 --since 2026-10-01 --until 2026-10-07 --json
    """
    from .catalog.records import count_records, iter_records, layout_for, table_columns

    form = _output_form(("--csv", as_csv, "csv"), ("--json", as_json, "jsonl"))
    limit = _default_limit(limit, form, sys.stdout.isatty())
    filters = {"file_id": file_id, "carrier": carrier, "record_type": record_type, "period": period,
               "account": account, "number": number, "since": since, "before": until}
    with c.app.catalog.read() as conn, iter_records(conn, limit=limit + 1 if limit else None, **filters) as rows:
        layout = layout_for(conn, record_type, file_id)
        _write_listing(form, table_columns(layout) if form == "table" else layout.columns, rows, limit=limit,
                       total=lambda: count_records(conn, **filters),
                       how_to_see="--limit 0 shows them all, --csv or --json to export")


def _output_form(*flags: tuple[str, bool, str]) -> str:
    """The one output form (a key of :data:`ingest.export.WRITERS`) the flags given ask for, each flag as
    (option, given, form); ``table`` when none is. Two at once is a usage error."""
    chosen = [(option, form) for option, given, form in flags if given]
    if len(chosen) > 1:
        raise click.UsageError(" and ".join(option for option, _ in chosen) + " cannot be used together")
    return chosen[0][1] if chosen else "table"


def _default_limit(limit: int | None, form: str, terminal: bool) -> int:
    """``--limit`` as given; if not, a table on a terminal shows :data:`ingest.export.TTY_LIMIT` rows, anything
    else all (0)."""
    if limit is not None:
        return limit
    return TTY_LIMIT if form == "table" and terminal else 0


def _write_listing(form: str, columns, rows, **how) -> None:
    """Stream a listing to stdout (:func:`ingest.export.write_listing`). A reader that stops early (``| head``)
    ends the command quietly."""
    from .export import write_listing

    with _until_the_reader_stops(sys.stdout, exit_code=1):
        write_listing(form, columns, rows, sys.stdout, **how)


@contextlib.contextmanager
def _until_the_reader_stops(out, *, exit_code: int) -> Iterator[None]:
    """Write to ``out`` (flushed at the end); a reader that stops early (``| head``) ends the command quietly
    with ``exit_code``, not a BrokenPipeError traceback."""
    try:
        yield
        out.flush()
    except BrokenPipeError:
        # Python would complain again when flushing stdout at exit: point it at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        sys.exit(exit_code)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@quiet_option
@pass_ctx
@handled
def load(c: Context, as_json: bool, quiet: bool):
    """Load every queued file now (on a terminal, a progress bar for each file over 8 MiB).

    \b
    Example:
      cdr load
    """
    from .progress import ProgressBars

    with ProgressBars(quiet) as bars:
        results = load_queued(c.app, progress=bars)
    rows = [{"id": r.file_id, "status": r.status, "records": r.loaded, "skipped": r.skipped, "message": r.message}
            for r in results]
    emit_json(rows) if as_json else emit_table(rows, ("id", "status", "records", "skipped", "message"))


@cli.command()
@click.option("--source", "sources", multiple=True, help="Only this drop-folder or Maildir source (repeatable).")
@click.option("--no-load", is_flag=True, help="Only take files in; do not load them.")
@click.option("--once", is_flag=True, help="One pass over the folders, then exit.")
@pass_ctx
@handled
def watch(c: Context, sources: Iterable[str], no_load: bool, once: bool):
    """Watch the drop folders and Maildirs: take each file (or message) once complete, move it to done/
    (a message: to cur/), load it.

    \b
    Example:
      cdr watch --source hero-daily-drop
    """
    from .watch import watch as run_watch, watch_once

    app = c.app
    names = list(sources) or None
    for name in names or []:
        app.config.source(name)
    if once:
        from .logs import printed_by_command

        printed_by_command("watch_error")  # printed below, each once
        for result in watch_once(app, sources=names, load=not no_load):
            for row in _current_rows(app, result.received):
                click.echo(f"{result.source}: {_file_line(row)}")
            for error in result.errors:
                click.echo(f"{result.source}: error: {error}", err=True)
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def report(results):
        for result in results:
            for r in result.received:
                click.echo(f"{result.source}: #{r.id} {r.name}: {r.status}")

    run_watch(app, stop=stop, sources=names, load=not no_load, on_pass=report)


@cli.command()
@click.option("--source", "sources", multiple=True, help="Only this source (repeatable); default: every remote source.")
@click.option("--no-load", is_flag=True, help="Only collect; leave loading to `cdr load` or the daemon.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def collect(c: Context, sources: Iterable[str], no_load: bool, as_json: bool):
    """Run one collection pass now, in the foreground, then load what is queued and print each file's
    final status. Exits 1 if a source failed or a file failed to load; entries a pass could not take (a
    refused name, a file that cannot be opened) are reported but do not fail it.

    \b
    Example:
      cdr collect --source hero-sftp
    """
    from .daemon import remote_sources, run_pass, waiting_text
    from .logs import printed_by_command

    printed_by_command("source_failed", "entry_not_taken")  # this command prints them, each once
    app = c.app
    names = list(sources) or remote_sources(app)
    for name in names:
        app.config.source(name)  # an unknown name is refused before any pass runs
    passes = []
    for name in names:
        if sys.stdout.isatty() and not as_json:
            click.echo(f"{name}: collecting ...")
        passes.append(run_pass(app, name))
    if not no_load:
        load_queued(app)
    rows = [{"source": result.source, "received": _current_rows(app, result.received), "errors": result.errors,
             "entry_errors": result.entry_errors, "entries_waiting": result.entries_waiting, "next_run": next_run}
            for result, next_run in passes]
    if as_json:
        emit_json(rows)
    else:
        for row in rows:
            for file_row in row["received"]:
                click.echo(f"{row['source']}: {_file_line(file_row)}")
            if row["entries_waiting"]:
                click.echo(f"{row['source']}: {waiting_text(row['entries_waiting'])}")
            for error in row["errors"]:
                click.echo(f"{row['source']}: error: {error}", err=True)
            for error in row["entry_errors"]:
                click.echo(f"{row['source']}: not taken: {error}", err=True)
    if any(row["errors"] or any(f["status"] == "failed" for f in row["received"]) for row in rows):
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def status(c: Context, as_json: bool):
    """Show every source (drop folders, Maildirs, the SMTP listener and uploads too): its state, the files
    taken from it and the last one, the entries waiting for a later listing, last attempt, last success and
    next run; its last error with its time (current only when later than its last success); the entries its
    last pass could not take; and the load backlog with the held and failed counts.

    \b
    Example:
      cdr status
      cdr status --json
    """
    from .catalog import sources as source_states
    from .smtp import SOURCE as SMTP_SOURCE

    app = c.app
    with app.catalog.read() as conn:
        sources_out = source_states.overview(conn, app.config.sources,
                                             listeners=(SMTP_SOURCE,) if app.config.smtp is not None else ())
        counts = catalog_files.status_counts(conn)
    files_out = {"queued": counts.get("queued", 0), "held": counts.get("held", 0), "failed": counts.get("failed", 0),
                 "loaded": counts.get("loaded", 0)}
    if as_json:
        emit_json({"sources": sources_out, "files": files_out})
        return
    emit_table(sources_out, ("source", "kind", "state", "files", "last_file", "last_file_at", "entries_waiting",
                             "last_success", "next_run"))
    for source in sources_out:
        if source["last_error"]:
            when = f"{_cell(source['last_error_at'])}" + ("" if source["error_current"] else
                                                          f", before its last success {_cell(source['last_success'])}")
            click.echo(f"{source['source']}: last error ({when}): {source['last_error']}")
        for error in source["entry_errors"]:
            click.echo(f"{source['source']}: not taken: {error}")
    click.echo(f"\nload backlog: {files_out['queued']} queued; {files_out['held']} held; {files_out['failed']} failed")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {check, ok, detail}.")
@pass_ctx
@handled
def doctor(c: Context, as_json: bool):
    """Check what is in use, changing nothing: the configuration file, the database (password masked;
    reachable; schema at head, never migrated here), the staging folder (writable, free space), each
    carrier's parser, each source (drop folders and Maildirs exist and are writable, their done/ safe;
    remote servers connected to, logged in to, each directory listed, nothing fetched; IMAP folders
    selected; billing feeds' hosts reached, never queried) and the SMTP listener (port free, TLS files
    load). One line per check; exits 1 naming the checks that failed.

    \b
    Example:
      cdr doctor
      cdr --config /etc/cdr-ingest/cdr.toml doctor --json
    """
    from .doctor import diagnose

    results = []
    for result in diagnose(lambda: c.app):
        results.append(result)
        if not as_json:
            click.echo(f"{'ok' if result.ok else 'FAIL':<4}  {result.check}: {result.detail}")
    if as_json:
        emit_json([result.view() for result in results])
    failed = [result.check for result in results if not result.ok]
    if failed:
        click.echo(f"error: {len(failed)} check{'' if len(failed) == 1 else 's'} failed: {', '.join(failed)}",
                   err=True)
        sys.exit(1)


@cli.command()
@click.option("--no-load", is_flag=True, help="Collect only; do not load.")
@pass_ctx
@handled
def daemon(c: Context, no_load: bool):
    """Run every source on its schedule, the drop-folder watcher and the loader, until SIGTERM/SIGINT.

    \b
    Example:
      cdr daemon
      cdr --log-json daemon      # one JSON object per log line
    """
    from .daemon import run_daemon

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    from .logs import log_events

    log_events()  # the daemon's log is all it says: every file event and pass, at INFO
    logging.getLogger(__name__).info("daemon started", extra={"event": "daemon_started"})
    run_daemon(c.app, stop=stop, load=not no_load)
    logging.getLogger(__name__).info("daemon stopped", extra={"event": "daemon_stopped"})


@cli.group()
def feed():
    """Billing Feed web-service sources.

    \b
    Example:
      cdr feed backfill --source hero-feed --date 2026-10-01
    """


@feed.command()
@click.option("--source", required=True, help="A source of kind billing_feed.")
@click.option("--date", "day", required=True, help="The day to fetch, YYYY-MM-DD.")
@click.option("--hour", type=click.IntRange(0, 23), help="Only this hour (0-23) of that day.")
@click.option("--no-load", is_flag=True, help="Only stage; leave loading to `cdr load` or the daemon.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def backfill(c: Context, source: str, day: str, hour: int | None, no_load: bool, as_json: bool):
    """Fetch one day (or hour) from a billing feed, through the same door, without moving its cursor.
    Records already loaded are never loaded twice (an overlapping answer is held for release).

    \b
    Example:
      cdr feed backfill --source hero-feed --date 2026-10-01 --hour 13
    """
    from datetime import date as date_type

    from .collectors import collector_for

    try:
        date_type.fromisoformat(day)
    except ValueError:
        raise click.BadParameter("a date is YYYY-MM-DD", param_hint="--date") from None
    app = c.app
    spec = app.config.source(source)
    if spec.kind != "billing_feed":
        raise click.BadParameter(f"{source} is a {spec.kind} source, not a billing_feed", param_hint="--source")
    result = collector_for(app, spec).backfill(day, hour)
    if not no_load:
        load_queued(app)
    received = _current_rows(app, result.received)  # each file's final status, after loading
    if as_json:
        emit_json({"received": received, "errors": result.errors})
    else:
        for row in received:
            click.echo(_file_line(row))
        for error in result.errors:
            click.echo(f"error: {error}", err=True)
    if result.errors or any(row["status"] == "failed" for row in received):
        sys.exit(1)


@cli.group()
def formats():
    """Record formats: how a carrier's files map onto calls and charges (docs/formats.md).

    \b
    Example:
      cdr formats list
      cdr formats check acme_20261001.csv --carrier acme
    """


@formats.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def formats_list(c: Context, as_json: bool):
    """Show every format: built in or from which configuration file, its kind, the records it yields, its key,
    the carriers using it and its description.

    \b
    Example:
      cdr formats list --json
    """
    from .formats.tools import list_formats

    found = list_formats(c.app.config)
    if as_json:
        emit_json([info.view() for info in found])
        return
    rows = [{**info.view(), "records": ", ".join(info.records), "carriers": ", ".join(info.carriers) or "-"}
            for info in found]
    emit_wrapped_table(rows, ("name", "kind", "records", "key", "carriers", "origin"))
    width = max(_terminal_width(), 40)
    for info in found:
        if info.description:
            click.echo("\n" + textwrap.fill(info.description, width, initial_indent=f"{info.name}: ",
                                             subsequent_indent="  ", break_on_hyphens=False))


@formats.command("check")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--carrier", required=True, help="The carrier whose format reads the file.")
@click.option("--limit", type=click.IntRange(min=0), default=10, show_default=True,
              help="Records shown of each kind.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_ctx
@handled
def formats_check(c: Context, path: Path, carrier: str, limit: int, as_json: bool):
    """Read FILE with the carrier's format, loading nothing: its first records of each kind, how many there
    are, the rows dropped as identical, and the first error (file, line, field, reason, value), exiting 1.

    \b
    Example:
      cdr formats check samples/hero/hero_cdr_20261001.csv --carrier hero --limit 3
    """
    from .formats.tools import check_file

    result = check_file(c.app.config, path, carrier, limit=limit)
    if as_json:
        emit_json(result.view())
    else:
        _print_check(result, limit)
    if not result.ok:
        if not as_json:
            click.echo(f"error: {result.error.message}", err=True)
        sys.exit(1)


def _print_check(result, limit: int) -> None:
    """A checked file as text: a heading, each record shown as its non-empty fields, then the counts."""
    told = f" (file format {result.file_format})" if result.file_format else ""
    click.echo(f"{result.file}: carrier {result.carrier}, format {result.format}{told}")
    width = max(_terminal_width(), 40)
    for index, record in enumerate(result.records):
        shown = {k: v for k, v in record.items() if k != "kind" and v not in (None, "", "{}")}
        click.echo(f"\n{record['kind']}, row {shown.pop('position', index + 1)}")
        label = max(map(len, shown), default=0)
        for name, value in shown.items():
            prefix = f"  {name:>{label}}: "
            click.echo(textwrap.fill(_text(value), max(width, len(prefix) + NARROWEST), initial_indent=prefix,
                                     subsequent_indent=" " * len(prefix), break_on_hyphens=False))
    counts = "; ".join(f"{count} {kind}{'' if count == 1 else 's'}" for kind, count in result.counts.items())
    dropped = result.rows_dropped
    click.echo(f"\n{counts or 'no records'}{' before the error' if not result.ok else ''}; "
               f"{dropped or 'no'} row{'' if dropped == 1 else 's'} dropped as identical to another"
               + (f"; the first {limit} of each kind shown"
                  if limit and any(n > limit for n in result.counts.values()) else ""))


@cli.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Rewrite an existing cdr.toml there.")
@handled
def init_command(directory: Path, force: bool):
    """Start an installation in DIRECTORY (default: here): write a commented cdr.toml (the built-in carriers,
    one drop folder each; paths relative to the file) and create the folders it names. An existing cdr.toml
    is kept unless --force. Needs no configuration and opens no catalog.

    \b
    Example:
      cdr init /srv/cdr && cd /srv/cdr && cdr upload hero_cdr_20261001.csv --carrier hero --type cdr
    """
    from .init import init

    done = init(directory, force=force)
    click.echo(f"wrote {done.config_path} (carriers: {', '.join(done.carriers)})")
    click.echo(f"folders: {', '.join(str(folder) for folder in done.folders)}")
    click.echo(f"next: {done.next_command}")


# The commands of customer data and billing (ingest.billing) and of our own network's calls (ingest.legs), in
# their own modules; they use the helpers above.
from .commands import bill as _bill_commands  # noqa: E402,F401
from .commands import charges as _charges_commands  # noqa: E402,F401
from .commands import customers as _customer_commands  # noqa: E402,F401
from .commands import legs as _legs_commands  # noqa: E402,F401


def main() -> None:
    cli(prog_name="cdr")


if __name__ == "__main__":
    # Run as ``python -m ingest.cli``, this file is ``__main__``; the command modules register on ``ingest.cli``,
    # so that module is the one to run.
    from ingest.cli import main as registered_main

    registered_main()
