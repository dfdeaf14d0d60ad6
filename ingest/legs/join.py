"""Joining legs into xDRs, in the database (see the package's docstring for the rules).

:func:`join_legs` is one write transaction (serialised with every other join): it takes the legs of newly loaded
files into ``pending_legs``, finds the calls that are complete (or that the window closes), builds their xDRs,
details, orphans and security alerts with ``INSERT ... SELECT`` through temporary tables, and removes their legs
from ``pending_legs``. A crash anywhere before the commit leaves the catalog as it was: the next join does it all
again. No Python loop per leg or per call.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql

from .. import faults
from ..catalog.db import drop_temp_table, fresh_temp_table
from ..catalog.files import now as _now
from ..catalog.files import utc_date
from ..catalog.schema import (
    Key,
    UTCDateTime,
    accounts,
    billing_events,
    files,
    leg_files,
    legs,
    numbers,
    orphan_legs,
    pending_legs,
    security_alerts,
    xdr_details,
    xdr_legs,
    xdrs,
)
from ..errors import NotFound
from ..formats.spec import FormatSpec, spec_key
from .settings import DETAIL_TYPES, NetworkSettings

log = logging.getLogger("ingest.legs")

_tmp = MetaData()
tmp_nodes = Table(
    "tmp_leg_nodes", _tmp,
    Column("ip", Key, primary_key=True),
    Column("name", String, nullable=False),
    Column("kind", String, nullable=False),
    prefixes=["TEMPORARY"],
)
tmp_open = Table(  # calls with a session that started and has not stopped
    "tmp_join_open", _tmp,
    Column("carrier", Key, primary_key=True),
    Column("call_id", Key, primary_key=True),
    prefixes=["TEMPORARY"],
)
tmp_wait = Table(  # calls waiting for a trusted node's record: the first such node's name
    "tmp_join_wait", _tmp,
    Column("carrier", Key, primary_key=True),
    Column("call_id", Key, primary_key=True),
    Column("node", Key, nullable=False),
    prefixes=["TEMPORARY"],
)
tmp_calls = Table(  # the calls joined now: complete, or closed by the window (incomplete = 1, with a reason)
    "tmp_join_calls", _tmp,
    Column("carrier", Key, primary_key=True),
    Column("call_id", Key, primary_key=True),
    Column("incomplete", Integer, nullable=False),
    Column("reason", String),
    prefixes=["TEMPORARY"],
)
tmp_legs = Table(  # their legs, with what the xDRs are built from
    "tmp_join_legs", _tmp,
    Column("leg_id", BigInteger, primary_key=True),
    Column("carrier", Key, nullable=False),
    Column("call_id", Key, nullable=False),
    Column("party", Key, nullable=False),
    Column("stopped", Integer, nullable=False),
    Column("user_is_node", Integer, nullable=False),  # its User-Name is a trusted node's address (a relay)
    Column("remote_is_node", Integer, nullable=False),  # its remote address is a trusted node's (inside our network)
    Column("event_time", UTCDateTime, nullable=False),
    Column("file_id", BigInteger, nullable=False),
    Column("gateway", Key, nullable=False),
    Column("user_name", String),
    Column("remote_address", String),
    Column("call_origin", String),
    Column("calling_number", String),
    Column("called_number", String),
    Column("setup_time", UTCDateTime),
    Column("connect_time", UTCDateTime),
    Column("disconnect_time", UTCDateTime),
    Column("session_seconds", BigInteger),
    Column("disconnect_cause", String),
    *(Column(name, String) for name in DETAIL_TYPES),
    Index("ix_tmp_join_legs_party", "carrier", "call_id", "party"),
    prefixes=["TEMPORARY"],
)
_TEMPORARY = (tmp_nodes, tmp_open, tmp_wait, tmp_calls, tmp_legs)
# The party of every leg that is not a PBX node's: the gateways' legs of a call are one call, billed once.
GATEWAYS_PARTY = "gateways"


@dataclass
class JoinResult:
    """What one join did."""

    files_taken: int = 0
    legs_taken: int = 0
    xdrs: int = 0
    incomplete: int = 0
    orphans: int = 0
    late: int = 0
    waiting_calls: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"files_taken": self.files_taken, "legs_taken": self.legs_taken, "xdrs": self.xdrs,
                "incomplete": self.incomplete, "orphans": self.orphans, "late": self.late,
                "waiting_calls": self.waiting_calls, "alerts": len(self.alerts)}


def _analyzed(conn, *tables: Table) -> None:
    """PostgreSQL plans a query on a temporary table it has no statistics of as if it were tiny (nested loops
    over a million rows): gather them once the table is filled."""
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.execute(text(f"ANALYZE {table.name}"))


def _stop(status):
    return func.lower(status) == "stop"


def _attribute(dialect: str, spec: FormatSpec | None, name: str, row=legs):
    """The SQL value of accounting attribute ``name`` of a leg (``row``: ``legs``, or a select of its columns with,
    on PostgreSQL, its ``extra`` already parsed as ``j``): the field the carrier's format maps it to (as text, read
    as given), else the record's ``extra`` member of that name."""
    if spec is not None and spec.fields.get("leg"):
        key = spec_key(spec, name)
        for field_name, f in spec.fields["leg"].items():
            if (f.column is not None and spec_key(spec, f.column) == key and f.also is None and not f.map
                    and f.value is None and f.kind == "text"):
                return row.c[field_name]
    elif name in _DEFAULT_FIELDS:
        return row.c[_DEFAULT_FIELDS[name]]
    member = '"' + name.replace('"', '') + '"'
    # Most records have no such member: a substring test first spares parsing their JSON.
    if dialect == "postgresql":
        parsed = row.c.j if "j" in row.c else cast(row.c.extra, postgresql.JSONB)
        return case((func.strpos(row.c.extra, member) > 0, func.jsonb_extract_path_text(parsed, literal(name))))
    return case((func.instr(row.c.extra, member) > 0, func.json_extract(row.c.extra, literal("$." + member))))


