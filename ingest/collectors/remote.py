"""Remote collection: one pass over a source's directories, shared by every protocol.

A protocol (SFTP, FTP/FTPS, a mounted directory) supplies only a :class:`Transport`: list a directory, open a
file for reading, stat, delete, rename. :class:`RemoteCollector` does the rest, the same way for all:

- lists each configured directory (each mapped to carrier, file type, cadence, include/exclude patterns);
- skips dot-files, ``.part``/``.tmp`` names and names that are not plain file names (``../x``, ``a/b``,
  control bytes: reported as entry errors, never used as paths);
- takes a file only when its mtime is ``min_age_seconds`` old and, with ``stable_listings = 2`` (default),
  a previous listing showed the same size and mtime (the observation is kept in the catalog, so this holds
  across passes, restarts and one-shot ``cdr collect`` runs);
- skips what it collected before (same path, size and mtime: ``remote_collected``); fetches again one whose
  size or mtime changed (then the fingerprint and same-name rules decide whether it is held);
- streams the file through the intake door, and records it collected *in the intake transaction*, after
  checking the transfer got every byte of an unchanged file; a fault anywhere leaves it uncollected;
- then applies ``after``: ``keep`` (default), ``delete`` or ``move`` to ``move_to``. A failure there is
  reported; the file is already recorded, so it is never fetched twice;
- once ``stopping`` is set (the daemon is stopping), takes no further file: the rest wait for the next pass.

Transport errors are mapped once, in the transport, to :class:`TransientError` (connection refused or lost,
timeouts: retried later) or :class:`PermanentError` (authentication refused, host key mismatch). A
PermanentError while taking one file (it cannot be opened) fails that entry only: it is reported in the pass
result's ``entry_errors`` and every other file is still taken; the pass counts as a success. Only a failure of
the source itself (connecting, listing, a connection lost mid-transfer) fails the pass.
"""

from __future__ import annotations

import fnmatch
import logging
import posixpath
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, ClassVar, Iterator

from ..catalog import files as catalog_files
from ..catalog import remote as remote_state
from ..config import CADENCES, FILE_TYPES, FORMATS
from ..doctor import CheckResult
from ..errors import CdrError, ConfigError, PermanentError, TransientError
from ..intake import Origin, receive
from ..schedule import Schedule
from .base import SCHEDULE_OPTIONS, Collector, PassResult

log = logging.getLogger(__name__)

SKIPPED_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload", ".lock")


@dataclass(frozen=True)
class RemoteEntry:
    name: str  # as the server listed it: data, not a path
    size: int
    mtime: int  # whole seconds since the epoch, UTC
    is_file: bool = True


class Transport(ABC):
    """One connection to a remote server. Every method maps its protocol's errors to TransientError or
    PermanentError; ``open`` returns a stream whose ``read`` does the same."""

    @abstractmethod
    def list(self, directory: str) -> list[RemoteEntry]:
        """The directory's entries (one complete listing, or an error: never a partial one)."""

    @abstractmethod
    def open(self, path: str) -> BinaryIO:
        """A readable stream of the file's bytes."""

    @abstractmethod
    def stat(self, path: str) -> RemoteEntry:
        """The file's current size and mtime."""

    @abstractmethod
    def delete(self, path: str) -> None: ...

    @abstractmethod
    def rename(self, path: str, target: str) -> None: ...

    def close(self) -> None:
        """Close the connection."""


@dataclass(frozen=True)
class DirMapping:
    path: str
    carrier: str | None
    file_type: str | None
    cadence: str | None
    file_format: str | None
    include: tuple[str, ...]
    exclude: tuple[str, ...]

    def wants(self, name: str) -> bool:
        lowered = name.lower()
        if self.include and not any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.exclude)


# What every server-backed kind (sftp, ftp, ftps, ftps-implicit) is told about its server.
SERVER_OPTIONS: dict = {
    "host": (str, True),
    "port": (int, False),
    "username": (str, True),
    "password": (str, False),
    "password_file": (str, False),
    "timeout_seconds": ((int, float), False),
}


