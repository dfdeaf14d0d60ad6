"""The collector daemon: every source on its schedule, the drop-folder watcher and the loader, in one process.

- A remote source runs on ``interval_seconds`` (default 900) or a cron ``schedule`` ("*/15 * * * *"), plus
  a random ``jitter_seconds`` (default a tenth of the interval, at most 60) so sources do not all fire at
  once. Each source has its own thread: one slow or failing server never delays the others.
- A failed pass is recorded (``cdr status``) and retried with backoff: a transient error (unreachable,
  timeout, dropped) after 30 s, doubling, never later than the regular schedule; a permanent one (login or
  host key refused) not before the regular schedule and doubling up to 6 hours, so it is not hammered.
  Neither comes sooner than the source's floor (a billing feed's 10 minutes between queries).
- Drop folders and Maildirs are watched (``ingest.watch``); with an ``[smtp]`` section the mail listener runs too;
  a file taken by any of them wakes the loader at once.
- ``stop`` (SIGTERM/SIGINT in ``cdr daemon``) ends every loop between steps, then what is queued is loaded
  for at most ``[daemon] drain_seconds`` (:func:`run_daemon`). Intake and load are each one transaction, so a
  stop never leaves a half-staged file or a partial load.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from .app import App
from .catalog import files as catalog_files
from .catalog import sources as source_states
from .collectors import COLLECTORS, PassResult, collector_for, is_watched
from .errors import CdrError
from .logs import event
from .schedule import RETRY_FIRST, Schedule, retry_at  # noqa: F401 - part of this module's API

log = logging.getLogger(__name__)



def run_pass(app: App, source: str, *, schedule: Schedule | None = None,
             stop: threading.Event | None = None) -> tuple[PassResult, datetime | None]:
    """One pass of one source, recorded in the catalog; returns the result and when to run next. Only the
    result's ``errors`` fail the pass (backoff); its ``entry_errors`` are recorded for ``cdr status``. Once
    ``stop`` is set, a collector that can end a pass early takes no further entry (the rest wait for the next)."""
    spec = app.config.source(source)
    schedule = schedule or Schedule.of(spec.options, f"sources.{source}")
    collector = collector_for(app, spec)
    if stop is not None:
        collector.stopping = stop
    try:
        result = collector.collect()
    except CdrError as exc:  # a collector's own contract says it reports instead; this is the safety net
        result = PassResult(source, errors=[str(exc)], failed_permanently=not exc.transient)
    finally:
        collector.close()
    moment = datetime.now(timezone.utc)
    error = "; ".join(result.errors) if result.errors else None
    with app.catalog.read() as conn:
        before = source_states.state_of(conn, source) or {"consecutive_failures": 0}
    if error is None:
        next_run = schedule.next_after(moment)
    else:
        next_run = retry_at(schedule, moment, before["consecutive_failures"] + 1, not result.failed_permanently,
                            floor=collector.min_gap_seconds)
    with app.catalog.write() as conn:
        source_states.record_pass(conn, source, error=error, collected=len(result.received), next_run=next_run,
                                  entry_errors=result.entry_errors)
    log_pass(result, error, next_run)
    return result, next_run


def pass_summary(result: PassResult) -> str:
    """A pass in words: files taken, entries waiting (and that they are taken once unchanged on the next
    listing), entries not taken. The daemon's pass line and ``cdr collect`` say it the same way."""
    words = f"{len(result.received)} file(s) taken"
    if result.entries_waiting:
        words += f"; {waiting_text(result.entries_waiting)}"
    if result.entry_errors:
        words += f"; {len(result.entry_errors)} not taken"
    return words


def waiting_text(count: int) -> str:
    """Entries a listing saw and did not take yet, in words."""
    return (f"{count} entr{'y' if count == 1 else 'ies'} seen and waiting: each is taken once the next listing "
            "shows it unchanged")


def log_pass(result: PassResult, error: str | None = None, next_run: datetime | None = None) -> None:
    """One line per pass (``source_pass``; ``source_failed`` at WARNING when the source failed, with why),
    then one WARNING per entry not taken. The files taken are logged by the intake door, each once."""
    fields = {"source": result.source, "files_taken": len(result.received), "entries_waiting": result.entries_waiting,
              "entries_not_taken": len(result.entry_errors), "next_run": next_run.isoformat() if next_run else None}
    if error:
        event(log, "source_failed", f"source {result.source}: pass failed: {error}", level=logging.WARNING,
              error=error, **fields)
    else:
        event(log, "source_pass", f"source {result.source}: {pass_summary(result)}", **fields)
    for entry_error in result.entry_errors:
        event(log, "entry_not_taken", f"source {result.source}: not taken: {entry_error}", level=logging.WARNING,
              source=result.source, error=entry_error)