# How the built-in radius-detail format maps the attributes joining reads (for a carrier no longer configured).
_DEFAULT_FIELDS = {"h323-conf-id": "conf_id", "call-id": "sip_call_id"}


def _first_of(dialect: str, spec: FormatSpec | None, attributes: Sequence[str], row=legs):
    values = [func.nullif(func.trim(_attribute(dialect, spec, a, row)), "") for a in attributes]
    return values[0] if len(values) == 1 else func.coalesce(*values)


def _by_node(settings: NetworkSettings, per_node, default, nas_ip=legs.c.nas_ip):
    """A CASE on the leg's NAS-IP-Address: ``per_node(node)`` for each node whose setting differs from the
    default, else ``default``."""
    whens = [(nas_ip == node.ip, expr) for node in settings.nodes if (expr := per_node(node)) is not None]
    return case(*whens, else_=default) if whens else default


def _spec_of(config, carrier: str) -> FormatSpec | None:
    try:
        return config.format_of(carrier)
    except NotFound:
        return None


def join_legs(app, *, actor: str | None = None, now: datetime | None = None) -> JoinResult:
    """Take newly loaded legs, join every complete call into xDRs and close the calls the window has passed, in
    one transaction. ``now`` (UTC) moves the window's clock to at least that time (``cdr legs close``); by default
    the clock is the newest accounting time loaded. Security alerts raised are logged at WARNING and, after the
    commit, mailed when ``[alerts]`` says where, with any an earlier join could not mail."""
    config = app.config
    settings = config.network
    result = JoinResult()
    with app.catalog.write() as conn:
        app.catalog.serialize(conn, "cdr-legs")
        dialect = conn.dialect.name
        if dialect == "postgresql":
            # Sorts and hashes of a backlog's million legs in memory; no JIT: its compiling (seconds, for plans
            # costed as large as these) is more than these set-based statements gain from it.
            conn.execute(text("SET LOCAL work_mem = '256MB'"))
            conn.execute(text("SET LOCAL jit = off"))
        stamp = _now()
        for table in _TEMPORARY:
            fresh_temp_table(conn, table)
        if settings.nodes:
            conn.execute(insert(tmp_nodes), [{"ip": n.ip, "name": n.name, "kind": n.kind} for n in settings.nodes])
        _take_new_files(conn, config, settings, dialect, stamp, result)
        if result.legs_taken > 10_000:  # statistics of a table this join changed much (a backlog, a first load)
            _analyzed(conn, pending_legs)
        clock = conn.execute(select(func.max(leg_files.c.newest_event))).scalar_one()
        if now is not None and (clock is None or now > clock):
            clock = now
        if clock is not None:
            _choose_calls(conn, clock - timedelta(hours=settings.window_hours))
            _analyzed(conn, tmp_calls)
            before = conn.execute(select(func.coalesce(func.max(xdrs.c.id), 0))).scalar_one()
            for (carrier,) in conn.execute(select(tmp_calls.c.carrier).distinct()).all():
                _gather_legs(conn, config, settings, dialect, carrier)
            _analyzed(conn, tmp_legs)
            _build_xdrs(conn, dialect, stamp, before, result)
            conn.execute(delete(pending_legs).where(pending_legs.c.leg_id.in_(select(tmp_legs.c.leg_id))))
        result.waiting_calls = conn.execute(
            select(func.count()).select_from(select(pending_legs.c.carrier, pending_legs.c.call_id).distinct()
                                             .subquery())).scalar_one()
        if result.files_taken or result.xdrs:  # audited, in the same transaction: who joined what, and when
            conn.execute(insert(billing_events).values(
                at=stamp, actor=actor or app.actor, subject="legs", subject_id=None,
                action="close" if now is not None else "join",
                detail=json.dumps({**result.as_dict(), "clock": clock.isoformat() if clock else None},
                                  sort_keys=True)))
        for table in _TEMPORARY:
            drop_temp_table(conn, table)
        faults.point("legs.before-commit")
    for alert in result.alerts:
        log.warning("security alert: call %s at %s: User-Name %r names no account (remote address %s, gateway %s)",
                    alert["call_id"], alert["call_time"], alert["user_name"], alert["remote_address"],
                    alert["gateway"])
    if settings.alerts.mails:  # this join's alerts, and any an earlier join could not mail
        from .alerts import mail_pending

        mail_pending(app)
    return result


