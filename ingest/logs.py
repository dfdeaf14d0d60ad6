"""Structured logs: one line per event, plain ``key=value`` text or JSON (``--log-json``).

Extra fields given with ``log.info(..., extra={"event": ..., "source": ...})`` are part of the line. Secrets
never reach a log: configuration secrets are ``Secret`` objects whose text is ``***``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class StructuredFormatter(logging.Formatter):
    def __init__(self, as_json: bool = False):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        if self.as_json:
            return json.dumps(fields, default=str)
        head = f"{fields.pop('ts')} {fields.pop('level').upper()} {fields.pop('logger')}: {fields.pop('message')}"
        error = fields.pop("error", None)
        tail = " ".join(f"{k}={json.dumps(v, default=str) if isinstance(v, str) and ' ' in v else v}" for k, v in fields.items())
        return head + (" " + tail if tail else "") + ("\n" + error if error else "")


def configure(verbose: bool, as_json: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(StructuredFormatter(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose or as_json else logging.WARNING)
