"""Loading: a queued file's records into the ``records`` table, all or nothing, each record once.

How a file loads (``load_file``):

1. Its staged bytes are streamed through the carrier's parser into Arrow batches, already validated,
   parsed a few batches ahead in a thread. A bad record fails the whole file (``failed``, the error naming
   line and field); nothing is loaded.
2. Fast path, one transaction: the batches go straight into ``records`` (SQLite: through ADBC, with this
   process's other catalog connections held off, since ADBC carries its own SQLite library; PostgreSQL:
   COPY under a savepoint), and the file is marked ``loaded`` with its counts and audited.
3. Slow path, when a key collides or the file was released: the batches are parsed again into a scratch
   table (an ADBC-written file attached to the catalog; a TEMP table) and moved set-based.

Every record is unique by carrier and key (the carrier's ID, ``feed_id``; or, for layouts without one, a
``record_key`` hash). The insert is optimistic: if it collides, nothing is kept
and the file is analysed instead: keys repeated inside the file fail it; keys already loaded from other
files hold it as ``overlap`` (how many, and from which files). A file an admin released loads only the
records not loaded before, and records how many it skipped.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, NoReturn

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from carriers import CANONICAL, CANONICAL_NAMES, CANONICAL_SCHEMA, Parser, Source, parser_for

from . import faults
from .app import App
from .catalog import files as catalog_files
from .catalog.db import SQLITE_BUSY_SECONDS, first_line
from .errors import CdrError, DatabaseBusy, InvalidState, NotText, ParseError, TransientError
from .staging import OnProgress, ProgressFactory, ProgressReader
from .logs import file_event

log = logging.getLogger(__name__)

SCRATCH = "cdr_scratch"
BATCH_ROWS = 65536
UTC_COLUMNS = tuple(name for name, kind in CANONICAL if kind == "utc")


@dataclass(frozen=True)
class LoadResult:
    file_id: int
    status: str  # loaded | failed | held | ignored (not text) | skipped (no longer queued) | queued (transient error)
    loaded: int = 0
    skipped: int = 0
    message: str | None = None


def load_queued(app: App, *, actor: str | None = None, limit: int | None = None, after: int = 0,
                progress: ProgressFactory | None = None) -> list[LoadResult]:
    """Load every queued file (with an id above ``after``), oldest first (each reported to ``progress``, see
    :func:`load_file`). No file stops the others: one that fails is ``failed``, and one that a transient error
    stopped stays ``queued`` (its result says why) for the next pass."""
    app.staging.sweep()
    with app.catalog.read() as conn:
        ids = catalog_files.queued_ids(conn, limit, after)
    results = []
    for file_id in ids:
        try:
            results.append(load_file(app, file_id, actor=actor, progress=progress))
        except TransientError as exc:
            log.warning("load postponed: %s", exc)
            results.append(LoadResult(file_id, "queued", message=str(exc)))
    return results


def prefetched(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Parse ahead in a thread while the consumer writes: Arrow's reader and compute kernels and the
    database drivers release the GIL, so parsing and inserting share the cores. Errors (a ParseError
    included) are re-raised in the consumer, in order."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(item) -> bool:
        """Hand ``item`` to the consumer; False once it has stopped listening (never blocks past that)."""
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not offer(batch):
                    return
            offer(done)
        except BaseException as exc:  # handed to the consumer
            offer(exc)

    worker = threading.Thread(target=produce, name="cdr-parse", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        # An abandoned generator may be finalised by the garbage collector on any thread, the worker's included.
        if threading.current_thread() is not worker:
            worker.join(timeout=30)


def load_file(app: App, file_id: int, *, actor: str | None = None,
              progress: ProgressFactory | None = None) -> LoadResult:
    """Load one queued file. Whatever goes wrong with the file is its result: ``failed`` with the error (a bad
    record, unreadable bytes, or anything unexpected), or ``skipped`` if it is no longer queued. Only a
    transient error (the database busy or unreachable) is raised, as a ``TransientError`` naming the file,
    which stays queued. ``progress`` is told of the load as task "loading #12 NAME" of the file's
    (decompressed) size: the bytes its parser has read and the rows handed to the database, once per batch
    (a slow-path load, which parses the file again, reports from 0 again)."""
    actor = actor or app.actor
    with app.catalog.read() as conn:
        row = catalog_files.get_file(conn, file_id)
    if row["status"] != "queued":
        return LoadResult(file_id, "skipped", message=f"file {file_id} is {row['status']}, not queued")
    on_progress = progress(f"loading #{row['id']} {row['name']}", row["size"]) if progress else None
    result = _load_queued_row(app, row, actor, on_progress)
    _log_outcome(row, result)
    return result


def _log_outcome(row: dict, result: LoadResult) -> None:
    """One log line for what loading decided, once it is committed: loaded (records, skipped), held (overlap:
    how many, from which files), failed (the error names line and field), ignored (not text)."""
    if result.status == "loaded":
        file_event(log, "file_loaded", row["id"], row["name"], row["source"],
                   f"loaded, {result.loaded} records"
                   + (f", {result.skipped} skipped as already loaded" if result.skipped else ""),
                   records=result.loaded, skipped=result.skipped)
    elif result.status in ("held", "failed", "ignored"):
        reason = "overlap" if result.status == "held" else None
        file_event(log, f"file_{result.status}", row["id"], row["name"], row["source"],
                   f"{result.status}{f' ({reason})' if reason else ''}: {result.message}", reason=reason,
                   error=result.message)


def _load_queued_row(app: App, row: dict, actor: str, on_progress: OnProgress | None = None) -> LoadResult:
    """:func:`load_file` of a file read as queued."""
    file_id = row["id"]
    where = _label(row)
    try:
        with app.catalog.mapped_errors():
            parser = parser_for(app.config.carrier(row["carrier"]))
            source = _in_its_format(app, row, parser, actor)
            parse = lambda: prefetched(parser.batches(source))  # noqa: E731 - parsed again only on the slow path
            if on_progress is not None:
                parse = _Reported(on_progress).parsing(source, parser)
            if app.catalog.is_sqlite:
                return _load_sqlite(app, row, parse, actor)
            return _load_postgres(app, row, parse, actor)
    except ParseError as exc:
        return _fail(app, file_id, "parse-error", str(exc), actor)
    except NotText as exc:
        return _ignore_not_text(app, file_id, str(exc), actor)
    except InvalidState as exc:
        return LoadResult(file_id, "skipped", message=str(exc))
    except CdrError as exc:
        if exc.transient:
            raise TransientError(f"{where} stays queued: {exc}") from exc
        return _fail(app, file_id, "load-error", f"{where}: {exc}", actor)
    except OSError as exc:  # the staged bytes cannot be read (removed or damaged by hand)
        return _fail(app, file_id, "load-error", f"{where}: cannot read its staged bytes: {exc.strerror or exc}", actor)
    except Exception as exc:  # a defect of ours or an error nobody foresaw: it fails this file, not the loader
        log.debug("unexpected error loading %s", where, exc_info=True)
        message = f"{where}: unexpected error: {type(exc).__name__}: {first_line(exc)}"
        # Stored as the file's error: written so that any database can store it.
        storable = message.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
        return _fail(app, file_id, "load-error", storable, actor)


class _Reported:
    """A load's progress, told to ``on_progress`` once per batch handed to the database: the bytes the parser
    has read of the content so far (counted in the parsing thread) and the rows handed over."""

    def __init__(self, on_progress: OnProgress):
        self.on_progress = on_progress
        self.bytes_read = 0

    def parsing(self, source: Source, parser: Parser) -> Callable[[], Iterator[pa.RecordBatch]]:
        """What ``load_file`` calls to parse the file (again), reporting."""
        counted = replace(source, open=lambda: ProgressReader(source.open(), self._read))
        return lambda: self._batches(prefetched(parser.batches(counted)))

    def _read(self, done: int) -> None:
        self.bytes_read = done

    def _batches(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        rows = 0
        try:
            for batch in batches:
                rows += batch.num_rows
                self.on_progress(self.bytes_read, rows)
                yield batch
        finally:
            batches.close()


def _label(row: dict) -> str:
    """How messages name a file: ``file #12 (hero_cdr_20261001.csv)``."""
    return f"file #{row['id']} ({row['name']})"


