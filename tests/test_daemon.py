"""The collector daemon, ``cdr collect`` and ``cdr status``: schedules, backoff, per-source isolation,
restarts that never re-fetch, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from ingest.catalog import sources as source_states
from ingest.cli import cli
from ingest.daemon import RETRY_FIRST, Schedule, retry_at, run_daemon, run_pass
from ingest.errors import ConfigError
from tests.conftest import app_with, wait_until
from tests.conftest import catalog_rows as files
from tests.records import record, render
from tests.remote_contract import put

T0 = datetime(2026, 11, 22, 10, 0, 5, tzinfo=timezone.utc)


def share_source(name, path, **options):
    lines = ["[[sources]]", f'name = "{name}"', 'kind = "directory"', "stable_listings = 1", "jitter_seconds = 0"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    lines += ["[[sources.dirs]]", f'path = "{path}"', 'carrier = "hero"', 'type = "cdr"', 'cadence = "daily"']
    return "\n".join(lines) + "\n"


# -- schedules and backoff ----------------------------------------------------------------------------

def test_interval_schedule_with_bounded_jitter():
    schedule = Schedule.of({"interval_seconds": 600, "jitter_seconds": 30})
    for seed in range(20):
        nxt = schedule.next_after(T0, random.Random(seed))
        assert T0 + timedelta(seconds=600) <= nxt <= T0 + timedelta(seconds=630)


def test_default_schedule_is_fifteen_minutes_with_some_jitter():
    schedule = Schedule.of({})
    assert schedule.interval == 900 and 0 < schedule.jitter <= 60


def test_cron_schedule():
    schedule = Schedule.of({"schedule": "*/15 * * * *", "jitter_seconds": 0})
    assert schedule.next_after(T0) == datetime(2026, 11, 22, 10, 15, tzinfo=timezone.utc)


@pytest.mark.parametrize("options, key", [
    ({"schedule": "every day"}, "schedule"),
    ({"schedule": "* * * * *", "interval_seconds": 60}, "schedule"),
    ({"interval_seconds": 0}, "interval_seconds"),
])
def test_bad_schedules_are_refused(options, key):
    with pytest.raises(ConfigError) as caught:
        Schedule.of(options, "sources.x")
    assert caught.value.key == f"sources.x.{key}"


def test_transient_failures_retry_soon_doubling_but_never_later_than_the_schedule():
    schedule = Schedule(interval=900, jitter=0)
    assert retry_at(schedule, T0, 1, transient=True) == T0 + timedelta(seconds=RETRY_FIRST)
    assert retry_at(schedule, T0, 3, transient=True) == T0 + timedelta(seconds=4 * RETRY_FIRST)
    assert retry_at(schedule, T0, 10, transient=True) == T0 + timedelta(seconds=900)


def test_permanent_failures_wait_at_least_the_schedule_and_back_off_to_six_hours():
    schedule = Schedule(interval=900, jitter=0)
    assert retry_at(schedule, T0, 1, transient=False) == T0 + timedelta(seconds=900)
    assert retry_at(schedule, T0, 8, transient=False) == T0 + timedelta(seconds=RETRY_FIRST * 2 ** 7)
    assert retry_at(schedule, T0, 30, transient=False) == T0 + timedelta(hours=6)
    assert retry_at(schedule, T0, 10_000, transient=False) == T0 + timedelta(hours=6)  # years of failures: no overflow


# -- one pass, its recorded state -----------------------------------------------------------------------

def test_a_pass_records_success_and_a_failure_records_the_error_and_backoff(make_config, tmp_path):
    share = tmp_path / "share"
    put(share / "hero_cdr_20261001.csv", render([record(1)]))
    app = app_with(make_config, share_source("good", share) + share_source("gone", tmp_path / "unmounted"))
    try:
        result, _ = run_pass(app, "good")
        assert len(result.received) == 1
        before = datetime.now(timezone.utc)
        result, next_run = run_pass(app, "gone")
        assert result.errors and not result.failed_permanently
        assert before + timedelta(seconds=RETRY_FIRST - 1) <= next_run <= before + timedelta(seconds=RETRY_FIRST + 5)
        with app.catalog.read() as conn:
            good, gone = source_states.state_of(conn, "good"), source_states.state_of(conn, "gone")
        assert good["files_collected"] == 1 and good["last_success_at"] and good["last_error"] is None
        assert gone["consecutive_failures"] == 1 and "unmounted" in gone["last_error"] and gone["last_success_at"] is None
    finally:
        app.close()


def test_cdr_collect_and_cdr_status(make_config, tmp_path):
    share = tmp_path / "share"
    put(share / "hero_cdr_20261001.csv", render([record(1), record(2)]))
    config = make_config(share_source("hero-share", share))
    runner = CliRunner()
    collected = runner.invoke(cli, ["--config", str(config), "collect"], catch_exceptions=False)
    assert collected.exit_code == 0, collected.output
    assert "hero-share: #1 hero_cdr_20261001.csv: loaded, 2 records" in collected.output
    shown = json.loads(runner.invoke(cli, ["--config", str(config), "status", "--json"]).output)
    [source] = shown["sources"]
    assert (source["source"], source["kind"], source["files_collected"], source["last_error"]) == (
        "hero-share", "directory", 1, None)
    assert source["last_success"].endswith("Z") and source["next_run"] and source["entry_errors"] == []
    assert shown["files"] == {"queued": 0, "held": 0, "failed": 0, "loaded": 1}  # collect loads after
    again = runner.invoke(cli, ["--config", str(config), "collect", "--json"])
    assert json.loads(again.output)[0]["received"] == []


def test_cdr_status_tells_a_failing_source_from_one_that_recovered(make_config, tmp_path):
    share = tmp_path / "share"
    config = make_config(share_source("hero-share", share))
    runner = CliRunner()

    def shown():
        [source] = json.loads(runner.invoke(cli, ["--config", str(config), "status", "--json"]).output)["sources"]
        return source

    assert shown()["state"] == "never run"
    assert runner.invoke(cli, ["--config", str(config), "collect"]).exit_code == 1  # the share is not mounted
    failing = shown()
    assert (failing["state"], failing["failures_in_a_row"]) == ("failing", 1) and "share" in failing["last_error"]
    put(share / "hero_cdr_20261001.csv", render([record(1)]))
    assert runner.invoke(cli, ["--config", str(config), "collect"]).exit_code == 0

    recovered = shown()
    assert (recovered["state"], recovered["failures_in_a_row"]) == ("ok", 0)
    assert recovered["last_error"] == failing["last_error"]  # kept as history, with its time
    assert recovered["last_error_at"] < recovered["last_success"]
    table = runner.invoke(cli, ["--config", str(config), "status"]).output.splitlines()
    [row] = [line for line in table if line.startswith("hero-share ")]
    assert table[0].split()[:3] == ["SOURCE", "KIND", "STATE"] and row.split()[:3] == ["hero-share", "directory", "ok"]


def test_cdr_collect_prints_each_files_final_status_after_loading(make_config, tmp_path):
    share = tmp_path / "share"
    put(share / "hero_cdr_20261001.csv", render([record(1), record(2)]))
    put(share / "hero_cdr_20261002.csv", render([record(1), record(2)]))  # the same content again
    put(share / "hero_cdr_20261003.csv", b"ID,Nonsense\n1,2\n")
    config = make_config(share_source("hero-share", share))
    collected = CliRunner().invoke(cli, ["--config", str(config), "collect"], catch_exceptions=False)
    assert collected.exit_code == 1, collected.output  # a file failed to load
    lines = collected.stdout.splitlines()
    assert lines[:2] == ["hero-share: #1 hero_cdr_20261001.csv: loaded, 2 records",
                         "hero-share: #2 hero_cdr_20261002.csv: held (duplicate-content): "
                         "repeats #1 (hero_cdr_20261001.csv, loaded)"]
    failed = lines[2]
    assert failed.startswith("hero-share: #3 hero_cdr_20261003.csv: failed") and "line 1, field" in failed
    [shown] = json.loads(CliRunner().invoke(cli, ["--config", str(config), "collect", "--json"]).stdout)
    assert shown["received"] == [] and shown["errors"] == [] and shown["entry_errors"] == []


def test_entries_a_pass_could_not_take_are_shown_by_collect_and_status_and_do_not_fail_it(make_config, tmp_path):
    share = tmp_path / "share"
    put(share / "..\\evil.csv", render([record(1)]))
    put(share / "hero_cdr_20261001.csv", render([record(2)]))
    config = make_config(share_source("hero-share", share))
    runner = CliRunner()
    collected = runner.invoke(cli, ["--config", str(config), "collect"], catch_exceptions=False)
    assert collected.exit_code == 0, collected.output
    assert collected.stdout.splitlines() == ["hero-share: #1 hero_cdr_20261001.csv: loaded, 1 records"]
    [refused] = [line for line in collected.stderr.splitlines() if line.startswith("hero-share: not taken: ")]
    assert "evil" in refused and "not a plain file name" in refused
    shown = json.loads(runner.invoke(cli, ["--config", str(config), "status", "--json"]).output)
    [source] = shown["sources"]
    assert (source["last_error"], source["failures_in_a_row"]) == (None, 0)
    assert source["entry_errors"] == [refused.removeprefix("hero-share: not taken: ")]
    assert source["entry_errors_at"] == source["last_success"]
    table = runner.invoke(cli, ["--config", str(config), "status"]).output
    assert refused in table


# -- the daemon -----------------------------------------------------------------------------------------

def test_the_daemon_collects_watches_and_loads_and_one_failing_source_does_not_stop_the_others(make_config, tmp_path):
    share, inbox = tmp_path / "share", tmp_path / "inbox"
    inbox.mkdir()
    extra = (share_source("share", share, interval_seconds=0.2) + share_source("broken", tmp_path / "nowhere", interval_seconds=0.2)
             + f'[[sources]]\nname = "drop"\nkind = "dropfolder"\npath = "{inbox}"\ncarrier = "hero"\ntype = "cdr"\n'
             "min_age_seconds = 0\nsettle_seconds = 0.5\nrescan_seconds = 0.2\n")
    app = app_with(make_config, extra)
    stop = threading.Event()
    daemon = threading.Thread(target=run_daemon, kwargs={"app": app, "stop": stop}, daemon=True)
    try:
        put(share / "hero_cdr_20261001.csv", render([record(1)]))
        daemon.start()
        (inbox / "hero_cdr_20261002.csv").write_bytes(render([record(2)]))
        wait_until(lambda: sorted((f["name"], f["status"]) for f in files(app)) == [
            ("hero_cdr_20261001.csv", "loaded"), ("hero_cdr_20261002.csv", "loaded")],
            what=lambda: f"both files loaded; have {[(f['name'], f['status'], f['error']) for f in files(app)]}")
        with app.catalog.read() as conn:
            wait_until(lambda: (source_states.state_of(conn, "broken") or {}).get("consecutive_failures", 0) >= 1,
                       what="the broken source's failure to be recorded")
        put(share / "hero_cdr_20261003.csv", render([record(3)]))  # still collecting despite "broken"
        wait_until(lambda: len(files(app)) == 3, what="the third file")
    finally:
        stop.set()
        daemon.join(timeout=30)
        app.close()
    assert not daemon.is_alive()


def test_cdr_daemon_stops_cleanly_on_sigterm_and_a_restart_never_fetches_again(make_config, tmp_path):
    share = tmp_path / "share"
    put(share / "hero_cdr_20261001.csv", render([record(i) for i in range(1, 50)]))
    config = make_config(share_source("share", share, interval_seconds=0.3))
    app = app_with(make_config, share_source("share", share, interval_seconds=0.3))
    env = {**os.environ, "CDR_CONFIG": str(config)}
    try:
        for _ in range(2):  # a first run collects and loads; a restart finds nothing new
            proc = subprocess.Popen([sys.executable, "-m", "ingest.cli", "daemon"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                wait_until(lambda: [f["status"] for f in files(app)] == ["loaded"], what="the file loaded")
                with app.catalog.read() as conn:
                    first = source_states.state_of(conn, "share")["last_attempt_at"]
                wait_until(lambda: _attempted_since(app, first), what="another pass")
            finally:
                proc.send_signal(signal.SIGTERM)
                out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
        assert len(files(app)) == 1
    finally:
        app.close()


def _attempted_since(app, moment) -> bool:
    with app.catalog.read() as conn:
        return source_states.state_of(conn, "share")["last_attempt_at"] > moment


def test_the_daemon_collects_every_file_once_from_real_sftp_and_ftps_servers_across_restarts(
        make_config, tmp_path, monkeypatch):
    """`cdr daemon`'s loop against the test servers: an SFTP (asyncssh) and an explicit FTPS (pyftpdlib,
    TLS required on control and data) source; files arriving between two daemon runs; nothing twice."""
    import tests.test_ftp_source as ftp_tests
    import tests.test_sftp_source as sftp_tests
    from tests.sftp_server import SftpServer

    (tmp_path / "s").mkdir()
    (tmp_path / "f").mkdir()
    sftp_root = tmp_path / "s" / "sftp-root"
    sftp_root.mkdir()
    password = "pw-daemon-test"
    with SftpServer(sftp_root, passwords={sftp_tests.USER: password}) as sftp_server:
        sftp = sftp_tests.SftpRemote(sftp_server, tmp_path / "s", monkeypatch, password)
        ftp_server, ftps = ftp_tests._remote(tmp_path / "f", "ftps")
        try:
            daily_s, daily_f = sftp.root / "daily", ftps.root / "daily"
            every = {"stable_listings": 1, "interval_seconds": 0.3, "jitter_seconds": 0}
            extra = (sftp.source_toml("sftp", [{"path": sftp.path(daily_s), "carrier": "hero", "type": "cdr",
                                                "cadence": "daily"}], **every)
                     + ftps.source_toml("ftps", [{"path": ftps.path(daily_f), "carrier": "hero", "type": "cdr",
                                                  "cadence": "daily"}], **every))
            app = app_with(make_config, extra)
            try:
                put(daily_s / "hero_cdr_20261001.csv", render([record(1), record(2)]))
                put(daily_f / "hero_cdr_20261002.csv", render([record(3)]))
                expected = {"hero_cdr_20261001.csv", "hero_cdr_20261002.csv"}
                for run, arrival in enumerate([None, ("s", "hero_cdr_20261003.csv", 4), ("f", "hero_cdr_20261004.csv", 5)]):
                    if arrival:  # a file that arrives while the daemon is down
                        where, name, feed_id = arrival
                        put((daily_s if where == "s" else daily_f) / name, render([record(feed_id)]))
                        expected.add(name)
                    stop = threading.Event()
                    daemon = threading.Thread(target=run_daemon, kwargs={"app": app, "stop": stop}, daemon=True)
                    started = datetime.now(timezone.utc)
                    daemon.start()
                    try:
                        wait_until(lambda: {f["name"] for f in files(app) if f["status"] == "loaded"} == expected,
                                   what=lambda: f"run {run}: {[(f['name'], f['status']) for f in files(app)]}")
                        wait_until(lambda: all(_attempted_after(app, name, started) for name in ("sftp", "ftps")),
                                   what="a further pass of both sources")
                    finally:
                        stop.set()
                        daemon.join(timeout=30)
                    assert not daemon.is_alive()
                    assert sorted(f["name"] for f in files(app)) == sorted(expected)  # nothing fetched twice
                with app.catalog.read() as conn:
                    states = source_states.all_states(conn)
                assert states["sftp"]["files_collected"] == 2 and states["ftps"]["files_collected"] == 2
                assert states["sftp"]["last_error"] is None and states["ftps"]["last_error"] is None
            finally:
                app.close()
        finally:
            ftp_server.stop()


def _attempted_after(app, source: str, moment) -> bool:
    with app.catalog.read() as conn:
        state = source_states.state_of(conn, source)
    return bool(state and state["last_attempt_at"] and state["last_attempt_at"] > moment + timedelta(seconds=0.5))


def test_log_json_writes_one_json_object_per_event_and_never_a_secret(make_config, tmp_path):
    from tests.sftp_server import SftpServer

    secret = "pw-never-logged-7c1e"
    root = tmp_path / "root"
    (root / "daily").mkdir(parents=True)
    with SftpServer(root, passwords={"ops": "the-right-one"}) as server:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(server.known_hosts_line())
        config = make_config(
            '[[sources]]\nname = "sftp"\nkind = "sftp"\nhost = "127.0.0.1"\n'
            f'port = {server.port}\nusername = "ops"\npassword = "${{CDR_TEST_LOG_PW}}"\nknown_hosts = "{known_hosts}"\n'
            f'[[sources.dirs]]\npath = "{server.path(root / "daily")}"\ncarrier = "hero"\n')
        env = {**os.environ, "CDR_CONFIG": str(config), "CDR_TEST_LOG_PW": secret}
        done = subprocess.run([sys.executable, "-m", "ingest.cli", "--log-json", "collect"], env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 1  # the login is refused
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(line.get("event") == "source_failed" and line.get("source") == "sftp" for line in lines)
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    assert secret not in done.stderr + done.stdout


# -- waking the loader, and a clean stop ----------------------------------------------------------------

def _load_rounds(caplog) -> int:
    return sum(1 for r in caplog.records if getattr(r, "event", None) == "load_round")


def test_a_file_taken_by_any_source_wakes_the_loader_at_once(make_config, tmp_path, caplog):
    """The loader's idle poll is an hour here: each file is loaded because the source that took it (a remote
    source, the drop-folder watcher, the SMTP listener) woke the loader."""
    import smtplib

    from tests.interop_servers import free_port
    from tests.test_smtp import carrier_email

    caplog.set_level(logging.INFO, logger="ingest.daemon")
    share, inbox = tmp_path / "share", tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    extra = ("[daemon]\nloader_poll_seconds = 3600\n"
             f'[smtp]\ndomain = "billing.example.com"\nport = {port}\n'
             + share_source("share", share, interval_seconds=0.2)
             + f'[[sources]]\nname = "drop"\nkind = "dropfolder"\npath = "{inbox}"\ncarrier = "hero"\ntype = "cdr"\n'
             "min_age_seconds = 0\nsettle_seconds = 0.5\nrescan_seconds = 0.2\n")
    app = app_with(make_config, extra)

    def mail() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("billing@herotel.example", ["cdrs@billing.example.com"], carrier_email())

    steps = [
        ("a remote source", lambda: put(share / "hero_cdr_20261011.csv", render([record(11)])),
         {"hero_cdr_20261011.csv"}),
        ("the watcher", lambda: (inbox / "hero_cdr_20261012.csv").write_bytes(render([record(12)])),
         {"hero_cdr_20261012.csv"}),
        ("the SMTP listener", mail, {"hero_cdr_20261001.csv", "TC_SDR_202610.csv"}),
        ("a remote source again", lambda: put(share / "hero_cdr_20261013.csv", render([record(13)])),
         {"hero_cdr_20261013.csv"}),
    ]
    stop = threading.Event()
    daemon = threading.Thread(target=run_daemon, kwargs={"app": app, "stop": stop}, daemon=True)
    daemon.start()
    try:
        for what, arrive, names in steps:
            rounds = _load_rounds(caplog)
            arrive()
            wait_until(lambda: names <= {f["name"] for f in files(app) if f["status"] == "loaded"},
                       what=lambda: f"files from {what} loaded; have {[(f['name'], f['status']) for f in files(app)]}")
            # The round that loaded them is over: the loader idles again, until the next source wakes it.
            wait_until(lambda: _load_rounds(caplog) > rounds, what=f"the load round after {what}")
    finally:
        stop.set()
        daemon.join(timeout=60)
        app.close()
    assert not daemon.is_alive()


@pytest.mark.parametrize("drain_seconds, after_stop", [(60, "loaded"), (0, "queued")])
def test_on_sigterm_the_daemon_loads_what_is_queued_within_drain_seconds_then_exits_0(
        make_config, tmp_path, drain_seconds, after_stop):
    from ingest import admin

    extra = f"[daemon]\ndrain_seconds = {drain_seconds}\nloader_poll_seconds = 3600\n"
    config = make_config(extra)
    app = app_with(make_config, extra)
    uploads = tmp_path / "uploads"
    for feed_id in (1, 2, 3):
        put(uploads / f"hero_cdr_2026100{feed_id}.csv", render([record(feed_id)]))
    events: list[str] = []
    try:
        admin.upload(app, uploads / "hero_cdr_20261001.csv", carrier="hero", file_type="cdr")
        proc = subprocess.Popen([sys.executable, "-m", "ingest.cli", "--log-json", "daemon"],
                                env={**os.environ, "CDR_CONFIG": str(config)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        reader = threading.Thread(target=lambda: events.extend(
            json.loads(line).get("event") for line in proc.stderr if line.startswith("{")), daemon=True)
        reader.start()
        try:
            wait_until(lambda: "load_round" in events, what=lambda: f"the first file loaded; events {events}")
            # Queued by another process: nothing wakes the daemon's loader, which idles for an hour.
            for name in ("hero_cdr_20261002.csv", "hero_cdr_20261003.csv"):
                [queued] = admin.upload(app, uploads / name, carrier="hero", file_type="cdr")
                assert queued.status == "queued"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            reader.join(timeout=10)
            proc.stderr.close()
        assert proc.returncode == 0, events
        assert [(f["name"], f["status"]) for f in files(app)] == [
            ("hero_cdr_20261001.csv", "loaded"), ("hero_cdr_20261002.csv", after_stop),
            ("hero_cdr_20261003.csv", after_stop)]
        assert "daemon_drained" in events and "daemon_stopped" in events
    finally:
        app.close()


@pytest.mark.parametrize("daemon_toml, key", [
    ("drain_seconds = -1", "daemon.drain_seconds"),
    ('drain_seconds = "60"', "daemon.drain_seconds"),
    ("loader_poll_seconds = 0", "daemon.loader_poll_seconds"),
    ("drain = 5", "daemon.drain"),
])
def test_the_daemon_section_is_checked(make_config, daemon_toml, key):
    from ingest.config import load_config

    with pytest.raises(ConfigError) as caught:
        load_config(make_config(f"[daemon]\n{daemon_toml}\n"), env={})
    assert caught.value.key == key


def test_the_daemon_section_defaults(app):
    assert (app.config.daemon.drain_seconds, app.config.daemon.loader_poll_seconds) == (60, 5)
