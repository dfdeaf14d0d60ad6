"""Times on PostgreSQL are exact UTC instants whatever time zone the server, database or role works in.

The catalog runs here in a database whose ``timezone`` is Pacific/Auckland (+13 in December), and as a role
whose own setting is Pacific/Pago_Pago (-11). Every write path is taken — the fast COPY load, the slow load of
a released overlap, intake, a billing-feed cursor, the audit trail — and read back in a UTC session.
"""

from __future__ import annotations

import io
import json
import uuid
import zlib
from datetime import datetime, timezone

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import event
from sqlalchemy.engine import make_url

from ingest import admin
from ingest.catalog import cursors
from ingest.cli import cli
from ingest.intake import Origin, receive
from ingest.load import load_queued
from tests.conftest import POSTGRES_URL, _with_schema
from tests.records import record, render

DATABASE = "cdr_far_from_utc"
DATABASE_ZONE = "Pacific/Auckland"
ROLE = "cdr_far_from_utc"
ROLE_ZONE = "Pacific/Pago_Pago"

# Near midnight UTC on New Year's Eve: thirteen hours either way lands on another day, even another year.
CALLS = {1: "2025-12-31T11:00:15Z", 2: "2025-12-31 23:59:59", 3: "2026-01-01T00:00:01+00:00"}


def _conninfo(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _ensure_far_from_utc(admin_url) -> None:
    """Create the database and the role once (idempotent; concurrent test runs take turns)."""
    with psycopg.connect(_conninfo(admin_url), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (zlib.crc32(DATABASE.encode()) - 2**31,))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(f"CREATE DATABASE {DATABASE} TEMPLATE template0")
        conn.execute(f"ALTER DATABASE {DATABASE} SET timezone = '{DATABASE_ZONE}'")
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,)).fetchone():
            conn.execute(f"CREATE ROLE {ROLE} LOGIN")
        conn.execute(f"ALTER ROLE {ROLE} SET timezone = '{ROLE_ZONE}'")


@pytest.fixture(params=["database", "role"])
def setting(request):
    """Where the far time zone is set: on the database, or on the role (which overrides the database's)."""
    return request.param


@pytest.fixture
def database_url(setting, postgres_available):
    """Overrides conftest's: this module runs on PostgreSQL only, in the far-from-UTC database."""
    admin_url = make_url(POSTGRES_URL)
    _ensure_far_from_utc(admin_url)
    far_admin = admin_url.set(database=DATABASE)
    user = ROLE if setting == "role" else admin_url.username
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_conninfo(far_admin), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
    try:
        yield _with_schema(far_admin.set(username=user).render_as_string(hide_password=False), schema)
    finally:
        with psycopg.connect(_conninfo(far_admin), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def in_utc(database_url: str, sql: str) -> list[tuple]:
    """Rows of ``sql`` read in a session of its own, working in UTC (times as aware datetimes)."""
    with psycopg.connect(_conninfo(make_url(database_url)), autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return conn.execute(sql).fetchall()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=timezone.utc)


def upload(app, ids, name):
    rows = [record(i, UTCDateTime=CALLS[i]) for i in ids]
    [got] = receive(app, io.BytesIO(render(rows)), Origin("upload", name, carrier="hero", file_type="cdr"))
    return got


def test_the_test_server_is_really_far_from_utc(database_url, setting):
    """Guards the other tests: without this the database would default to UTC and hide the defect."""
    with psycopg.connect(_conninfo(make_url(database_url))) as conn:
        zone = conn.execute("SHOW TimeZone").fetchone()[0]
    assert zone == (ROLE_ZONE if setting == "role" else DATABASE_ZONE)


def test_the_catalog_session_works_in_utc(app):
    with app.catalog.read() as conn:
        assert conn.exec_driver_sql("SHOW TimeZone").scalar_one() == "UTC"


def load_by_both_paths(app) -> None:
    upload(app, [1, 2], "hero_cdr_20251231.csv")  # intake, then the fast COPY load
    assert [r.status for r in load_queued(app)] == ["loaded"]
    second = upload(app, [2, 3], "hero_cdr_20260101.csv")  # repeats record 2: held as overlap
    assert [r.status for r in load_queued(app)] == ["held"]
    admin.release(app, second.id, reason="record 3 is new")
    assert [(r.status, r.loaded, r.skipped) for r in load_queued(app)] == [("loaded", 1, 1)]  # the slow path


def test_every_write_path_stores_the_exact_utc_instant(app, database_url):
    start = datetime.now(timezone.utc)
    load_by_both_paths(app)
    with app.catalog.write() as conn:
        cursors.advance(conn, "hero-feed", None, 3)
    end = datetime.now(timezone.utc)

    stored = in_utc(database_url, "SELECT CAST(record_key AS INTEGER), start_time FROM calls ORDER BY CAST(record_key AS INTEGER)")
    assert stored == [(i, utc(CALLS[i])) for i in (1, 2, 3)]

    def within_the_test(times) -> bool:
        return all(start <= t <= end for t in times)

    [(received_a, updated_a), (received_b, updated_b)] = in_utc(
        database_url, "SELECT received_at, updated_at FROM files ORDER BY id")
    assert within_the_test([received_a, updated_a, received_b, updated_b])
    events = [at for (at,) in in_utc(database_url, "SELECT at FROM file_events ORDER BY id")]
    assert events and within_the_test(events)
    [(cursor_at,)] = in_utc(database_url, "SELECT updated_at FROM feed_cursors")
    assert within_the_test([cursor_at])


def test_loads_are_exact_even_where_the_session_is_not_in_utc(app, database_url):
    """The times a load writes state their zone: they do not rely on the session's time zone either (a
    transaction-pooling proxy, for one, does not keep a session's SET)."""

    @event.listens_for(app.catalog.engine, "connect")
    def far_from_utc(dbapi_connection, _record):
        dbapi_connection.execute(f"SET TIME ZONE '{DATABASE_ZONE}'")
        dbapi_connection.commit()

    app.catalog.engine.dispose()  # connections opened from here on take the setting
    load_by_both_paths(app)
    stored = in_utc(database_url, "SELECT CAST(record_key AS INTEGER), start_time FROM calls ORDER BY CAST(record_key AS INTEGER)")
    assert stored == [(i, utc(CALLS[i])) for i in (1, 2, 3)]


def test_records_json_shows_the_utc_time(app):
    upload(app, [1], "hero_cdr_20251231.csv")
    load_queued(app)
    result = CliRunner().invoke(cli, ["--config", str(app.config.path), "records", "--json"], catch_exceptions=False)
    [shown] = [json.loads(line) for line in result.stdout.splitlines()]  # JSON Lines: one record a line
    assert shown["start_time"] == "2025-12-31T11:00:15Z"