def _source(app: App, row: dict) -> Source:
    """The file's staged content for its parser, in the format the catalog has for it."""
    return Source(
        name=_label(row),
        file_format=row["format"],
        open=lambda: app.staging.open_member(row["blob"], row["compression"], row["member"]),
    )


def _in_its_format(app: App, row: dict, parser: Parser, actor: str) -> Source:
    """The file's content in the format it is actually in (a pipe-separated ``.txt`` is read as pipe), which
    is recorded on the file when it differs. NotText if the content is not text at all."""
    source = readable_source(app, row, parser)
    if source.file_format != row["format"]:
        with app.catalog.write() as conn:
            catalog_files.record_format(conn, row["id"], source.file_format, actor=actor)
    return source


def readable_source(app: App, row: dict, parser: Parser) -> Source:
    """The file's staged content as ``parser`` reads it, in the format it is actually in (a pipe-separated
    ``.txt`` as pipe); nothing is recorded. NotText if the content is not text at all."""
    source = _source(app, row)
    return replace(source, file_format=parser.file_format(source))


def _ignore_not_text(app: App, file_id: int, message: str, actor: str) -> LoadResult:
    """``queued -> ignored``: a PDF, an image or a spreadsheet in a carrier's folder is no malformed file."""
    try:
        with app.catalog.write() as conn:
            catalog_files.transition(conn, file_id, "ignored", allowed_from=("queued",), actor=actor,
                                     action="ignored", why=message, reason="not-text", error=message)
    except InvalidState as exc:  # taken meanwhile (discarded by an admin, set aside by another loader)
        return LoadResult(file_id, "skipped", message=str(exc))
    return LoadResult(file_id, "ignored", message=message)


