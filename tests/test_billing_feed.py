"""The Billing Feed collector against an HTTP server that behaves as the carriers document
(tests/feed_server.py): cursor paging, POST credentials, the four formats, empty answers, errors and answers
cut short, backfill, the 10-minute floor (retries too), crashes between answer and commit. On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from ingest.catalog import cursors
from ingest.catalog import sources as source_states
from ingest.cli import cli
from ingest.collectors import collector_for
from ingest.plugins import load_checked_config as load_config  # with the collectors' checks of the sources
from ingest.daemon import run_pass
from ingest.errors import ConfigError
from ingest.load import load_queued
from tests.conftest import app_with
from tests.conftest import catalog_rows as files
from tests.feed_server import FeedServer
from tests.records import record

PASSWORD = "Monkey123-feed-secret"
ENV = "CDR_TEST_FEED_PASSWORD"


@pytest.fixture
def feed(monkeypatch):
    monkeypatch.setenv(ENV, PASSWORD)
    with FeedServer(carrier="hero", password=PASSWORD, page_size=2) as server:
        yield server


def feed_toml(server, name="hero-feed", carrier="hero", **options) -> str:
    lines = ["[[sources]]", f'name = "{name}"', 'kind = "billing_feed"', f'url = "{server.url}"', 'login = "81234567"',
             f'password = "${{{ENV}}}"', f'carrier = "{carrier}"', "max_pages = 10", "timeout_seconds = 2"]
    for key, value in options.items():
        lines.append(f"{key} = {value!r}".replace("'", '"').replace("True", "true").replace("False", "false"))
    return "\n".join(lines) + "\n"


def make(make_config, apps, server, **options):
    app = app_with(make_config, feed_toml(server, **options))
    apps.append(app)
    return app, collector_for(app, app.config.source("hero-feed"))


def cursor(app, source="hero-feed"):
    with app.catalog.read() as conn:
        return cursors.cursor_of(conn, source)


def loaded_ids(app):
    from ingest import admin

    return sorted(int(r["carrier_record_id"]) for r in admin.list_records(app, limit=0))


def test_first_run_pages_from_fromid_1_until_an_empty_answer(make_config, apps, feed):
    feed.add(*(record(i) for i in range(101, 106)))
    app, collector = make(make_config, apps, feed)
    result = collector.collect()
    assert result.errors == []
    assert [r["params"]["fromid"] for r in feed.requests] == ["1", "102", "104", "105"]
    assert cursor(app) == 105
    assert [f["name"] for f in files(app)] == ["hero-feed_1-102.csv", "hero-feed_102-104.csv", "hero-feed_104-105.csv"]
    load_queued(app)
    assert loaded_ids(app) == [101, 102, 103, 104, 105]


def test_credentials_go_by_post_never_in_the_url(make_config, apps, feed):
    feed.add(record(1))
    app, collector = make(make_config, apps, feed)
    collector.collect()
    assert all(r["method"] == "POST" and "password" not in r["query"] and r["form"]["password"] == PASSWORD
               for r in feed.requests)
    assert all(PASSWORD not in (f["origin"] or "") for f in files(app))


def test_incremental_runs_take_only_new_records(make_config, apps, feed):
    feed.add(record(11), record(12))
    app, collector = make(make_config, apps, feed)
    collector.collect()
    feed.requests.clear()
    feed.add(record(13))
    collector.collect()
    assert feed.requests[0]["params"]["fromid"] == "12" and cursor(app) == 13
    assert collector.collect().received == []
    load_queued(app)
    assert loaded_ids(app) == [11, 12, 13]


@pytest.mark.parametrize("fmt", ["csv", "txt", "pipe", "json"])
def test_every_format(make_config, apps, feed, fmt):
    feed.add(record(7, Charge="1.2345"), record(8))
    app, collector = make(make_config, apps, feed, format=fmt)
    assert collector.collect().errors == []
    assert all(r["params"]["format"] == fmt for r in feed.requests)
    [result] = load_queued(app)[:1]
    assert result.status == "loaded"
    assert loaded_ids(app) == [7, 8]


def test_a_stopping_feed_queries_no_further_page(make_config, apps, feed):
    feed.add(record(7), record(8))
    app, collector = make(make_config, apps, feed)
    collector.stopping.set()  # the daemon is stopping: the next page waits for the next pass
    assert collector.collect().received == [] and feed.requests == [] and cursor(app) is None
    collector.stopping.clear()
    assert len(collector.collect().received) == 1 and cursor(app) == 8


@pytest.mark.parametrize("fault, fmt, words", [
    ("html", "csv", "HTML page"),
    ("error500", "csv", "HTTP 500"),
    ("garbage", "csv", "does not parse"),
    ("garbage", "json", "not valid JSON, not a JSON array"),
    ("json-object", "json", "JSON (dict), not a JSON array"),
    ("slow", "csv", "no answer within"),
    ("reset", "csv", ""),
    ("error-text", "csv", "answered with an error"),
    ("cut-short", "csv", "cut short"),
    ("cut-short", "json", "cut short"),
    ("chunked-cut", "csv", "cut short"),
    ("reset-mid-body", "csv", "connection failed"),
    ("binary", "csv", "not a delimited or JSON text file"),
    ("surrogate", "json", "not valid Unicode"),
])
def test_an_answer_that_is_not_data_stages_nothing_and_keeps_the_cursor(make_config, apps, feed, fault, fmt, words):
    feed.add(record(11), record(12), record(13))
    app, collector = make(make_config, apps, feed, format=fmt)
    before_files, before_cursor = len(files(app)), cursor(app)
    feed.fault = fault
    feed.slow_seconds = 5
    result = collector.collect()
    assert result.errors and words in result.errors[0] and not result.failed_permanently
    assert (len(files(app)), cursor(app)) == (before_files, before_cursor)
    assert PASSWORD not in result.errors[0]
    feed.fault = None
    assert collector.collect().errors == []
    load_queued(app)
    assert loaded_ids(app) == [11, 12, 13]


@pytest.mark.parametrize("fmt, empty_body", [("csv", b""), ("txt", b"\r\n"), ("pipe", b" \r\n\t\r\n"),
                                             ("csv", None), ("json", None)],
                         ids=["csv-0-bytes", "txt-newline", "pipe-whitespace", "csv-header-only", "json-[]"])
def test_a_caught_up_feed_ends_the_pass_cleanly(make_config, apps, feed, fmt, empty_body):
    """An answer without records (0 bytes, whitespace, a header row alone, ``[]``) is "no new records":
    ``cdr collect`` and ``cdr feed backfill`` exit 0, stage nothing, keep the cursor, and the source is healthy."""
    feed.empty_body = empty_body
    toml = feed_toml(feed, format=fmt)
    config = make_config(toml)
    app = app_with(make_config, toml)
    apps.append(app)
    runner = CliRunner()

    def cdr(*args: str) -> str:
        done = runner.invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
        assert done.exit_code == 0, done.output
        return done.output

    cdr("collect")  # the very first query, before the carrier has any record
    assert (files(app), cursor(app)) == ([], None)
    feed.add(record(11), record(12))
    cdr("collect")
    cdr("collect")
    assert ([f["name"] for f in files(app)], cursor(app)) == ([f"hero-feed_1-12.{fmt}"], 12)
    assert loaded_ids(app) == [11, 12]
    cdr("feed", "backfill", "--source", "hero-feed", "--date", "2026-10-05")  # a day without records
    assert (len(files(app)), cursor(app)) == (1, 12)
    [state] = json.loads(cdr("status", "--json"))["sources"]
    assert (state["last_error"], state["failures_in_a_row"], state["files_collected"]) == (None, 0, 1)
    assert state["last_success"] == state["last_attempt"]


def test_a_failing_feed_is_retried_no_sooner_than_the_carriers_floor(make_config, apps, feed, tmp_path):
    """The carriers' 10 minutes between queries hold for a retry after a transient failure too; other kinds
    keep their quick first retry (30 s)."""
    directory = ('[[sources]]\nname = "share"\nkind = "directory"\n[[sources.dirs]]\n'
                 f'path = "{tmp_path / "unmounted"}"\ncarrier = "hero"\ntype = "cdr"\ncadence = "daily"\n')
    app = app_with(make_config, feed_toml(feed) + directory)
    apps.append(app)
    feed.fault = "error500"
    for source, retry_seconds in (("hero-feed", 600), ("hero-feed", 600), ("share", 30)):
        before = datetime.now(timezone.utc)
        result, _ = run_pass(app, source)
        after = datetime.now(timezone.utc)
        assert result.errors and not result.failed_permanently
        with app.catalog.read() as conn:
            next_run = source_states.state_of(conn, source)["next_run_at"]
        wait = timedelta(seconds=retry_seconds)
        assert before + wait <= next_run <= after + wait, (source, next_run - before)


def test_a_refused_login_is_permanent_and_stages_nothing(make_config, apps, feed, monkeypatch):
    feed.add(record(11))
    monkeypatch.setenv(ENV, "wrong-password")
    app, collector = make(make_config, apps, feed)
    result = collector.collect()
    assert result.failed_permanently and "login refused" in result.errors[0]
    assert "wrong-password" not in result.errors[0]
    assert files(app) == [] and cursor(app) is None


def test_a_crash_between_answer_and_commit_asks_again_from_the_old_cursor(make_config, feed, tmp_path):
    feed.add(record(11), record(12), record(13))
    config = make_config(feed_toml(feed))
    env = {**os.environ, "CDR_CONFIG": str(config), "CDR_FAULT": "intake.before-commit"}
    killed = subprocess.run([sys.executable, "-m", "ingest.cli", "collect", "--no-load"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == 86, killed.stderr
    app = app_with(make_config, feed_toml(feed))
    try:
        assert cursor(app) is None and files(app) == []
        result, _ = run_pass(app, "hero-feed")
        assert result.errors == []
        load_queued(app)
        assert loaded_ids(app) == [11, 12, 13] and cursor(app) == 13
    finally:
        app.close()


def test_backfill_fetches_one_day_or_hour_without_moving_the_cursor(make_config, apps, feed):
    feed.add(record(11, UTCDateTime="2026-10-01 09:00:00"), record(12, UTCDateTime="2026-10-02 09:30:00"),
             record(13, UTCDateTime="2026-10-02 10:15:00"))
    app, collector = make(make_config, apps, feed)
    day = collector.backfill("2026-10-02")
    assert day.errors == [] and cursor(app) is None
    assert all(r["params"].get("date") == "2026-10-02" for r in feed.requests)
    load_queued(app)
    assert loaded_ids(app) == [12, 13]
    hour = collector.backfill("2026-10-01", 9)
    assert hour.errors == [] and feed.requests[-1]["params"].get("hour") == "9"
    load_queued(app)
    assert loaded_ids(app) == [11, 12, 13] and cursor(app) is None


@pytest.mark.parametrize("only, file_type, loaded", [("servicesonly", "sdr", [(12, "sdr")]),
                                                     ("callsonly", "cdr", [(11, "cdr")])])
def test_service_fees_only_are_sdr_records_and_calls_only_cdr_records(make_config, apps, monkeypatch, only,
                                                                      file_type, loaded):
    from ingest import admin

    monkeypatch.setenv(ENV, PASSWORD)
    with FeedServer(carrier="techconnections", password=PASSWORD) as server:
        server.add(record(11), record(12, CallType="Line Rental", BParty="", Seconds="0", UTCDateTime=""))
        app = app_with(make_config, feed_toml(server, carrier="techconnections", **{only: True}))
        apps.append(app)
        collector = collector_for(app, app.config.source("hero-feed"))
        assert collector.collect().errors == []
        assert server.requests[0]["params"][only] == "1"
        [staged] = files(app)
        assert staged["type"] == file_type
        load_queued(app)
        assert [(int(r["carrier_record_id"]), kind) for kind in ("cdr", "sdr")
                for r in admin.list_records(app, record_type=kind)] == loaded


@pytest.mark.parametrize("options, key, reason", [
    ({"interval_seconds": 300}, "interval_seconds", "10 minutes"),
    ({"schedule": "*/5 * * * *"}, "schedule", "10 minutes"),
    ({"callsonly": True, "servicesonly": True}, "servicesonly", "exclude each other"),
])
def test_bad_feed_configuration_is_refused_at_start(make_config, feed, options, key, reason):
    with pytest.raises(ConfigError) as caught:
        load_config(make_config(feed_toml(feed, **options)), env={})
    assert caught.value.key.endswith(key) and reason in caught.value.reason


def test_credentials_never_go_in_clear_to_another_host_nor_inline(make_config, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, PASSWORD)
    base = ('[[sources]]\nname = "f"\nkind = "billing_feed"\nlogin = "1"\ncarrier = "hero"\n')
    with pytest.raises(ConfigError, match="must be https"):
        load_config(make_config(base + f'url = "http://portal.example.net/billingfeed.php"\npassword = "${{{ENV}}}"\n'), env={})
    with pytest.raises(ConfigError, match="not written in the file"):
        load_config(make_config(base + 'url = "https://portal.example.net/billingfeed.php"\npassword = "Monkey123"\n'), env={})
    with pytest.raises(ConfigError, match="no credentials or parameters in the URL"):
        load_config(make_config(base + f'url = "https://portal.example.net/billingfeed.php?login=1&password=x"\npassword = "${{{ENV}}}"\n'), env={})


def test_every_record_exactly_once_across_restarts_and_faults(make_config, feed, caplog):
    """The daemon's pass, again and again, with new records, faults and process restarts in between."""
    first = next_id = 101
    for fault in ([None, "error500", None, "reset", "garbage", None]):
        app = app_with(make_config, feed_toml(feed))  # a restart every round
        try:
            feed.add(*(record(next_id + i) for i in range(3)))
            next_id += 3
            feed.fault = fault
            run_pass(app, "hero-feed")
            feed.fault = None
            load_queued(app)
        finally:
            app.close()
    app = app_with(make_config, feed_toml(feed))
    try:
        run_pass(app, "hero-feed")
        load_queued(app)
        assert loaded_ids(app) == list(range(first, next_id))
        assert all(f["status"] == "loaded" for f in files(app))
    finally:
        app.close()
    assert PASSWORD not in caplog.text


def test_cdr_feed_backfill_command(make_config, feed):
    feed.add(record(11, UTCDateTime="2026-10-02 09:30:00"), record(12, UTCDateTime="2026-10-03 09:30:00"))
    config = make_config(feed_toml(feed))
    runner = CliRunner()
    done = runner.invoke(cli, ["--config", str(config), "feed", "backfill", "--source", "hero-feed",
                               "--date", "2026-10-02"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "hero-feed_2026-10-02_1-11.csv: loaded, 1 records" in done.stdout  # its final status, after loading
    bad = runner.invoke(cli, ["--config", str(config), "feed", "backfill", "--source", "hero-feed", "--date", "2026-13-40"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
    app = app_with(make_config, feed_toml(feed))
    try:
        assert loaded_ids(app) == [11] and cursor(app) is None
    finally:
        app.close()
