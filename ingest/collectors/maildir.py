"""``kind = "maildir"``: a Maildir as a drop folder (the mail server, fetchmail or procmail delivers into it).

A mail delivery agent writes each message under ``tmp/`` and renames it into ``new/`` when it is complete,
so a message in ``new/`` is taken on sight (no settle time). Its attachments go through the intake door
as a mailed message's do (``ingest.mail``: plus-address routing from its recipient headers, or the
source's ``carrier``; signature images and invites recorded as ignored), and the message is then moved to
``cur/`` with the Seen flag (``<name>:2,S``), as a mail reader would. Nothing is deleted.

A crash between the intake commit and the move is harmless: the message, still in ``new/``, is offered
again as the same delivery and its parts return the rows already recorded. Messages in ``cur/`` are never
taken: the Maildir is cdr-ingest's own, and whatever is in ``cur/`` was taken (or put there by a person).
"""

from __future__ import annotations

import os
from pathlib import Path

from .dropfolder import DropFolder

SUBFOLDERS = ("new", "cur", "tmp")


class Maildir(DropFolder):
    kind = "maildir"
    OPTIONS = {
        "path": (str, True),
        "carrier": (str, False),
        "cadence": (str, False),
        "mailbox": (str, False),
        "rescan_seconds": ((int, float), False),
    }

    def __init__(self, app, spec, *args, **kwargs):
        super().__init__(app, spec, *args, **kwargs)
        self.root = Path(self.option("path"))
        self.path = self.root / "new"
        self.done = self.root / "cur"  # checked and moved into as a drop folder's done/ is

    def start_watching(self, wake=None) -> None:
        for sub in SUBFOLDERS:  # as a delivery agent would make it
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        super().start_watching(wake)

    def is_email(self, name: str) -> bool:
        return True

    def _ready(self, name: str, stat: os.stat_result, now: float) -> bool:
        return True  # renamed in from tmp/ by the delivery agent: complete

    def _file_away(self, path: Path, file_id: int | None, into: int) -> None:
        """Into cur/ (``into``: its descriptor) as Seen, never over a message already there."""
        unique, _, info = path.name.partition(":")
        flags = "".join(sorted(set(info[2:] if info.startswith("2,") else "") | {"S"}))
        target, attempt = f"{unique}:2,{flags}", 0
        while True:
            try:
                os.link(path, target, dst_dir_fd=into)  # never replaces: a reused unique name keeps both messages
                break
            except FileExistsError:
                if _same_file(os.stat(path), os.stat(target, dir_fd=into, follow_symlinks=False)):
                    break  # another watcher of this Maildir linked this very message there a moment ago
                attempt += 1
                target = f"{unique}.{file_id or 'again'}-{attempt}:2,{flags}"
        os.unlink(path)


def _same_file(one: os.stat_result, other: os.stat_result) -> bool:
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)
