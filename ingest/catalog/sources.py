"""Catalog operations on each source's run state: what ``cdr status`` shows and the daemon schedules by."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .files import now
from .schema import files, remote_pending, source_state


def state_of(conn: Connection, source: str) -> dict[str, Any] | None:
    row = conn.execute(select(source_state).where(source_state.c.source == source)).mappings().first()
    return dict(row) if row else None


def all_states(conn: Connection) -> dict[str, dict[str, Any]]:
    return {row["source"]: dict(row) for row in conn.execute(select(source_state)).mappings()}


def record_pass(conn: Connection, source: str, *, error: str | None, collected: int,
                next_run: datetime | None, entry_errors: Sequence[str] = ()) -> dict[str, Any]:
    """After one pass: attempt time, success or the error (and how many failures in a row), files taken.

    ``entry_errors`` (entries the pass could not take) never make the pass a failure. A successful pass
    replaces the recorded ones (none left: cleared), so they stay shown exactly while the entries are there;
    a failed pass did not see every entry and leaves them as the last successful pass found them."""
    stamp = now()
    current = state_of(conn, source)
    if current is None:  # two watcher processes on one folder may both get here first: one row all the same
        first = (postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert)(source_state)
        conn.execute(first.values(source=source, consecutive_failures=0, files_collected=0).on_conflict_do_nothing())
        current = state_of(conn, source)
    values: dict[str, Any] = {
        "last_attempt_at": stamp,
        "next_run_at": next_run,
        "files_collected": current["files_collected"] + collected,
    }
    if error is None:
        values.update(last_success_at=stamp, consecutive_failures=0,
                      entry_errors="\n".join(entry_errors) or None, entry_errors_at=stamp if entry_errors else None)
    else:
        values.update(last_error=error, last_error_at=stamp, consecutive_failures=current["consecutive_failures"] + 1)
    conn.execute(update(source_state).where(source_state.c.source == source).values(**values))
    return {**current, **values}


# The sources that are not ``[[sources]]`` entries, by the name their files carry (``files.source``): the SMTP
# listener's (``ingest.smtp.SOURCE``) and uploads' (``ingest.intake.UPLOAD``).
LISTENER_KINDS = {"smtp": "smtp", "upload": "upload"}
# A source of these kinds runs no scheduled pass (nothing in ``source_state``): its state says how it runs.
UNSCHEDULED_STATES = {"dropfolder": "watched", "maildir": "watched", "smtp": "listener", "upload": "manual"}


def overview(conn: Connection, sources: Sequence[Any], listeners: Sequence[str] = ()) -> list[dict[str, Any]]:
    """What ``cdr status`` shows of each source: the configured ones (``sources``: the config's source specs)
    in configuration order, then ``listeners`` (source names of :data:`LISTENER_KINDS` that run here: the
    SMTP listener), then any other name files were taken under (uploads; a source since removed).

    Every source shows the files taken from it (``files``) and the last one (``last_file``,
    ``last_file_at``), from the catalog's files, and the entries its listings saw that wait for a later one
    (``entries_waiting``). ``state`` is ``ok`` (no error since its last success), ``failing`` (its last error
    is later than its last success: ``last_error`` is why, ``error_current`` is true), ``never run``, or for a
    source without scheduled passes how it runs (``watched``, ``listener``, ``manual``). A ``last_error``
    older than the last success is history, kept with its time (``last_error_at``)."""
    states = all_states(conn)
    taken = files_taken(conn)
    waiting = entries_waiting(conn)
    named = [(spec.name, spec.kind) for spec in sources]
    named += [(name, LISTENER_KINDS[name]) for name in listeners if name not in dict(named)]
    named += [(name, LISTENER_KINDS.get(name, "not configured")) for name in taken if name not in dict(named)]
    out = []
    for name, kind in named:
        state = states.get(name, {})
        success, error_at = state.get("last_success_at"), state.get("last_error_at")
        current = bool(error_at) and (success is None or error_at > success)
        health = ("failing" if current else UNSCHEDULED_STATES.get(kind)
                  or ("ok" if state.get("last_attempt_at") else "never run"))
        last = taken.get(name, {})
        out.append({
            "source": name, "kind": kind, "state": health,
            "files": last.get("files", 0), "last_file": last.get("name"), "last_file_at": last.get("received_at"),
            "entries_waiting": waiting.get(name, 0),
            "last_attempt": state.get("last_attempt_at"), "last_success": success,
            "last_error": state.get("last_error"), "last_error_at": error_at, "error_current": current,
            "failures_in_a_row": state.get("consecutive_failures", 0),
            "next_run": state.get("next_run_at"), "files_collected": state.get("files_collected", 0),
            "entry_errors": (state.get("entry_errors") or "").splitlines(),
            "entry_errors_at": state.get("entry_errors_at"),
        })
    return out


def files_taken(conn: Connection) -> dict[str, dict[str, Any]]:
    """For every source name in the catalog's files: how many files were taken from it and the last one
    (``name``, ``received_at``), in one query."""
    per_source = (select(files.c.source, func.count().label("files"), func.max(files.c.id).label("last_id"))
                  .group_by(files.c.source).subquery())
    query = (select(per_source.c.source, per_source.c.files, files.c.name, files.c.received_at)
             .join(files, files.c.id == per_source.c.last_id).order_by(per_source.c.source))
    return {row["source"]: dict(row) for row in conn.execute(query).mappings()}


def entries_waiting(conn: Connection) -> dict[str, int]:
    """For every remote source: the entries seen by a listing and waiting for a later one to show them
    unchanged (``remote_pending``), in one query."""
    query = select(remote_pending.c.source, func.count()).group_by(remote_pending.c.source)
    return {source: count for source, count in conn.execute(query)}
