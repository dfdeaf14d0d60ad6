"""Builders for billing-feed test files: records with sensible defaults, rendered in the four formats."""

from __future__ import annotations

import json

# The documented column orders (the hero-feed and techconnections-feed formats' ``columns``): kept here so that
# the builders do not depend on the parser the formats replace.
HERO_COLUMNS = (
    "ID", "AccountCode", "Direction", "CallType", "BillDate", "Time", "UTCDateTime", "UTCOffset", "AParty",
    "BParty", "BillNumber", "Seconds", "NetworkSeconds", "ConnectSeconds", "Charge", "ChargeExcl",
    "FreeUnitsUsed", "TextDesc1", "TextDesc2", "ReleaseCause", "Status", "ServiceType", "BillingGroup",
    "CallingGroup", "Profile",
)
TECHCONNECTIONS_COLUMNS = HERO_COLUMNS[:5] + ("Date",) + HERO_COLUMNS[5:]

LAYOUTS = {"hero": HERO_COLUMNS, "techconnections": TECHCONNECTIONS_COLUMNS}
# The built-in format of each carrier's billing feed.
FORMATS = {"hero": "hero-feed", "techconnections": "techconnections-feed"}
DELIMITERS = {"csv": ",", "txt": "\t", "pipe": "|"}


def record(id: int, **fields) -> dict[str, str]:
    """One record; any column may be overridden by keyword (``Charge="1.23"``)."""
    base = {
        "ID": str(id),
        "AccountCode": "81234567",
        "Direction": "outbound",
        "CallType": "Mobile",
        "BillDate": "2026-10-01",
        "Date": "2026-10-01",
        "Time": "13:05:09",
        "UTCDateTime": "2026-10-01 00:05:09",
        "UTCOffset": "13",
        "AParty": "0016321234",
        "BParty": "0277000111",
        "BillNumber": "0016321234",
        "Seconds": "60",
        "NetworkSeconds": "42",
        "ConnectSeconds": "3",
        "Charge": "0.1150",
        "ChargeExcl": "0.1000",
        "FreeUnitsUsed": "0",
        "TextDesc1": "Mobile call",
        "TextDesc2": "Spark, mobile",
        "ReleaseCause": "0016",
        "Status": "Ok",
        "ServiceType": "STD",
        "BillingGroup": "Default",
        "CallingGroup": "Default",
        "Profile": "Default",
    }
    base.update(fields)
    return base


def render(rows: list[dict[str, str]], carrier: str = "hero", fmt: str = "csv", header: bool = True,
           newline: str = "\n", bom: bool = False) -> bytes:
    columns = LAYOUTS[carrier]
    if fmt == "json":
        text = json.dumps([{c: row[c] for c in columns if c in row} for row in rows], indent=1)
    else:
        sep = DELIMITERS[fmt]
        lines = []
        if header:
            lines.append(sep.join(columns))
        for row in rows:
            lines.append(sep.join(_quote(row.get(c, ""), sep) for c in columns))
        text = newline.join(lines) + newline
    data = text.encode("utf-8")
    return (b"\xef\xbb\xbf" + data) if bom else data


def _quote(value: str, sep: str) -> str:
    if sep in value or '"' in value or "\n" in value:
        return '"' + value.replace('"', '""') + '"'
    return value
