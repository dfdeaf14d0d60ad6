"""What ``cdr formats`` shows, as plain data: every record format (:func:`list_formats`), and a file parsed by a
carrier's format without loading anything (:func:`check_file`). The CLI only prints these (a table, or the
``view()`` of each as JSON); nothing here writes output or touches the catalog.
"""

from __future__ import annotations

import gzip
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..core import EXTENSION_FORMATS
from ..errors import CdrError, NotText, ParseError

if TYPE_CHECKING:
    from ..config import Config

DEFAULT_LIMIT = 10  # records shown per kind by `cdr formats check`


@dataclass(frozen=True)
class FormatInfo:
    """One record format, as ``cdr formats list`` shows it."""

    name: str
    kind: str  # delimited, fixed, json, auto
    records: tuple[str, ...]  # the record kinds it yields: call, charge
    key: str  # "row", or the id columns joined by ", "
    origin: str  # "built-in", or the configuration file defining it
    description: str
    carriers: tuple[str, ...]  # the carriers reading their files with it

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "records": list(self.records), "key": self.key,
                "origin": self.origin, "description": self.description, "carriers": list(self.carriers)}


def list_formats(config: "Config") -> list[FormatInfo]:
    """Every record format the configuration knows (built in or its own), by name."""
    out = []
    for name, spec in sorted(config.formats.items()):
        key = spec.key if isinstance(spec.key, str) else ", ".join(spec.key)
        out.append(FormatInfo(name=name, kind=spec.kind, records=tuple(sorted(spec.kinds)), key=key,
                              origin=config.format_definitions[name].origin, description=spec.description or "",
                              carriers=config.carriers_using(name)))
    return out


@dataclass(frozen=True)
class FileError:
    """The first error in a checked file: where (line, field) and why (reason, value)."""

    file: str
    line: int | None
    field: str | None
    reason: str
    value: str | None
    message: str  # the whole one-line message

    def view(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "reason": self.reason,
                "value": self.value, "message": self.message}


@dataclass
class CheckResult:
    """A file read by a carrier's format: the first records of each kind (``kind`` first, then the layout's fields,
    money as decimal text, times ISO 8601 with Z), how many of each, how many rows were dropped as identical to
    another of the file, and the first error, if any (then nothing after it is counted)."""

    file: str
    carrier: str
    format: str
    file_format: str | None
    records: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    rows_dropped: int = 0
    error: FileError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def view(self) -> dict[str, Any]:
        return {"file": self.file, "carrier": self.carrier, "format": self.format, "file_format": self.file_format,
                "ok": self.ok, "counts": dict(self.counts), "rows_dropped": self.rows_dropped,
                "records": self.records, "error": self.error.view() if self.error else None}


def check_file(config: "Config", path: str | Path, carrier: str, limit: int = DEFAULT_LIMIT) -> CheckResult:
    """Parse the file at ``path`` with ``carrier``'s format, loading nothing: its first ``limit`` records of each
    kind, the counts, and the first error. An unknown carrier or a format that cannot be compiled raises (a
    CdrError: the question is wrong, not the file); a file that does not read is the result's ``error``."""
    from .read import Source

    path = Path(path)
    spec = config.carrier(carrier)
    parser = config.parser_for(carrier)
    name = path.name
    file_format = _file_format(config, name, carrier)
    result = CheckResult(file=str(path), carrier=carrier, format=spec.format, file_format=file_format)
    source = Source(name=name, file_format=file_format, open=lambda: _open(path))
    counts: Counter[str] = Counter()
    try:
        for layout, batch in parser.batches(source):
            wanted = max(0, limit - counts[layout.kind])
            if wanted and batch.num_rows:
                result.records.extend(record_view(layout, row) for row in batch.slice(0, wanted).to_pylist())
            counts[layout.kind] += batch.num_rows
    except ParseError as exc:
        result.error = FileError(exc.file, exc.line, exc.field, exc.reason, exc.value, str(exc))
    except NotText as exc:
        result.error = FileError(exc.file, None, None, f"{NotText.REASON} ({exc.what})", None, str(exc))
    except OSError as exc:
        reason = f"cannot read: {exc.strerror or exc}"
        result.error = FileError(name, None, None, reason, None, f"{name}: {reason}")
    except (EOFError, gzip.BadGzipFile) as exc:
        reason = f"not a complete gzip file: {exc}"
        result.error = FileError(name, None, None, reason, None, f"{name}: {reason}")
    except CdrError as exc:  # a hook's refusal and the like: still the file's error, in one line
        result.error = FileError(name, None, None, str(exc), None, str(exc))
    result.counts = {kind: counts[kind] for kind in sorted(counts)}
    result.rows_dropped = int(getattr(parser, "rows_dropped", 0) or 0)
    return result


def record_view(layout, row: dict[str, Any]) -> dict[str, Any]:
    """A parsed record as JSON carries it exactly: ``kind`` first, then its columns; money (millionths) as decimal
    text, UTC times as ISO 8601 with Z (``2026-10-01T10:00:00Z``)."""
    from ..layouts import money_text

    out: dict[str, Any] = {"kind": layout.kind}
    for name, value in row.items():
        kind = layout.kind_of(name) if name in layout.parsed_columns else None
        if value is not None and kind == "money":
            value = money_text(value)
        elif value is not None and kind == "utc":
            value = _iso_utc(value)
        out[name] = value
    return out


def _iso_utc(value: Any) -> str:
    """``YYYY-MM-DD HH:MM:SS`` (a parser's UTC text) as ``YYYY-MM-DDTHH:MM:SSZ``; a datetime likewise."""
    if not isinstance(value, str):
        from ..export import exact

        return exact(value)
    text = value.replace(" ", "T", 1)
    return text if text.endswith("Z") else f"{text}Z"


def _file_format(config: "Config", name: str, carrier: str) -> str | None:
    """As intake decides it: the carrier's matching file rule, else the name's extension, else the carrier's
    file_format; None leaves it to the format (sniffed)."""
    bare = name[:-3] if name.lower().endswith(".gz") else name
    found = config.classify(bare, carrier)
    if found is not None and found.file_format:
        return found.file_format
    return EXTENSION_FORMATS.get(Path(bare).suffix.lower()) or config.carrier(carrier).file_format


def _open(path: Path) -> BinaryIO:
    """The file's content; a ``.gz`` decompressed on the fly."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


__all__ = ["CheckResult", "DEFAULT_LIMIT", "FileError", "FormatInfo", "check_file", "list_formats", "record_view"]
