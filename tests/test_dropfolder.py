"""The drop-folder collector and the watch loop, against real files and a real watchdog (inotify) observer.

No sleeps decide an outcome: tests wait on a condition with a timeout (``wait_until``), age files with
``os.utime`` (set before the writer closes, as ``cp -p`` does) and drive the settle fallback with an
injected clock. The default ``settle_seconds`` (60) is far beyond any wait here, so a file taken promptly
with a real clock was taken because of a watchdog event, not because it settled.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ingest.collectors.dropfolder import DropFolder, numbered
from ingest.errors import DatabaseBusy, NotFound
from ingest.intake import Origin, receive
from ingest.load import load_queued
from ingest.watch import watch, watch_once
from tests.conftest import app_with
from tests.conftest import catalog_rows as rows
from tests.conftest import wait_until as waiting_until
from tests.records import record, render

AGE = 30  # seconds: how far back a finished file's mtime is set (past the default min_age of 5)
TIMEOUT = 10.0


# -- helpers -------------------------------------------------------------------------------------------


def wait_until(predicate, timeout: float = TIMEOUT, what: str = "condition"):
    return waiting_until(predicate, timeout, what)


class Clock:
    """An injectable wall clock that moves only when told to."""

    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drop(path: Path, data: bytes, age: float = AGE) -> Path:
    """Write a complete file and close it, its mtime set ``age`` seconds back before the close."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        if age:
            old = time.time() - age
            os.utime(fh.fileno(), (old, old))
    return path


def feed(*ids: int) -> bytes:
    return render([record(i) for i in ids])


