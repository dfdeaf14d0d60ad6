"""What joining produced, as plain views for the CLI and the console: xDRs (:func:`list_xdrs`, :func:`show_xdr`),
orphan legs (:func:`list_orphans`), legs still waiting (:func:`waiting_calls`) and security alerts
(:func:`list_alerts`). They only read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Date, func, literal, select

from ..billing import period_bounds
from ..catalog.files import utc_date
from ..catalog.schema import legs, orphan_legs, pending_legs, security_alerts, xdr_details, xdr_legs, xdrs
from ..errors import NotFound

# The columns of an xDR, in order (every view and the --json output).
XDR_COLUMNS = ("id", "carrier", "call_id", "party", "account", "user_name", "calling_number", "called_number",
               "setup_time", "connect_time", "disconnect_time", "charged_seconds", "call_seconds",
               "disconnect_cause", "remote_address", "gateways", "leg_count", "status", "reason", "file_id", "joined_at")
LEG_COLUMNS = ("id", "file_id", "position", "status_type", "event_time", "nas_ip", "user_name", "call_origin",
               "call_type", "calling_number", "called_number", "setup_time", "connect_time", "disconnect_time",
               "clock_flag", "session_seconds", "disconnect_cause", "remote_address", "session_id",
               "unique_session_id", "conf_id", "sip_call_id", "extra")
ORPHAN_COLUMNS = ("leg_id", "carrier", "call_id", "reason", "xdr_id", "at", "file_id", "status_type", "event_time",
                  "nas_ip", "user_name")
ALERT_COLUMNS = ("id", "raised_at", "call_time", "carrier", "call_id", "user_name", "remote_address", "gateway",
                 "xdr_id", "mailed_at", "mail_error")


def list_xdrs(app, *, account: str | None = None, period: str | None = None, incomplete: bool = False,
              limit: int | None = None) -> list[dict[str, Any]]:
    """xDRs (:data:`XDR_COLUMNS`), lowest id first: of ``account``; of billing period ``period`` (YYYY-MM, by the
    UTC date of the call's setup); only incomplete ones. ``limit`` 0 or None: all."""
    query = select(*(xdrs.c[name] for name in XDR_COLUMNS)).order_by(xdrs.c.id)
    if account is not None:
        query = query.where(xdrs.c.account == account)
    if incomplete:
        query = query.where(xdrs.c.status == "incomplete")
    if limit:
        query = query.limit(limit)
    with app.catalog.read() as conn:
        if period is not None:
            first, last = (literal(d, Date) for d in period_bounds(period))
            day = utc_date(conn.dialect.name, xdrs.c.setup_time)
            query = query.where(day >= first, day <= last)
        return [dict(row) for row in conn.execute(query).mappings()]


def show_xdr(app, xdr_id: int) -> dict[str, Any]:
    """One xDR with its legs (``legs``: :data:`LEG_COLUMNS`, by event time) and its PBX call details
    (``details``: detail type -> value). NotFound for an unknown id."""
    with app.catalog.read() as conn:
        row = conn.execute(select(*(xdrs.c[name] for name in XDR_COLUMNS)).where(xdrs.c.id == xdr_id)).mappings().first()
        if row is None:
            raise NotFound(f"no xDR {xdr_id}")
        shown = dict(row)
        shown["details"] = {r.detail_type: r.value for r in conn.execute(
            select(xdr_details.c.detail_type, xdr_details.c.value).where(xdr_details.c.xdr_id == xdr_id)
            .order_by(xdr_details.c.detail_type))}
        shown["legs"] = [dict(r) for r in conn.execute(
            select(*(legs.c[name] for name in LEG_COLUMNS))
            .select_from(xdr_legs.join(legs, legs.c.id == xdr_legs.c.leg_id))
            .where(xdr_legs.c.xdr_id == xdr_id).order_by(legs.c.event_time, legs.c.id)).mappings()]
    return shown


def list_orphans(app, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Orphan legs (:data:`ORPHAN_COLUMNS`): the legs of calls the window closed incomplete, legs that came after
    their call was produced (``late``) and legs without a call id (``no-call-id``); oldest first."""
    o = orphan_legs
    query = (select(o.c.leg_id, o.c.carrier, o.c.call_id, o.c.reason, o.c.xdr_id, o.c.at, legs.c.file_id,
                    legs.c.status_type, legs.c.event_time, legs.c.nas_ip, legs.c.user_name)
             .select_from(o.join(legs, legs.c.id == o.c.leg_id)).order_by(o.c.leg_id))
    if limit:
        query = query.limit(limit)
    with app.catalog.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def waiting_calls(app) -> list[dict[str, Any]]:
    """The calls whose legs wait for the rest of the call: carrier, call id, legs, first and last event time."""
    p = pending_legs
    query = (select(p.c.carrier, p.c.call_id, func.count().label("legs"), func.min(p.c.event_time).label("first_event"),
                    func.max(p.c.event_time).label("last_event"))
             .group_by(p.c.carrier, p.c.call_id).order_by(func.min(p.c.event_time), p.c.carrier, p.c.call_id))
    with app.catalog.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def list_alerts(app, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Security alerts (:data:`ALERT_COLUMNS`), newest first."""
    query = select(*(security_alerts.c[name] for name in ALERT_COLUMNS)).order_by(security_alerts.c.id.desc())
    if limit:
        query = query.limit(limit)
    with app.catalog.read() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


__all__ = ["ALERT_COLUMNS", "LEG_COLUMNS", "ORPHAN_COLUMNS", "XDR_COLUMNS", "list_alerts", "list_orphans",
           "list_xdrs", "show_xdr", "waiting_calls"]
