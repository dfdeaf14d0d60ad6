"""Catalog operations on each source's run state: what ``cdr status`` shows and the daemon schedules by."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import Connection, select, update
from sqlalchemy import insert as sql_insert

from .files import now
from .schema import source_state


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
    if current is None:
        conn.execute(sql_insert(source_state).values(source=source, consecutive_failures=0, files_collected=0))
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


def overview(conn: Connection, sources: Sequence[Any]) -> list[dict[str, Any]]:
    """What ``cdr status`` shows of each configured source (``sources``: the config's source specs), in
    configuration order: a source that never ran shows no times and no errors. ``state`` is ``ok`` (its last
    pass succeeded), ``failing`` (its last pass failed: ``last_error`` is why) or ``never run``; a
    ``last_error`` older than the last success is history, kept with its time."""
    states = all_states(conn)
    out = []
    for spec in sources:
        state = states.get(spec.name, {})
        health = ("never run" if not state.get("last_attempt_at")
                  else "failing" if state.get("consecutive_failures") else "ok")
        out.append({
            "source": spec.name, "kind": spec.kind, "state": health,
            "last_attempt": state.get("last_attempt_at"), "last_success": state.get("last_success_at"),
            "last_error": state.get("last_error"), "last_error_at": state.get("last_error_at"),
            "failures_in_a_row": state.get("consecutive_failures", 0),
            "next_run": state.get("next_run_at"), "files_collected": state.get("files_collected", 0),
            "entry_errors": (state.get("entry_errors") or "").splitlines(),
            "entry_errors_at": state.get("entry_errors_at"),
        })
    return out