def _take_new_files(conn, config, settings: NetworkSettings, dialect: str, stamp: datetime,
                    result: JoinResult) -> None:
    """Every loaded file with legs that joining has not taken: its legs into ``pending_legs`` (a leg whose call
    already has xDRs is an orphan, ``late``; one without a call id, ``no-call-id``), the file into
    ``leg_files``."""
    taken = (select(files.c.id, files.c.carrier, files.c.first_leg_id, files.c.last_leg_id)
             .where(files.c.status == "loaded", files.c.first_leg_id.is_not(None),
                    ~exists().where(leg_files.c.file_id == files.c.id))
             .order_by(files.c.id))
    ips = [n.ip for n in settings.nodes]
    for file_id, carrier, first, last in conn.execute(taken).all():
        spec = _spec_of(config, carrier)
        call_id = _by_node(settings,
                           lambda node: (_first_of(dialect, spec, node.call_id)
                                         if node.call_id != settings.call_id else None),
                           _first_of(dialect, spec, settings.call_id))
        node = func.coalesce(func.nullif(legs.c.nas_ip, ""), "?")
        # The Start and the Stop of one session share it: the server's unique id, else the node's session id;
        # a record with neither (RFC 2866 requires Acct-Session-Id) is the node's leg of that call origin.
        session = func.coalesce(func.nullif(legs.c.unique_session_id, ""),
                                node + "/" + func.nullif(legs.c.session_id, ""),
                                node + "/origin:" + func.nullif(func.lower(legs.c.call_origin), ""),
                                "leg:" + cast(legs.c.id, String))
        # The trusted node the leg names, other than its own: as its User-Name (the node relayed the call), else
        # as its remote address (the call went on to the node). The call waits for that node's record.
        named = (case((and_(legs.c.user_name.in_(ips), legs.c.user_name != node), legs.c.user_name),
                      (and_(legs.c.remote_address.in_(ips), legs.c.remote_address != node), legs.c.remote_address))
                 if ips else cast(null(), Key))
        of_file = and_(legs.c.id >= first, legs.c.id <= last, legs.c.file_id == file_id)
        source = (select(legs.c.id.label("leg_id"), legs.c.carrier, call_id.label("call_id"), node.label("node"),
                         session.label("session"), named.label("named_node"), legs.c.status_type,
                         legs.c.event_time, legs.c.file_id)
                  .where(of_file).subquery("s"))
        produced = exists().where(xdrs.c.carrier == source.c.carrier, xdrs.c.call_id == source.c.call_id)
        conn.execute(insert(orphan_legs).from_select(
            ["leg_id", "carrier", "call_id", "reason", "xdr_id", "at"],
            select(source.c.leg_id, source.c.carrier, func.coalesce(source.c.call_id, ""),
                   case((source.c.call_id.is_(None), "no-call-id"), else_="late"),
                   select(func.min(xdrs.c.id)).where(xdrs.c.carrier == source.c.carrier,
                                                     xdrs.c.call_id == source.c.call_id).scalar_subquery(),
                   literal(stamp, UTCDateTime))
            .where(or_(source.c.call_id.is_(None), produced))))
        conn.execute(insert(pending_legs).from_select(
            ["leg_id", "carrier", "call_id", "node", "session", "named_node", "status_type", "event_time",
             "file_id"],
            select(source).where(source.c.call_id.is_not(None), ~produced)))
        # (An INSERT ... SELECT's rowcount is not reported on every driver: count through the primary keys.)
        added = conn.execute(select(func.count()).where(pending_legs.c.leg_id.between(first, last))).scalar_one()
        late = conn.execute(select(func.count()).where(orphan_legs.c.leg_id.between(first, last))).scalar_one()
        newest = conn.execute(select(func.max(legs.c.event_time)).where(of_file)).scalar_one()
        conn.execute(insert(leg_files).values(file_id=file_id, taken_at=stamp, newest_event=newest))
        result.files_taken += 1
        result.legs_taken += added + late
        result.late += late
        result.orphans += late


