"""The collector daemon: every source on its schedule, the drop-folder watcher and the loader, in one process.

- A remote source runs on ``interval_seconds`` (default 900) or a cron ``schedule`` ("*/15 * * * *"), plus
  a random ``jitter_seconds`` (default a tenth of the interval, at most 60) so sources do not all fire at
  once. Each source has its own thread: one slow or failing server never delays the others.
- A failed pass is recorded (``cdr status``) and retried with backoff: a transient error (unreachable,
  timeout, dropped) after 30 s, doubling, never later than the regular schedule; a permanent one (login or
  host key refused) not before the regular schedule and doubling up to 6 hours, so it is not hammered.
- Drop folders and Maildirs are watched (``ingest.watch``); with an ``[smtp]`` section the mail listener runs too;
  queued files are loaded as they arrive.
- ``stop`` (SIGTERM/SIGINT in ``cdr daemon``) ends every loop between steps. Intake and load are each one
  transaction, so a stop never leaves a half-staged file or a partial load.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import datetime, timedelta, timezone
from typing import Callable

from .app import App
from .catalog import sources as source_states
from .collectors import PassResult, collector_for, is_watched
from .errors import CdrError
from .schedule import RETRY_FIRST, Schedule, retry_at  # noqa: F401 - part of this module's API

log = logging.getLogger(__name__)



def run_pass(app: App, source: str, *, schedule: Schedule | None = None) -> tuple[PassResult, datetime | None]:
    """One pass of one source, recorded in the catalog; returns the result and when to run next."""
    spec = app.config.source(source)
    schedule = schedule or Schedule.of(spec.options, f"sources.{source}")
    collector = collector_for(app, spec)
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
        next_run = retry_at(schedule, moment, before["consecutive_failures"] + 1, not result.failed_permanently)
    with app.catalog.write() as conn:
        source_states.record_pass(conn, source, error=error, collected=len(result.received), next_run=next_run)
    for received in result.received:
        log.info("collected", extra={"event": "collected", "source": source, "file_id": received.id,
                                     "file": received.name, "status": received.status})
    if error:
        log.warning("source failed", extra={"event": "source_failed", "source": source, "error": error})
    return result, next_run


def remote_sources(app: App) -> list[str]:
    return [spec.name for spec in app.config.sources if not is_watched(spec)]


def run_daemon(app: App, *, stop: threading.Event, load: bool = True,
               on_pass: Callable[[PassResult], None] | None = None) -> None:
    """Run every source, the drop-folder watcher and the loader until ``stop`` is set."""
    from .load import load_queued
    from .watch import watch

    wake_loader = threading.Event()
    threads = []

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
                result, due = run_pass(app, name, schedule=schedule)
                if result.received:
                    wake_loader.set()
                if on_pass:
                    on_pass(result)
            except Exception:  # the daemon keeps running whatever one source does
                log.exception("source %s: pass crashed", name)
                due = datetime.now(timezone.utc) + timedelta(seconds=RETRY_FIRST)

    def loader_loop() -> None:
        while not stop.is_set():
            try:
                load_queued(app, actor="daemon")
            except Exception:
                log.exception("loader: pass failed; retrying")
            wake_loader.wait(5.0)
            wake_loader.clear()

    for name in remote_sources(app):
        threads.append(threading.Thread(target=source_loop, args=(name,), name=f"cdr-source-{name}", daemon=True))
    if load:
        threads.append(threading.Thread(target=loader_loop, name="cdr-loader", daemon=True))
    if any(is_watched(spec) for spec in app.config.sources):
        threads.append(threading.Thread(
            target=lambda: watch(app, stop=stop, load=False, actor="daemon",
                                 on_pass=lambda results: wake_loader.set() if any(r.received for r in results) else None),
            name="cdr-watch", daemon=True))
    listener = None
    if app.config.smtp is not None:
        from .smtp import SmtpListener

        listener = SmtpListener(app, app.config.smtp).start()
    for thread in threads:
        thread.start()
    try:
        stop.wait()
    finally:
        if listener is not None:
            listener.stop()
        wake_loader.set()
        for thread in threads:
            thread.join(timeout=60)