def source_toml(name: str, path: Path, **options) -> str:
    lines = ["[[sources]]", f"name = {json.dumps(name)}", 'kind = "dropfolder"', f"path = {json.dumps(str(path))}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def staged(app, row) -> bytes:
    return app.staging.path_of(row["blob"]).read_bytes()


def take(collector: DropFolder, count: int = 1, timeout: float = TIMEOUT) -> list:
    """Run passes until ``count`` files have been received; fail (showing the errors) if they are not."""
    received, errors = [], []

    def done():
        result = collector.collect()
        received.extend(result.received)
        errors.extend(result.errors)
        return len(received) >= count

    try:
        wait_until(done, timeout, f"{count} file(s) taken from {collector.path}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; received {received}; errors {errors}") from None
    return received


def barrier(collector: DropFolder, folder: Path) -> None:
    """Return once the observer has dispatched every event that happened in ``folder`` before this call.

    inotify events arrive in order and are dispatched in order; once the watcher has dispatched an event
    for a dot-file made here (never a candidate), every earlier event was handled.
    """
    marker = folder / f".barrier-{time.monotonic_ns()}"
    marker.touch()
    wait_until(lambda: collector.last_event_name == marker.name, what="the observer to catch up")
    marker.unlink()


@pytest.fixture
def setup(tmp_path, make_config):
    """``setup(sources_toml) -> app``; the app, and every collector made with ``collector``, closed after."""
    made = []

    def make(extra: str):
        app = app_with(make_config, extra)
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


@pytest.fixture
def collector():
    """``collector(app, name, clock=None, watching=False)``: a DropFolder, its observer closed after the test."""
    made: list[DropFolder] = []

    def make(app, name: str = "drop", clock=None, watching: bool = False) -> DropFolder:
        kwargs = {} if clock is None else {"clock": clock}
        instance = DropFolder(app, app.config.source(name), **kwargs)
        made.append(instance)
        if watching:
            instance.start_watching()
        return instance

    yield make
    for instance in made:
        instance.close()


@pytest.fixture
def folder(tmp_path) -> Path:
    path = tmp_path / "drop"
    path.mkdir()
    return path


# -- taking files ----------------------------------------------------------------------------------------


def test_a_complete_file_is_taken_staged_moved_and_loaded(setup, collector, folder):
    app = setup(source_toml("drop", folder))
    dropfolder = collector(app, watching=True)
    data = feed(1, 2)
    drop(folder / "hero_cdr_20261001.csv", data)

    [got] = take(dropfolder)

    assert got.status == "queued"
    [row] = rows(app)
    assert (row["name"], row["source"], row["carrier"], row["type"]) == ("hero_cdr_20261001.csv", "drop", "hero", "cdr")
    assert row["origin"] == str((folder / "hero_cdr_20261001.csv").resolve())
    assert staged(app, row) == data
    assert not (folder / "hero_cdr_20261001.csv").exists()
    assert (folder / "done" / "hero_cdr_20261001.csv").read_bytes() == data
    assert dropfolder.pending() == 0
    [loaded] = load_queued(app)
    assert (loaded.status, loaded.loaded) == ("loaded", 2)


def test_a_stopping_drop_folder_takes_no_further_file(setup, collector, folder):
    app = setup(source_toml("drop", folder))
    dropfolder = collector(app, watching=True)
    drop(folder / "hero_cdr_20261001.csv", feed(1))
    barrier(dropfolder, folder)  # its close is seen: a pass would take it now
    dropfolder.stopping.set()  # the daemon is stopping: the file waits for the next start
    assert dropfolder.collect().received == [] and rows(app) == []
    assert (folder / "hero_cdr_20261001.csv").exists()
    dropfolder.stopping.clear()
    assert len(take(dropfolder)) == 1


def test_a_folder_on_a_file_system_without_hard_links_still_files_taken_files_away(setup, collector, folder,
                                                                                   monkeypatch):
    import errno

    def no_links(*_args, **_kwargs):  # as link(2) answers on vfat or many SMB mounts
        raise OSError(errno.EPERM, "Operation not permitted")

    app = setup(source_toml("drop", folder))
    dropfolder = collector(app, watching=True)
    (folder / "done").mkdir()
    (folder / "done" / "hero_cdr_20261001.csv").write_bytes(b"an earlier file of that name")
    drop(folder / "hero_cdr_20261001.csv", feed(1))
    monkeypatch.setattr(os, "link", no_links)
    assert len(take(dropfolder)) == 1
    assert not (folder / "hero_cdr_20261001.csv").exists()
    assert (folder / "done" / "hero_cdr_20261001 (2).csv").read_bytes() == feed(1)
    assert (folder / "done" / "hero_cdr_20261001.csv").read_bytes() == b"an earlier file of that name"


def test_a_closed_file_younger_than_min_age_waits_until_old_enough(setup, collector, folder):
    app = setup(source_toml("drop", folder, min_age_seconds=5))
    clock = Clock(time.time())
    dropfolder = collector(app, clock=clock, watching=True)
    path = drop(folder / "hero_cdr_20261001.csv", feed(1), age=0)
    barrier(dropfolder, folder)
    clock.now = path.stat().st_mtime + 1  # by the collector's clock the file is 1 s old, however slow set-up was

    assert dropfolder.collect().received == []
    assert dropfolder.pending() == 1
    clock.advance(5)
    assert [r.name for r in dropfolder.collect().received] == ["hero_cdr_20261001.csv"]


def test_a_half_written_file_is_not_taken_until_its_writer_closes_it(setup, collector, folder):
    app = setup(source_toml("drop", folder))
    clock = Clock(time.time() + AGE)  # every write is already past min_age by the collector's clock
    dropfolder = collector(app, clock=clock, watching=True)
    data = feed(1, 2, 3)
    path = folder / "hero_cdr_20261001.csv"

    def nothing_taken():
        barrier(dropfolder, folder)  # every event so far (open, writes, attribute changes) was handled
        for _ in range(3):
            result = dropfolder.collect()
            assert result.received == [] and result.errors == []
        assert rows(app) == [] and path.exists() and dropfolder.pending() == 1

    writer = open(path, "wb")
    try:
        writer.write(data[: len(data) // 3])
        writer.flush()
        nothing_taken()
        writer.write(data[len(data) // 3 : 2 * len(data) // 3])
        writer.flush()
        old = time.time() - AGE
        os.utime(writer.fileno(), (old, old))  # aged on disk too, but still open for writing
        nothing_taken()
        writer.write(data[2 * len(data) // 3 :])
        writer.flush()
    finally:
        writer.close()

    take(dropfolder)
    [row] = rows(app)
    assert staged(app, row) == data
    assert (folder / "done" / path.name).read_bytes() == data


def test_renamed_in_files_are_taken_and_partial_names_never(setup, collector, folder, tmp_path):
    app = setup(source_toml("drop", folder))
    dropfolder = collector(app, watching=True)
    # written under a partial name, then renamed in the folder
    drop(folder / "hero_cdr_20261002.csv.part", feed(2))
    # written elsewhere on the same file system, then renamed into the folder
    outside = tmp_path / "outbox"
    outside.mkdir()
    drop(outside / "hero_cdr_20261003.csv", feed(3))
    never = {name: feed(10 + i) for i, name in enumerate(
        [".hero_cdr_20261004.csv", "hero_cdr_20261005.csv.tmp", "hero_cdr_20261006.csv.part", "x.PARTIAL"])}
    for name, data in never.items():
        drop(folder / name, data)
    barrier(dropfolder, folder)
    assert dropfolder.collect().received == []

    os.rename(folder / "hero_cdr_20261002.csv.part", folder / "hero_cdr_20261002.csv")
    os.rename(outside / "hero_cdr_20261003.csv", folder / "hero_cdr_20261003.csv")
    got = take(dropfolder, count=2)

    assert sorted(r.name for r in got) == ["hero_cdr_20261002.csv", "hero_cdr_20261003.csv"]
    # Not even the settle fallback, a day later, takes a partial or hidden name.
    clock = Clock(time.time() + 86400)
    rescan = collector(app, clock=clock)
    rescan.collect()
    clock.advance(3600)
    assert rescan.collect().received == []
    assert sorted(r["name"] for r in rows(app)) == ["hero_cdr_20261002.csv", "hero_cdr_20261003.csv"]
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == never


def test_settle_fallback_takes_a_file_only_after_size_and_mtime_stayed_unchanged(setup, collector, folder):
    app = setup(source_toml("drop", folder, settle_seconds=60))
    clock = Clock(time.time() + AGE)
    dropfolder = collector(app, clock=clock)  # no observer: no events, only rescans
    path = drop(folder / "hero_cdr_20261001.csv", feed(1), age=0)

    assert dropfolder.collect().received == []  # first seen
    clock.advance(59)
    assert dropfolder.collect().received == []
    with open(path, "ab") as fh:  # it grows: the settle clock starts again when a pass sees the change
        fh.write(render([record(2)], header=False))
    clock.advance(30)
    assert dropfolder.collect().received == []  # 89 s after first seen, but changed
    clock.advance(59)
    assert dropfolder.collect().received == []
    assert rows(app) == []
    clock.advance(1)
    [got] = dropfolder.collect().received

    assert got.status == "queued"
    [row] = rows(app)
    assert staged(app, row) == feed(1, 2)


def test_a_file_modified_while_being_read_is_rolled_back_and_taken_later(setup, collector, folder, monkeypatch):
    app = setup(source_toml("drop", folder, settle_seconds=60))
    clock = Clock(time.time() + AGE)
    dropfolder = collector(app, clock=clock)
    path = drop(folder / "hero_cdr_20261001.csv", feed(1), age=0)
    real_receive = app.staging.receive
    calls = []

    def receive_then_append(stream):
        blob = real_receive(stream)  # the bytes are read ...
        if not calls:
            with open(path, "ab") as fh:  # ... and the writer adds more before the intake commits
                fh.write(render([record(2)], header=False))
        calls.append(blob)
        return blob

    monkeypatch.setattr(app.staging, "receive", receive_then_append)
    dropfolder.collect()
    clock.advance(60)
    result = dropfolder.collect()

    assert len(calls) == 1 and result.received == []
    assert any("changed while it was being read" in e for e in result.errors), result.errors
    assert rows(app) == []
    assert path.exists() and not (folder / "done").exists()

    assert dropfolder.collect().received == []  # the changed file settles afresh
    clock.advance(60)
    [got] = dropfolder.collect().received
    [row] = rows(app)
    assert (got.id, got.status) == (row["id"], "queued")
    assert staged(app, row) == feed(1, 2)
    assert (folder / "done" / path.name).read_bytes() == feed(1, 2)


def test_a_file_appended_to_after_its_intake_is_left_and_taken_again(setup, collector, folder, monkeypatch):
    app = setup(source_toml("drop", folder, settle_seconds=60))
    clock = Clock(time.time() + AGE)
    dropfolder = collector(app, clock=clock)
    path = drop(folder / "hero_cdr_20261001.csv", feed(1), age=0)
    real_move = dropfolder._move_done
    calls = []

    def append_then_move(*args):
        if not calls:
            with open(path, "ab") as fh:
                fh.write(render([record(2)], header=False))
        calls.append(args)
        return real_move(*args)

    monkeypatch.setattr(dropfolder, "_move_done", append_then_move)
    dropfolder.collect()
    clock.advance(60)
    result = dropfolder.collect()

    assert any("changed after it was recorded" in e for e in result.errors), result.errors
    assert path.read_bytes() == feed(1, 2)  # not moved to done/ with records nobody read
    [first] = rows(app)
    assert staged(app, first) == feed(1)
    dropfolder.collect()
    clock.advance(60)
    [again] = dropfolder.collect().received
    assert again.id != first["id"] and staged(app, rows(app)[1]) == feed(1, 2)
    assert (folder / "done" / path.name).read_bytes() == feed(1, 2)


def test_a_crash_between_intake_commit_and_move_records_the_file_once(setup, collector, folder, monkeypatch):
    app = setup(source_toml("drop", folder, settle_seconds=60))
    clock = Clock(time.time() + AGE)
    crashing = collector(app, clock=clock)
    path = drop(folder / "hero_cdr_20261001.csv", feed(1, 2))

    def crash(*_args):
        raise OSError("simulated crash before the move")

    monkeypatch.setattr(crashing, "_move_done", crash)
    crashing.collect()
    clock.advance(60)
    assert crashing.collect().received == []
    [first] = rows(app)
    assert first["status"] == "queued" and path.exists()

    restarted = collector(app, clock=clock)  # a new process: nothing remembered, the file settles again
    restarted.collect()
    clock.advance(60)
    [again] = restarted.collect().received

    assert (again.id, again.status) == (first["id"], "queued")
    assert [(r["id"], r["status"]) for r in rows(app)] == [(first["id"], "queued")]
    assert (folder / "done" / path.name).read_bytes() == feed(1, 2)
    # the intake door itself, offered the same delivery twice, answers with the same row
    origin = Origin(source="drop", name=path.name, delivery=first["delivery"])
    [repeat] = receive(app, io.BytesIO(feed(1, 2)), origin)
    assert (repeat.id, repeat.status) == (first["id"], "queued")
    assert len(rows(app)) == 1


def test_a_name_clash_in_done_numbers_the_name_before_its_extension_and_fits_it(setup, collector, folder):
    app = setup(source_toml("drop", folder))
    dropfolder = collector(app, watching=True)
    stem = "hero_cdr_20261003_" + "x" * (255 - len("hero_cdr_20261003_.csv"))
    longest = stem + ".csv"  # NAME_MAX bytes: no room left for a number
    done = folder / "done"
    done.mkdir()
    for name in ("hero_cdr_20261001.csv", "hero_cdr_20261002.csv.gz", longest):
        (done / name).write_bytes(b"an earlier file of that name")
    (done / "hero_cdr_20261001 (2).csv").write_bytes(b"older still")
    drop(folder / "hero_cdr_20261001.csv", feed(1))
    packed = gzip.compress(feed(2), mtime=0)
    drop(folder / "hero_cdr_20261002.csv.gz", packed)
    drop(folder / longest, feed(3))

    got = take(dropfolder, count=3)

    assert [r.status for r in got] == ["queued"] * 3
    assert {p.name: p.read_bytes() for p in done.iterdir()} == {
        "hero_cdr_20261001.csv": b"an earlier file of that name",
        "hero_cdr_20261001 (2).csv": b"older still",
        "hero_cdr_20261001 (3).csv": feed(1),
        "hero_cdr_20261002.csv.gz": b"an earlier file of that name",
        "hero_cdr_20261002 (2).csv.gz": packed,
        longest: b"an earlier file of that name",
        stem[: 255 - len(" (2).csv")] + " (2).csv": feed(3),
    }
    assert sorted(p.name for p in folder.iterdir()) == ["done"]


@pytest.mark.parametrize("name, expected", [
    ("a.csv", "a (2).csv"),
    ("a.csv.gz", "a (2).csv.gz"),
    ("a.TXT.GZ", "a (2).TXT.GZ"),
    ("archive.tar.gz", "archive (2).tar.gz"),
    ("hero.2026.10.01.csv", "hero.2026.10.01 (2).csv"),
    ("no extension", "no extension (2)"),
    ("a.gz", "a (2).gz"),
    ("a.not an extension", "a.not an extension (2)"),
    ("é" * 125 + ".csv", "é" * 123 + " (2).csv"),  # two bytes a letter: shortened by whole letters to fit
])
def test_numbered_names_keep_the_extension_within_name_max(name, expected):
    assert numbered(name, 2) == expected
    assert len(os.fsencode(numbered(name, 2))) <= 255


def test_a_file_finished_during_a_pass_is_taken_on_the_next(setup, collector, folder, monkeypatch):
    app = setup(source_toml("drop", folder))
    dropfolder = collector(app, watching=True)
    drop(folder / "hero_cdr_20261002.csv.part", feed(2))
    drop(folder / "hero_cdr_20261001.csv", feed(1))
    real_receive = app.staging.receive
    renamed = []

    def rename_while_reading(stream):
        if not renamed:  # the second file is finished after this pass scanned the folder
            dropfolder.wake.clear()
            os.rename(folder / "hero_cdr_20261002.csv.part", folder / "hero_cdr_20261002.csv")
            wait_until(dropfolder.wake.is_set, what="the rename to be noted")
            renamed.append(True)
        return real_receive(stream)

    monkeypatch.setattr(app.staging, "receive", rename_while_reading)
    [first] = take(dropfolder)
    assert first.name == "hero_cdr_20261001.csv" and renamed

    # Settle (60 s) is far off: only the finished mark noted during the last pass lets it in now.
    assert [r.name for r in dropfolder.collect().received] == ["hero_cdr_20261002.csv"]


def test_a_carrier_folder_gives_its_files_carrier_type_and_cadence(setup, collector, tmp_path):
    hero_daily = tmp_path / "hero-daily"
    hero_daily.mkdir()
    app = setup(source_toml("hero-daily", hero_daily, carrier="hero", type="cdr", cadence="daily"))
    dropfolder = collector(app, "hero-daily", watching=True)
    drop(hero_daily / "export-0001.csv", feed(7, 8))  # no carrier's rule knows this name

    [got] = take(dropfolder)

    assert got.status == "queued"
    [row] = rows(app)
    assert (row["carrier"], row["type"], row["cadence"], row["format"]) == ("hero", "cdr", "daily", "csv")
    [loaded] = load_queued(app)
    assert (loaded.status, loaded.loaded) == ("loaded", 2)


# -- the watch loop ----------------------------------------------------------------------------------------


class Runner:
    """``watch`` in a thread; remembers every pass and any exception it ended with."""

    def __init__(self, app, **kwargs):
        self.stop = threading.Event()
        self.passes: list = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(app,), kwargs=kwargs, name="watch-under-test")

    def _run(self, app, **kwargs):
        try:
            watch(app, stop=self.stop, on_pass=self.passes.append, **kwargs)
        except BaseException as exc:  # reported by the test, not as an unhandled thread exception
            self.error = exc

    def __enter__(self):
        self.thread.start()
        wait_until(lambda: self.passes or self.error, what="the first pass")  # observers are watching now
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join(TIMEOUT)


def loaded_names(app) -> set[str]:
    return {r["name"] for r in rows(app) if r["status"] == "loaded"}


def test_watch_takes_and_loads_dropped_files_and_stops_promptly(setup, tmp_path, folder):
    hero_daily = tmp_path / "hero-daily"
    app = setup(source_toml("drop", folder) + source_toml("hero-daily", hero_daily, carrier="hero", type="cdr",
                                                         cadence="daily"))
    threads_before = set(threading.enumerate())
    with Runner(app) as runner:
        assert hero_daily.is_dir()  # created by the watcher
        drop(folder / "hero_cdr_20261001.csv", feed(1, 2))
        drop(hero_daily / "export-0001.csv", feed(3))
        wait_until(lambda: loaded_names(app) == {"hero_cdr_20261001.csv", "export-0001.csv"},
                   what="both files loaded")
        stopped_at = time.monotonic()
    assert not runner.thread.is_alive(), "watch did not end after stop was set"
    assert time.monotonic() - stopped_at < 2  # rescan_seconds is 30: stop must not wait for it
    assert runner.error is None
    assert {r.source for p in runner.passes for r in p} == {"drop", "hero-daily"}
    assert sorted(r.name for p in runner.passes for res in p for r in res.received) == [
        "export-0001.csv", "hero_cdr_20261001.csv"]
    # every observer thread is gone
    wait_until(lambda: set(threading.enumerate()) <= threads_before, what="observer threads to end")
    row = next(r for r in rows(app) if r["name"] == "export-0001.csv")
    assert (row["carrier"], row["type"], row["cadence"], row["records_loaded"]) == ("hero", "cdr", "daily", 1)


def test_watch_goes_on_through_a_busy_database_and_a_broken_source(setup, tmp_path, folder, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    other = tmp_path / "other"
    app = setup(source_toml("drop", folder) + source_toml("broken", blocker / "drop")
                + source_toml("other", other))
    import ingest.watch as watch_module

    busy = []

    def load_busy_once(app, **kwargs):
        if not busy:
            busy.append(True)
            raise DatabaseBusy("catalog database busy or unreachable: database is locked")
        return load_queued(app, **kwargs)

    monkeypatch.setattr(watch_module, "load_queued", load_busy_once)
    other.mkdir()
    drop(other / "hero_cdr_20261009.csv", feed(9))
    with Runner(app, sources=["drop", "broken"]) as runner:
        drop(folder / "hero_cdr_20261001.csv", feed(1))
        wait_until(lambda: loaded_names(app) == {"hero_cdr_20261001.csv"}, what="the file loaded")
    assert not runner.thread.is_alive() and runner.error is None
    assert busy, "the busy database was never hit"
    assert any("does not exist" in e for p in runner.passes for r in p if r.source == "broken" for e in r.errors)
    assert (other / "hero_cdr_20261009.csv").exists()  # a source not named is not run


def test_watch_refuses_an_unknown_source_before_starting(setup, folder):
    app = setup(source_toml("drop", folder))
    with pytest.raises(NotFound):
        watch(app, stop=threading.Event(), sources=["nope"])


def test_watch_once_takes_only_files_not_written_for_settle_seconds(setup, tmp_path, folder):
    app = setup(source_toml("drop", folder, settle_seconds=60))
    threads_before = set(threading.enumerate())
    drop(folder / "hero_cdr_20261001.csv", feed(1), age=120)  # finished long ago
    drop(folder / "hero_cdr_20261002.csv", feed(2), age=30)  # past min_age, but written 30 s ago
    drop(folder / "hero_cdr_20261003.csv.part", feed(3), age=120)

    results = watch_once(app)

    assert [(res.source, [r.name for r in res.received]) for res in results] == [("drop", ["hero_cdr_20261001.csv"])]
    assert loaded_names(app) == {"hero_cdr_20261001.csv"}
    assert {p.name for p in folder.iterdir() if p.is_file()} == {"hero_cdr_20261002.csv", "hero_cdr_20261003.csv.part"}
    assert set(threading.enumerate()) <= threads_before  # no observer was started


# -- two watchers on one folder ------------------------------------------------------------------------------


def test_a_file_another_watcher_took_before_this_one_opened_it_is_no_error(setup, collector, folder, caplog):
    config = source_toml("drop", folder, settle_seconds=0)
    app = setup(config)
    slow, fast = collector(app), collector(setup(config))  # each watcher its own App, as a process has
    drop(folder / "hero_cdr_20261001.csv", feed(1))
    real_ready = slow._ready

    def the_other_takes_it_first(*args):
        [taken] = fast.collect().received  # between this watcher's scan and its open
        assert taken.name == "hero_cdr_20261001.csv"
        return real_ready(*args)

    slow._ready = the_other_takes_it_first
    with caplog.at_level(logging.DEBUG, logger="ingest"):
        result = slow.collect()

    assert (result.received, result.errors) == ([], [])
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("taken by another watcher" in r.getMessage() for r in caplog.records)
    assert len(rows(app)) == 1 and (folder / "done" / "hero_cdr_20261001.csv").read_bytes() == feed(1)


def test_a_file_another_watcher_moved_while_this_one_read_it_is_recorded_once_and_no_error(
        setup, collector, folder, caplog):
    config = source_toml("drop", folder, settle_seconds=0)
    app = setup(config)
    slow, fast = collector(app), collector(setup(config))  # each watcher its own App, as a process has
    drop(folder / "hero_cdr_20261001.csv", feed(1))
    real_receive = app.staging.receive

    def the_other_takes_it_meanwhile(stream):
        blob = real_receive(stream)  # read and staged, not yet recorded ...
        [taken] = fast.collect().received  # ... when the other watcher records and moves it
        assert taken.status == "queued"
        return blob

    app.staging.receive = the_other_takes_it_meanwhile
    with caplog.at_level(logging.WARNING):
        result = slow.collect()

    assert (result.received, result.errors) == ([], [])
    assert caplog.records == []
    assert [(r["name"], r["status"]) for r in rows(app)] == [("hero_cdr_20261001.csv", "queued")]
    assert sorted(p.name for p in folder.rglob("*")) == ["done", "hero_cdr_20261001.csv"]


def test_two_watcher_processes_on_one_folder_take_each_file_once_and_warn_of_nothing(setup, folder):
    app = setup(source_toml("drop", folder))
    names = [f"hero_cdr_202610{day:02d}.csv" for day in range(1, 29)]
    for day, name in enumerate(names, start=1):
        drop(folder / name, feed(day), age=120)
    env = {**os.environ, "CDR_CONFIG": str(app.config.path)}
    env.pop("CDR_FAULT", None)
    watchers = [subprocess.Popen([sys.executable, "-m", "ingest.cli", "watch", "--once", "--no-load"], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [watcher.communicate(timeout=120) for watcher in watchers]

    assert [err for _, err in outputs] == ["", ""]  # the watcher that lost a race says nothing of it
    assert [watcher.returncode for watcher in watchers] == [0, 0]
    taken = sorted(line.split()[2].rstrip(":") for out, _ in outputs for line in out.splitlines())
    assert taken == names  # each reported by one watcher only
    assert sorted(r["name"] for r in rows(app)) == names
    assert sorted(p.name for p in (folder / "done").iterdir()) == names and not list(folder.glob("*.csv"))

