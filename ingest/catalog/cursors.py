"""Billing-feed cursors in the catalog."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from ..errors import TransientError
from .files import now
from .schema import feed_cursors


def cursor_of(conn: Connection, source: str) -> int | None:
    return conn.execute(select(feed_cursors.c.last_id).where(feed_cursors.c.source == source)).scalar()


def advance(conn: Connection, source: str, expected: int | None, last_id: int) -> None:
    """In the transaction that stages an answer: move the cursor from ``expected`` to ``last_id``. If another
    process moved it meanwhile, refuse (the transaction rolls back and the answer is asked again)."""
    current = cursor_of(conn, source)
    if current != expected:
        raise TransientError(f"feed cursor of {source} moved from {expected} to {current} meanwhile; asking again")
    if current is None:
        conn.execute(insert(feed_cursors).values(source=source, last_id=last_id, updated_at=now()))
    elif last_id > current:
        conn.execute(update(feed_cursors).where(feed_cursors.c.source == source)
                     .values(last_id=last_id, updated_at=now()))
