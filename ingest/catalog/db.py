"""The catalog database: engine set-up, migrations on first use, and transactions.

Every change of state goes through :meth:`Catalog.write`, one database transaction. On SQLite that
transaction is ``BEGIN IMMEDIATE`` (the write lock is taken at the start, so two writers never both read
"no duplicate" and both insert); on PostgreSQL a caller that needs the same guarantee takes
:meth:`Catalog.serialize` inside it, a transaction-scoped advisory lock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Connection, Table, create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.pool import NullPool

from ..errors import DatabaseBusy, PermanentError

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest migration. Checked against migrations/versions by the test suite; lets a process that finds the
# schema current skip loading Alembic at all.
HEAD_REVISION = "0012"
# How long a SQLite writer waits for another to finish before giving up (as a transient error).
SQLITE_BUSY_SECONDS = 60


# The catalog speaks SQLite (the standard library's sqlite3) and PostgreSQL (psycopg 3), nothing else.
SUPPORTED_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")


class DatabaseUrlError(PermanentError):
    """A database URL the catalog cannot use: unparsable, an unsupported driver, or a SQLite file in a folder
    that does not exist. The message is one line and never shows the password."""


def parse_database_url(url: str) -> URL:
    """The URL, normalised (``postgresql://`` and ``postgres://`` mean psycopg 3); raises DatabaseUrlError
    when it is unparsable or names a driver the catalog does not speak."""
    try:
        parsed = make_url(url)
    except Exception:  # SQLAlchemy's ArgumentError, or a ValueError for a bad port: one line, no URL echoed
        raise DatabaseUrlError("cannot parse the database URL (expected sqlite:///PATH or "
                               "postgresql://USER@HOST/DBNAME)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise DatabaseUrlError(f"unsupported database driver {parsed.drivername!r} in "
                               f"{parsed.render_as_string(hide_password=True)} (use sqlite:///PATH or "
                               "postgresql://USER@HOST/DBNAME)")
    return parsed


def sqlite_file(parsed: URL) -> Path | None:
    """The file of a SQLite URL; None for PostgreSQL or an in-memory database."""
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def check_database_url(url: str, create_folder: bool = False) -> str:
    """The normalised URL, checked without connecting: parsable, a supported driver and, for SQLite, a file
    whose folder exists. That folder is created only when ``create_folder`` says the configuration's own
    layout names it (a path relative to the configuration file, as ``cdr init`` writes); a URL pointing into
    a missing folder is refused, so a typo never starts an empty catalog somewhere unexpected."""
    parsed = parse_database_url(url)
    path = sqlite_file(parsed)
    if path is not None and path.is_dir():
        raise DatabaseUrlError(f"the SQLite database {path} is a folder, not a file")
    if path is not None and not path.parent.is_dir():
        if not create_folder or path.parent.exists():
            raise DatabaseUrlError(f"the folder of the SQLite database {path} does not exist "
                                   "(create it, or point the URL at an existing folder)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUrlError(f"cannot create the folder of the SQLite database {path}: {exc.strerror}") from None
    return parsed.render_as_string(hide_password=False)


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's own default would be psycopg2)."""
    return parse_database_url(url).render_as_string(hide_password=False)


def describe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def make_engine(url: str, create_folder: bool = False) -> Engine:
    """An engine for a checked URL (see :func:`check_database_url`; ``create_folder`` as there)."""
    url = check_database_url(url, create_folder)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # NullPool: a connection per use, so no idle connection holds the file across a fork or an ATTACH.
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_SECONDS})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):
            # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            # Takes effect only when the file is created: 8 KiB pages cut a bulk load's time by a quarter
            # (measured: 1M records 3.4 s -> 2.4 s) against the 4 KiB default.
            cursor.execute("PRAGMA page_size=8192")
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            write = conn.get_execution_options().get("cdr_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "connect")
    def _postgres_connect(dbapi_connection, _record):
        # Whatever the server, database or role says: the session works in UTC, so that anything the server
        # turns into or reads from zone-less text (a COPY, a cast, a date of a timestamptz) means UTC, as the
        # catalog's times do.
        dbapi_connection.execute("SET TIME ZONE 'UTC'")
        dbapi_connection.commit()

    return engine


def _switch_to_wal(cursor, budget_seconds: float = SQLITE_BUSY_SECONDS) -> None:
    """Put the database in WAL mode. Only a new file needs switching, and two processes creating it together
    race for that: the switch does not wait on SQLite's busy handler, so it is retried here."""
    deadline = time.monotonic() + budget_seconds
    delay = 0.01
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)  # another process holds the new file; back off and look again
            delay = min(delay * 2, 0.5)


