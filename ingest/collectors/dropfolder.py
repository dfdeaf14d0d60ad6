"""Drop folders: staff (or a carrier's job) put files in a folder; each is taken once it is fully written.

A file is taken when it is at least ``min_age_seconds`` old (by mtime) and either
- it was closed after writing, or renamed into the folder, since its last change (watchdog events), or
- its size and mtime have not changed for ``settle_seconds`` (the periodic rescan's safety net, for events
  missed while nothing was watching, or a file copied in from another file system).
Names starting with a dot and ``.part``/``.tmp``/``.partial``/``.filepart`` names are never taken (writers
that write under such a name and rename when done are taken the moment they rename). Nothing in the folder is
trusted: a symlink is never followed nor taken, and is reported; so is a dot-file once it has not been
written for ``settle_seconds`` (a writer's temporary file while it is written is not). Each is reported in
every pass's errors while it is there; ``ingest.watch`` logs it once.

A saved email (``.eml``) is opened and its attachments taken, as ``cdr upload message.eml`` does.

A taken file goes through the intake door and is then moved to ``done/`` beside it; nothing is deleted or
overwritten (a name already in ``done/`` gets a number before its extension, ``name (2).csv``, the name
shortened if it must be to fit). ``done/`` must be a real folder owned by this process's user or root: if it
is a symlink, not a folder, or someone else's, nothing is moved into it and nothing is taken from the drop
folder (each pass reports why) until it is fixed; the files wait where they are.

If the file changes while it is being read, the
intake is rolled back and the file is tried again later; a file that changed after its intake committed is
left in place and offered again as a new delivery. A crash between the commit and the move is harmless: the
same delivery (path, inode, mtime, size) offered again returns the rows already recorded. A file that is
gone when it is to be read or moved was taken by another watcher on the same folder (or removed): that is
no error, and it is logged at debug level only.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import pwd
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from ..config import CADENCES, FILE_TYPES, FORMATS
from ..doctor import CheckResult, folder_problem
from ..errors import CdrError, ConfigError, IntakeError
from ..intake import Origin, receive
from ..mail import Route, take_message
from ..staging import safe_name
from .base import Collector, PassResult

log = logging.getLogger(__name__)

PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload")
# Suffixes that compress one file: kept with the suffix before them when a name is numbered (a.csv.gz -> a (2).csv.gz).
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".z")


class DropFolder(Collector):
    kind = "dropfolder"
    watched = True
    OPTIONS = {
        "path": (str, True),
        "carrier": (str, False),
        "type": (str, False),
        "cadence": (str, False),
        "format": (str, False),
        "min_age_seconds": ((int, float), False),
        "settle_seconds": ((int, float), False),
        "rescan_seconds": ((int, float), False),
        "done_dir": (str, False),
        "mailbox": (str, False),
    }

    @classmethod
    def check_options(cls, spec, config, key: str) -> None:
        super().check_options(spec, config, key)
        for option, allowed in (("type", FILE_TYPES), ("cadence", CADENCES), ("format", FORMATS)):
            value = spec.options.get(option)
            if value is not None and value not in allowed:
                raise ConfigError(f"{key}.{option}", f"must be one of {', '.join(allowed)}")
        if spec.options.get("type") and not spec.options.get("carrier"):
            raise ConfigError(f"{key}.type", "a file type needs a carrier")
        done = spec.options.get("done_dir", "done")
        if "/" in done or done.startswith("."):
            raise ConfigError(f"{key}.done_dir", "must be a plain folder name (it lives inside the drop folder)")

    def __init__(self, app, spec, clock: Callable[[], float] = time.time, *, settle_from_mtime: bool = False):
        """``settle_from_mtime``: for a single pass with no history (``cdr watch --once``), count a file as
        unchanged since its mtime, so one not written for ``settle_seconds`` is taken at once."""
        super().__init__(app, spec)
        self.path = Path(self.option("path"))
        self.done = self.path / self.option("done_dir", "done")
        self.min_age = float(self.option("min_age_seconds", 5))
        self.settle = float(self.option("settle_seconds", 60))
        self.rescan = float(self.option("rescan_seconds", 30))
        self.clock = clock
        self.settle_from_mtime = settle_from_mtime
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._finished: dict[str, int] = {}  # name -> mtime_ns when closed-after-write / renamed in
        self._seen: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, first seen so)
        self._observer = None
        self.last_event_name: str | None = None

    # -- watching -----------------------------------------------------------------------------------

    def start_watching(self, wake: threading.Event | None = None) -> None:
        """Start a watchdog observer that notes finished files and sets ``wake`` (default: self.wake)."""
        from watchdog.events import FileClosedEvent, FileCreatedEvent, FileMovedEvent, FileSystemEventHandler

        if wake is not None:
            self.wake = wake
        if self._observer is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        folder = os.path.realpath(self.path)
        collector = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                if event.is_directory:
                    return
                if isinstance(event, FileMovedEvent):
                    target = os.fsdecode(event.dest_path)  # "" when moved out to an unwatched folder
                elif isinstance(event, FileClosedEvent):  # closed after writing (not FileClosedNoWriteEvent)
                    target = os.fsdecode(event.src_path)
                else:
                    if isinstance(event, FileCreatedEvent):
                        collector.wake.set()  # a new file: let the next pass start its settle clock
                    return
                if target and os.path.dirname(os.path.realpath(target)) == folder:
                    collector._note_finished(os.path.basename(target))

            def dispatch(self, event):
                super().dispatch(event)
                # Events are dispatched in order: once a given file's event shows here, every earlier one
                # has been handled (what tests and health checks wait on).
                if not event.is_directory:
                    collector.last_event_name = os.path.basename(os.fsdecode(event.src_path))

        self._observer = _observer()
        try:
            self._observer.schedule(Handler(), str(self.path), recursive=False)
            self._observer.start()
        except BaseException:
            self._observer = None
            raise

    def _note_finished(self, name: str) -> None:
        if _skipped(name):
            return
        try:
            mtime_ns = os.stat(self.path / name).st_mtime_ns
        except OSError:
            return
        with self._lock:
            self._finished[name] = mtime_ns
        self.wake.set()

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None

    # -- one pass -----------------------------------------------------------------------------------

    def collect(self) -> PassResult:
        result = PassResult(self.name)
        if not self.path.is_dir():
            result.errors.append(f"drop folder {self.path} does not exist")
            return result
        try:
            with _destination(self.done, create=False):
                pass  # checked before anything is taken, not only when the first file is moved
        except (IntakeError, OSError) as exc:
            result.errors.append(_message(exc))
            return result
        now = self.clock()
        present = set()
        for entry in sorted(os.scandir(self.path), key=lambda e: e.name):
            if self.stopping.is_set():  # stopping: the rest are taken on the next start
                break
            shown = safe_name(entry.name)  # a name is the dropper's: never a line break in a message
            if entry.is_symlink():
                result.errors.append(f"{shown}: a symlink; never followed nor taken (put the file itself here)")
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            if _skipped(entry.name):
                if entry.name.startswith(".") and self._abandoned(entry, now):
                    result.errors.append(f"{shown}: a hidden (dot) name; never taken (rename it without the dot)")
                continue
            present.add(entry.name)
            try:
                stat = os.stat(entry.path, follow_symlinks=False)  # full stat (inode) on every platform
                if not self._ready(entry.name, stat, now):
                    continue
                result.received.extend(self._take(Path(entry.path), stat))
            except Exception as exc:  # a pass never raises for one file
                if not os.path.lexists(entry.path):
                    log.debug("drop folder %s: %s is gone: taken by another watcher, or removed", self.name, shown)
                    continue
                if not isinstance(exc, (CdrError, OSError)):
                    log.exception("drop folder %s: %s", self.name, shown)
                else:  # told once, with the pass (ingest.watch), or printed by ``cdr watch --once``
                    log.debug("drop folder %s: %s: %s", self.name, shown, exc)
                result.errors.append(f"{shown}: {_message(exc)}")
        with self._lock:
            for table in (self._finished, self._seen):
                for name in list(table):
                    # A file may have arrived (and been noted finished) since the scan: keep what still exists.
                    if name not in present and not os.path.lexists(self.path / name):
                        del table[name]
        return result

    def check(self) -> list[CheckResult]:
        """The folder exists and this user may move files out of it, and its done/ (a Maildir's cur/) is
        safe: a plain folder, owned by this user or root, writable (or absent: it is made on first use)."""
        label = f"source {self.name}"
        problem = folder_problem(self.path)
        if problem is None:
            try:
                with _destination(self.done, create=False) as into:
                    if into is not None:
                        problem = folder_problem(self.done)
            except (IntakeError, OSError) as exc:
                problem = _message(exc)
        if problem is not None:
            return [CheckResult(label, False, f"{self.kind}: {problem}")]
        return [CheckResult(label, True, f"{self.kind}: {self.path} writable; {self.done.name}/ safe")]

    def pending(self) -> int:
        """How many files are present but not yet taken (waiting to be complete)."""
        with self._lock:
            return len(self._seen)

    def _abandoned(self, entry: os.DirEntry, now: float) -> bool:
        """Not written for ``settle_seconds``: no writer's temporary file, but one left here."""
        try:
            return now - entry.stat(follow_symlinks=False).st_mtime >= self.settle
        except FileNotFoundError:
            return False

    def _ready(self, name: str, stat: os.stat_result, now: float) -> bool:
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            seen = self._seen.get(name)
            if seen is None or seen[:2] != key:
                self._seen[name] = (*key, now)
                seen = self._seen[name]
            finished = self._finished.get(name) == stat.st_mtime_ns
        if now - stat.st_mtime < self.min_age:
            return False
        unchanged_since = min(seen[2], stat.st_mtime) if self.settle_from_mtime else seen[2]
        return finished or now - unchanged_since >= self.settle

    def _take(self, path: Path, stat: os.stat_result):
        delivery = f"{os.path.realpath(path)}|{stat.st_ino}|{stat.st_mtime_ns}|{stat.st_size}"
        origin = Origin(
            source=self.name,
            name=path.name,
            location=str(path.resolve()),
            carrier=self.option("carrier"),
            file_type=self.option("type"),
            cadence=self.option("cadence"),
            file_format=self.option("format"),
            delivery=delivery,
        )
        with open(path, "rb") as fh:

            def unchanged(_conn=None, _results=None) -> None:
                # Still the same bytes we were offered? If not, roll back and take it next time.
                if _identity(os.fstat(fh.fileno())) != _identity(stat):
                    raise IntakeError(f"{path.name} changed while it was being read; it will be taken later")

            if self.is_email(path.name):
                raw = fh.read()  # a message is parsed whole anyway
                unchanged()
                received = take_message(self.app, raw, source=self.name, actor=f"{self.kind}:{self.name}",
                                        default_route=Route(self.option("carrier"), self.option("cadence")),
                                        mailbox=self.option("mailbox", "cdrs"), delivery=delivery)
            else:
                received = receive(self.app, fh, origin, actor=f"dropfolder:{self.name}", in_transaction=unchanged)
        self._move_done(path, stat, received[0].id if received else None)
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            # Forget only what we took: a same-named file may have arrived since.
            if self._seen.get(path.name, (None, None))[:2] == key:
                del self._seen[path.name]
            if self._finished.get(path.name) == stat.st_mtime_ns:
                del self._finished[path.name]
        return received

    def is_email(self, name: str) -> bool:
        return name.lower().endswith(".eml")

    def _move_done(self, path: Path, stat: os.stat_result, file_id: int | None) -> None:
        # Move only the file we read: if it was appended to after the commit, or replaced by a new file
        # of the same name, leave it; the next pass offers it as a new delivery.
        if _identity(os.stat(path, follow_symlinks=False)) != _identity(stat):
            raise IntakeError(f"{path.name} changed after it was recorded; left in place to be taken again")
        with _destination(self.done, create=True) as into:
            self._file_away(path, file_id, into)

    def _file_away(self, path: Path, file_id: int | None, into: int) -> None:
        """Move a taken file into done/ (``into``: its descriptor) under its own name, or else the first free
        ``name (n).ext``; never over an earlier file."""
        name_max = os.fpathconf(into, "PC_NAME_MAX")
        for number in itertools.count(1):
            target = path.name if number == 1 else numbered(path.name, number, name_max)
            try:  # a link never replaces a name, so a racing watcher's file cannot be overwritten
                os.link(path, target, dst_dir_fd=into, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                # No link here (done/ on another file system, or one without hard links: vfat, many SMB
                # mounts): check the name is free, then move.
                try:
                    os.stat(target, dir_fd=into, follow_symlinks=False)
                    continue
                except FileNotFoundError:
                    os.replace(path, target, dst_dir_fd=into)
                    return
            try:
                if os.stat(path, follow_symlinks=False).st_ino == os.stat(target, dir_fd=into).st_ino:
                    os.unlink(path)
                # else a new file was renamed in under the name meanwhile: it stays, to be taken on its own
            except FileNotFoundError:  # another watcher filed it away meanwhile: one copy in done/ is enough
                os.unlink(target, dir_fd=into)
            return


# Errors of link(2) that mean "no hard link here", not a fault: filing falls back to a move.
_NO_LINKS = frozenset({errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def numbered(name: str, number: int, name_max: int = 255) -> str:
    """``name`` with `` (number)`` before its extension (``a.csv`` -> ``a (2).csv``, ``a.csv.gz`` ->
    ``a (2).csv.gz``), the part before shortened as needed so the whole fits in ``name_max`` bytes."""
    stem, extension = _split_extension(name)
    tail = f" ({number}){extension}"
    budget = name_max - len(os.fsencode(tail))
    while len(os.fsencode(stem)) > budget:
        stem = stem[:-1]  # by characters, never splitting one
    return stem + tail


def _split_extension(name: str) -> tuple[str, str]:
    """``name`` as (stem, extension): the last suffix, with the one before it if the last is a compression
    suffix. Only short alphanumeric suffixes count, so a long dotted name is a stem with no extension."""
    def suffix(text: str) -> str:
        head, dot, tail = text.rpartition(".")
        return dot + tail if head and 0 < len(tail) <= 8 and tail.isalnum() else ""

    extension = suffix(name)
    if extension.lower() in COMPRESSION_SUFFIXES:
        extension = suffix(name[: -len(extension)]) + extension
    return name[: len(name) - len(extension)], extension


@contextlib.contextmanager
def _destination(folder: Path, *, create: bool) -> Iterator[int | None]:
    """A descriptor of ``folder``, where taken files are moved; None if it does not exist (unless ``create``).

    Raises IntakeError if it is a symlink or no folder, or is owned by neither this process's user nor root:
    files moved there would go wherever the link points, or to someone else. Moving through the descriptor
    keeps to the folder checked here even if its name is swapped for a link afterwards."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if create:
            raise
        fd = None
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        what = "a symlink" if os.path.islink(folder) else "not a folder"
        raise IntakeError(f"{folder} is {what}: files are never moved into it, and none is taken from this "
                          "folder until it is a plain folder") from None
    try:
        owner = None if fd is None else os.fstat(fd).st_uid
        if owner not in (None, os.geteuid(), 0):
            raise IntakeError(f"{folder} belongs to {_user(owner)}, neither this process's user nor root: files "
                              "are never moved into it, and none is taken from this folder until it is given to "
                              "one of them")
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _message(exc: Exception) -> str:
    """One line for an error while taking a file."""
    if isinstance(exc, CdrError):
        return str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{type(exc).__name__}: {exc}"


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _observer():
    if sys.platform.startswith("linux"):
        # Full events: a file renamed in from an unwatched folder is a move (finished), not a creation.
        from watchdog.observers.inotify import InotifyObserver

        return InotifyObserver(generate_full_events=True)
    from watchdog.observers import Observer

    return Observer()


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(PARTIAL_SUFFIXES)