# ---------------------------------------------------------------------------------------------------
# SQLite. Fast path: with this process's other catalog connections held off, ADBC writes the records straight
# into the catalog file, in one transaction with the file's status change. Slow path (a key collides, or the
# file was released): ADBC writes a scratch file, the catalog connection attaches it and works set-based.


def _load_sqlite(app: App, row: dict, parse: Callable[[], Iterator[pa.RecordBatch]], actor: str) -> LoadResult:
    if not row["released"]:
        result = _load_sqlite_direct(app, row, parse(), actor)
        if result is not None:
            return result
    scratch = Path(app.staging.tmp) / f"load-{row['id']}-{uuid.uuid4().hex}.sqlite"
    try:
        total = _write_scratch_file(scratch, parse())
        faults.point("load.bulk-written")
        with app.catalog.connect() as conn:
            raw = conn.connection.driver_connection
            raw.execute("ATTACH DATABASE ? AS scratch", (str(scratch),))
            try:
                return _move(app, conn.execution_options(cdr_write=True), row, "scratch.batch", total, actor)
            finally:
                if conn.in_transaction():
                    conn.rollback()
                raw.execute("DETACH DATABASE scratch")
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)


def _load_sqlite_direct(app: App, row: dict, batches: Iterator[pa.RecordBatch], actor: str) -> LoadResult | None:
    """Insert every record in one ADBC transaction; None if a record key collides (nothing is kept)."""
    import adbc_driver_manager
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    stream, failure, counted = _counting(batches, constants=(row["id"], row["carrier"]))
    try:
        with app.catalog.exclusive(), adbc_sqlite.connect(app.catalog.sqlite_path, autocommit=True) as conn:
            with conn.cursor() as cur:
                cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("BEGIN IMMEDIATE")
                try:
                    cur.execute("SELECT status FROM files WHERE id = ?", (row["id"],))
                    status = cur.fetchone()[0]
                    if status != "queued":
                        raise InvalidState(f"file {row['id']} is {status}, not queued")
                    cur.execute("SELECT COALESCE(MAX(id), 0) FROM records")
                    before = cur.fetchone()[0]
                    try:
                        cur.adbc_ingest("records", stream, mode="append")
                    except adbc_driver_manager.Error as exc:
                        if failure:
                            raise failure[0] from None
                        if "UNIQUE constraint failed" in str(exc):
                            cur.execute("ROLLBACK")
                            return None
                        raise
                    faults.point("load.bulk-written")
                    faults.point("load.inserted")
                    total = counted()
                    cur.execute("SELECT MAX(id) FROM records")
                    last = cur.fetchone()[0]
                    span = (before + 1, last) if total else (None, None)
                    catalog_files.mark_loaded_dbapi(cur, row["id"], inserted=total, skipped=0, actor=actor, span=span,
                                                    name_identifies=_name_identifies(app, row))
                    faults.point("load.before-commit")
                    cur.execute("COMMIT")
                    return LoadResult(row["id"], "loaded", total, 0)
                except BaseException:
                    try:
                        cur.execute("ROLLBACK")
                    except adbc_driver_manager.Error:
                        pass  # already rolled back
                    raise
    except adbc_driver_manager.Error as exc:  # mapped once, whichever statement met it
        _raise_mapped_adbc(exc)