def _choose_calls(conn, cutoff: datetime) -> None:
    """Fill ``tmp_calls``: each pending call that is complete (every session that started has stopped; every
    trusted node a leg names has sent a Stop of it), and each one whose newest leg is older than ``cutoff``
    (incomplete, with the reason)."""
    p = pending_legs
    sessions = (select(p.c.carrier, p.c.call_id, p.c.session)
                .group_by(p.c.carrier, p.c.call_id, p.c.session)
                .having(func.max(case((_stop(p.c.status_type), 1), else_=0)) == 0).subquery())
    conn.execute(insert(tmp_open).from_select(["carrier", "call_id"],
                                              select(sessions.c.carrier, sessions.c.call_id).distinct()))
    q = pending_legs.alias("q")
    heard = exists().where(q.c.carrier == p.c.carrier, q.c.call_id == p.c.call_id, q.c.node == p.c.named_node,
                           _stop(q.c.status_type))
    conn.execute(insert(tmp_wait).from_select(
        ["carrier", "call_id", "node"],
        select(p.c.carrier, p.c.call_id, func.min(func.coalesce(tmp_nodes.c.name, p.c.named_node)))
        .select_from(p.outerjoin(tmp_nodes, tmp_nodes.c.ip == p.c.named_node))
        .where(p.c.named_node.is_not(None), ~heard).group_by(p.c.carrier, p.c.call_id)))
    calls = (select(p.c.carrier, p.c.call_id, func.max(p.c.event_time).label("last_event"))
             .group_by(p.c.carrier, p.c.call_id).subquery("c"))
    o, w = tmp_open, tmp_wait
    on = lambda t: and_(t.c.carrier == calls.c.carrier, t.c.call_id == calls.c.call_id)  # noqa: E731
    ready = and_(o.c.call_id.is_(None), w.c.call_id.is_(None))
    conn.execute(insert(tmp_calls).from_select(
        ["carrier", "call_id", "incomplete", "reason"],
        select(calls.c.carrier, calls.c.call_id, case((ready, 0), else_=1),
               case((ready, null()), (o.c.call_id.is_not(None), literal("no-stop")),
                    else_=literal("no-record-from-node:") + w.c.node))
        .select_from(calls.outerjoin(o, on(o)).outerjoin(w, on(w)))
        .where(or_(ready, calls.c.last_event < literal(cutoff, UTCDateTime)))))


