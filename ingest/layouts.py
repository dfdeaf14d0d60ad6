"""The record layouts: what a call and a charge are, whoever sent them. One definition of each.

A **call** is a usage record (a CDR row); a **charge** is a fixed-fee record (an SDR row: a line rental, a
broadband fee; the billing platform calls it a carrier transaction); a **leg** is one accounting record of our
own network (a RADIUS Start, Stop or Interim-Update from a gateway or SIP server), which ``ingest.legs`` joins
with the other legs of its call into xDRs. Every file format maps its columns onto
these fields (``ingest.formats``); the loader writes them to the ``calls``, ``charges`` and ``legs`` tables
(``ingest.catalog.schema`` builds both from here); ``cdr records`` writes them out in this order.

Each record also has, whatever its kind (:data:`RECORD_HEAD`, :data:`RECORD_TAIL`): its file, its carrier,
its ``record_key`` (its identity within the carrier and kind: the carrier's own id columns, or a hash of the
whole row; the same key from the same carrier is the same record, whatever file it arrives in), its
``position`` (the n-th data row of its file, from 1) and ``extra``: every column of the file the format did not
map, by the column's name with its text as given, so nothing in a file is lost. ``extra`` is a JSON object's
text; for a layout whose ``extra_by_position`` is set, the loader may store it as a JSON array of the values
alone, their names listed once for the whole file (``files.extra_columns``): most of ``extra``'s bytes were
those names, repeated on every row. Every reader of the catalog (``ingest.catalog.records``) gives it back as the
object.

Field kinds, and how a parser hands each to the loader (the Arrow type) and the database keeps it:

- ``text``: as given (numbers and codes such as ``0016`` stay text). Arrow string; TEXT.
- ``int``: a whole number (seconds). Arrow int64; BIGINT.
- ``money``: an exact decimal amount, kept as an integer count of millionths (:data:`MONEY_SCALE` decimal
  places), so that a plain SQL ``SUM`` is exact on SQLite too; every output shows the decimal. Arrow int64;
  BIGINT. A value with more decimal places than the scale is refused, never rounded.
- ``date``: a calendar date. Arrow string ``YYYY-MM-DD``; DATE.
- ``utc``: an instant, in UTC. Arrow string ``YYYY-MM-DD HH:MM:SS``; timestamptz (PostgreSQL), text (SQLite).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyarrow is imported when a schema is first asked for: the CLI's listings do without it
    import pyarrow as pa

KINDS = ("text", "int", "money", "date", "utc")
# Money is kept in millionths: 6 decimal places cover every rate and amount carriers send (at most 5 seen),
# and a 64-bit integer of millionths holds amounts up to 9,223,372,036,854 in any currency.
MONEY_SCALE = 6
MONEY_UNIT = Decimal(1).scaleb(-MONEY_SCALE)


@dataclass(frozen=True)
class Field:
    """One canonical field of a layout: its name, kind, whether every record must have it, and what it means."""

    name: str
    kind: str
    doc: str
    required: bool = False


@dataclass(frozen=True)
class Layout:
    """A record kind (``call`` or ``charge``), its table and its fields in order."""

    kind: str
    table: str
    file_type: str  # the kind of file it usually comes in: cdr (calls) or sdr (charges)
    fields: tuple[Field, ...]
    date_fields: tuple[str, ...]  # a record's own date: the first of these that is set (see ``own_date``)
    default_duplicate_rows: str  # once | distinct: identical rows in one file are one record or several
    # Whether the loader may store ``extra`` as a JSON array of values named once per file (module docs); not
    # for a kind whose ``extra`` members SQL reads by name (the legs join).
    extra_by_position: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical fields' names, in order."""
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column of the table and of the JSON/CSV output, in order (``id`` first)."""
        return ("id", "file_id", "carrier", *RECORD_HEAD, *self.names, *RECORD_TAIL)

    @property
    def parsed_columns(self) -> tuple[str, ...]:
        """The columns a parser yields (all but the ones the loader adds: ``id``, ``file_id``, ``carrier``)."""
        return (*RECORD_HEAD, *self.names, *RECORD_TAIL)

    def kind_of(self, column: str) -> str:
        """The kind of any parsed column (``record_key``, ``position``, ``extra`` or a field)."""
        return _COMMON_KINDS.get(column) or self.field(column).kind

    def arrow_schema(self) -> "pa.Schema":
        """The Arrow schema of the batches a parser yields for this layout (:attr:`parsed_columns`)."""
        import pyarrow as pa

        return pa.schema([(name, _ARROW[self.kind_of(name)]()) for name in self.parsed_columns])


RECORD_HEAD = ("record_key", "position")
RECORD_TAIL = ("extra",)
_COMMON_KINDS = {"record_key": "text", "position": "int", "extra": "text"}


def _arrow_string():
    import pyarrow as pa

    return pa.string()


def _arrow_int():
    import pyarrow as pa

    return pa.int64()


_ARROW = {"text": _arrow_string, "int": _arrow_int, "money": _arrow_int, "date": _arrow_string,
          "utc": _arrow_string}


CALL = Layout(
    kind="call",
    table="calls",
    file_type="cdr",
    default_duplicate_rows="once",
    extra_by_position=True,
    date_fields=("start_time",),
    fields=(
        Field("carrier_record_id", "text", "the carrier's own id of the record, as given"),
        Field("account_code", "text", "the carrier's account the call is billed to"),
        Field("direction", "text", "outbound, inbound, onnet, ... as the carrier says"),
        Field("call_type", "text", "the carrier's call type (Mobile, National, ...)"),
        Field("start_time", "utc", "when the call started (UTC)", required=True),
        Field("answer_time", "utc", "when it was answered (UTC), if it was"),
        Field("end_time", "utc", "when it ended (UTC)"),
        Field("connected_seconds", "int", "how long it was connected (the actual duration)"),
        Field("billed_seconds", "int", "the seconds charged (often rounded up)"),
        Field("a_number", "text", "the calling number"),
        Field("b_number", "text", "the called number"),
        Field("bill_number", "text", "the line that pays for the call"),
        Field("charge", "money", "the carrier's charge, tax included"),
        Field("charge_excl", "money", "the carrier's charge, tax excluded"),
        Field("currency", "text", "ISO 4217 code of the charges"),
        Field("status", "text", "status or disposition (ANSWERED, NO ANSWER, Ok, ...)"),
        Field("release_cause", "text", "the release or hangup cause"),
        Field("description", "text", "the carrier's description of the call"),
        Field("bill_date", "date", "the date the carrier billed it on"),
        Field("local_date", "text", "the carrier's local date, as given"),
        Field("local_time", "text", "the carrier's local time, as given"),
        Field("utc_offset", "text", "the carrier's local offset from UTC, as given"),
    ),
)

CHARGE = Layout(
    kind="charge",
    table="charges",
    file_type="sdr",
    default_duplicate_rows="distinct",
    extra_by_position=True,
    date_fields=("period_start", "charge_date"),
    fields=(
        Field("carrier_record_id", "text", "the carrier's own id of the record, as given"),
        Field("customer_reference", "text", "how the carrier names the customer (its account reference)"),
        Field("number_reference", "text", "the number (line) the charge is for"),
        Field("product_code", "text", "the carrier's product or service code"),
        Field("description", "text", "the carrier's description of the charge"),
        Field("period_start", "date", "the first day the charge covers"),
        Field("period_end", "date", "the last day the charge covers"),
        Field("charge_date", "date", "the date the carrier charged it on"),
        Field("quantity", "money", "how many units (exact decimal)"),
        Field("unit_cost", "money", "the cost of one unit, tax excluded"),
        Field("cost", "money", "the cost, tax excluded"),
        Field("cost_incl", "money", "the cost, tax included"),
        Field("currency", "text", "ISO 4217 code of the costs"),
    ),
)

LEG = Layout(
    kind="leg",
    table="legs",
    file_type="acct",
    default_duplicate_rows="once",
    date_fields=("event_time",),
    fields=(
        Field("status_type", "text", "Acct-Status-Type: Start, Stop, Interim-Update, ... (without a leading ::)",
              required=True),
        Field("event_time", "utc", "when the accounting server received the record (UTC)", required=True),
        Field("session_id", "text", "Acct-Session-Id: the gateway's id of the session"),
        Field("unique_session_id", "text", "Acct-Unique-Session-Id: the server's id of the session"),
        Field("conf_id", "text", "h323-conf-id: the call's id across gateways (without its name)"),
        Field("sip_call_id", "text", "call-id: the SIP call's id"),
        Field("nas_ip", "text", "NAS-IP-Address: the gateway or server that sent the record"),
        Field("user_name", "text", "User-Name: the account the call is authorised for, or a calling node's IP"),
        Field("call_origin", "text", "h323-call-origin: originate or answer"),
        Field("call_type", "text", "h323-call-type: Telephony, VoIP, ..."),
        Field("calling_number", "text", "Calling-Station-Id: the calling number"),
        Field("called_number", "text", "Called-Station-Id: the called number"),
        Field("setup_time", "utc", "h323-setup-time: when the leg was set up (UTC)"),
        Field("connect_time", "utc", "h323-connect-time: when it was connected (UTC), if it was"),
        Field("disconnect_time", "utc", "h323-disconnect-time: when it was disconnected (UTC)"),
        Field("clock_flag", "text", "the gateway's clock was not synchronised: * (never) or . (lost), as given"),
        Field("session_seconds", "int", "Acct-Session-Time: the seconds the session lasted (on Stop)"),
        Field("disconnect_cause", "text", "h323-disconnect-cause: the Q.931 cause, in hex as given"),
        Field("remote_address", "text", "h323-remote-address: the other side's address"),
    ),
)

LAYOUTS: dict[str, Layout] = {CALL.kind: CALL, CHARGE.kind: CHARGE, LEG.kind: LEG}
# A file's type (how the catalog and ``cdr records --type`` name it) and the layout its records usually have.
LAYOUT_BY_FILE_TYPE: dict[str, Layout] = {CALL.file_type: CALL, CHARGE.file_type: CHARGE, LEG.file_type: LEG}


def money_text(units: int | None) -> str | None:
    """Millionths as the decimal they stand for, with at least two decimal places: 115000 -> ``0.115``,
    12000000 -> ``12.00``."""
    if units is None:
        return None
    return format(money_decimal(units), "f")


def money_decimal(units: int | None) -> Decimal | None:
    """Millionths as an exact Decimal with at least two decimal places (trailing zeros beyond them dropped)."""
    if units is None:
        return None
    value = Decimal(units).scaleb(-MONEY_SCALE)
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    return value.quantize(Decimal("0.01")) if isinstance(exponent, int) and exponent > -2 else normal


def money_units(value: Decimal) -> int:
    """An exact Decimal as millionths; ValueError if it has more decimal places than :data:`MONEY_SCALE`."""
    scaled = value.scaleb(MONEY_SCALE)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {MONEY_SCALE} decimal places")
    return int(scaled)


def extra_mapping(stored: "str | list | dict | None", names: "list[str] | None") -> "dict[str, str] | None":
    """A record's ``extra`` as the object it stands for, from what is stored (module docs): a JSON object's text
    (or the object), or a JSON array's (or the list) of values named, in order, by ``names`` (the file's
    ``extra_columns`` for its kind). ValueError if an array comes without names that fit it: its values would be
    misnamed."""
    if stored is None:
        return None
    if isinstance(stored, str):
        stored = json.loads(stored)
    if isinstance(stored, dict):
        return stored
    if names is None or len(names) != len(stored):
        raise ValueError(f"extra holds {len(stored)} values by position, and its file names "
                         f"{'none' if names is None else len(names)}")
    return dict(zip(names, stored))


__all__ = ["CALL", "CHARGE", "Field", "KINDS", "LAYOUTS", "LAYOUT_BY_FILE_TYPE", "LEG", "Layout", "MONEY_SCALE",
           "RECORD_HEAD", "RECORD_TAIL", "extra_mapping", "money_decimal", "money_text", "money_units"]