def _raise_mapped_adbc(exc: Exception) -> NoReturn:
    """Raise ADBC's SQLite error as the project's: a locked or busy database is worth retrying."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        raise DatabaseBusy(f"catalog database busy: {first_line(exc)}") from exc
    raise exc


def _counting(batches: Iterator[pa.RecordBatch], constants: tuple = (), names: tuple[str, ...] = ("file_id", "carrier")):
    """A RecordBatchReader over ``batches`` (with ``constants`` as leading columns), a list that receives the
    exception the batches raised (ADBC reports it only as a stream error), and a count of rows read."""
    failure: list[BaseException] = []
    count = 0

    def generate() -> Iterator[pa.RecordBatch]:
        nonlocal count
        try:
            for batch in batches:
                count += batch.num_rows
                yield _with_constants(batch, constants, names) if constants else batch
        except BaseException as exc:
            failure.append(exc)
            raise

    schema = CANONICAL_SCHEMA
    if constants:
        schema = pa.schema([pa.field(n, _constant_type(v)) for n, v in zip(names, constants)] + list(CANONICAL_SCHEMA))
    return pa.RecordBatchReader.from_batches(schema, generate()), failure, lambda: count


def _constant_type(value) -> pa.DataType:
    return pa.int64() if isinstance(value, int) else pa.string()


def _with_constants(batch: pa.RecordBatch, constants: tuple, names: tuple[str, ...]) -> pa.RecordBatch:
    n = batch.num_rows
    columns = [pc.fill_null(pa.nulls(n, _constant_type(value)), value) for value in constants]
    return pa.RecordBatch.from_arrays(columns + batch.columns, names=[*names[: len(constants)], *batch.schema.names])


def _write_scratch_file(path: Path, batches: Iterator[pa.RecordBatch]) -> int:
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    stream, failure, counted = _counting(batches)
    with adbc_sqlite.connect(str(path), autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("PRAGMA journal_mode=OFF")
            cur.execute("PRAGMA synchronous=OFF")
            try:
                cur.adbc_ingest("batch", stream, mode="create")
            except Exception:
                if failure:
                    raise failure[0] from None
                raise
    if failure:
        raise failure[0]
    return counted()


# ---------------------------------------------------------------------------------------------------
# PostgreSQL: COPY into a TEMP table on the catalog connection, inside the load transaction.


def _load_postgres(app: App, row: dict, parse: Callable[[], Iterator[pa.RecordBatch]], actor: str) -> LoadResult:
    """Optimistic: COPY straight into ``records`` under a savepoint. Only if a key collides (or the file was
    released, so repeats are expected) are the batches parsed again into a TEMP scratch table for the
    set-based analysis or the skip-what-is-loaded insert."""
    import psycopg

    try:
        return _load_postgres_copy(app, row, parse, actor)
    except psycopg.OperationalError as exc:  # the raw COPY cursor is below SQLAlchemy's error mapping
        raise DatabaseBusy(f"catalog database unreachable during load: {first_line(exc)}") from exc


def _load_postgres_copy(app: App, row: dict, parse: Callable[[], Iterator[pa.RecordBatch]], actor: str) -> LoadResult:
    import psycopg

    with app.catalog.connect() as conn:
        conn = conn.execution_options(cdr_write=True)
        with conn.begin():
            _lock_queued(app, conn, row["id"])
            if not row["released"]:
                # Its records get ids above every id committed now: the span and dates are read through the key.
                before = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM records")).scalar_one()
                savepoint = conn.begin_nested()
                try:
                    total = _copy(conn, "records", ("file_id", "carrier", *CANONICAL_NAMES), parse(),
                                  constants=(row["id"], row["carrier"]))
                    savepoint.commit()
                except psycopg.errors.UniqueViolation:
                    savepoint.rollback()
                else:
                    faults.point("load.bulk-written")
                    faults.point("load.inserted")
                    return _loaded(app, conn, row, total, total, actor, after=before)
            columns = ", ".join(f"{name} {'BIGINT' if kind == 'int' else 'TEXT'}" for name, kind in CANONICAL)
            conn.exec_driver_sql(f"CREATE TEMP TABLE {SCRATCH} ({columns}) ON COMMIT DROP")
            total = _copy(conn, SCRATCH, CANONICAL_NAMES, parse())
            # Autovacuum never analyses a TEMP table: without statistics the planner joins it to records in a
            # nested loop, quadratic in the rows (a 45,000-record overlap took minutes; analysed, a second).
            conn.exec_driver_sql(f"ANALYZE {SCRATCH}")
            faults.point("load.bulk-written")
            return _move(app, conn, row, SCRATCH, total, actor, begun=True)


def _copy(conn: Connection, table: str, columns: tuple[str, ...], batches: Iterator[pa.RecordBatch],
          constants: tuple = ()) -> int:
    """COPY the batches (as CSV, written by Arrow) into ``table`` on the connection's transaction. Leading
    ``constants`` fill the first columns of every row."""
    cursor = conn.connection.driver_connection.cursor()
    total = 0
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed", batch_size=BATCH_ROWS)
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        for batch in batches:
            n = batch.num_rows
            total += n
            batch = _zoned(batch)
            if constants:
                batch = _with_constants(batch, constants, columns)
            sink = io.BytesIO()
            pacsv.write_csv(batch, sink, options)
            copy.write(sink.getbuffer())
    return total


def _zoned(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with every UTC time stating its zone ('YYYY-MM-DD HH:MM:SS+00'): PostgreSQL reads a time
    without one in the session's time zone, which the server, the database or the role may set."""
    for name in UTC_COLUMNS:
        index = batch.schema.get_field_index(name)
        batch = batch.set_column(index, name, pc.binary_join_element_wise(batch.column(index), "+00", ""))
    return batch


