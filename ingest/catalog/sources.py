"""Catalog operations on each source's run state: what ``cdr status`` shows and the daemon schedules by."""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
                next_run: datetime | None) -> dict[str, Any]:
    """After one pass: attempt time, success or the error (and how many failures in a row), files taken."""
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
        values.update(last_success_at=stamp, consecutive_failures=0)
    else:
        values.update(last_error=error, last_error_at=stamp, consecutive_failures=current["consecutive_failures"] + 1)
    conn.execute(update(source_state).where(source_state.c.source == source).values(**values))
    return {**current, **values}
