"""Our own network's settings, typed: ``[[nodes]]`` (the trusted gateways and servers), ``[legs]`` (joining) and
``[alerts]`` (where security alerts are mailed). Parsed once by :func:`parse_network`; every default is stated
here, once.

``[[nodes]]``: ``name``, ``ip`` (the address the node's accounting records carry as NAS-IP-Address, and that
another gateway names as the User-Name of a call the node relayed), optional ``kind`` = ``gateway`` (default:
its legs of a call are one session) or ``pbx`` (a SIP server or IP PBX: each of its sessions of a call is billed
on its own, as a PBX bills each participant), ``call_id`` (the attributes that carry the call's id, tried in
order) and ``details`` (detail type -> attribute name: the PBX call details read from its records).

``[legs]``: ``window_hours`` (default 4: a call none of whose legs is newer than this, by the newest accounting
time loaded, is closed as incomplete), ``call_id`` and ``details`` for the records of every address that is not
a node.

``[alerts]``: ``mail_to`` (an address or a list), ``smtp_host``, ``smtp_port`` (default 25), ``mail_from``
(default ``cdr-ingest@localhost``). Without ``mail_to`` and ``smtp_host`` alerts are stored and logged only.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError

NODE_KINDS = ("gateway", "pbx")
DETAIL_TYPES = ("via_hg", "via_ext", "media_duration", "acli")
# The attributes a call's id is read from, in order: Cisco and PortaSwitch give every call (SIP too) an
# h323-conf-id; a plain SIP server gives call-id.
DEFAULT_CALL_ID = ("h323-conf-id", "call-id")
# The attributes each PBX call detail is read from, by default the detail's own name (a top-level attribute, or a
# Cisco-AVPair "name=value" sub-attribute, which the radius-detail format reads as an attribute too).
DEFAULT_DETAILS: Mapping[str, str] = {name: name for name in DETAIL_TYPES}
DEFAULT_WINDOW_HOURS = 4


@dataclass(frozen=True)
class Node:
    """A trusted node of our network: a gateway or a PBX (SIP server) that sends us accounting records."""

    name: str
    ip: str
    kind: str = "gateway"
    call_id: tuple[str, ...] = DEFAULT_CALL_ID
    details: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_DETAILS))


@dataclass(frozen=True)
class AlertSettings:
    mail_to: tuple[str, ...] = ()
    smtp_host: str | None = None
    smtp_port: int = 25
    mail_from: str = "cdr-ingest@localhost"

    @property
    def mails(self) -> bool:
        return bool(self.mail_to) and self.smtp_host is not None


@dataclass(frozen=True)
class NetworkSettings:
    nodes: tuple[Node, ...] = ()
    window_hours: int = DEFAULT_WINDOW_HOURS
    call_id: tuple[str, ...] = DEFAULT_CALL_ID  # for an address that is not a node
    details: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_DETAILS))
    alerts: AlertSettings = AlertSettings()

    def node_at(self, ip: str) -> Node | None:
        return next((n for n in self.nodes if n.ip == ip), None)


def _only(table: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(where, "must be a non-empty text")
    return value.strip()


def _attributes(value: Any, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise ConfigError(where, "must be an attribute name or a non-empty list of them")
    return tuple(_text(v, f"{where}[{i}]") for i, v in enumerate(values))


def _details(value: Any, where: str, base: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(where, f"must be a table of detail type = attribute ({', '.join(DETAIL_TYPES)})")
    found = dict(base)
    for name, attribute in value.items():
        if name not in DETAIL_TYPES:
            raise ConfigError(f"{where}.{name}", f"unknown detail type (expected one of: {', '.join(DETAIL_TYPES)})")
        found[name] = _text(attribute, f"{where}.{name}")
    return found


def parse_network(raw: Mapping[str, Any]) -> NetworkSettings:
    """``[[nodes]]``, ``[legs]`` and ``[alerts]`` of a configuration's top-level table, checked; ConfigError
    naming the key otherwise."""
    legs = raw.get("legs", {})
    if not isinstance(legs, dict):
        raise ConfigError("legs", "must be a table")
    _only(legs, "legs", {"window_hours", "call_id", "details"})
    window = legs.get("window_hours", DEFAULT_WINDOW_HOURS)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError("legs.window_hours", "must be a whole number of hours, at least 1")
    call_id = _attributes(legs["call_id"], "legs.call_id") if "call_id" in legs else DEFAULT_CALL_ID
    details = _details(legs["details"], "legs.details", DEFAULT_DETAILS) if "details" in legs else dict(DEFAULT_DETAILS)

    entries = raw.get("nodes", [])
    if not isinstance(entries, list):
        raise ConfigError("nodes", "must be an array of tables ([[nodes]])")
    nodes: list[Node] = []
    for index, entry in enumerate(entries):
        where = f"nodes[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(where, "must be a table")
        _only(entry, where, {"name", "ip", "kind", "call_id", "details"})
        name = _text(entry.get("name"), f"{where}.name")
        ip = _text(entry.get("ip"), f"{where}.ip")
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise ConfigError(f"{where}.ip", f"{ip!r} is not an IP address") from None
        kind = entry.get("kind", "gateway")
        if kind not in NODE_KINDS:
            raise ConfigError(f"{where}.kind", f"must be one of: {', '.join(NODE_KINDS)}")
        for other in nodes:
            if other.name == name:
                raise ConfigError(f"{where}.name", f"node name {name!r} is used twice")
            if other.ip == ip:
                raise ConfigError(f"{where}.ip", f"{ip} is node {other.name!r} already")
        nodes.append(Node(
            name=name, ip=ip, kind=kind,
            call_id=_attributes(entry["call_id"], f"{where}.call_id") if "call_id" in entry else call_id,
            details=_details(entry["details"], f"{where}.details", details) if "details" in entry else dict(details)))

    alerts = raw.get("alerts", {})
    if not isinstance(alerts, dict):
        raise ConfigError("alerts", "must be a table")
    _only(alerts, "alerts", {"mail_to", "smtp_host", "smtp_port", "mail_from"})
    mail_to: tuple[str, ...] = ()
    if "mail_to" in alerts:
        given = alerts["mail_to"]
        mail_to = tuple(_text(v, "alerts.mail_to") for v in ([given] if isinstance(given, str) else given)) \
            if isinstance(given, (str, list)) else ()
        if not mail_to or any(not re.fullmatch(r"[^@\s]+@[^@\s]+", a) for a in mail_to):
            raise ConfigError("alerts.mail_to", "must be a mail address or a list of them")
    port = alerts.get("smtp_port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError("alerts.smtp_port", "must be a port number (1-65535)")
    host = _text(alerts["smtp_host"], "alerts.smtp_host") if "smtp_host" in alerts else None
    if bool(mail_to) != (host is not None):
        raise ConfigError("alerts.mail_to" if host else "alerts.smtp_host",
                          "mail_to and smtp_host go together: alerts are mailed to mail_to through smtp_host")
    settings = AlertSettings(mail_to=mail_to, smtp_host=host, smtp_port=port,
                             mail_from=_text(alerts.get("mail_from", AlertSettings.mail_from), "alerts.mail_from"))
    return NetworkSettings(nodes=tuple(nodes), window_hours=window, call_id=call_id, details=details,
                           alerts=settings)