def remote_sources(app: App) -> list[str]:
    return [spec.name for spec in app.config.sources if not is_watched(spec)]


def run_daemon(app: App, *, stop: threading.Event, load: bool = True,
               on_pass: Callable[[PassResult], None] | None = None) -> None:
    """Run every source, the drop-folder watcher, the SMTP listener and the loader until ``stop`` is set; then
    stop cleanly and return.

    Loading: every source that takes a file (a remote source's pass, the watcher, the SMTP listener) wakes the
    loader at once; otherwise it looks for queued files every ``[daemon] loader_poll_seconds`` (files queued
    by another process: ``cdr upload --no-load``).

    Stopping: the sources finish the entry at hand and take no more, the listener stops accepting, the
    watcher stops; the loader finishes the file at hand. Then (``load``) what is queued is loaded, oldest
    first, with no file started after ``[daemon] drain_seconds``; what is left stays queued for the next start.
    """
    from .watch import watch

    settings = app.config.daemon
    wake_loader = threading.Event()
    producers: list[threading.Thread] = []

    def source_loop(name: str) -> None:
        spec = app.config.source(name)
        schedule = Schedule.of(spec.options, f"sources.{name}")
        with app.catalog.read() as conn:
            state = source_states.state_of(conn, name)
        due = state["next_run_at"] if state and state["next_run_at"] else (
            datetime.now(timezone.utc) + timedelta(seconds=random.uniform(0, schedule.jitter)))
        while not stop.is_set():
            wait = (due - datetime.now(timezone.utc)).total_seconds()
            if wait > 0:
                stop.wait(min(wait, 1.0))
                continue
            try:
                result, due = run_pass(app, name, schedule=schedule, stop=stop)
                if result.received:
                    wake_loader.set()
                if on_pass:
                    on_pass(result)
            except Exception:  # the daemon keeps running whatever one source does
                log.exception("source %s: pass crashed", name)
                due = retry_at(schedule, datetime.now(timezone.utc), 1, True,
                               floor=COLLECTORS[spec.kind].min_gap_seconds)

    def loader_loop() -> None:
        while not stop.is_set():
            wake_loader.clear()  # a file taken from here on wakes the wait below
            done = load_while(app, lambda: not stop.is_set())
            if done:
                log.info("load round done", extra={"event": "load_round", "files_done": done})
            wake_loader.wait(settings.loader_poll_seconds)

    def wake_on_files(results: list[PassResult]) -> None:
        if any(result.received for result in results):
            wake_loader.set()

    for name in remote_sources(app):
        producers.append(threading.Thread(target=source_loop, args=(name,), name=f"cdr-source-{name}", daemon=True))
    if any(is_watched(spec) for spec in app.config.sources):
        producers.append(threading.Thread(
            target=lambda: watch(app, stop=stop, load=False, actor="daemon", on_pass=wake_on_files),
            name="cdr-watch", daemon=True))
    loader = threading.Thread(target=loader_loop, name="cdr-loader", daemon=True) if load else None
    listener = None
    if app.config.smtp is not None:
        from .smtp import SmtpListener

        listener = SmtpListener(app, app.config.smtp, on_taken=lambda received: wake_loader.set()).start()
    for thread in producers + ([loader] if loader else []):
        thread.start()
    try:
        stop.wait()
    finally:
        if listener is not None:
            listener.stop()
        wake_loader.set()
        for thread in producers + ([loader] if loader else []):
            thread.join(timeout=60)
        if load:
            drain(app, settings.drain_seconds)


def load_while(app: App, keep_going: Callable[[], bool]) -> int:
    """Load queued files one at a time, oldest first, while ``keep_going()`` holds before each. A file a
    transient error left queued is passed over for the rest of the round (it is tried on the next one), so it
    never holds up the files behind it. Returns how many left the queue."""
    from .load import load_queued

    done = 0
    after = 0  # the last file tried this round
    while keep_going():
        try:
            results = load_queued(app, actor="daemon", limit=1, after=after)
        except Exception:  # a fault of ours: the next round tries again
            log.exception("loader: pass failed; retrying")
            return done
        if not results:
            return done
        after = results[0].file_id
        if results[0].status != "queued":
            done += 1
    return done


def drain(app: App, seconds: float) -> int:
    """After a stop: load what is queued, starting no file once ``seconds`` have passed; returns how many
    were loaded (or failed). Logs how many are left queued for the next start."""
    deadline = time.monotonic() + seconds
    done = load_while(app, lambda: time.monotonic() < deadline)
    with app.catalog.read() as conn:
        left = catalog_files.status_counts(conn).get("queued", 0)
    log.info("drained", extra={"event": "daemon_drained", "files_done": done, "files_left_queued": left})
    return done
