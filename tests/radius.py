"""FreeRADIUS ``detail`` files for tests and benchmarks, written as the server writes them: a ctime-style header
line, one TAB-indented ``Attribute = value`` line per attribute (strings quoted), ``Timestamp`` last, then a
blank line. Cisco gateways' legs (:func:`cisco_leg`) and a PBX's sessions (:func:`pbx_leg`)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

T0 = datetime(2026, 2, 11, 14, 55, 41, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    """T0 plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def cisco_time(moment: datetime, flag: str = "") -> str:
    """A Cisco gateway's time: ``14:55:41.000 UTC Wed Feb 11 2026`` (``flag`` * or . in front)."""
    return f"{flag}{moment:%H:%M:%S}.000 UTC {moment:%a %b %d %Y}"


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def record(attributes: list[tuple[str, str]], received: datetime) -> str:
    """One detail record: ``attributes`` as (name, value written as is: quote strings with :func:`quoted`)."""
    header = received.strftime("%a %b ") + f"{received.day:2d}" + received.strftime(" %H:%M:%S %Y")
    lines = [header, *(f"\t{name} = {value}" for name, value in attributes), f"\tTimestamp = {int(received.timestamp())}"]
    return "\n".join(lines) + "\n\n"


def unique_id(nas_ip: str, session_id: str) -> str:
    """What FreeRADIUS's acct_unique policy gives a session (an MD5 of its identifying attributes): the Start and
    the Stop of one session share it."""
    return hashlib.md5(f"{nas_ip},{session_id}".encode()).hexdigest()[:16]


def cisco_leg(*, conf_id: str, nas_ip: str, user_name: str, origin: str, session_id: str, setup: datetime,
              connect: datetime | None = None, disconnect: datetime | None = None, call_type: str = "VoIP",
              status: str = "Stop", calling: str = "01632960001", called: str = "07700900123",
              remote: str | None = None, cause: str = "10", received: datetime | None = None,
              avpairs: tuple[str, ...] = (), prefixed: bool = True) -> str:
    """A Cisco H.323/SIP gateway's accounting record of one leg (Start: no disconnect, no session time)."""
    def h323(name: str, value: str) -> tuple[str, str]:
        return name, quoted(f"{name}={value}" if prefixed else value)

    attributes = [("User-Name", quoted(user_name)), ("NAS-IP-Address", nas_ip), ("Acct-Status-Type", status),
                  ("Acct-Session-Id", quoted(session_id)), ("Calling-Station-Id", quoted(calling)),
                  ("Called-Station-Id", quoted(called)), h323("h323-conf-id", conf_id),
                  h323("h323-call-origin", origin), h323("h323-call-type", call_type),
                  h323("h323-setup-time", cisco_time(setup))]
    if connect is not None:
        attributes.append(h323("h323-connect-time", cisco_time(connect)))
    if status.lower() == "stop":
        end = disconnect or setup
        attributes += [h323("h323-disconnect-time", cisco_time(end)), h323("h323-disconnect-cause", cause),
                       ("Acct-Session-Time", str(int((end - connect).total_seconds()) if connect else 0))]
    if remote is not None:
        attributes.append(h323("h323-remote-address", remote))
    attributes += [("Cisco-AVPair", quoted(pair)) for pair in avpairs]
    attributes.append(("Acct-Unique-Session-Id", quoted(unique_id(nas_ip, session_id))))
    moment = received or (disconnect if status.lower() == "stop" and disconnect else setup) + timedelta(seconds=1)
    return record(attributes, moment)


def pbx_leg(*, call_id: str, nas_ip: str, user_name: str, session_id: str, setup: datetime, connect: datetime,
            seconds: int, calling: str, called: str, details: dict[str, str] | None = None) -> str:
    """A PBX's (SIP server's) Stop record of one participant's session: its User-Name is the account billed, the
    call's SIP call-id is shared by every session of the call, and the PBX call details go as Cisco-AVPairs
    (``media_duration=0``)."""
    end = connect + timedelta(seconds=seconds)
    attributes = [("User-Name", quoted(user_name)), ("NAS-IP-Address", nas_ip), ("Acct-Status-Type", "Stop"),
                  ("Acct-Session-Id", quoted(session_id)), ("Calling-Station-Id", quoted(calling)),
                  ("Called-Station-Id", quoted(called)), ("Cisco-AVPair", quoted(f"call-id={call_id}")),
                  ("h323-setup-time", quoted(cisco_time(setup))), ("h323-connect-time", quoted(cisco_time(connect))),
                  ("h323-disconnect-time", quoted(cisco_time(end))), ("Acct-Session-Time", str(seconds)),
                  *(("Cisco-AVPair", quoted(f"{name}={value}")) for name, value in (details or {}).items()),
                  ("Acct-Unique-Session-Id", quoted(unique_id(nas_ip, session_id)))]
    return record(attributes, end + timedelta(seconds=1))
