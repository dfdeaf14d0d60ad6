"""Catalog operations on files: reading them, and every status change, each audited.

A file's status changes only here, inside the caller's transaction, by :func:`transition`, which checks
the current status (so two admins or an admin and the loader cannot both act on the same file) and writes
a ``file_events`` row saying who, when and why.

Statuses::

    queued     waiting to be loaded              -> loaded | failed | held (overlap) | discarded
    held       a potential duplicate or overlap  -> queued (release) | discarded
    failed     intake or load failed, bytes kept -> queued (retry) | discarded | superseded
    ignored    no carrier rule recognised it,    -> queued (retry, after a rule is added) | discarded
               or its content is not text (load)
    loaded     its records are in the database   (final)
    discarded  an admin decided it is not needed (final; no longer counts as an earlier copy)
    superseded a corrected file replaced it      (final; ``superseded_by`` names the replacement)

A failed file is superseded, in the transaction that loads its replacement, when a later file of the same
carrier loads under its name (or, for a failed archive, from an archive of its name): whatever it failed
for, the corrected file is what the carrier meant. It no longer counts in the backlog, but still counts as
an earlier copy for the content check (its bad content sent again is held, as any repeat is). The same-name
rule counts only files that may bill (queued, held, loaded): a failed or superseded file loaded nothing, and
the file sent under its name is the correction, so it is not held for the name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, and_, func, insert, or_, select, update
from sqlalchemy.dialects import sqlite

from ..errors import InvalidState, NotFound
from .schema import file_events, file_links, files

STATUSES = ("queued", "loaded", "held", "failed", "discarded", "ignored", "superseded")
# Files that count as "received before" for the duplicate checks.
COUNTS_AS_EARLIER = ("queued", "loaded", "held", "failed", "superseded")
# Files a same-named file may repeat (the carrier's ``same_name_rule``): those whose records are or may be loaded.
MAY_BILL = ("queued", "loaded", "held")


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Link:
    earlier_id: int
    kind: str
    records: int | None = None


def add_file(conn: Connection, values: dict[str, Any], *, actor: str, why: str | None) -> int:
    """Insert a new file row with its first audit event; returns its id."""
    stamp = now()
    row = {"released": False, "records_loaded": 0, "records_skipped": 0, **values}
    row.setdefault("received_at", stamp)
    row["updated_at"] = stamp
    file_id = conn.execute(insert(files).values(**row).returning(files.c.id)).scalar_one()
    _event(conn, file_id, actor=actor, action="received", from_status=None, to_status=row["status"], why=why)
    return file_id


def add_links(conn: Connection, file_id: int, links: Iterable[Link]) -> None:
    rows = [
        {"file_id": file_id, "earlier_id": link.earlier_id, "kind": link.kind, "records": link.records}
        for link in links
        if link.earlier_id != file_id
    ]
    if rows:
        conn.execute(insert(file_links), rows)


def clear_links(conn: Connection, file_id: int, kind: str | None = None) -> None:
    cond = file_links.c.file_id == file_id
    if kind:
        cond = and_(cond, file_links.c.kind == kind)
    conn.execute(file_links.delete().where(cond))


def transition(
    conn: Connection,
    file_id: int,
    to_status: str,
    *,
    allowed_from: Sequence[str],
    actor: str,
    action: str,
    why: str | None = None,
    **values: Any,
) -> dict[str, Any]:
    """Move a file to ``to_status`` if its status is one of ``allowed_from``; audit it; return the old row."""
    current = get_file(conn, file_id)
    if current["status"] not in allowed_from:
        allowed = ", ".join(allowed_from)
        raise InvalidState(
            f"file {file_id} is {current['status']}; {action} applies only to a file that is {allowed}"
        )
    changed = conn.execute(
        update(files)
        .where(files.c.id == file_id, files.c.status == current["status"])
        .values(status=to_status, updated_at=now(), **values)
    ).rowcount
    if changed != 1:
        raise InvalidState(f"file {file_id} changed while {action} was being applied; try again")
    _event(conn, file_id, actor=actor, action=action, from_status=current["status"], to_status=to_status, why=why)
    return current


def loaded_why(inserted: int, skipped: int) -> str:
    return f"loaded {inserted} records" + (f", skipped {skipped} already loaded" if skipped else "")


def supersede_failed(conn: Connection, file_id: int, *, actor: str) -> list[int]:
    """In the transaction that loads file ``file_id``: move the earlier failed files it replaces (see the
    module docstring) to ``superseded``, linked to it by ``superseded_by`` and audited; returns their ids."""
    replaced = list(conn.execute(_replaced_by(file_id)).scalars())
    for earlier_id in replaced:
        transition(conn, earlier_id, "superseded", allowed_from=("failed",), actor=actor, action="superseded",
                   why=superseded_why(file_id), superseded_by=file_id)
    return replaced


def superseded_why(file_id: int) -> str:
    return f"replaced by #{file_id}, a file of the same carrier and name that loaded"


def _replaced_by(file_id: int):
    """The ids of the failed files that file ``file_id`` replaces: earlier, the same carrier, and named
    as it is or as the archive it came in."""
    replacement = files.alias("replacement")
    return (
        select(files.c.id)
        .join(replacement, replacement.c.id == file_id)
        .where(files.c.status == "failed", files.c.carrier == replacement.c.carrier, files.c.id < replacement.c.id,
               or_(files.c.name == replacement.c.name, files.c.name == replacement.c.container))
        .order_by(files.c.id)
    )


def mark_loaded_dbapi(cursor, file_id: int, *, inserted: int, skipped: int, actor: str,
                      span: tuple[int | None, int | None]) -> None:
    """The ``queued -> loaded`` transition and its audit event, and the ``failed -> superseded`` transitions
    it causes (:func:`supersede_failed`), for the SQLite bulk path whose transaction runs on an ADBC (DBAPI,
    qmark) cursor rather than a SQLAlchemy connection. The caller holds the write lock (BEGIN IMMEDIATE)
    and has checked the file is queued. Timestamps are written in the form the SQLite dialect stores
    ``UTCDateTime``."""
    stamp = now().replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    why = loaded_why(inserted, skipped)
    cursor.execute(
        "UPDATE files SET status = 'loaded', records_loaded = ?, records_skipped = ?, error = NULL, reason = NULL,"
        " first_record_id = ?, last_record_id = ?, updated_at = ? WHERE id = ? AND status = 'queued'",
        (inserted, skipped, span[0], span[1], stamp, file_id),
    )
    cursor.execute(
        "INSERT INTO file_events (file_id, at, actor, action, from_status, to_status, reason)"
        " VALUES (?, ?, ?, 'loaded', 'queued', 'loaded', ?)",
        (file_id, stamp, actor, why),
    )
    replaced = _replaced_by(file_id).compile(dialect=sqlite.dialect())
    cursor.execute(str(replaced), [replaced.params[name] for name in replaced.positiontup])
    for (earlier_id,) in cursor.fetchall():
        cursor.execute(
            "UPDATE files SET status = 'superseded', superseded_by = ?, updated_at = ?"
            " WHERE id = ? AND status = 'failed'",
            (file_id, stamp, earlier_id),
        )
        cursor.execute(
            "INSERT INTO file_events (file_id, at, actor, action, from_status, to_status, reason)"
            " VALUES (?, ?, ?, 'superseded', 'failed', 'superseded', ?)",
            (earlier_id, stamp, actor, superseded_why(file_id)),
        )


def audit(conn: Connection, file_id: int, *, actor: str, action: str, why: str | None) -> None:
    """Record an event that does not change the status (for example a retry that loads nothing new)."""
    status = get_file(conn, file_id)["status"]
    _event(conn, file_id, actor=actor, action=action, from_status=status, to_status=status, why=why)


def record_format(conn: Connection, file_id: int, file_format: str, *, actor: str) -> None:
    """Record the format a file's content is actually in, when it is not the one the file has (a name that
    lies: a pipe-separated ``.txt``; or none was known); audited, the status unchanged."""
    current = get_file(conn, file_id)
    if current["format"] == file_format:
        return
    conn.execute(update(files).where(files.c.id == file_id).values(format=file_format, updated_at=now()))
    was = f"received as {current['format']}" if current["format"] else "no format was given"
    _event(conn, file_id, actor=actor, action="format", from_status=current["status"],
           to_status=current["status"], why=f"read as {file_format} ({was})")


def _event(conn, file_id, *, actor, action, from_status, to_status, why) -> None:
    conn.execute(
        insert(file_events).values(
            file_id=file_id,
            at=now(),
            actor=actor,
            action=action,
            from_status=from_status,
            to_status=to_status,
            reason=why,
        )
    )


def get_file(conn: Connection, file_id: int) -> dict[str, Any]:
    row = conn.execute(select(files).where(files.c.id == file_id)).mappings().first()
    if row is None:
        raise NotFound(f"no file with id {file_id}")
    return dict(row)


def list_files(
    conn: Connection,
    *,
    carrier: str | None = None,
    file_type: str | None = None,
    cadence: str | None = None,
    status: str | None = None,
    period: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    query = select(files).order_by(files.c.id)
    for column, value in (
        (files.c.carrier, carrier),
        (files.c.type, file_type),
        (files.c.cadence, cadence),
        (files.c.status, status),
        (files.c.billing_period, period),
    ):
        if value is not None:
            query = query.where(column == value)
    if limit:
        query = query.limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def links_of(conn: Connection, file_id: int) -> list[dict[str, Any]]:
    """The files this one may repeat, with the earlier file's name, status and when it was received."""
    earlier = files.alias("earlier")
    query = (
        select(
            file_links.c.kind,
            file_links.c.records,
            earlier.c.id,
            earlier.c.name,
            earlier.c.status,
            earlier.c.source,
            earlier.c.received_at,
        )
        .join(earlier, earlier.c.id == file_links.c.earlier_id)
        .where(file_links.c.file_id == file_id)
        .order_by(earlier.c.id, file_links.c.kind)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def events_of(conn: Connection, file_id: int) -> list[dict[str, Any]]:
    query = select(file_events).where(file_events.c.file_id == file_id).order_by(file_events.c.id)
    return [dict(r) for r in conn.execute(query).mappings()]


def earlier_by_content(conn: Connection, fingerprint: str) -> list[int]:
    query = (
        select(files.c.id)
        .where(files.c.fingerprint == fingerprint, files.c.status.in_(COUNTS_AS_EARLIER))
        .order_by(files.c.id)
    )
    return list(conn.execute(query).scalars())


def earlier_by_name(conn: Connection, carrier: str, name: str) -> list[int]:
    query = (
        select(files.c.id)
        .where(files.c.carrier == carrier, files.c.name == name, files.c.status.in_(MAY_BILL))
        .order_by(files.c.id)
    )
    return list(conn.execute(query).scalars())


def same_delivery(conn: Connection, source: str, delivery: str, blob: str) -> list[dict[str, Any]]:
    query = (
        select(files)
        .where(files.c.source == source, files.c.delivery == delivery, files.c.blob == blob)
        .order_by(files.c.id)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def queued_ids(conn: Connection, limit: int | None = None) -> list[int]:
    query = select(files.c.id).where(files.c.status == "queued").order_by(files.c.id)
    if limit:
        query = query.limit(limit)
    return list(conn.execute(query).scalars())


def status_counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(files.c.status, func.count()).group_by(files.c.status))
    return {status: count for status, count in rows}