def _gather_legs(conn, config, settings: NetworkSettings, dialect: str, carrier: str) -> None:
    """``tmp_legs``: the legs of the chosen calls of ``carrier``, each with its party (the gateways' legs of a call
    are one party; each session of a PBX node is a party of its own), whether its User-Name and its remote address
    are trusted nodes' addresses, and the PBX call details read from its attributes."""
    spec = _spec_of(config, carrier)
    p = pending_legs
    chosen = and_(tmp_calls.c.carrier == p.c.carrier, tmp_calls.c.call_id == p.c.call_id)
    # The legs' columns, each record's extra parsed once (PostgreSQL) behind a fence, for the details below.
    names = {n.details[name] for n in settings.nodes for name in DETAIL_TYPES} | set(settings.details.values())
    named = or_(*(func.strpos(legs.c.extra, '"' + name.replace('"', '') + '"') > 0 for name in sorted(names)))
    parsed = [case((named, cast(legs.c.extra, postgresql.JSONB))).label("j")] if dialect == "postgresql" else []
    row = (select(p.c.leg_id, p.c.carrier, p.c.call_id, p.c.node, p.c.session, p.c.status_type, p.c.event_time,
                  p.c.file_id, *(legs.c[name] for name in _LEG_COLUMNS), legs.c.nas_ip, legs.c.extra, *parsed)
           .select_from(p.join(tmp_calls, chosen).join(legs, legs.c.id == p.c.leg_id))
           .where(p.c.carrier == carrier).offset(0).subquery("l"))
    node, user, remote = tmp_nodes.alias("node"), tmp_nodes.alias("user"), tmp_nodes.alias("remote")
    party = case((node.c.kind == "pbx", row.c.node + "/" + row.c.session), else_=literal(GATEWAYS_PARTY))
    details = [_by_node(settings,
                        lambda n, name=name: (_first_of(dialect, spec, [n.details[name]], row)
                                              if n.details[name] != settings.details[name] else None),
                        _first_of(dialect, spec, [settings.details[name]], row), nas_ip=row.c.nas_ip)
               for name in DETAIL_TYPES]
    columns = ["leg_id", "carrier", "call_id", "party", "stopped", "user_is_node", "remote_is_node", "event_time",
               "file_id", "gateway", *_LEG_COLUMNS, *DETAIL_TYPES]
    conn.execute(insert(tmp_legs).from_select(columns, select(
        row.c.leg_id, row.c.carrier, row.c.call_id, party, case((_stop(row.c.status_type), 1), else_=0),
        case((user.c.ip.is_not(None), 1), else_=0), case((remote.c.ip.is_not(None), 1), else_=0),
        row.c.event_time, row.c.file_id, func.coalesce(node.c.name, row.c.node),
        *(row.c[name] for name in _LEG_COLUMNS), *details)
        .select_from(row.outerjoin(node, node.c.ip == row.c.node)
                     .outerjoin(user, user.c.ip == row.c.user_name)
                     .outerjoin(remote, remote.c.ip == row.c.remote_address))))