# ---------------------------------------------------------------------------------------------------
# Shared: the set-based move, and the analysis when it collides.


def _insert_sql(app: App, scratch: str, only_new: bool) -> str:
    targets = ["file_id", "carrier", *CANONICAL_NAMES]
    values = [":file_id", "CAST(:carrier AS VARCHAR)", *(_cast(app, name, kind) for name, kind in CANONICAL)]
    sql = f"INSERT INTO records ({', '.join(targets)}) SELECT {', '.join(values)} FROM {scratch} s"
    if only_new:
        sql += (" WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.carrier = CAST(:carrier AS VARCHAR)"
                " AND s.record_key IS NULL AND r.feed_id = s.feed_id)"
                " AND NOT EXISTS (SELECT 1 FROM records r WHERE r.carrier = CAST(:carrier AS VARCHAR)"
                " AND r.record_key = s.record_key)")
    return sql


def _cast(app: App, name: str, kind: str) -> str:
    column = f"s.{name}"
    if app.catalog.is_sqlite:
        return column  # already in the catalog's storage form: ISO text, decimal text, integers
    if kind == "date":
        return f"CAST({column} AS DATE)"
    if kind == "utc":
        return f"CAST({column} AS TIMESTAMPTZ)"  # the scratch text states its zone (``_zoned``)
    if kind == "decimal":
        return f"CAST({column} AS NUMERIC)"
    return column


def _move(app: App, conn: Connection, row: dict, scratch: str, total: int, actor: str, begun: bool = False) -> LoadResult:
    file_id = row["id"]
    params = {"file_id": file_id, "carrier": row["carrier"]}
    transaction = None if begun else conn.begin()
    try:
        if not begun:
            _lock_queued(app, conn, file_id)
        released = bool(row["released"])
        before = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM records")).scalar_one()
        savepoint = conn.begin_nested() if not app.catalog.is_sqlite else None
        try:
            inserted = conn.execute(text(_insert_sql(app, scratch, only_new=released)), params).rowcount
            if savepoint is not None:
                savepoint.commit()
        except IntegrityError:
            # The failed statement left nothing behind (SQLite undoes the statement; PostgreSQL the savepoint).
            if savepoint is not None:
                savepoint.rollback()
            result = _analyse_collision(app, conn, row, scratch, actor)
            if transaction is not None:
                transaction.commit()
            return result
        faults.point("load.inserted")
        result = _loaded(app, conn, row, total, inserted, actor, after=before)
        if transaction is not None:
            transaction.commit()
        return result
    except BaseException:
        if transaction is not None and transaction.is_active:
            transaction.rollback()
        raise


