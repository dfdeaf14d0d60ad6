"""What a file's parse produced, kept while the file is being decided on, so it is parsed once.

The loader parses a file once. Its batches pass through :class:`Retained` on their way to the database: kept
in memory (they exist anyway; keeping them costs no copy) up to a budget, beyond which they are written to
Arrow IPC files in a working folder, and the memory is let go. If the optimistic insert collides, the set-based
analysis reads them back instead of parsing again; if the file is held as an overlap, they are kept for it in
the staging area (:func:`keep`), and its release loads from them (:func:`kept`): hold and release cost no
parse. What is kept is tied to the file's content and to its format's definition: a changed format parses
again.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.ipc as ipc

from .layouts import LAYOUTS, Layout

# The parsed batches a load keeps in memory before it writes them to disk: memory stays bounded whatever the
# file's size, and a file below it (a 1M-row Hero file parses into about 400 MiB of Arrow arrays; most files are
# far smaller) costs its fast load nothing: written to disk as it is parsed, 1M rows cost 0.5 s more on a
# 2-core machine (measured: the parsing thread's spare time does not hide it, and compressing costs more).
MEMORY_BUDGET = 512 << 20


class Retained:
    """The batches of one parse, by kind, in order: in memory, or spilled to IPC files under ``folder``."""

    def __init__(self, folder: Path, budget: int = MEMORY_BUDGET):
        self.folder = folder
        self.budget = budget
        self.batches: dict[str, list[pa.RecordBatch]] = {}
        self.writers: dict[str, ipc.RecordBatchStreamWriter] = {}
        self.rows: dict[str, int] = {}
        self.held_bytes = 0
        self.spilled = False
        self.complete = False
        self.rows_dropped = 0
        # The names of the values of ``extra`` the parse wrote as arrays, per kind (``FileParser.extra_columns``):
        # set once the parse is complete, written with the records (``files.extra_columns``).
        self.extra_columns: dict[str, list[str]] = {}
        # The kinds whose repeated keys a decision on this parse found to be identical rows taken once; None
        # until a decision found the parse free of any other repeat (``ingest.load._decide``). A kept parse
        # carries it: its release does not look for repeats again.
        self.repeats_decided: frozenset[str] | None = None
        # Told the rows replayed so far, once per batch, by the replay that loads them (a load from a kept parse
        # reports its progress so).
        self.on_replay: Callable[[int], None] | None = None
        self.replayed = 0

    def tee(self, batches: Iterator[tuple[Layout, pa.RecordBatch]]) -> Iterator[tuple[Layout, pa.RecordBatch]]:
        """Pass the batches on, keeping each; marks the parse complete when they end."""
        for layout, batch in batches:
            self.add(layout, batch)
            yield layout, batch
        self.complete = True

    def add(self, layout: Layout, batch: pa.RecordBatch) -> None:
        kind = layout.kind
        self.rows[kind] = self.rows.get(kind, 0) + batch.num_rows
        if self.spilled:
            self._writer(layout).write_batch(batch)
            return
        self.batches.setdefault(kind, []).append(batch)
        self.held_bytes += batch.nbytes
        if self.held_bytes > self.budget:
            self._spill()

    def kinds(self) -> list[str]:
        """The kinds that have records, calls first."""
        return [kind for kind in LAYOUTS if self.rows.get(kind)]

    def replay(self, kind: str, *, report: bool = False) -> Iterator[pa.RecordBatch]:
        """The batches of one kind, in order; ``report``: each told to ``on_replay`` (the replay that loads them)."""
        for batch in self._stored(kind):
            yield batch
            if report and self.on_replay is not None:
                self.replayed += batch.num_rows
                self.on_replay(self.replayed)

    def _stored(self, kind: str) -> Iterator[pa.RecordBatch]:
        if not self.spilled:
            yield from self.batches.get(kind, [])
            return
        self._close_writers()
        path = self._path(kind)
        if path.exists():
            with pa.memory_map(str(path)) as source:
                yield from ipc.open_stream(source)

    def close(self) -> None:
        """Let go of everything: memory and files."""
        self._close_writers()
        self.batches.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _spill(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.spilled = True
        for kind, batches in self.batches.items():
            writer = self._writer(LAYOUTS[kind])
            for batch in batches:
                writer.write_batch(batch)
        self.batches.clear()
        self.held_bytes = 0

    def _writer(self, layout: Layout) -> ipc.RecordBatchStreamWriter:
        if layout.kind not in self.writers:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.writers[layout.kind] = ipc.new_stream(str(self._path(layout.kind)), layout.arrow_schema())
        return self.writers[layout.kind]

    def _close_writers(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def _path(self, kind: str) -> Path:
        return self.folder / f"{kind}.arrow"


def working_folder(root: Path, file_id: int) -> Path:
    """A fresh folder for one load's spilled batches (under the staging area's ``tmp``, swept if abandoned)."""
    return root / "tmp" / f"parsed-{file_id}-{uuid.uuid4().hex}"


def _kept_folder(root: Path, file_id: int) -> Path:
    return root / "parsed" / str(file_id)


def keep(root: Path, file_id: int, retained: Retained, fingerprint: str) -> None:
    """Keep a whole parse for file ``file_id`` (held: its release loads from it), tied to ``fingerprint`` (its
    content and its format). Best effort: without it, the release parses again."""
    if not retained.complete:
        return
    target = _kept_folder(root, file_id)
    shutil.rmtree(target, ignore_errors=True)
    meta = {"fingerprint": fingerprint, "rows": retained.rows, "rows_dropped": retained.rows_dropped,
            "extra_columns": retained.extra_columns}
    if retained.repeats_decided is not None:
        meta["repeats_decided"] = sorted(retained.repeats_decided)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if retained.spilled:  # already on disk, in the staging area: moved, not written again
            retained._close_writers()
            (retained.folder / "meta.json").write_text(json.dumps(meta))
            retained.folder.rename(target)
            return
        staging = target.with_name(f".{file_id}-{uuid.uuid4().hex}")
        staging.mkdir(parents=True)
        try:
            for kind in retained.kinds():
                with ipc.new_stream(str(staging / f"{kind}.arrow"), LAYOUTS[kind].arrow_schema()) as writer:
                    for batch in retained.replay(kind):
                        writer.write_batch(batch)
            (staging / "meta.json").write_text(json.dumps(meta))
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except OSError:
        pass  # best effort: the release parses again


def kept(root: Path, file_id: int, fingerprint: str) -> Retained | None:
    """The parse kept for file ``file_id``, if it is there and of this content and format; else None."""
    folder = _kept_folder(root, file_id)
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("fingerprint") != fingerprint:
        return None
    retained = Retained(folder, budget=0)
    retained.spilled = True
    retained.complete = True
    retained.rows = {kind: int(n) for kind, n in meta.get("rows", {}).items()}
    if not all(_holds(folder / f"{kind}.arrow", rows) for kind, rows in retained.rows.items() if rows):
        return None  # a file removed or cut short: parsed again, never loaded short
    retained.rows_dropped = int(meta.get("rows_dropped", 0))
    retained.extra_columns = {str(kind): [str(name) for name in names]
                              for kind, names in (meta.get("extra_columns") or {}).items()}
    if isinstance(meta.get("repeats_decided"), list):
        retained.repeats_decided = frozenset(str(kind) for kind in meta["repeats_decided"])
    retained.close = lambda: None  # type: ignore[method-assign]  # what is kept stays until forgotten
    return retained


def _holds(path: Path, rows: int) -> bool:
    """Whether a kept IPC file is there and holds exactly ``rows`` records (read memory-mapped: no copy)."""
    try:
        with pa.memory_map(str(path)) as source:
            return sum(batch.num_rows for batch in ipc.open_stream(source)) == rows
    except (OSError, pa.ArrowInvalid):
        return False


def forget(root: Path, file_id: int) -> None:
    """Remove what was kept for file ``file_id`` (it loaded, or was discarded)."""
    shutil.rmtree(_kept_folder(root, file_id), ignore_errors=True)


__all__ = ["MEMORY_BUDGET", "Retained", "forget", "keep", "kept", "working_folder"]