class SharedExclusiveLock:
    """Many holders in shared mode, or one in exclusive mode; per process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._local = threading.local()

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._shared += 1
        self._local.shared = getattr(self._local, "shared", 0) + 1
        try:
            yield
        finally:
            self._local.shared -= 1
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        if getattr(self._local, "shared", 0):
            raise RuntimeError("exclusive catalog access requested while this thread holds a connection")
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


_FILE_LOCKS: dict[str, SharedExclusiveLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _lock_for(path: str | None) -> SharedExclusiveLock:
    """One lock per database file per process, however many Catalog objects point at it."""
    key = os.path.realpath(path) if path and path != ":memory:" else f"memory:{id(object())}"
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, SharedExclusiveLock())


class Catalog:
    """Owns the engine. ``Catalog(url)`` creates or upgrades the schema on first use.

    On SQLite every connection of this process is opened through :meth:`connect`, under a shared lock, so
    that the bulk loader can take :meth:`exclusive` access and write the file through ADBC's own SQLite
    library: two SQLite libraries in one process must never have the same file open at once (their POSIX
    locks would not see each other).
    """

    def __init__(self, url: str, migrate: bool = True, create_folder: bool = False):
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, create_folder)
        self.dialect = self.engine.dialect.name
        self._access = _lock_for(make_url(self.url).database) if self.is_sqlite else SharedExclusiveLock()
        if migrate:
            self._first_use()

    def _first_use(self) -> None:
        """Migrate; a SQLite file that cannot be opened as a database (not a database, unwritable) is refused in
        one line, like a bad URL, rather than surfacing as a driver traceback."""
        try:
            self.migrate()
        except DBAPIError as exc:
            if not self.is_sqlite or is_transient_db_error(exc):
                raise
            raise DatabaseUrlError(f"cannot use the SQLite database {self.sqlite_path}: {first_line(exc.orig)}") from None

    @property
    def sqlite_path(self) -> str | None:
        return make_url(self.url).database if self.is_sqlite else None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection of this process's engine (under the shared lock on SQLite)."""
        if not self.is_sqlite:
            with self.engine.connect() as conn:
                yield conn
            return
        with self._access.shared(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """No connection of this process is open on the catalog while this is held (SQLite)."""
        with self._access.exclusive():
            yield

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def current_revision(self) -> str | None:
        with self.mapped_errors(), self.connect() as conn:
            try:
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
            except (OperationalError, ProgrammingError) as exc:
                if "no such table" in str(exc) or "does not exist" in str(exc):
                    return None  # a new database
                raise

    def migrate(self) -> None:
        """Bring the schema to the newest revision (creating it on an empty database)."""
        if self.current_revision() == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.mapped_errors(), self.connect() as conn:
            # Two processes starting together must not both create the schema: on SQLite the migration's
            # transaction takes the write lock first (BEGIN IMMEDIATE, waiting its turn); on PostgreSQL an
            # advisory lock does.
            conn = conn.execution_options(cdr_write=True)
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _lock_key("cdr-migrate")})
            try:
                cfg.attributes["connection"] = conn
                if self._is_empty(conn):
                    self._create(conn)
                    command.stamp(cfg, "head")
                else:
                    command.upgrade(cfg, "head")
                conn.commit()
            except BaseException:
                # A migration that refused or failed leaves nothing half-done: its transaction is rolled back
                # before the unlock below, which would otherwise commit it (or, on an aborted PostgreSQL
                # transaction, fail and hide the migration's own error).
                conn.rollback()
                raise
            finally:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key("cdr-migrate")})
                    conn.commit()

    @staticmethod
    def _is_empty(conn: Connection) -> bool:
        """No table of ours and no revision: a new database (a PostgreSQL schema may hold others' tables)."""
        from sqlalchemy import inspect

        return not (set(inspect(conn).get_table_names()) & {"alembic_version", "files"})

    def _create(self, conn: Connection) -> None:
        """A new database's schema as the migrations leave it, made at once from the models (``schema.py``)
        rather than revision by revision: what every migration would build, in a fraction of the time (a test
        suite makes thousands of catalogs). The models state it, but for what the migrations do alone: the views
        that name ``extra``'s values (0012); and on PostgreSQL, the calls' ids have no primary key, only a BRIN
        index (migration 0009), and the record tables' id sequences are cached (0011). A test checks that a
        created catalog and a migrated one are the same."""
        from .schema import RECORD_ID_CACHE, RECORD_TABLES, metadata, named_extra_views

        metadata.create_all(conn)
        for statement in named_extra_views(conn.dialect.name):
            conn.execute(text(statement))
        if not self.is_sqlite:
            conn.execute(text("ALTER TABLE calls DROP CONSTRAINT pk_calls"))
            for table in RECORD_TABLES.values():
                conn.execute(text(f"ALTER SEQUENCE {table.name}_id_seq CACHE {RECORD_ID_CACHE}"))

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        with self.mapped_errors(), self.connect() as conn:
            conn = conn.execution_options(cdr_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only snapshot."""
        with self.mapped_errors(), self.connect() as conn:
            with conn.begin():
                yield conn

    def serialize(self, conn: Connection, name: str) -> None:
        """Within a write transaction: wait until no other transaction holds ``name``, then hold it to the end.

        SQLite's BEGIN IMMEDIATE already serialises every writer, so this is for PostgreSQL.
        """
        if not self.is_sqlite:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(name)})

    @contextmanager
    def mapped_errors(self) -> Iterator[None]:
        """Map driver errors, once, into the project's hierarchy: locked/unreachable is transient."""
        try:
            yield
        except OperationalError as exc:
            if is_transient_db_error(exc):
                raise DatabaseBusy(f"catalog database busy or unreachable: {first_line(exc.orig)}") from exc
            raise

    def dispose(self) -> None:
        self.engine.dispose()


def is_transient_db_error(exc: DBAPIError) -> bool:
    """Whether retrying later, unchanged, may succeed. SQLite: the database is locked or busy. PostgreSQL: the
    connection was lost, or psycopg raised an OperationalError (or a subclass: a lock not available, a
    serialization failure or deadlock, the server shutting down or short of resources), which it raises for the
    server's state, never for the data."""
    orig = exc.orig
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in str(orig) or "busy" in str(orig)
    return bool(getattr(exc, "connection_invalidated", False)) or isinstance(exc, OperationalError)


def _lock_key(name: str) -> int:
    # A stable signed 32-bit key for pg_advisory locks.
    return zlib.crc32(name.encode()) - 2**31


# Rows a streamed query fetches at a time (a server-side cursor's FETCH on PostgreSQL, fetchmany on SQLite).
STREAM_CHUNK = 2000


def stream(conn: Connection, query, chunk: int = STREAM_CHUNK):
    """The rows of ``query``, fetched ``chunk`` at a time as they are iterated, never all at once: a server-side
    cursor on PostgreSQL (inside the connection's transaction), SQLite's stepping cursor. The query runs now (an
    error is raised before any row is used); iterate the result inside the connection's block."""
    return conn.execute(query, execution_options={"stream_results": True, "yield_per": chunk})


def fresh_temp_table(conn: Connection, table: "Table") -> "Table":
    """``table`` (declared TEMPORARY) created anew in ``conn``'s transaction, empty: dropped first if the
    connection still has it (SQLite keeps a connection's temporary tables after a commit, and a pooled connection
    may come back with one). :func:`drop_temp_table` drops it when done."""
    drop_temp_table(conn, table)
    table.create(conn)
    return table


def drop_temp_table(conn: Connection, table: "Table") -> None:
    """Drop the connection's temporary ``table`` if it has one (never a permanent table of the same name: the
    name is qualified by the connection's temporary schema)."""
    schema = "temp" if conn.dialect.name == "sqlite" else "pg_temp"
    conn.execute(text(f"DROP TABLE IF EXISTS {schema}.{table.name}"))


def first_line(exc: object) -> str:
    """An error's message as one line: its first (driver messages add DETAIL and CONTEXT lines)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


__all__ = ["Catalog", "DatabaseUrlError", "PermanentError", "check_database_url", "describe_url",
           "first_line", "make_engine", "normalise_url", "stream"]