def _loaded(app: App, conn: Connection, row: dict, total: int, inserted: int, actor: str, after: int) -> LoadResult:
    """Mark the file loaded with its counts, the span of record ids it was given (ids above ``after``) and of
    its records' own dates (see ``catalog_files.mark_loaded``)."""
    skipped = total - inserted
    catalog_files.mark_loaded(conn, row["id"], inserted=inserted, skipped=skipped, actor=actor, after=after)
    catalog_files.supersede_failed(conn, row["id"], actor=actor, name_identifies=_name_identifies(app, row))
    faults.point("load.before-commit")
    return LoadResult(row["id"], "loaded", inserted, skipped)


def _name_identifies(app: App, row: dict) -> bool:
    """Whether the file's carrier says a file name identifies a file (``same_name_rule``)."""
    return app.config.carrier(row["carrier"]).same_name_rule


def _lock_queued(app: App, conn: Connection, file_id: int) -> None:
    """Hold the file's row for this transaction and make sure it is still queued (another loader may
    have taken it since we looked)."""
    lock = "" if app.catalog.is_sqlite else " FOR UPDATE"
    status = conn.execute(text(f"SELECT status FROM files WHERE id = :id{lock}"), {"id": file_id}).scalar_one()
    if status != "queued":
        raise InvalidState(f"file {file_id} is {status}, not queued")


def _analyse_collision(app: App, conn: Connection, row: dict, scratch: str, actor: str) -> LoadResult:
    file_id = row["id"]
    repeated = conn.execute(text(
        f"SELECT COALESCE(record_key, CAST(feed_id AS VARCHAR)) AS k, MIN(position), MAX(position) FROM {scratch} "
        "GROUP BY COALESCE(record_key, CAST(feed_id AS VARCHAR)) HAVING COUNT(*) > 1 ORDER BY MIN(position) LIMIT 1"
    )).first()
    if repeated is not None:
        key, first, second = repeated
        lines = parser_for(app.config.carrier(row["carrier"])).record_lines(_source(app, row), (first, second))
        where = (f"lines {lines[first]} and {lines[second]}" if first in lines and second in lines
                 else f"records {first} and {second}")
        message = (f"{_label(row)}: record key {key} appears twice in the file ({where}); "
                   "nothing was loaded")
        catalog_files.transition(conn, file_id, "failed", allowed_from=("queued",), actor=actor, action="failed",
                                 why=message, reason="parse-error", error=message)
        return LoadResult(file_id, "failed", message=message)

    overlaps = conn.execute(text(
        "SELECT file_id, SUM(n) FROM ("
        f" SELECT r.file_id AS file_id, COUNT(*) AS n FROM {scratch} s JOIN records r"
        "  ON r.carrier = :carrier AND r.feed_id = s.feed_id AND r.record_key IS NULL"
        "  WHERE s.record_key IS NULL GROUP BY r.file_id"
        " UNION ALL"
        f" SELECT r.file_id, COUNT(*) FROM {scratch} s JOIN records r"
        "  ON r.carrier = :carrier AND r.record_key = s.record_key GROUP BY r.file_id"
        ") AS hits GROUP BY file_id ORDER BY file_id"
    ), {"carrier": row["carrier"]}).all()
    overlaps = [(int(other), int(count)) for other, count in overlaps]
    overlapping = sum(count for _, count in overlaps)
    if not overlapping:  # what collided was a concurrent load that has since rolled back
        raise DatabaseBusy(f"file #{file_id}: a concurrent load collided with it; it stays queued for a retry")
    total = conn.execute(text(f"SELECT COUNT(*) FROM {scratch}")).scalar_one()
    earlier = ", ".join(f"#{other} ({count})" for other, count in overlaps)
    message = f"{overlapping} of {total} records were already loaded, from {earlier}"
    catalog_files.transition(conn, file_id, "held", allowed_from=("queued",), actor=actor, action="held",
                             why=message, reason="overlap", error=message)
    catalog_files.add_links(conn, file_id, [catalog_files.Link(other, "overlap", count) for other, count in overlaps])
    return LoadResult(file_id, "held", message=message)


def _fail(app: App, file_id: int, reason: str, message: str, actor: str) -> LoadResult:
    try:
        with app.catalog.write() as conn:
            catalog_files.transition(conn, file_id, "failed", allowed_from=("queued",), actor=actor,
                                     action="failed", why=message, reason=reason, error=message)
    except InvalidState as exc:  # taken meanwhile (discarded by an admin, loaded by another loader)
        return LoadResult(file_id, "skipped", message=str(exc))
    return LoadResult(file_id, "failed", message=message)


__all__ = ["LoadResult", "load_file", "load_queued"]
