"""`cdr xdrs ...`, `cdr legs ...`, `cdr alerts`: see the package docstring of ingest.commands."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from ..cli import Context, cli, emit_json, emit_listing, emit_table, handled, pass_ctx, period_option

XDR_TABLE = ("id", "call_id", "account", "user_name", "calling_number", "called_number", "setup_time",
             "charged_seconds", "call_seconds", "gateways", "leg_count", "status", "reason")
ORPHAN_TABLE = ("leg_id", "call_id", "reason", "xdr_id", "status_type", "event_time", "nas_ip", "user_name",
                "file_id")
WAITING_TABLE = ("carrier", "call_id", "legs", "first_event", "last_event")
ALERT_TABLE = ("id", "call_time", "call_id", "user_name", "remote_address", "gateway", "xdr_id", "mailed_at")
LEG_TABLE = ("id", "status_type", "event_time", "nas_ip", "user_name", "call_origin", "calling_number",
             "called_number", "session_seconds", "disconnect_cause", "remote_address")


@cli.group(invoke_without_command=True)
@click.option("--account", help="Only this account's xDRs.")
@period_option(help_text="Only xDRs of this month, YYYY-MM, by the UTC date of the call's setup.")
@click.option("--incomplete", is_flag=True, help="Only calls the window closed before every leg came.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many (0 or none: all).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (every column).")
@click.pass_context
@handled
def xdrs(ctx: click.Context, account, period, incomplete, limit, as_json):
    """Calls of our own network, joined from their legs (RADIUS accounting records): one xDR per party billed,
    with the account, the charged duration (the session the account pays for) and the call duration (the time
    its user spoke). Without a subcommand: list them, lowest id first.

    \b
    Example:
      cdr xdrs --period 2026-02
      cdr xdrs --incomplete --json
      cdr xdrs show 7
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..legs.views import list_xdrs

    found = list_xdrs(ctx.find_object(Context).app, account=account, period=period, incomplete=incomplete,
                      limit=limit)
    emit_listing(found, XDR_TABLE, as_json)


@xdrs.command("show")
@click.argument("xdr_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the xDR, its legs and call details as JSON.")
@pass_ctx
@handled
def xdrs_show(c: Context, xdr_id: int, as_json: bool):
    """One xDR: its fields, the legs it was made from and its PBX call details (via_hg, via_ext,
    media_duration, acli).

    \b
    Example:
      cdr xdrs show 7 --json
    """
    from ..legs.views import XDR_COLUMNS, show_xdr

    shown = show_xdr(c.app, xdr_id)
    if as_json:
        emit_json(shown)
        return
    width = max(len(name) for name in XDR_COLUMNS)
    for name in XDR_COLUMNS:
        value = shown[name]
        click.echo(f"{name:<{width}}  {'' if value is None else value}")
    click.echo("details:" if shown["details"] else "details: (none)")
    for name, value in shown["details"].items():
        click.echo(f"  {name} = {value}")
    click.echo(f"legs ({len(shown['legs'])}):")
    emit_table(shown["legs"], LEG_TABLE)


@cli.group()
def legs():
    """Call legs (RADIUS accounting records of our own network) and their joining into xDRs.

    \b
    Example:
      cdr legs orphans
      cdr legs waiting
      cdr legs join
    """


@legs.command("orphans")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many (0 or none: all).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_ctx
@handled
def legs_orphans(c: Context, limit, as_json: bool):
    """Legs that joined no complete call: those of calls the window closed (reason no-stop, or
    no-record-from-node:NODE; their incomplete xDR is named), those that came after their call was produced
    (late) and those without a call id (no-call-id).

    \b
    Example:
      cdr legs orphans --json
    """
    from ..legs.views import list_orphans

    found = list_orphans(c.app, limit=limit)
    emit_listing(found, ORPHAN_TABLE, as_json)


@legs.command("waiting")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_ctx
@handled
def legs_waiting(c: Context, as_json: bool):
    """Calls whose legs are waiting for the rest of the call (a Stop, or a trusted gateway's record).

    \b
    Example:
      cdr legs waiting
    """
    from ..legs.views import waiting_calls

    found = waiting_calls(c.app)
    emit_listing(found, WAITING_TABLE, as_json)


def _joined(result, as_json: bool) -> None:
    if as_json:
        emit_json(result.as_dict())
        return
    click.echo(f"took {result.legs_taken} legs of {result.files_taken} files; {result.xdrs} xDRs "
               f"({result.incomplete} incomplete); {result.orphans} orphan legs; {len(result.alerts)} security "
               f"alerts; {result.waiting_calls} calls waiting")


@legs.command("join")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_ctx
@handled
def legs_join(c: Context, as_json: bool):
    """Join now: take the legs of every loaded file not taken yet and produce the calls that are complete (each
    load of a file of legs does this itself; this is for after a failure, or a change of [[nodes]]).

    \b
    Example:
      cdr legs join
    """
    from ..legs.join import join_legs

    _joined(join_legs(c.app, actor=c.actor), as_json)


@legs.command("close")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_ctx
@handled
def legs_close(c: Context, as_json: bool):
    """Join, with the window running on this machine's clock rather than on the newest accounting time loaded:
    every call none of whose legs is newer than [legs] window_hours before now is closed (incomplete). For a
    network that has gone quiet, e.g. before a month's billing run.

    \b
    Example:
      cdr legs close && cdr bill run 2026-02
    """
    from ..legs.join import join_legs

    _joined(join_legs(c.app, actor=c.actor, now=datetime.now(timezone.utc)), as_json)


@cli.command("alerts")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many (0 or none: all).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_ctx
@handled
def alerts(c: Context, limit, as_json: bool):
    """Security alerts, newest first: calls whose User-Name named no account (time, call id, User-Name, remote
    address, gateway), and whether each was mailed to [alerts] mail_to.

    \b
    Example:
      cdr alerts --json
    """
    from ..legs.views import list_alerts

    found = list_alerts(c.app, limit=limit)
    emit_listing(found, ALERT_TABLE, as_json)
