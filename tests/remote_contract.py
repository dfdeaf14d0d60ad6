"""The remote-collector contract, as one abstract suite. Each transport's test module subclasses
:class:`RemoteContract` and provides a ``remote`` fixture: an object with

- ``root``: a local folder the server serves (tests put files there and age them with ``os.utime``);
- ``source_toml(name, dirs, **options) -> str``: a ``[[sources]]`` entry for this server, whose ``dirs``
  are paths as the server shows them (``remote.path(local_dir)`` converts).
- ``path(local: Path) -> str``: the server's path for a local folder under ``root``.
- ``denied(local: Path)``: a context manager in which the server refuses to open that file (it still lists it).

Everything else (listing, stability, remote state, after-actions, name safety) is the same for every
protocol, and is shown here once.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ingest.catalog import files as catalog_files
from ingest.catalog import sources as source_states
from ingest.collectors import collector_for
from ingest.daemon import run_pass
from ingest.schedule import DEFAULT_INTERVAL
from tests.conftest import app_with
from tests.records import record, render

OLD = time.time() - 3600


def put(path: Path, data: bytes, mtime: float = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def dirs_toml(dirs: list[dict]) -> str:
    out = []
    for entry in dirs:
        out.append("[[sources.dirs]]")
        out += [f"{key} = {json.dumps(value)}" for key, value in entry.items()]
    return "\n".join(out) + "\n"


def make_remote_source(make_config, remote, apps: list, dirs=None, **options):
    """An app with source "remote" over ``remote`` (default: its daily/ folder, Hero daily CDRs) and its
    collector; the app is appended to ``apps`` to be closed."""
    daily = remote.root / "daily"
    daily.mkdir(parents=True, exist_ok=True)
    dirs = dirs or [{"path": remote.path(daily), "carrier": "hero", "type": "cdr", "cadence": "daily"}]
    app = app_with(make_config, remote.source_toml("remote", dirs, **options))
    apps.append(app)
    return app, collector_for(app, app.config.source("remote"))


class RemoteContract:
    """Subclass with a ``remote`` fixture (see the module docstring)."""

    def make(self, make_config, remote, dirs=None, **options):
        return make_remote_source(make_config, remote, self._apps, dirs, **options)

    def setup_method(self):
        self._apps = []

    def teardown_method(self):
        for app in self._apps:
            app.close()

    @staticmethod
    def files(app):
        with app.catalog.read() as conn:
            return catalog_files.list_files(conn)

    # -- taking files -------------------------------------------------------------------------------

    def test_a_stable_file_is_taken_on_the_second_listing_and_never_again(self, make_config, remote):
        app, collector = self.make(make_config, remote)
        data = render([record(1), record(2)])
        put(remote.root / "daily" / "hero_cdr_20261001.csv", data)
        first = collector.collect()
        assert first.errors == [] and first.received == []  # seen once: maybe still being written
        second = collector.collect()
        assert [r.name for r in second.received] == ["hero_cdr_20261001.csv"] and second.errors == []
        assert collector.collect().received == []
        [stored] = self.files(app)
        assert (stored["carrier"], stored["type"], stored["cadence"], stored["status"]) == ("hero", "cdr", "daily", "queued")
        assert app.staging.path_of(stored["blob"]).read_bytes() == data
        assert "hero_cdr_20261001.csv" in stored["origin"]

    def test_with_one_listing_a_file_is_taken_at_first_sight(self, make_config, remote):
        app, collector = self.make(make_config, remote, stable_listings=1)
        put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
        assert len(collector.collect().received) == 1

    def test_a_file_younger_than_min_age_waits(self, make_config, remote):
        app, collector = self.make(make_config, remote, stable_listings=1, min_age_seconds=600)
        path = put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]), mtime=time.time())
        assert collector.collect().received == []
        os.utime(path, (OLD, OLD))
        assert len(collector.collect().received) == 1

    def test_a_file_growing_between_listings_is_not_taken_until_it_stops(self, make_config, remote):
        app, collector = self.make(make_config, remote)
        path = put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
        collector.collect()
        put(path, render([record(1), record(2)]), mtime=OLD + 10)  # grew since the first listing
        assert collector.collect().received == []
        [got] = collector.collect().received
        [stored] = self.files(app)
        assert stored["size"] == len(render([record(1), record(2)]))

    def test_a_collected_file_that_changes_is_fetched_again(self, make_config, remote):
        app, collector = self.make(make_config, remote, stable_listings=1)
        path = put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
        collector.collect()
        put(path, render([record(1), record(2)]), mtime=OLD + 60)
        [again] = collector.collect().received
        assert again.status == "queued"  # new content; hero has no same-name rule
        os.utime(path, (OLD + 120, OLD + 120))  # touched, same bytes
        [touched] = collector.collect().received
        assert (touched.status, touched.reason) == ("held", "duplicate-content")

    def test_partial_and_hidden_names_are_never_taken(self, make_config, remote):
        app, collector = self.make(make_config, remote, stable_listings=1)
        for name in (".hero_cdr_20261001.csv", "hero_cdr_20261002.csv.part", "hero_cdr_20261003.csv.tmp"):
            put(remote.root / "daily" / name, render([record(1)]))
        assert collector.collect().received == [] and self.files(app) == []

    def test_include_and_exclude_patterns(self, make_config, remote):
        daily = remote.root / "daily"
        dirs = [{"path": remote.path(daily), "carrier": "hero", "type": "cdr", "cadence": "daily",
                 "include": ["*.csv"], "exclude": ["*test*"]}]
        app, collector = self.make(make_config, remote, dirs=dirs, stable_listings=1)
        put(daily / "hero_cdr_20261001.csv", render([record(1)]))
        put(daily / "hero_cdr_20261002_test.csv", render([record(2)]))
        put(daily / "readme.txt", b"hello")
        assert [r.name for r in collector.collect().received] == ["hero_cdr_20261001.csv"]

    def test_daily_and_monthly_directories_land_with_their_cadence(self, make_config, remote):
        daily, monthly = remote.root / "daily", remote.root / "monthly"
        monthly.mkdir(parents=True, exist_ok=True)
        dirs = [{"path": remote.path(daily), "carrier": "hero", "type": "cdr", "cadence": "daily"},
                {"path": remote.path(monthly), "carrier": "hero", "type": "sdr", "cadence": "monthly"}]
        app, collector = self.make(make_config, remote, dirs=dirs, stable_listings=1)
        put(daily / "a.csv", render([record(1)]))
        put(monthly / "b.csv", render([record(2)]))
        collector.collect()
        got = {f["name"]: (f["type"], f["cadence"]) for f in self.files(app)}
        assert got == {"a.csv": ("cdr", "daily"), "b.csv": ("sdr", "monthly")}

    def test_remote_state_survives_a_restart(self, make_config, remote):
        app, collector = self.make(make_config, remote, stable_listings=1)
        put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
        assert len(collector.collect().received) == 1
        collector.close()
        again_app, again = self.make(make_config, remote, stable_listings=1)
        assert again.collect().received == []
        assert len(self.files(again_app)) == 1

    def test_after_delete_removes_the_remote_file(self, make_config, remote):
        app, collector = self.make(make_config, remote, stable_listings=1, after="delete")
        path = put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
        assert len(collector.collect().received) == 1
        assert not path.exists()

    def test_after_move_moves_the_remote_file(self, make_config, remote):
        done = remote.root / "processed"
        done.mkdir(parents=True, exist_ok=True)
        app, collector = self.make(make_config, remote, stable_listings=1, after="move", move_to=remote.path(done))
        path = put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
        assert len(collector.collect().received) == 1
        assert not path.exists() and (done / "hero_cdr_20261001.csv").exists()
        assert collector.collect().received == []

    def test_after_keep_leaves_the_remote_file(self, make_config, remote):
        app, collector = self.make(make_config, remote, stable_listings=1)
        path = put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
        collector.collect()
        assert path.exists()

    def test_names_that_are_not_plain_file_names_are_refused_and_reported(self, make_config, remote):
        app, collector = self.make(make_config, remote, stable_listings=1)
        put(remote.root / "daily" / "bad\\name.csv", render([record(1)]))
        put(remote.root / "daily" / "..\\evil.csv", render([record(3)]))
        put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(2)]))
        result = collector.collect()
        assert [r.name for r in result.received] == ["hero_cdr_20261001.csv"] and result.errors == []
        assert any("not a plain file name" in error and "bad" in error for error in result.entry_errors)
        assert any("not a plain file name" in error and "evil" in error for error in result.entry_errors)

    def test_a_stopping_collector_takes_no_further_file(self, make_config, remote):
        app, collector = self.make(make_config, remote, stable_listings=1)
        put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))
        collector.stopping.set()  # the daemon is stopping: the file waits for the next pass
        assert collector.collect().received == [] and self.files(app) == []
        collector.stopping.clear()
        assert len(collector.collect().received) == 1

    # -- one bad entry fails that entry, never the source ----------------------------------------------

    @staticmethod
    def passed_with_entry_errors(app, started: datetime, next_run: datetime) -> list[str]:
        """Assert the last pass of "remote" was recorded as a success on its regular schedule (no failure,
        no retry 30 s later); return the entry errors ``cdr status`` shows for it."""
        with app.catalog.read() as conn:
            state = source_states.state_of(conn, "remote")
            [shown] = source_states.overview(conn, app.config.sources)
        assert (state["consecutive_failures"], state["last_error"]) == (0, None)
        assert state["last_success_at"] == state["last_attempt_at"]
        assert next_run >= started + timedelta(seconds=DEFAULT_INTERVAL)
        assert bool(shown["entry_errors"]) == (shown["entry_errors_at"] is not None)
        return shown["entry_errors"]

    def test_a_refused_name_fails_that_entry_and_the_pass_still_succeeds(self, make_config, remote):
        app, _ = self.make(make_config, remote, stable_listings=1)
        evil = put(remote.root / "daily" / "..\\evil.csv", render([record(1)]))
        put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(2)]))
        for expected in (["hero_cdr_20261001.csv"], []):  # refused again while it is there, never a failure
            started = datetime.now(timezone.utc)
            result, next_run = run_pass(app, "remote")
            assert [r.name for r in result.received] == expected and result.errors == []
            [refused] = self.passed_with_entry_errors(app, started, next_run)
            assert result.entry_errors == [refused] and "not a plain file name" in refused and "evil" in refused
        evil.unlink()
        started = datetime.now(timezone.utc)
        result, next_run = run_pass(app, "remote")
        assert result.entry_errors == [] and self.passed_with_entry_errors(app, started, next_run) == []

    def test_a_file_that_cannot_be_opened_fails_that_entry_and_the_others_are_taken(self, make_config, remote):
        app, _ = self.make(make_config, remote, stable_listings=1)
        locked = put(remote.root / "daily" / "hero_cdr_20261001.csv", render([record(1)]))  # listed first
        put(remote.root / "daily" / "hero_cdr_20261002.csv", render([record(2)]))
        started = datetime.now(timezone.utc)
        with remote.denied(locked):
            result, next_run = run_pass(app, "remote")
        assert [r.name for r in result.received] == ["hero_cdr_20261002.csv"] and result.errors == []
        [refused] = self.passed_with_entry_errors(app, started, next_run)
        assert result.entry_errors == [refused] and "hero_cdr_20261001.csv" in refused
        started = datetime.now(timezone.utc)
        result, next_run = run_pass(app, "remote")  # readable again: taken, and nothing is reported any more
        assert [r.name for r in result.received] == ["hero_cdr_20261001.csv"]
        assert self.passed_with_entry_errors(app, started, next_run) == []