# The legs' own fields the xDRs are built from (tmp_legs keeps them; call_origin lower-cased below).
_LEG_COLUMNS = ("user_name", "remote_address", "call_origin", "calling_number", "called_number", "setup_time",
                "connect_time", "disconnect_time", "session_seconds", "disconnect_cause")


def _build_xdrs(conn, dialect: str, stamp: datetime, before: int, result: JoinResult) -> None:
    """The xDRs of the chosen calls, one per party, with their accounts; their legs, details, orphans and security
    alerts.

    A party's User-Name is the terminating gateway's (its originate leg to outside our network), else an answer
    leg's, else any leg's, leaving out User-Names that are trusted nodes' addresses: a gateway that names a trusted
    node as the User-Name was relayed the call by it, and the call takes the User-Name from the node's own legs.
    Its calling and called numbers are those of the leg where the call came into our network (an answer leg from
    outside), else of any answer leg, else of any leg."""
    g, c = tmp_legs, tmp_calls
    answer = func.lower(g.c.call_origin) == "answer"
    originate = func.lower(g.c.call_origin) == "originate"

    def first_of(column, *preferences):
        return func.coalesce(*(func.max(case((when, column))) for when in preferences), func.max(column))

    account_name = first_of(g.c.user_name, and_(originate, g.c.remote_is_node == 0, g.c.user_is_node == 0),
                            and_(answer, g.c.user_is_node == 0), g.c.user_is_node == 0)
    ingress = and_(answer, g.c.remote_is_node == 0)

    def preferred(column):
        return first_of(column, ingress, answer)

    media = g.c.media_duration
    whole = and_(media != "", func.ltrim(media, "0123456789") == "", func.length(media) <= 12)
    charged = func.coalesce(func.max(case((g.c.stopped == 1, g.c.session_seconds))), 0)
    if dialect == "postgresql":
        gateways = func.string_agg(g.c.gateway.distinct(), literal(","))
    else:
        gateways = func.group_concat(g.c.gateway.distinct())
    grouped = (select(
        g.c.carrier, g.c.call_id, g.c.party, account_name.label("user_name"),
        preferred(g.c.calling_number).label("calling_number"), preferred(g.c.called_number).label("called_number"),
        func.coalesce(func.min(g.c.setup_time), func.min(g.c.event_time)).label("setup_time"),
        func.min(g.c.connect_time).label("connect_time"), func.max(g.c.disconnect_time).label("disconnect_time"),
        charged.label("charged_seconds"),
        func.coalesce(func.max(case((whole, cast(media, BigInteger)))), charged).label("call_seconds"),
        func.max(case((g.c.stopped == 1, g.c.disconnect_cause))).label("disconnect_cause"),
        # Where the call came from: never a node of ours (NULL when every leg's remote address is one).
        func.coalesce(func.max(case((ingress, g.c.remote_address))),
                      func.max(case((g.c.remote_is_node == 0, g.c.remote_address)))).label("remote_address"),
        gateways.label("gateways"),
        func.count().label("leg_count"), c.c.incomplete, c.c.reason, func.max(g.c.file_id).label("file_id"),
        func.min(g.c.event_time).label("first_event"))
        .select_from(g.join(c, and_(c.c.carrier == g.c.carrier, c.c.call_id == g.c.call_id)))
        .group_by(g.c.carrier, g.c.call_id, g.c.party, c.c.incomplete, c.c.reason)
        .offset(0).subquery("x"))
    # The account: the User-Name as an account, else as a number held on the call's (UTC) date.
    day = utc_date(dialect, grouped.c.setup_time)
    by_number = (select(numbers.c.account).where(numbers.c.number == grouped.c.user_name,
                                                 numbers.c.valid_from <= day,
                                                 or_(numbers.c.valid_to.is_(None), numbers.c.valid_to >= day))
                 .limit(1).scalar_subquery())
    by_account = select(accounts.c.account).where(accounts.c.account == grouped.c.user_name).scalar_subquery()
    found = select(*grouped.c, func.coalesce(by_account, by_number).label("account")).offset(0).subquery("a")
    columns = ["carrier", "call_id", "party", "account", "user_name", "calling_number", "called_number",
               "setup_time", "connect_time", "disconnect_time", "charged_seconds", "call_seconds",
               "disconnect_cause", "remote_address", "gateways", "leg_count", "status", "reason", "file_id", "joined_at"]
    conn.execute(insert(xdrs).from_select(columns, select(
        *(found.c[name] for name in columns[:15]), found.c.leg_count,
        case((found.c.incomplete == 1, "incomplete"), else_="complete"),
        case((found.c.incomplete == 1, found.c.reason), (found.c.account.is_(None), "no-account"), else_=null()),
        found.c.file_id, literal(stamp, UTCDateTime))
        .order_by(found.c.first_event, found.c.carrier, found.c.call_id, found.c.party)))
    new = xdrs.c.id > before
    of_xdr = g.join(xdrs, and_(xdrs.c.carrier == g.c.carrier, xdrs.c.call_id == g.c.call_id, xdrs.c.party == g.c.party))
    conn.execute(insert(xdr_legs).from_select(["leg_id", "xdr_id"], select(g.c.leg_id, xdrs.c.id).select_from(of_xdr)))
    for name in DETAIL_TYPES:
        value = g.c[name]
        conn.execute(insert(xdr_details).from_select(
            ["xdr_id", "detail_type", "value"],
            select(xdrs.c.id, literal(name), func.max(value)).select_from(of_xdr)
            .where(value.is_not(None), value != "").group_by(xdrs.c.id)))
    incomplete = and_(xdrs.c.status == "incomplete", new)
    conn.execute(insert(orphan_legs).from_select(
        ["leg_id", "carrier", "call_id", "reason", "xdr_id", "at"],
        select(g.c.leg_id, g.c.carrier, g.c.call_id, xdrs.c.reason, xdrs.c.id, literal(stamp, UTCDateTime))
        .select_from(of_xdr).where(incomplete)))
    counts = conn.execute(select(func.count(), func.coalesce(func.sum(case((xdrs.c.status == "incomplete", 1),
                                                                           else_=0)), 0),
                                 func.coalesce(func.sum(case((xdrs.c.status == "incomplete", xdrs.c.leg_count),
                                                             else_=0)), 0))
                          .where(new)).one()
    result.xdrs, result.incomplete = int(counts[0]), int(counts[1])  # (PostgreSQL sums to a numeric)
    result.orphans += int(counts[2])
    # The gateway whose record gave the User-Name.
    root_gateway = (select(func.max(g.c.gateway)).where(g.c.carrier == xdrs.c.carrier, g.c.call_id == xdrs.c.call_id,
                                                        g.c.party == xdrs.c.party,
                                                        func.coalesce(g.c.user_name, "") == func.coalesce(
                                                            xdrs.c.user_name, "")).scalar_subquery())
    # A call whose User-Name names no account is an alert; not one whose User-Name is a trusted node's address
    # (its gateway relayed it, and the node's own record never came: an incomplete call).
    conn.execute(insert(security_alerts).from_select(
        ["raised_at", "call_time", "carrier", "call_id", "user_name", "remote_address", "gateway", "xdr_id"],
        select(literal(stamp, UTCDateTime), xdrs.c.setup_time, xdrs.c.carrier, xdrs.c.call_id, xdrs.c.user_name,
               xdrs.c.remote_address, root_gateway, xdrs.c.id)
        .where(new, xdrs.c.account.is_(None), ~exists().where(tmp_nodes.c.ip == xdrs.c.user_name))
        .order_by(xdrs.c.id)))
    rows = conn.execute(select(security_alerts).where(security_alerts.c.xdr_id > before)
                        .order_by(security_alerts.c.id)).mappings().all()
    result.alerts = [dict(row) for row in rows]


__all__ = ["JoinResult", "join_legs"]
