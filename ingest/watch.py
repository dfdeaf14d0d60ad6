"""The drop-folder daemon loop.

:func:`watch` runs every configured drop folder and Maildir (``dropfolder`` and ``maildir`` sources; or only
the named ones) until ``stop`` is set. Its contract:

- each collector's watchdog observer is started with one shared wake event; a source whose observer cannot
  start is logged and still collected by rescan (its settle fallback);
- each pass runs ``collect()`` on every collector, then (if ``load``) ``load_queued``, then ``on_pass``
  with the pass's results (one :class:`PassResult` per source, in configuration order);
- between passes it waits on the wake event (a file finished or arrived), for at most ``SHORT_WAIT``
  seconds while some file is present but not yet ready, else the smallest ``rescan_seconds``; ``stop`` is
  checked at least every ``STOP_POLL`` seconds, so setting it ends the loop promptly;
- an error of one collector or of the loader (a busy database included) is logged and reported in the
  results; it never stops the loop. Errors from ``on_pass`` itself do propagate;
- a pass that took files is logged as one line (each file by the intake door and the loader); a folder's
  errors (a symlink, a file it cannot take) are logged once while they persist and kept in the catalog's run
  state of the source, with their time, for ``cdr status``;
- observers are always stopped and joined when it returns, however it returns.

Unknown source names, or names of sources of another kind, are refused before anything starts.

:func:`watch_once` is one pass without watchdog, for a run from cron: with no history of earlier passes, a
file is taken when it is at least ``min_age_seconds`` old and has not been written (by mtime) for
``settle_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .catalog import sources as source_states
from .collectors import PassResult, collector_for, is_watched
from .collectors.dropfolder import DropFolder
from .daemon import log_pass
from .errors import ConfigError, NotFound
from .load import load_queued

log = logging.getLogger(__name__)

SHORT_WAIT = 0.5  # seconds between passes while a file is waiting to be complete or old enough
STOP_POLL = 0.25  # seconds: how often a long wait looks at ``stop``


def watch(
    app,
    *,
    stop: threading.Event,
    sources: list[str] | None = None,
    load: bool = True,
    actor: str | None = None,
    on_pass: Callable[[list[PassResult]], None] | None = None,
) -> None:
    """Collect (and load) from drop folders until ``stop`` is set; see the module docstring."""
    specs = _specs(app, sources)
    wake = threading.Event()
    collectors: list[DropFolder] = []
    reported: dict[str, set[str]] = {}
    try:
        for spec in specs:
            collector = collector_for(app, spec)
            collector.stopping = stop  # a pass under way takes no further file once stopping
            collectors.append(collector)
            try:
                collector.start_watching(wake)
            except Exception:
                log.exception("drop folder %s: cannot watch %s; relying on rescans", spec.name, collector.path)
        while not stop.is_set():
            wake.clear()  # events from here on wake the next wait
            results = [_collect(collector) for collector in collectors]
            for result in results:
                _tell(app, result, reported)
            if load:
                try:
                    load_queued(app, actor=actor)
                except Exception:
                    log.exception("loading queued files failed; trying again next pass")
            if on_pass is not None:
                on_pass(results)
            waiting = any(collector.pending() for collector in collectors)
            _wait(stop, wake, SHORT_WAIT if waiting else min(c.rescan for c in collectors))
    finally:
        for collector in collectors:
            try:
                collector.close()
            except Exception:
                log.exception("drop folder %s: closing its watcher failed", collector.name)


def watch_once(app, sources: list[str] | None = None, load: bool = True, actor: str | None = None,
               clock: Callable[[], float] = time.time) -> list[PassResult]:
    """One pass over the drop folders (no watcher), then (if ``load``) load what is queued."""
    collectors = [collector_for(app, spec, clock, settle_from_mtime=True) for spec in _specs(app, sources)]
    try:
        results = [_collect(collector) for collector in collectors]
    finally:
        for collector in collectors:
            collector.close()
    for result in results:
        _tell(app, result, {}, record=True)
    if load:
        try:
            load_queued(app, actor=actor)
        except Exception:
            log.exception("loading queued files failed")
    return results


def _specs(app, names: list[str] | None):
    if names is None:
        specs = [spec for spec in app.config.sources if is_watched(spec)]
        if not specs:
            raise NotFound("no drop-folder sources are configured")
        return specs
    specs = [app.config.source(name) for name in names]  # NotFound for an unknown name
    for spec in specs:
        if not is_watched(spec):
            raise ConfigError(f"sources.{spec.name}", f"is of kind {spec.kind!r}; watch runs drop folders and "
                                                      "Maildirs only")
    return specs


def _collect(collector: DropFolder) -> PassResult:
    try:
        return collector.collect()
    except Exception as exc:  # collect() should not raise; if it does, the loop still goes on
        log.exception("drop folder %s: pass failed", collector.name)
        return PassResult(collector.name, errors=[f"{type(exc).__name__}: {exc}"])


def _tell(app, result: PassResult, reported: dict[str, set[str]], record: bool = False) -> None:
    """Tell a pass: a pass line for a pass that took files (a folder is looked at every moment a file is being
    written: a line for every look would drown the files), and each error once while it persists (a file
    that cannot be read is retried every pass). The catalog's run state of the source (``cdr status``: the
    files it could not take, with their time) is written when the pass took files or its errors changed
    (``record``: always; a single pass from cron knows no earlier one)."""
    if result.received:
        log_pass(result)
    before = reported.get(result.source, set())
    current = set(result.errors)
    for error in sorted(current - before):
        log.warning("drop folder %s: %s", result.source, error,
                    extra={"event": "watch_error", "source": result.source})
    reported[result.source] = current
    if record or result.received or current != before:
        try:
            with app.catalog.write() as conn:
                source_states.record_pass(conn, result.source, error=None, collected=len(result.received),
                                          next_run=None, entry_errors=sorted(current))
        except Exception:  # a busy catalog: told on a later pass; the watcher goes on
            log.exception("drop folder %s: recording its pass failed", result.source)


def _wait(stop: threading.Event, wake: threading.Event, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or wake.wait(min(remaining, STOP_POLL)):
            return
