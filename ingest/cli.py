"""The ``cdr`` command: a thin layer over :mod:`ingest.admin`, :mod:`ingest.load` and the collectors.

Each command is a few lines calling the library. Listings print a table (``--json`` for machines).
Bad input exits non-zero with one line on stderr.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
import traceback
from datetime import date, datetime
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import click

from . import admin
from .app import App, default_actor
from .catalog import files as catalog_files
from .config import CADENCES, FILE_TYPES, FORMATS
from .errors import CdrError, IntakeError
from .intake import Received
from .load import load_queued

FILE_FIELDS = ("id", "name", "carrier", "type", "cadence", "source", "size", "fingerprint", "status", "reason",
               "billing_period", "received_at", "records", "records_skipped", "format", "container", "member",
               "origin", "compression", "released", "superseded_by", "error")
FILE_TABLE = ("id", "name", "carrier", "type", "cadence", "status", "reason", "billing_period", "records",
              "received_at")
RECORD_TABLE = ("id", "file_id", "carrier", "record_type", "feed_id", "utc_time", "a_party", "b_party",
                "seconds", "charge", "charge_excl", "call_type")


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
        "received_at": row["received_at"],
        "records": row["records_loaded"],
        "records_skipped": row["records_skipped"],
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


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)  # exact: a JSON number would become a float in most readers
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(_jsonable(value), indent=2))


def emit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip())
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(_jsonable(value))
    return text if len(text) <= 48 else text[:47] + "…"


def period_option(func: Callable) -> Callable:
    def check(_ctx, _param, value):
        if value is not None and not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
            raise click.BadParameter("a billing period is YYYY-MM, e.g. 2026-10")
        return value

    return click.option("--period", callback=check, help="Billing period, YYYY-MM.")(func)


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
        if self._app is None:
            self._app = App.from_config(self.config_path, actor=self.actor)
        return self._app


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", envvar="CDR_CONFIG", type=click.Path(dir_okay=False),
              help="Configuration file (default: $CDR_CONFIG, else config/cdr.toml).")
@click.option("--by", "actor", default=default_actor, show_default="your user name",
              help="Who is acting, for the audit trail.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress to stderr.")
@click.option("--log-json", is_flag=True, help="Log one JSON object per line (implies --verbose).")
@click.version_option(package_name="cdr-ingest")
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
@pass_ctx
@handled
def upload(c: Context, paths, carrier, file_type, cadence, period, file_format, no_load, as_json):
    """Upload files by hand: stage, fingerprint, hold potential duplicates, load the rest.

    \b
    Example:
      cdr upload hero_cdr_20261001.csv --carrier hero --type cdr --cadence daily
      cdr upload forwarded-october-cdrs.eml      # a saved email: its attachments
    """
    if (carrier is None or file_type is None) and any(path.suffix.lower() != ".eml" for path in paths):
        raise click.UsageError("--carrier and --type are required for a file upload (not for .eml)")
    app = c.app
    received = []
    refused = []  # one path that cannot be read is reported; the others are still uploaded
    for path in paths:
        try:
            if path.suffix.lower() == ".eml":  # a saved email: its attachments, routed like mailed ones
                batch = admin.upload_email(app, path, carrier=carrier)
            else:
                batch = admin.upload(app, path, carrier=carrier, file_type=file_type, cadence=cadence,
                                     period=period, file_format=file_format)
        except IntakeError as exc:
            refused.append(str(exc))
            continue
        if not no_load:
            admin.load_now(app, batch)
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
    """The received files as they stand now (loaded, held, failed ... after any loading), in their public shape."""
    with app.catalog.read() as conn:
        return [file_json(catalog_files.get_file(conn, r.id)) for r in received]


def _file_line(row: dict[str, Any]) -> str:
    """One file's id, name and status, with its reason, records loaded or error."""
    line = f"#{row['id']} {row['name']}: {row['status']}"
    if row["reason"]:
        line += f" ({row['reason']})"
    if row["status"] == "loaded":
        line += f", {row['records']} records" + (
            f", {row['records_skipped']} skipped as already loaded" if row["records_skipped"] else "")
    if row["error"] and row["status"] in ("failed", "held", "ignored"):
        line += f": {row['error']}"
    return line


