"""The error hierarchy every layer raises.

Foreign errors (sqlite3, psycopg, OS, parsers, later paramiko/aioftp/httpx/imaplib) are mapped once, at the
boundary where they occur, into these. The split that matters to the daemon is transient (worth retrying
later: a busy database, a dropped connection) versus permanent (retrying the same thing fails the same way
until a person changes something: bad configuration, a malformed file, an unknown id).
"""

from __future__ import annotations


class CdrError(Exception):
    """Base of every error cdr-ingest raises on purpose. The message is one line, fit for an operator."""

    transient = False


class TransientError(CdrError):
    """Worth retrying later without any change: the same call may succeed."""

    transient = True


class PermanentError(CdrError):
    """Fails the same way until someone fixes the input, the configuration or the request."""


class ConfigError(PermanentError):
    """The configuration is refused; names the key and the reason."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"configuration error at {key}: {reason}")


class NotFound(PermanentError):
    """An id, carrier or path that does not exist."""


class InvalidState(PermanentError):
    """The requested change is not allowed from the file's current status."""


class IntakeError(PermanentError):
    """The bytes could not be taken in as offered (unreadable source, decompression limit exceeded, ...)."""


class ParseError(PermanentError):
    """A record in a file does not match its layout. Names the file, the line and the field."""

    def __init__(self, file: str, line: int | None, field: str | None, reason: str, value: str | None = None):
        self.file = file
        self.line = line
        self.field = field
        self.reason = reason
        self.value = value
        where = file
        if line is not None:
            where += f", line {line}"
        if field:
            where += f", field {field}"
        shown = "" if value is None else f" (value {_shorten(value)!r})"
        super().__init__(f"{where}: {reason}{shown}")


class NotText(PermanentError):
    """A file's content is not text a parser reads (a PDF, an image, a spreadsheet): it is set aside as
    ``ignored``, not failed as a malformed file. ``what`` says what it looks like."""

    REASON = "not a delimited or JSON text file"

    def __init__(self, file: str, what: str):
        self.file = file
        self.what = what
        super().__init__(f"{file}: {self.REASON} ({what})")


class DatabaseBusy(TransientError):
    """The catalog database was locked or unreachable; try again."""


def _shorten(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