class RemoteCollector(Collector):
    """A collector over a :class:`Transport`; subclasses set ``kind`` and implement :meth:`connect`."""

    COMMON_OPTIONS: ClassVar[dict] = {
        "dirs": (list, True),
        "min_age_seconds": ((int, float), False),
        "stable_listings": (int, False),
        "after": (str, False),
        "move_to": (str, False),
        **SCHEDULE_OPTIONS,
    }

    @classmethod
    def check_options(cls, spec, config, key: str) -> None:
        super().check_options(spec, config, key)
        after = spec.options.get("after", "keep")
        if after not in ("keep", "delete", "move"):
            raise ConfigError(f"{key}.after", "must be keep, delete or move")
        if after == "move" and not spec.options.get("move_to"):
            raise ConfigError(f"{key}.move_to", "is required when after = \"move\"")
        Schedule.of(spec.options, key)  # a bad schedule is refused at start
        if spec.options.get("stable_listings", 2) not in (1, 2):
            raise ConfigError(f"{key}.stable_listings", "must be 1 (take on first sight) or 2")
        for index, entry in enumerate(spec.options.get("dirs", [])):
            where = f"{key}.dirs[{index}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                raise ConfigError(where, "each directory is a table with at least a path")
            unknown = set(entry) - {"path", "carrier", "type", "cadence", "format", "include", "exclude"}
            if unknown:
                raise ConfigError(f"{where}.{sorted(unknown)[0]}", "unknown key")
            if entry.get("carrier") is not None and entry["carrier"] not in config.carriers:
                raise ConfigError(f"{where}.carrier", f"unknown carrier {entry['carrier']!r}")
            for option, allowed in (("type", FILE_TYPES), ("cadence", CADENCES), ("format", FORMATS)):
                if entry.get(option) is not None and entry[option] not in allowed:
                    raise ConfigError(f"{where}.{option}", f"must be one of {', '.join(allowed)}")
            for option in ("include", "exclude"):
                patterns = entry.get(option, [])
                if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                    raise ConfigError(f"{where}.{option}", "must be a list of name patterns")

    def __init__(self, app, spec):
        super().__init__(app, spec)
        self.min_age = float(self.option("min_age_seconds", 60))
        self.stable_listings = int(self.option("stable_listings", 2))
        self.after = self.option("after", "keep")
        self.move_to = self.option("move_to")
        self.dirs = [
            DirMapping(
                path=entry["path"].rstrip("/") or "/",
                carrier=entry.get("carrier"),
                file_type=entry.get("type"),
                cadence=entry.get("cadence"),
                file_format=entry.get("format"),
                include=tuple(entry.get("include", [])),
                exclude=tuple(entry.get("exclude", [])),
            )
            for entry in self.option("dirs")
        ]

    @abstractmethod
    def connect(self) -> Transport:
        """Open a connection (raising TransientError / PermanentError)."""

    def describe(self, path: str) -> str:
        """Where a file came from, for the catalog's ``origin``: never a credential."""
        return f"{self.kind}:{path}"

    @contextmanager
    def session(self) -> Iterator[Transport]:
        transport = self.connect()
        try:
            yield transport
        finally:
            try:
                transport.close()
            except Exception:  # closing a broken connection must not hide why it broke
                log.debug("closing %s failed", self.name, exc_info=True)

    def reached(self) -> str | None:
        """What a successful :meth:`connect` proved, for ``cdr doctor`` (None: there was nothing to reach)."""
        return f"connected and logged in to {self.describe('/')}"

    def check(self) -> list[CheckResult]:
        """Connect, log in and list each configured directory, through the same session a pass uses:
        nothing is fetched, moved or deleted, and nothing is recorded (not even a listing's observations)."""
        label = f"source {self.name}"
        try:
            with self.session() as transport:
                reached = self.reached()
                results = [CheckResult(label, True, f"{self.kind}: {reached}")] if reached else []
                for mapping in self.dirs:
                    try:
                        entries = transport.list(mapping.path)
                    except CdrError as exc:
                        results.append(CheckResult(f"{label} {mapping.path}", False, str(exc)))
                        continue
                    files = sum(1 for entry in entries if entry.is_file)
                    results.append(CheckResult(f"{label} {mapping.path}", True,
                                               f"listed: {files} file{'' if files == 1 else 's'} (nothing fetched)"))
        except CdrError as exc:
            return [CheckResult(label, False, f"{self.kind}: {exc}")]
        return results

    def collect(self) -> PassResult:
        result = PassResult(self.name)
        try:
            with self.session() as transport:
                for mapping in self.dirs:
                    if self.stopping.is_set():
                        break
                    self._collect_dir(transport, mapping, result)
        except CdrError as exc:
            result.errors.append(str(exc))
            result.failed_permanently = not exc.transient
            log.debug("source %s: %s", self.name, exc)  # told once, at WARNING, with the pass (ingest.daemon)
        return result

    def _collect_dir(self, transport: Transport, mapping: DirMapping, result: PassResult) -> None:
        entries = transport.list(mapping.path)
        with self.app.catalog.read() as conn:
            collected = remote_state.collected_keys(conn, self.name, mapping.path)
            seen = remote_state.pending(conn, self.name)
        now = time.time()
        prefix = mapping.path.rstrip("/") + "/"
        # Set-based: only entries not already collected (same path, size and mtime) are looked at further.
        listed = {(prefix + entry.name, entry.size, entry.mtime): entry for entry in entries if entry.is_file}
        ready: list[tuple[str, RemoteEntry]] = []
        observations: list[tuple[str, RemoteEntry, tuple[int, int] | None]] = []
        for key in sorted(listed.keys() - collected):
            path, entry = key[0], listed[key]
            if not plain_name(entry.name):  # before the hidden-file skip: "../x" must be reported, not just skipped
                result.entry_errors.append(
                    f"{mapping.path}: refused a remote name that is not a plain file name: {entry.name!r}")
                continue
            if _skipped(entry.name):
                continue
            if not mapping.wants(entry.name) or now - entry.mtime < self.min_age:
                continue
            known = seen.get(path)
            if self.stable_listings > 1 and known != (entry.size, entry.mtime):
                observations.append((path, entry, known))
                continue
            ready.append((path, entry))
        result.entries_waiting += len(observations)
        present = {path for path, _, _ in listed} if seen or observations else set()
        vanished = any(path.startswith(prefix) and path not in present for path in seen)
        if observations or vanished:  # a listing that changed nothing writes nothing
            with self.app.catalog.write() as conn:
                remote_state.observe(conn, self.name, [(path, entry.size, entry.mtime, known is not None)
                                                       for path, entry, known in observations])
                remote_state.forget_pending(conn, self.name, present, mapping.path)
        for path, entry in ready:
            if self.stopping.is_set():  # stopping: the rest are taken on the next pass
                return
            try:
                result.received.extend(self._take(transport, mapping, path, entry))
            except PermanentError as exc:  # this entry is refused (permission, gone); the others go on
                result.entry_errors.append(f"{path}: {exc}")
                log.debug("source %s: %s: %s", self.name, path, exc)  # told once, with the pass (ingest.daemon)

    def _take(self, transport: Transport, mapping: DirMapping, path: str, entry: RemoteEntry):
        origin = Origin(source=self.name, name=entry.name, location=self.describe(path), carrier=mapping.carrier,
                        file_type=mapping.file_type, cadence=mapping.cadence, file_format=mapping.file_format)

        def record(conn, received) -> None:
            # Only a complete transfer of a file that did not change meanwhile counts as collected.
            now = transport.stat(path)
            if (now.size, now.mtime) != (entry.size, entry.mtime):
                raise TransientError(f"{path} changed while it was being fetched; it will be fetched later")
            staged = catalog_files.get_file(conn, received[0].id)["blob_size"] if received else None
            if staged is not None and staged != entry.size:
                raise TransientError(f"{path}: received {staged} bytes of {entry.size}; it will be fetched again")
            remote_state.record_collected(conn, self.name, path, entry.size, entry.mtime,
                                          received[0].id if received else None)

        with transport.open(path) as stream:
            received = receive(self.app, stream, origin, actor=f"collector:{self.name}", in_transaction=record)
        self._after(transport, path, entry)
        return received

    def _after(self, transport: Transport, path: str, entry: RemoteEntry) -> None:
        if self.after == "keep":
            return
        try:
            if self.after == "delete":
                transport.delete(path)
            else:
                transport.rename(path, posixpath.join(self.move_to, entry.name))
        except CdrError as exc:
            # Recorded as collected already: it will not be fetched again, whatever happens here.
            log.warning("source %s: %s of %s failed: %s", self.name, self.after, path, exc)


def plain_name(name: str) -> bool:
    """A bare file name: no separators, not '.'/'..', no control characters."""
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and name.isprintable())


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(SKIPPED_SUFFIXES)
