"""Catalog operations on remote state: what a source has collected, and what it has seen but not taken."""

from __future__ import annotations

from sqlalchemy import Connection, and_, delete, insert, select, update

from .files import now
from .schema import remote_collected, remote_pending


def collected_keys(conn: Connection, source: str, directory: str) -> set[tuple[str, int, int]]:
    """(path, size, mtime) of every entry ``source`` collected under ``directory``. Read through the driver
    as plain tuples: a carrier's folder may hold 100,000 entries, and this runs every pass."""
    prefix = directory.rstrip("/") + "/"
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (f"SELECT path, size, mtime FROM remote_collected WHERE source = {marker}"
           f" AND substr(path, 1, {marker}) = {marker}")
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(sql, (source, len(prefix), prefix))
        return set(cursor.fetchall())
    finally:
        cursor.close()


def record_collected(conn: Connection, source: str, path: str, size: int, mtime: int, file_id: int | None) -> None:
    """In the intake transaction: mark the entry collected and forget it as pending."""
    conn.execute(insert(remote_collected).values(source=source, path=path, size=size, mtime=mtime, file_id=file_id,
                                                 collected_at=now()))
    conn.execute(delete(remote_pending).where(remote_pending.c.source == source, remote_pending.c.path == path))


def pending(conn: Connection, source: str) -> dict[str, tuple[int, int]]:
    rows = conn.execute(select(remote_pending.c.path, remote_pending.c.size, remote_pending.c.mtime)
                        .where(remote_pending.c.source == source))
    return {path: (size, mtime) for path, size, mtime in rows}


def observe(conn: Connection, source: str, entries: list[tuple[str, int, int, bool]]) -> None:
    """Remember entries as seen now with this size and mtime (a later listing must show them the same):
    (path, size, mtime, already pending). Written in bulk: a first listing may hold 100,000 entries."""
    stamp = now()
    fresh = [{"source": source, "path": p, "size": size, "mtime": mtime, "seen_at": stamp}
             for p, size, mtime, known in entries if not known]
    if fresh:
        conn.execute(insert(remote_pending), fresh)
    for path, size, mtime, known in entries:
        if known:
            conn.execute(update(remote_pending)
                         .where(and_(remote_pending.c.source == source, remote_pending.c.path == path))
                         .values(size=size, mtime=mtime, seen_at=stamp))


def forget_pending(conn: Connection, source: str, present: set[str], directory: str) -> None:
    """Drop pending entries under ``directory`` that are no longer listed."""
    prefix = directory.rstrip("/") + "/"
    rows = conn.execute(select(remote_pending.c.path).where(
        remote_pending.c.source == source, remote_pending.c.path.startswith(prefix, autoescape=True)))
    gone = [path for (path,) in rows if path not in present]
    if gone:
        conn.execute(delete(remote_pending).where(remote_pending.c.source == source, remote_pending.c.path.in_(gone)))
