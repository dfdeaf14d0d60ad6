"""Shared fixtures. Every test that takes ``app`` (or ``database_url``) runs on SQLite and on PostgreSQL.

PostgreSQL: ``CDR_TEST_POSTGRES_URL`` (default the server on this machine). Each test gets its own schema,
dropped afterwards. Where the server cannot be reached the PostgreSQL cases skip with a loud reason, except
under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from ingest.app import App
from ingest.plugins import load_checked_config as load_config  # what an application runs on: sources checked too

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("CDR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_unreachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5):
            return None
    except Exception as exc:  # any failure to connect is reported as the skip reason
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


@pytest.fixture(scope="session")
def postgres_available():
    reason = _postgres_unreachable()
    if reason is not None:
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable ({reason}): the PostgreSQL half of the suite did NOT run"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return True


def _with_schema(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A new, empty PostgreSQL schema of its own for the block: the URL that uses it; dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin_url = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_schema(POSTGRES_URL, schema)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cdr.sqlite"
        return
    request.getfixturevalue("postgres_available")
    with postgres_schema() as url:
        yield url


@pytest.fixture
def make_config(tmp_path, database_url):
    """Write a configuration for this test (the shipped carriers plus ``extra`` TOML) and return its path."""

    def make(extra: str = "", carriers: bool = True) -> Path:
        path = tmp_path / "cdr.toml"
        include = f'include = ["{REPO}/config/carriers/*.toml"]\n' if carriers else ""
        path.write_text(
            include
            + f'[database]\nurl = "{database_url}"\n[staging]\ndir = "{tmp_path}/staging"\n'
            + extra
        )
        return path

    return make


@pytest.fixture
def app(make_config):
    application = App(load_config(make_config(), env={}), actor="tester")
    yield application
    application.close()


@pytest.fixture
def apps():
    """A list a test appends the Apps it opens to; each is closed afterwards."""
    opened: list[App] = []
    yield opened
    for application in opened:
        application.close()


def app_with(make_config, extra: str) -> App:
    return App(load_config(make_config(extra), env={}), actor="tester")


def catalog_rows(app) -> list[dict]:
    """Every file in the catalog, oldest first."""
    from ingest.catalog import files as catalog_files

    with app.catalog.read() as conn:
        return catalog_files.list_files(conn)


def wait_until(predicate, timeout: float = 20.0, what="a condition"):
    """Poll ``predicate`` every 0.05 s until it returns something truthy; return that, or fail naming
    ``what`` (a text, or a callable giving one at the moment of failure)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(0.05)
