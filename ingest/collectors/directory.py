"""``kind = "directory"``: a carrier's share mounted here (NFS, SMB, a synced folder), collected like a
remote server: files stay where they are (or are deleted/moved, as configured) and remote state decides
what was already taken. Unlike a drop folder, nothing is moved aside by default."""

from __future__ import annotations

import os
from typing import BinaryIO

from ..errors import PermanentError, TransientError
from .remote import RemoteCollector, RemoteEntry, Transport


class DirectoryTransport(Transport):
    def list(self, directory: str) -> list[RemoteEntry]:
        try:
            with os.scandir(directory) as entries:
                out = []
                for entry in entries:
                    stat = entry.stat(follow_symlinks=False)
                    out.append(RemoteEntry(entry.name, stat.st_size, int(stat.st_mtime),
                                           entry.is_file(follow_symlinks=False)))
                return out
        except OSError as exc:
            raise _mapped(exc, directory) from exc

    def open(self, path: str) -> BinaryIO:
        try:
            return open(path, "rb")
        except OSError as exc:
            raise _mapped(exc, path) from exc

    def stat(self, path: str) -> RemoteEntry:
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise _mapped(exc, path) from exc
        return RemoteEntry(os.path.basename(path), stat.st_size, int(stat.st_mtime))

    def delete(self, path: str) -> None:
        try:
            os.remove(path)
        except OSError as exc:
            raise _mapped(exc, path) from exc

    def rename(self, path: str, target: str) -> None:
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.exists(target):
                raise PermanentError(f"cannot move {path}: {target} exists")
            os.replace(path, target)
        except OSError as exc:
            raise _mapped(exc, path) from exc


def _mapped(exc: OSError, path: str) -> Exception:
    if isinstance(exc, PermissionError):
        return PermanentError(f"{path}: permission denied")
    return TransientError(f"{path}: {exc.strerror or exc}")


class DirectoryCollector(RemoteCollector):
    kind = "directory"
    OPTIONS = dict(RemoteCollector.COMMON_OPTIONS)

    def connect(self) -> Transport:
        return DirectoryTransport()

    def reached(self) -> None:
        return None  # a folder here: only its listings say anything