@cli.command()
@click.option("--carrier")
@click.option("--type", "file_type", type=click.Choice(FILE_TYPES))
@click.option("--cadence", type=click.Choice(CADENCES))
@click.option("--status", type=click.Choice(catalog_files.STATUSES))
@period_option
@click.option("--limit", type=int, help="At most this many files.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def files(c: Context, carrier, file_type, cadence, status, period, limit, as_json):
    """List received files (the "View CDRs" list), oldest first.

    \b
    Example:
      cdr files --carrier hero --status held --period 2026-10
    """
    with c.app.catalog.read() as conn:
        rows = catalog_files.list_files(conn, carrier=carrier, file_type=file_type, cadence=cadence, status=status,
                                        period=period, limit=limit)
    shaped = [file_json(r) for r in rows]
    emit_json(shaped) if as_json else emit_table(shaped, FILE_TABLE)


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
            click.echo(f"{key:>16}: {_cell(row[key]) if key != 'error' else row[key]}")
    click.echo("\nPotential duplicates:")
    emit_table(row["potential_duplicates"], ("kind", "id", "name", "status", "records", "received_at"))
    click.echo("\nHistory:")
    emit_table(row["history"], ("at", "actor", "action", "from_status", "to_status", "reason"))


def _decision(command_name: str, action: Callable, help_text: str):
    @cli.command(name=command_name, help=help_text)
    @click.argument("file_id", type=int)
    @click.option("--reason", help="Why (kept in the audit trail).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @pass_ctx
    @handled
    def command(c: Context, file_id: int, reason: str | None, as_json: bool):
        row = action(c.app, file_id, reason=reason)
        received = [Received(row["id"], row["name"], row["status"], row["reason"])]
        if row["status"] == "queued":
            admin.load_now(c.app, received)
        _report_files(c.app, received, as_json)

    return command


_decision("release", admin.release, """Release a held file: it is queued and loaded now; records already
loaded from other files are skipped (and counted).

\b
Example:
  cdr release 42 --reason "carrier confirmed: re-issued file"
""")
_decision("discard", admin.discard, """Discard a held, failed, queued or ignored file (its bytes stay staged).

\b
Example:
  cdr discard 42 --reason "resent last month's file by mistake"
""")


@cli.command()
@click.argument("file_id", type=int)
@click.option("--no-load", is_flag=True, help="Only queue it again.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def retry(c: Context, file_id: int, no_load: bool, as_json: bool):
    """Process a failed or ignored file again after fixing the configuration (a file rule, a carrier,
    the intake limits): an ignored or unreadable file is classified again with what its source said it
    is (carrier, type, cadence, period, format), a load failure queued again; then it is loaded.

    A malformed file is not fixed by a retry: drop or upload the corrected file again (same carrier and
    name). When it loads, the failed file becomes superseded, linked to it, and leaves the backlog.

    \b
    Example:
      cdr retry 42
    """
    received = admin.retry(c.app, file_id)
    if not no_load:
        admin.load_now(c.app, received)
    _report_files(c.app, received, as_json)


@cli.command()
@click.option("--file", "file_id", type=int, help="Only the records of this file.")
@click.option("--carrier")
@click.option("--type", "record_type", type=click.Choice(FILE_TYPES), help="cdr or sdr records.")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many (0: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def records(c: Context, file_id, carrier, record_type, limit, as_json):
    """List loaded records.

    \b
    Example:
      cdr records --file 42 --limit 20
    """
    rows = admin.list_records(c.app, file_id=file_id, carrier=carrier, record_type=record_type, limit=limit)
    emit_json(rows) if as_json else emit_table(rows, RECORD_TABLE)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
@handled
def load(c: Context, as_json: bool):
    """Load every queued file now.

    \b
    Example:
      cdr load
    """
    results = load_queued(c.app)
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
    from .daemon import remote_sources, run_pass

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
             "entry_errors": result.entry_errors, "next_run": next_run} for result, next_run in passes]
    if as_json:
        emit_json(rows)
    else:
        for row in rows:
            for file_row in row["received"]:
                click.echo(f"{row['source']}: {_file_line(file_row)}")
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
    """Show each source's last attempt, last success, last error, next run and files collected, the entries
    its last pass could not take (a refused name, an unreadable file), and the load backlog with the held and
    failed counts.

    \b
    Example:
      cdr status --json
    """
    from .catalog import sources as source_states

    app = c.app
    with app.catalog.read() as conn:
        sources_out = source_states.overview(conn, app.config.sources)
        counts = catalog_files.status_counts(conn)
    files_out = {"queued": counts.get("queued", 0), "held": counts.get("held", 0), "failed": counts.get("failed", 0),
                 "loaded": counts.get("loaded", 0)}
    if as_json:
        emit_json({"sources": sources_out, "files": files_out})
        return
    emit_table(sources_out, ("source", "kind", "state", "last_attempt", "last_success", "next_run",
                             "files_collected", "failures_in_a_row", "last_error"))
    for source in sources_out:
        for error in source["entry_errors"]:
            click.echo(f"{source['source']}: not taken: {error}")
    click.echo(f"\nload backlog: {files_out['queued']} queued; {files_out['held']} held; {files_out['failed']} failed")


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
    if as_json:
        emit_json({"received": [r.__dict__ for r in result.received], "errors": result.errors})
    else:
        for r in result.received:
            click.echo(f"#{r.id} {r.name}: {r.status}" + (f" ({r.reason})" if r.reason else ""))
        for error in result.errors:
            click.echo(f"error: {error}", err=True)
    if result.errors:
        sys.exit(1)


def main() -> None:
    cli(prog_name="cdr")


if __name__ == "__main__":
    main()
