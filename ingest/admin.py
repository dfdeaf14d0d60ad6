"""What an admin does, as a library: upload, inspect, release, discard, retry. The CLI is a thin layer
over these; each change is one catalog transaction, audited with the acting user and the reason."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from . import intake, parsed
from .app import App
from .catalog import files as catalog_files
from .config import CADENCES, FILE_TYPES, FORMATS
from .errors import IntakeError, InvalidState, NotFound
from .load import LoadResult, load_file
from .staging import ProgressFactory, ProgressReader

RELEASABLE = ("held",)
DISCARDABLE = ("held", "failed", "queued", "ignored")


def upload(app: App, path: Path, *, carrier: str, file_type: str, cadence: str | None = None,
           period: str | None = None, file_format: str | None = None, actor: str | None = None,
           progress: ProgressFactory | None = None) -> list[intake.Received]:
    """A manual upload: the admin names the carrier and the file type, as the platform requires. ``progress``
    is told of the staging (bytes read), see :func:`_opened`."""
    app.config.carrier(carrier)
    for value, allowed, what in ((file_type, FILE_TYPES, "type"), (cadence, CADENCES, "cadence"),
                                 (file_format, FORMATS, "format")):
        if value is not None and value not in allowed:
            raise InvalidState(f"unknown {what} {value!r} (one of {', '.join(allowed)})")
    with _opened(path, progress) as stream:
        origin = intake.Origin(source=intake.UPLOAD, name=Path(path).name, location=str(Path(path).resolve()),
                               carrier=carrier, file_type=file_type, cadence=cadence, billing_period=period,
                               file_format=file_format)
        return intake.receive(app, stream, origin, actor=actor)


def upload_email(app: App, path: Path, *, carrier: str | None = None, actor: str | None = None,
                 progress: ProgressFactory | None = None) -> list[intake.Received]:
    """A saved email (.eml): every attachment through the door, routed by its addresses (or ``carrier``)."""
    from .mail import Route, take_message

    route = Route(carrier=app.config.carrier(carrier).name) if carrier else None
    with _opened(path, progress) as stream:
        return take_message(app, stream, source=intake.UPLOAD, route=route, actor=actor)


def _opened(path: Path, progress: ProgressFactory | None) -> BinaryIO:
    """The file at ``path`` opened for reading (IntakeError, one line, if it cannot be), reporting the bytes read
    to ``progress`` as task "staging NAME" of the file's size, if it asks for it."""
    try:
        stream = open(path, "rb")
    except OSError as exc:
        raise IntakeError(f"cannot read {path}: {exc.strerror}") from None
    on_progress = progress(f"staging {Path(path).name}", os.fstat(stream.fileno()).st_size) if progress else None
    if on_progress is None:
        return stream
    return ProgressReader(stream, lambda done: on_progress(done, 0))


def release(app: App, file_id: int, *, reason: str | None = None, actor: str | None = None) -> dict[str, Any]:
    """A held file is genuinely new: queue it. When it loads, records already loaded are skipped."""
    with app.catalog.write() as conn:
        held = catalog_files.get_file(conn, file_id)
        why = reason or f"released by {actor or app.actor} (was held: {held['reason']})"
        catalog_files.transition(conn, file_id, "queued", allowed_from=RELEASABLE, actor=actor or app.actor,
                                 action="released", why=why, released=True, reason=None, error=None)
        return catalog_files.get_file(conn, file_id)


def discard(app: App, file_id: int, *, reason: str | None = None, actor: str | None = None) -> dict[str, Any]:
    """Not needed: the file is set aside for good (its bytes stay staged) and stops counting as an
    earlier copy for duplicate checks."""
    with app.catalog.write() as conn:
        catalog_files.transition(conn, file_id, "discarded", allowed_from=DISCARDABLE, actor=actor or app.actor,
                                 action="discarded", why=reason or "discarded by an admin")
        found = catalog_files.get_file(conn, file_id)
    parsed.forget(Path(app.staging.root), file_id)  # a held file's kept parse is no longer needed
    return found


def retry(app: App, file_id: int, *, reason: str | None = None, actor: str | None = None) -> list[intake.Received]:
    """Process a failed or ignored file again after a fix: a load failure is queued again; an unreadable
    or unrecognised file is re-examined and re-classified (under the current limits and rules, with what
    its source said it is). A malformed file is replaced, not retried: its corrected file, once loaded,
    supersedes it (see ``catalog.files``)."""
    actor = actor or app.actor
    with app.catalog.read() as conn:
        row = catalog_files.get_file(conn, file_id)
    if row["status"] == "ignored" or (row["status"] == "failed" and row["reason"] == "unreadable"):
        return intake.reconsider(app, file_id, actor=actor)
    # The fix may be in the carrier's rules (a format they did not state): a format they state now wins.
    file_format = row["format"]
    for name in (row["name"], row["container"]):
        found = app.config.classify(name, row["carrier"]) if name and row["carrier"] else None
        if found is not None and found.file_format:
            file_format = found.file_format
            break
    with app.catalog.write() as conn:
        catalog_files.transition(conn, file_id, "queued", allowed_from=("failed",), actor=actor, action="retried",
                                 why=reason or f"retry after: {row['error']}", reason=None, error=None,
                                 format=file_format)
    return [intake.Received(file_id, row["name"], "queued", None)]


def load_now(app: App, received: list[intake.Received], actor: str | None = None,
             progress: ProgressFactory | None = None) -> dict[int, LoadResult]:
    """Load those of ``received`` that are queued (each reported to ``progress``, see :func:`load_file`);
    returns the outcome by file id."""
    return {r.id: load_file(app, r.id, actor=actor, progress=progress) for r in received if r.status == "queued"}


def show(app: App, file_id: int) -> dict[str, Any]:
    """One file, with the files it may repeat (the Potential Duplicates tab) and its history."""
    with app.catalog.read() as conn:
        row = catalog_files.get_file(conn, file_id)
        row["potential_duplicates"] = catalog_files.links_of(conn, file_id)
        row["history"] = catalog_files.events_of(conn, file_id)
    return row


def open_content(app: App, file_id: int) -> BinaryIO:
    """The file's stored content as a binary stream, the caller to close it: a plain file's exact bytes, a
    gzip's decompressed content, a zip member's content (under the intake's expansion limits). Unknown id:
    NotFound; staged bytes that cannot be opened (removed by hand, an unreadable archive): IntakeError."""
    with app.catalog.read() as conn:
        row = catalog_files.get_file(conn, file_id)
    try:
        return app.staging.open_member(row["blob"], row["compression"], row["member"])
    except (OSError, zipfile.BadZipFile) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise IntakeError(f"file #{file_id}: cannot open its staged bytes: {why}") from None


def list_records(app: App, *, limit: int = 100, **filters: Any) -> list[dict[str, Any]]:
    """The records matching ``filters`` (those of :func:`ingest.catalog.records.records_query`), oldest first,
    at most ``limit`` (0: all), each a dict keyed by column. ``cdr records`` streams them instead."""
    from .catalog.records import iter_records

    with app.catalog.read() as conn:
        with iter_records(conn, limit=limit, **filters) as rows:
            return [dict(row) for row in rows]


__all__ = ["NotFound", "discard", "list_records", "load_now", "open_content", "release", "retry", "show", "upload"]
