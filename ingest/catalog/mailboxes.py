"""Catalog operations on IMAP state: each folder's UIDVALIDITY and the messages each source took."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from .files import now
from .schema import mail_folders, mail_messages


def uidvalidity_of(conn: Connection, source: str, folder: str) -> int | None:
    return conn.execute(select(mail_folders.c.uidvalidity).where(
        mail_folders.c.source == source, mail_folders.c.folder == folder)).scalar()


def set_uidvalidity(conn: Connection, source: str, folder: str, uidvalidity: int) -> None:
    values = {"uidvalidity": uidvalidity, "updated_at": now()}
    changed = conn.execute(update(mail_folders).where(
        mail_folders.c.source == source, mail_folders.c.folder == folder).values(**values)).rowcount
    if not changed:
        conn.execute(insert(mail_folders).values(source=source, folder=folder, **values))


def taken_among(conn: Connection, source: str, folder: str, uidvalidity: int, uids: list[int]) -> set[int]:
    """Which of ``uids`` (valid under ``uidvalidity``) were taken: on the server they only need their flag
    or move, which a crash may have cut off."""
    taken: set[int] = set()
    for start in range(0, len(uids), 500):
        rows = conn.execute(select(mail_messages.c.uid).where(
            mail_messages.c.source == source, mail_messages.c.folder == folder,
            mail_messages.c.uidvalidity == uidvalidity, mail_messages.c.uid.in_(uids[start:start + 500])))
        taken.update(uid for (uid,) in rows)
    return taken


def taken_by_key(conn: Connection, source: str, message_key: str) -> dict | None:
    """The first record of a message with exactly these bytes, under any UIDVALIDITY or folder."""
    row = conn.execute(select(mail_messages).where(
        mail_messages.c.source == source, mail_messages.c.message_key == message_key)
        .order_by(mail_messages.c.taken_at).limit(1)).mappings().first()
    return dict(row) if row else None


def record_taken(conn: Connection, source: str, folder: str, uidvalidity: int, uid: int, *, message_key: str,
                 message_id: str | None, files: int) -> None:
    conn.execute(insert(mail_messages).values(
        source=source, folder=folder, uidvalidity=uidvalidity, uid=uid, message_key=message_key,
        message_id=message_id, files=files, taken_at=now()))
