"""Progress bars for the CLI: the library's progress reports (:data:`ingest.staging.ProgressFactory`) drawn with
rich on stderr when it is a terminal. Only the CLI uses this module, and rich is imported only once a bar is
drawn; the library knows nothing of it."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .staging import OnProgress

BAR_MIN_BYTES = 8 << 20  # a smaller file is staged or loaded before a bar would tell anything


class ProgressBars:
    """A :data:`~ingest.staging.ProgressFactory` that draws one bar per task of at least ``BAR_MIN_BYTES`` (bytes
    done of the total, rows and rows/s once it loads, elapsed time), on ``stream`` (stderr) when it is a
    terminal and not ``quiet``; otherwise it reports nothing. The bars are drawn between ``__enter__`` and
    ``__exit__``."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = not quiet and self.stream.isatty()
        self._progress = None

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *_exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __call__(self, what: str, total_bytes: int) -> OnProgress | None:
        if not self.enabled or total_bytes < BAR_MIN_BYTES:
            return None
        progress = self._started()
        task = progress.add_task(what, total=total_bytes, rows="")
        started = time.monotonic()

        def update(bytes_done: int, rows_done: int) -> None:
            rate = rows_done / max(time.monotonic() - started, 1e-3)
            progress.update(task, completed=bytes_done, rows=f"{rate:,.0f} rows/s" if rows_done else "")

        return update

    def _started(self):
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
            from rich.table import Column

            # On one 80-column line: a long file name is cut short (an ellipsis), never wrapped.
            self._progress = Progress(
                TextColumn("{task.description}", table_column=Column(max_width=28, no_wrap=True, overflow="ellipsis")),
                BarColumn(bar_width=16), DownloadColumn(binary_units=True),
                TextColumn("{task.fields[rows]}", table_column=Column(no_wrap=True)), TimeElapsedColumn(),
                console=Console(file=self.stream))
            self._progress.start()
        return self._progress
