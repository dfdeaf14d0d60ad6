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
            fields["traceback"] = self.formatException(record.exc_info)
        if self.as_json:
            return json.dumps(fields, default=str)
        head = f"{fields.pop('ts')} {fields.pop('level').upper()} {fields.pop('logger')}: {fields.pop('message')}"
        trace = fields.pop("traceback", None)  # a fault of ours: the only text that runs over more than one line
        tail = " ".join(f"{k}={_text_value(v)}" for k, v in fields.items() if v is not None)
        return head + (" " + tail if tail else "") + ("\n" + trace if trace else "")


def _text_value(value) -> str:
    """A field's value in a text line: quoted (JSON) when it has a space or a line break, so the line stays one."""
    text = value if isinstance(value, str) else str(value)
    return json.dumps(text) if isinstance(value, str) and (" " in text or not text.isprintable()) else text


class _NotPrintedByTheCommand(logging.Filter):
    """Drops the events the running command prints itself (see :func:`printed_by_command`)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "event", None) not in self.events


_console_filter = _NotPrintedByTheCommand()
_complete = False  # -v or --log-json: the console log is complete, whatever a command prints


def configure(verbose: bool, as_json: bool) -> None:
    """The console log (stderr): with ``-v`` or ``--log-json`` every event from INFO up, each once; without,
    warnings and errors only, and none that the command prints itself (:func:`printed_by_command`)."""
    global _complete
    handler = logging.StreamHandler()
    handler.setFormatter(StructuredFormatter(as_json))
    _complete = verbose or as_json
    _console_filter.events.clear()
    handler.addFilter(_console_filter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if _complete else logging.WARNING)


def printed_by_command(*events: str) -> None:
    """The rule that prints each error once: a command that reports ``events`` itself (``cdr collect`` prints
    a pass's errors and the entries it could not take on stderr) is the one channel for them; the console
    log leaves them out, unless ``-v``/``--log-json`` asked for the complete log."""
    if not _complete:
        _console_filter.events.update(events)


def log_events() -> None:
    """A process whose log is its only output (``cdr daemon``): every event from INFO up on the console."""
    logging.getLogger().setLevel(logging.INFO)


def event(logger: logging.Logger, name: str, message: str, *, level: int = logging.INFO, **fields) -> None:
    """Log one event: ``message`` for people, ``name`` and ``fields`` as the line's structured fields
    (``event=file_held source=... file=...``; keys of JSON objects with ``--log-json``)."""
    logger.log(level, message, extra={"event": name, **fields})


def file_event(logger: logging.Logger, name: str, file_id: int, file: str, source: str | None, what: str,
               **fields) -> None:
    """One file event at INFO, the same line whichever path decided it (daemon, ``cdr collect``, ``cdr
    upload``, ``cdr watch``): ``file_taken``, ``file_loaded``, ``file_held``, ``file_failed``,
    ``file_ignored``. The message reads ``#12 hero_cdr_20261001.csv: <what>``; ``file_id``, ``file``,
    ``source`` and ``fields`` are the structured fields."""
    event(logger, name, f"#{file_id} {file}: {what}", file_id=file_id, file=file, source=source, **fields)
