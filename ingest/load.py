"""Loading: a queued file's records into the ``calls`` and ``charges`` tables, all or nothing, each record once.

How a file loads (``load_file``):

1. Its staged bytes are streamed through its carrier's format (``ingest.formats``) into Arrow batches of calls
   and charges (``ingest.layouts``), already validated, parsed a few batches ahead in a thread. A bad record
   fails the whole file (``failed``, the error naming line and field); nothing is loaded. The batches are
   kept (``ingest.parsed``) until the file is decided on: the file is parsed once, whatever follows.
2. Fast path, one transaction: the batches go straight into their tables (SQLite: through ADBC, with this
   process's other catalog connections held off, since ADBC carries its own SQLite library; PostgreSQL:
   COPY under a savepoint), and the file is marked ``loaded`` with its counts and audited.
3. Slow path, when a key collides or the file was released: the kept records' keys and positions go into
   scratch tables (an ADBC-written file attached to the catalog; TEMP tables), the file is decided on from them
   set-based (:func:`_decide`), and the records it selects are inserted from the kept batches as on the fast
   path: nothing is parsed again, and only two columns per record go through a scratch table.

Every record is unique by carrier, kind and ``record_key``. The insert is optimistic: if it collides, nothing is
kept and the file is analysed instead: a key repeated inside the file fails it, unless the rows are identical
and the format takes identical rows once (then the repeats are dropped and counted); keys already loaded from
other files hold it as ``overlap`` (how many, and from which files), and its parse is kept for its release. A
file an admin released loads only the records not loaded before, and records how many it skipped.
"""

from __future__ import annotations

import array
import json
import logging
import queue
import select
import threading
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, NoReturn

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, text

from . import faults
from . import parsed as kept_parses
from .app import App
from .catalog import files as catalog_files
from .catalog.db import SQLITE_BUSY_SECONDS, first_line
from .errors import CdrError, DatabaseBusy, InvalidState, NotText, ParseError, TransientError
from .formats import FileParser, Source, parser_for
from .layouts import LAYOUTS, Layout, extra_mapping
from .logs import file_event
from .parsed import Retained
from .staging import OnProgress, ProgressFactory, ProgressReader

log = logging.getLogger(__name__)

CONSTANTS = ("file_id", "carrier")
Parsed = Iterator[tuple[Layout, pa.RecordBatch]]


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
    (a released file, loaded from the parse kept when it was held, reports the rows it goes through)."""
    actor = actor or app.actor
    with app.catalog.read() as conn:
        row = catalog_files.get_file(conn, file_id)
    if row["status"] != "queued":
        return LoadResult(file_id, "skipped", message=f"file {file_id} is {row['status']}, not queued")
    on_progress = progress(f"loading #{row['id']} {row['name']}", row["size"]) if progress else None
    result = _load_queued_row(app, row, actor, on_progress)
    _log_outcome(row, result)
    if result.status == "loaded":
        app.file_loaded(file_id, actor)
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
    retained: Retained | None = None
    parse: Parsed | None = None
    root = Path(app.staging.root)
    try:
        with app.catalog.mapped_errors():
            parser = parser_for(app.config, row["carrier"])
            fingerprint = _fingerprint(row, parser)
            if row["released"]:  # its parse was kept when it was held: loaded from that, not parsed again
                retained = kept_parses.kept(root, file_id, fingerprint)
                if retained is not None and on_progress is not None:
                    rows = sum(retained.rows.values()) or 1
                    retained.on_replay = lambda done: on_progress(row["size"] * done // rows, done)
            if retained is None:
                source = _in_its_format(app, row, parser, actor)
                retained = Retained(kept_parses.working_folder(root, file_id))
                parse = _parse(parser, source, retained, on_progress)
            load = _load_sqlite if app.catalog.is_sqlite else _load_postgres
            result = load(app, row, parser, parse, retained, actor)
            if result.status == "held":
                kept_parses.keep(root, file_id, retained, fingerprint)
                with app.catalog.read() as conn:  # discarded meanwhile: what was kept is not needed
                    if catalog_files.get_file(conn, file_id)["status"] != "held":
                        kept_parses.forget(root, file_id)
            elif result.status in ("loaded", "failed"):
                kept_parses.forget(root, file_id)
            return result
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
    finally:
        if parse is not None:  # the parsing thread stops before what it keeps is let go
            parse.close()
        if retained is not None:
            retained.close()


def _fingerprint(row: dict, parser: FileParser) -> str:
    """What a kept parse is tied to: the file's content and its format's definition."""
    import xxhash

    return xxhash.xxh3_128_hexdigest(f"{row['blob']}\x1f{row['member']}\x1f{parser.spec!r}".encode())


def _parse(parser: FileParser, source: Source, retained: Retained, on_progress: OnProgress | None) -> Parsed:
    """The file's batches, parsed ahead in a thread and kept in ``retained`` on the way; told to ``on_progress``
    (the bytes the parser has read and the rows handed on, once per batch) when given."""
    reported = _Reported(on_progress) if on_progress is not None else None
    if reported is not None:
        counted = source
        source = replace(counted, open=lambda: ProgressReader(counted.open(), reported.read))

    def produce() -> Parsed:
        yield from retained.tee(parser.batches(source, extra_by_position=True))
        retained.rows_dropped = parser.rows_dropped
        retained.extra_columns = parser.extra_columns

    batches = prefetched(produce())
    return reported.batches(batches) if reported is not None else batches


class _Reported:
    """A load's progress, told to ``on_progress`` once per batch handed to the database: the bytes the parser
    has read of the content so far (counted in the parsing thread) and the rows handed over."""

    def __init__(self, on_progress: OnProgress):
        self.on_progress = on_progress
        self.bytes_read = 0

    def read(self, done: int) -> None:
        self.bytes_read = done

    def batches(self, batches: Parsed) -> Parsed:
        rows = 0
        try:
            for layout, batch in batches:
                rows += batch.num_rows
                self.on_progress(self.bytes_read, rows)
                yield layout, batch
        finally:
            batches.close()


def _drain(parse: Parsed | None) -> None:
    """Read the rest of a parse (an insert that collided stopped reading it): every batch is then kept."""
    if parse is not None:
        for _ in parse:
            pass


def _of_kind(kind: str, parse: Parsed) -> Iterator[pa.RecordBatch]:
    """The batches of one kind; the others are passed over (``Retained`` keeps them for their own insert)."""
    for layout, batch in parse:
        if layout.kind == kind:
            yield batch


def _kinds(parser: FileParser) -> list[Layout]:
    """The layouts a format may produce, calls first."""
    return [layout for kind, layout in LAYOUTS.items() if kind in parser.kinds]


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


def _in_its_format(app: App, row: dict, parser: FileParser, actor: str) -> Source:
    """The file's content in the format it is actually in (a pipe-separated ``.txt`` is read as pipe), which
    is recorded on the file when it differs. NotText if the content is not text at all."""
    source = readable_source(app, row, parser)
    if source.file_format != row["format"]:
        with app.catalog.write() as conn:
            catalog_files.record_format(conn, row["id"], source.file_format, actor=actor)
    return source


def readable_source(app: App, row: dict, parser: FileParser) -> Source:
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
# file was released): ADBC writes the kept batches to a scratch file, the catalog connection attaches it and
# works set-based.


def _load_sqlite(app: App, row: dict, parser: FileParser, parse: Parsed | None, retained: Retained,
                 actor: str) -> LoadResult:
    if not row["released"] and parse is not None:
        result = _load_sqlite_direct(app, row, parser, _streamed(parse, retained), retained, actor)
        if result is not None:
            return result
    _drain(parse)
    scratch = Path(app.staging.tmp) / f"load-{row['id']}-{uuid.uuid4().hex}.sqlite"
    try:
        tables = _write_keys_file(scratch, retained)
        faults.point("load.bulk-written")
        # Decided on a connection that holds the write lock, inserted through ADBC once it is let go: a load that
        # slipped in between collides, and the file is decided on again.
        for _attempt in range(3):
            decided = _decide_sqlite(app, row, parser, scratch, tables, retained, actor)
            if isinstance(decided, LoadResult):
                return decided
            result = _load_sqlite_direct(app, row, parser, _selected(decided, retained), retained, actor, decided)
            if result is not None:
                return result
        raise DatabaseBusy(f"{_label(row)}: other loads kept colliding with it; it stays queued for a retry")
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)


def _decide_sqlite(app: App, row: dict, parser: FileParser, scratch: Path, tables: dict[str, str],
                   retained: Retained, actor: str) -> "LoadResult | _Selection":
    """:func:`_decide` on a catalog connection with the keys file attached: a failed or held file is committed
    here; a selection to insert leaves the catalog untouched."""
    with app.catalog.connect() as conn:
        raw = conn.connection.driver_connection
        raw.execute("ATTACH DATABASE ? AS scratch", (str(scratch),))
        try:
            conn = conn.execution_options(cdr_write=True)
            with conn.begin() as transaction:
                _lock_queued(app, conn, row["id"])
                decided = _decide(app, conn, row, parser, {kind: f"scratch.{name}" for kind, name in tables.items()},
                                  retained, actor)
                if not isinstance(decided, LoadResult):
                    transaction.rollback()  # nothing was written: the insert is ADBC's
                return decided
        finally:
            raw.execute("DETACH DATABASE scratch")


def _load_sqlite_direct(app: App, row: dict, parser: FileParser, batches_of: "BatchesOf", retained: Retained,
                        actor: str, selection: "_Selection | None" = None) -> LoadResult | None:
    """Insert the records ``batches_of`` gives, each kind in turn, in one ADBC transaction with the file's status
    change; None if a record key collides (nothing is kept). ``selection``: what a decision on a file that
    collided (or was released) picked, and so what it skips and drops."""
    import adbc_driver_manager
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    layouts = _kinds(parser)
    counter = _Counter()
    constants = (row["id"], row["carrier"])
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
                    after = {}
                    for layout in layouts:
                        cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {layout.table}")
                        after[layout.kind] = cur.fetchone()[0]
                    try:
                        for index, layout in enumerate(layouts):
                            cur.adbc_ingest(layout.table, counter.reader(layout, batches_of(layout, index), constants),
                                            mode="append")
                    except adbc_driver_manager.Error as exc:
                        if counter.failure:
                            raise counter.failure[0] from None
                        if "UNIQUE constraint failed" in str(exc):
                            cur.execute("ROLLBACK")
                            return None
                        raise
                    faults.point("load.bulk-written")
                    faults.point("load.inserted")
                    loaded = counter.loaded(retained, after, selection)
                    catalog_files.mark_loaded_dbapi(cur, row["id"], loaded, actor=actor,
                                                    name_identifies=_name_identifies(app, row))
                    faults.point("load.before-commit")
                    cur.execute("COMMIT")
                    return LoadResult(row["id"], "loaded", loaded.inserted, loaded.skipped)
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


class _Counter:
    """Counts the rows handed to the database, per kind with the first and last of their own dates (what
    ``catalog_files.Loaded.counted`` takes), and keeps the exception a batch iterator raised (ADBC reports it
    only as a stream error)."""

    def __init__(self) -> None:
        self.counted: dict[str, tuple[int, str | None, str | None]] = {}
        self.failure: list[BaseException] = []

    @property
    def rows(self) -> int:
        return sum(records for records, _low, _high in self.counted.values())

    def loaded(self, retained: Retained, after: dict[str, int], selection: "_Selection | None") -> catalog_files.Loaded:
        """What the load put in, for ``catalog_files.mark_loaded``: the rows counted, and what the parse and the
        ``selection`` (a decision on a file that collided or was released) left out."""
        skipped, dropped = (selection.skipped, selection.dropped) if selection is not None else (0, 0)
        return catalog_files.Loaded(self.rows, skipped, retained.rows_dropped + dropped, after, self.counted,
                                    retained.extra_columns)

    def count(self, layout: Layout, batch: pa.RecordBatch) -> None:
        records, low, high = self.counted.get(layout.kind, (0, None, None))
        dates = pc.min_max(own_dates(layout, batch)).as_py() if batch.num_rows else {"min": None, "max": None}
        low = min(filter(None, (low, dates["min"])), default=None)
        high = max(filter(None, (high, dates["max"])), default=None)
        self.counted[layout.kind] = (records + batch.num_rows, low, high)

    def reader(self, layout: Layout, batches: Iterator[pa.RecordBatch], constants: tuple = ()) -> pa.RecordBatchReader:
        """A RecordBatchReader over ``batches`` of ``layout``, with ``constants`` (file id, carrier) as leading
        columns when given."""
        schema = layout.arrow_schema()
        if constants:
            schema = pa.schema([pa.field(n, _constant_type(v)) for n, v in zip(CONSTANTS, constants)] + list(schema))

        def generate() -> Iterator[pa.RecordBatch]:
            try:
                for batch in batches:
                    self.count(layout, batch)
                    yield _with_constants(batch, constants) if constants else batch
            except BaseException as exc:
                self.failure.append(exc)
                raise

        return pa.RecordBatchReader.from_batches(schema, generate())


def own_dates(layout: Layout, batch: pa.RecordBatch) -> pa.Array:
    """Each record's own date as ISO text: the Arrow twin of ``catalog_files.record_date`` (the first of the
    layout's date fields that is set; a UTC time's date is its first ten characters)."""
    dates = [pc.utf8_slice_codeunits(batch.column(name), 0, 10) if layout.field(name).kind == "utc"
             else batch.column(name) for name in layout.date_fields]
    return dates[0] if len(dates) == 1 else pc.coalesce(*dates)


def _constant_type(value) -> pa.DataType:
    return pa.int64() if isinstance(value, int) else pa.string()


def _with_constants(batch: pa.RecordBatch, constants: tuple) -> pa.RecordBatch:
    n = batch.num_rows
    columns = [pc.fill_null(pa.nulls(n, _constant_type(value)), value) for value in constants]
    return pa.RecordBatch.from_arrays(columns + batch.columns, names=[*CONSTANTS[: len(constants)], *batch.schema.names])


def _write_keys_file(path: Path, retained: Retained) -> dict[str, str]:
    """The kept records' keys and positions, one table per kind, in a new SQLite file; the tables by kind."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    tables = {}
    with adbc_sqlite.connect(str(path), autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("PRAGMA journal_mode=OFF")
            cur.execute("PRAGMA synchronous=OFF")
            for kind in retained.kinds():
                keys = (batch.select(KEY_COLUMNS) for batch in retained.replay(kind))
                cur.adbc_ingest(kind, pa.RecordBatchReader.from_batches(_KEYS_SCHEMA, keys), mode="create")
                tables[kind] = kind
    return tables


_KEYS_SCHEMA = pa.schema([("record_key", pa.string()), ("position", pa.int64())])


# ---------------------------------------------------------------------------------------------------
# PostgreSQL: COPY, inside the load transaction.


def _load_postgres(app: App, row: dict, parser: FileParser, parse: Parsed | None, retained: Retained,
                   actor: str) -> LoadResult:
    """Optimistic: COPY straight into the tables under a savepoint. Only if a key collides (or the file was
    released, so repeats are expected) are the kept records' keys copied into TEMP tables, the file decided on
    from them (:func:`_decide`), and the records it selects copied, in the same transaction."""
    import psycopg

    try:
        return _load_postgres_copy(app, row, parser, parse, retained, actor)
    except psycopg.OperationalError as exc:  # the raw COPY cursor is below SQLAlchemy's error mapping
        raise DatabaseBusy(f"catalog database unreachable during load: {first_line(exc)}") from exc


def _load_postgres_copy(app: App, row: dict, parser: FileParser, parse: Parsed | None, retained: Retained,
                        actor: str) -> LoadResult:
    import psycopg

    with app.catalog.connect() as conn:
        conn = conn.execution_options(cdr_write=True)
        with conn.begin():
            _lock_queued(app, conn, row["id"])
            if not row["released"] and parse is not None:
                savepoint = conn.begin_nested()
                try:
                    result = _copy_records(app, conn, row, parser, _streamed(parse, retained), retained, actor)
                    savepoint.commit()
                    return result
                except (psycopg.errors.UniqueViolation, _CopyRefused):
                    savepoint.rollback()
            _drain(parse)
            keys = {}
            for kind in retained.kinds():
                table = f"cdr_keys_{kind}"
                conn.exec_driver_sql(f'CREATE TEMP TABLE {table} (record_key TEXT COLLATE "C", position BIGINT)'
                                     " ON COMMIT DROP")
                _copy_columns(conn, table, KEY_COLUMNS, ("text", "int"),
                              (batch.select(KEY_COLUMNS) for batch in retained.replay(kind)))
                # Autovacuum never analyses a TEMP table: without statistics the planner joins it to the records in
                # a nested loop, quadratic in the rows (a 45,000-record overlap took minutes; analysed, a second).
                conn.exec_driver_sql(f"ANALYZE {table}")
                keys[kind] = table
                _fresh_statistics(app, LAYOUTS[kind].table)
            faults.point("load.bulk-written")
            # A load committed meanwhile may take some of the records decided on: the copy collides, and the file
            # is decided on again (its transaction now sees that load's records).
            for _attempt in range(3):
                decided = _decide(app, conn, row, parser, keys, retained, actor)
                if isinstance(decided, LoadResult):
                    return decided
                savepoint = conn.begin_nested()
                try:
                    result = _copy_records(app, conn, row, parser, _selected(decided, retained), retained, actor,
                                           decided)
                    savepoint.commit()
                    return result
                except (psycopg.errors.UniqueViolation, _CopyRefused):
                    savepoint.rollback()
            raise DatabaseBusy(f"{_label(row)}: other loads kept colliding with it; it stays queued for a retry")


def _fresh_statistics(app: App, table: str) -> None:
    """ANALYZE a records table whose statistics are missing or stale (a fifth of it changed since): deciding on
    a file joins its keys with the table. Autovacuum analyses a table a minute or more after a load changed
    it, and the file held beside that load is often released sooner. On a table it still took for nearly empty,
    the planner built a hash of its million records from a bitmap scan: 4.4 s, against 1.1 s once analysed.
    On a connection of its own, committed at once: an ANALYZE holds a lock that another load's ANALYZE waits
    for until the transaction ends, and a load's transaction is long. The load's next statements plan with
    the new statistics."""
    with app.catalog.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        stale = conn.execute(text(
            "SELECT c.reltuples < 0 OR s.n_mod_since_analyze > 0.2 * GREATEST(c.reltuples, 1000) FROM pg_class c "
            "JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = CAST(:name AS regclass)"), {"name": table}
        ).scalar()
        if stale:
            conn.exec_driver_sql(f"ANALYZE {table}")


def _copy_records(app: App, conn: Connection, row: dict, parser: FileParser, batches_of: BatchesOf,
                  retained: Retained, actor: str, selection: _Selection | None = None) -> LoadResult:
    """COPY the records ``batches_of`` gives, each kind in turn, and mark the file loaded (in ``conn``'s
    transaction). ``selection``: what a decision picked, and so what it skips and drops."""
    layouts = _kinds(parser)
    # Its records get ids above every id the table's sequence has given so far: the spans and dates are read
    # through them (ingest.catalog.files.last_id_given).
    after = {layout.kind: catalog_files.last_id_given(conn, layout.table) for layout in layouts}
    counter = _Counter()
    for index, layout in enumerate(layouts):
        _copy(conn, layout.table, layout, batches_of(layout, index), constants=(row["id"], row["carrier"]),
              counter=counter, stop_early=True)
    faults.point("load.bulk-written")
    faults.point("load.inserted")
    return _loaded(app, conn, row, counter.loaded(retained, after, selection), actor)


def _copy(conn: Connection, table: str, layout: Layout, batches: Iterator[pa.RecordBatch], constants: tuple = (),
          counter: "_Counter | None" = None, stop_early: bool = False) -> None:
    """COPY a layout's batches into ``table`` on the connection's transaction, each counted by ``counter`` if
    given. Leading ``constants`` (file id, carrier) fill the first columns of every row."""

    def counted() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            counter.count(layout, batch)
            yield batch

    names = (*CONSTANTS[: len(constants)], *layout.parsed_columns)
    kinds = tuple(layout.kind_of(name) for name in layout.parsed_columns)
    _copy_columns(conn, table, names, kinds, counted() if counter is not None else batches, constants,
                  stop_early=stop_early)


def _copy_columns(conn: Connection, table: str, columns: tuple[str, ...], kinds: tuple[str, ...],
                  batches: Iterator[pa.RecordBatch], constants: tuple = (), stop_early: bool = False) -> None:
    """COPY the batches (their columns of ``kinds``, see ``ingest.layouts``) into ``columns`` of ``table`` on the
    connection's transaction, after the ``constants`` (an int or a text each), in PostgreSQL's binary format
    built by Arrow kernels (:func:`_binary_rows`): the server parses no text (on 1M Hero rows, 0.5 to 1 s less
    of its time than CSV), and a UTC time is an instant, not text read in the session's time zone. Each batch is
    sent as it is built: building one takes a few milliseconds, less than the server takes over the one before
    it (a sending thread, psycopg's ``QueuedLibpqWriter``, bought nothing measurable and held 120 MiB more).

    ``stop_early``: stop sending as soon as the server has something to say, and raise :class:`_CopyRefused`.
    During a COPY the server speaks only to refuse it (a record key that collides, mostly): libpq tells the
    error only once the COPY ends, so without this a file whose first record collides is built and sent whole
    for the server to discard (1M Hero rows: 2.7 s of a held file's upload)."""
    cursor = conn.connection.driver_connection.cursor()
    server = select.poll()  # poll, not select: a daemon's socket may be numbered above select's 1024
    server.register(cursor.connection.pgconn.socket, select.POLLIN)
    head = _binary_constants(len(constants) + len(kinds), constants)
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT binary)"
    try:
        with cursor.copy(statement) as copy:
            copy.write(_COPY_SIGNATURE)
            for batch in batches:
                for part in _parts(batch):
                    copy.write(_binary_rows(head, part, kinds))
                    if stop_early and server.poll(0):
                        # Ended as failed, whatever the server said: a COPY ended as done would keep the rows sent
                        # so far. psycopg ends it so when this leaves the block, and logs the server's error,
                        # which is expected here (:class:`_QuietRefusal`).
                        _refusing.active = True
                        raise _CopyRefused(f"the server refused the COPY into {table}")
            copy.write(_COPY_TRAILER)
    finally:
        _refusing.active = False


class _CopyRefused(Exception):
    """A COPY stopped early (``stop_early``) because the server spoke, and ended as failed: its transaction is
    in error. What the server said is not known (psycopg drops it): the caller decides on the file the slow
    way, which meets any real error again and raises it."""


class _QuietRefusal(logging.Filter):
    """Drops psycopg's warning about the error it set aside while ending a COPY that :func:`_copy_columns`
    stopped on purpose, in the thread that stopped it: that error is the one expected (a record key that
    collides) and the file is decided on the slow way; the warning would reach a person's terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(_refusing, "active", False) and record.msg.startswith("error ignored terminating"))


_refusing = threading.local()
logging.getLogger("psycopg").addFilter(_QuietRefusal())


# PostgreSQL's binary COPY (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4): a signature, no
# flags, no header extension; each row its field count (int16), then each field as its length (int32, -1: NULL)
# and its bytes, all integers big-endian: bigint 8 bytes, date the days since 2000-01-01 (int32), timestamptz the
# microseconds since 2000-01-01 00:00 UTC (int64), text its UTF-8 bytes; a trailer of -1 (int16).
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_MICROSECONDS = 946_684_800_000_000  # 2000-01-01 00:00 UTC, from 1970
_PG_EPOCH_DAYS = 10_957
_NULL_FIELD = b"\xff\xff\xff\xff"
_MAX_PART_BYTES = 256 << 20  # a batch's rows are built into one Arrow binary array: far below its 2 GiB bound


def _binary_constants(fields: int, constants: tuple) -> bytes:
    """The start of every row: its field count and the ``constants`` as binary fields."""
    head = fields.to_bytes(2, "big")
    for value in constants:
        data = value.to_bytes(8, "big", signed=True) if isinstance(value, int) else value.encode()
        head += len(data).to_bytes(4, "big") + data
    return head


def _parts(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """The batch, in slices small enough for :func:`_binary_rows` (one slice, but for huge rows)."""
    if not batch.num_rows:
        return
    if batch.nbytes <= _MAX_PART_BYTES or batch.num_rows == 1:
        yield batch
        return
    half = batch.num_rows // 2
    yield from _parts(batch.slice(0, half))
    yield from _parts(batch.slice(half))


def _binary_rows(head: bytes, batch: pa.RecordBatch, kinds: tuple[str, ...]) -> pa.Buffer:
    """The batch's rows in binary COPY format, each starting with ``head``. Every row is the same sequence of
    pieces: its head, then each field's length and bytes. The pieces are built column by column (two arrays per
    field, :func:`_binary_field`), laid out one after another in one array, and read back row by row with one
    ``take`` (:func:`_row_order`): the values buffer of what it returns is the rows' bytes, one after another.
    (Joining each row's pieces with ``binary_join_element_wise`` took twice as long.)"""
    rows = batch.num_rows
    pieces = [pa.repeat(pa.scalar(head, pa.binary()), rows)]
    for column, kind in zip(batch.columns, kinds):
        pieces += _binary_field(column, kind)
    order, stride = _row_order(rows, len(pieces))
    if stride > rows:  # each piece takes its stride of places: the NULLs after it are never read, and hold no bytes
        padding = pa.nulls(stride - rows, pa.binary())
        pieces = [part for piece in pieces for part in (piece, padding)]
    ordered = pc.take(pa.concat_arrays(pieces), order)
    offsets = ordered.buffers()[1]
    start, end = (int.from_bytes(offsets[4 * i: 4 * i + 4], "little", signed=True) for i in (0, len(ordered)))
    return ordered.buffers()[2].slice(start, end - start)


def _binary_field(values: pa.Array, kind: str) -> tuple[pa.Array, pa.Array]:
    """One column as binary COPY fields: two binary arrays as long as it, each field's length (-1: NULL) and
    each field's bytes (a NULL: none)."""
    rows = len(values)
    if values.null_count == rows:
        return pa.repeat(pa.scalar(_NULL_FIELD, pa.binary()), rows), pa.nulls(rows, pa.binary())
    if kind == "text":
        lengths = pc.binary_length(values)
        if values.null_count:
            lengths = pc.fill_null(lengths, -1)
        return _big_endian(lengths, 4), values.cast(pa.binary())
    if kind in ("int", "money"):
        numbers, width = values, 8
    elif kind == "utc":  # 'YYYY-MM-DD HH:MM:SS', UTC
        stamps = pc.cast(values, pa.timestamp("us")).view(pa.int64())
        numbers, width = pc.subtract(stamps, _PG_EPOCH_MICROSECONDS), 8
    elif kind == "date":  # 'YYYY-MM-DD'
        days = pc.cast(values, pa.date32()).view(pa.int32())
        numbers, width = pc.subtract(days, pa.scalar(_PG_EPOCH_DAYS, pa.int32())), 4
    else:
        raise ValueError(f"no binary COPY for a {kind} column")
    fields = _big_endian(numbers, width)
    if not values.null_count:
        return pa.repeat(pa.scalar(width.to_bytes(4, "big"), pa.binary()), rows), fields
    valid = pc.is_valid(values)
    lengths = pc.if_else(valid, pa.scalar(width, pa.int32()), pa.scalar(-1, pa.int32()))
    return _big_endian(lengths, 4), pc.if_else(valid, fields, pa.scalar(None, pa.binary()))


def _row_order(rows: int, pieces: int) -> tuple[pa.Array, int]:
    """The order that reads ``pieces`` arrays of ``rows`` values, laid out one after another ``stride`` places
    apart, row by row: piece 0 of row 0, piece 1 of row 0, ..., piece 0 of row 1, ...; and that stride. A file's
    batches differ in size by a few rows: the order made for the largest batch so far serves every smaller one
    (its first rows * pieces places), each piece then padded to that many places. Building one takes tens of
    milliseconds."""
    kept = _ORDERS.get(pieces)
    if kept is not None and len(kept) >= rows * pieces:
        return kept.slice(0, rows * pieces), len(kept) // pieces
    order = pa.array([piece * rows + row for row in range(rows) for piece in range(pieces)], pa.int32())
    if len(order) <= _ORDER_KEPT_AT_MOST:
        _ORDERS[pieces] = order
    return order, rows


# The order of the largest batch so far, by its pieces per row (a layout's fields): up to 16 MiB each.
_ORDERS: dict[int, pa.Array] = {}
_ORDER_KEPT_AT_MOST = 4 << 20


def _big_endian(numbers: pa.Array, width: int) -> pa.Array:
    """Integers (int32 or int64, by ``width`` in bytes) as big-endian binary values of ``width`` bytes; a null's
    bytes are whatever its slot holds (the caller replaces it)."""
    swapped = array.array("i" if width == 4 else "q")
    if numbers.type.bit_width != 8 * width or swapped.itemsize != width:
        raise TypeError(f"{numbers.type} is no {width}-byte integer")
    swapped.frombytes(numbers.buffers()[1].slice(numbers.offset * width, len(numbers) * width))
    swapped.byteswap()
    return pa.Array.from_buffers(pa.binary(width), len(numbers), [None, pa.py_buffer(swapped)]).cast(pa.binary())


# ---------------------------------------------------------------------------------------------------
# Shared: deciding on a file whose insert collided (or that was released), set-based over its keys alone.

# The batches of one kind to insert, by its layout and its place among the file's kinds (0: the first).
BatchesOf = Callable[[Layout, int], Iterator[pa.RecordBatch]]
KEY_COLUMNS = ("record_key", "position")


@dataclass(frozen=True)
class _Selection:
    """What of a file to insert, once decided: per kind, the positions of the records to insert (None: all of
    them); how many were skipped as already loaded (a released file) and dropped as identical rows of the file."""

    positions: dict[str, pa.Array | None]
    skipped: int = 0
    dropped: int = 0


def _streamed(parse: Parsed, retained: Retained) -> BatchesOf:
    """The fast path's batches: the first kind straight from the parse, the others from what it kept."""
    return lambda layout, index: _of_kind(layout.kind, parse) if index == 0 else retained.replay(layout.kind)


def _selected(selection: _Selection, retained: Retained) -> BatchesOf:
    """The kept batches, each cut to the records the selection picked."""
    retained.replayed = 0  # progress counts this insert's rows from the start

    def batches(layout: Layout, _index: int) -> Iterator[pa.RecordBatch]:
        wanted = selection.positions.get(layout.kind)
        picked = None
        if wanted is not None and len(wanted):
            # Whether each position (from 1) is picked, looked up by position: one hash of the picked positions,
            # not one per batch.
            everyone = pa.array(range(1, pc.max(wanted).as_py() + 1), pa.int64())
            picked = pc.is_in(everyone, value_set=wanted)
        for batch in retained.replay(layout.kind, report=True):
            if wanted is not None:
                if picked is None:
                    continue
                positions = batch.column("position")
                within = pc.less_equal(positions, len(picked))
                at = pc.subtract(pc.if_else(within, positions, 1), 1)
                batch = batch.filter(pc.and_(within, pc.array_take(picked, at)))
            if batch.num_rows:
                yield batch

    return batches


def _decide(app: App, conn: Connection, row: dict, parser: FileParser, keys: dict[str, str], retained: Retained,
            actor: str) -> "LoadResult | _Selection":
    """Decide on a file whose insert collided, or that was released, from its record keys and positions alone
    (``keys``: a scratch table of them per kind), in ``conn``'s transaction, which holds the file's row:

    - a key repeated inside the file fails it (naming the lines of its first two rows), unless every repeat of
      that kind is a row identical to an earlier one and the format takes identical rows once: then only the
      first of each is inserted, the others counted as dropped (found once per parse: a kept parse carries it,
      ``Retained.repeats_decided``);
    - a file not released whose keys were loaded before, from other files, is held (``overlap``: how many, from
      which files);
    - a released file inserts only its records not loaded before, and counts the others as skipped.

    Returns the failed or held result (its status changed on ``conn``), or the selection to insert."""
    released = bool(row["released"])
    if retained.repeats_decided is not None:  # decided on this very parse before (it was held, then kept)
        once = set(retained.repeats_decided)
    else:
        once = set()
        first_repeat = None
        for kind, table in keys.items():
            found = conn.execute(text(
                f"SELECT record_key, MIN(position), MAX(position) FROM {table} "
                "GROUP BY record_key HAVING COUNT(*) > 1 ORDER BY MIN(position) LIMIT 1")).first()
            if found is None:
                continue
            if _takes_identical_rows_once(parser, kind) and _repeats_are_identical(conn, table, kind, retained):
                once.add(kind)
            elif first_repeat is None or found[1] < first_repeat[2]:
                first_repeat = (kind, *found)
        if first_repeat is not None:
            return _fail_repeated(app, conn, row, parser, first_repeat, actor)
        retained.repeats_decided = frozenset(once)
    if not released:
        held = _hold_overlap(conn, row, keys, actor)
        if held is not None:
            return held
        if not once:  # what collided was a concurrent load that has since rolled back
            raise DatabaseBusy(f"{_label(row)}: a concurrent load collided with it; it stays queued for a retry")
    positions: dict[str, pa.Array | None] = {}
    dropped = 0
    for kind, table in keys.items():
        conditions = []
        if released:
            conditions.append(f"NOT EXISTS (SELECT 1 FROM {LAYOUTS[kind].table} r"
                              " WHERE r.carrier = CAST(:carrier AS VARCHAR) AND r.record_key = s.record_key)")
        if kind in once:
            conditions.append(f"s.position IN (SELECT MIN(position) FROM {table} GROUP BY record_key)")
            dropped += conn.execute(text(f"SELECT COUNT(*) - COUNT(DISTINCT record_key) FROM {table}")).scalar_one()
        if not conditions:
            positions[kind] = None
            continue
        picked = conn.execute(text(f"SELECT s.position FROM {table} s WHERE {' AND '.join(conditions)}"),
                              {"carrier": row["carrier"]}).scalars().all()
        positions[kind] = pa.array(picked, pa.int64())
    inserted = sum(retained.rows.get(kind, 0) if picked is None else len(picked) for kind, picked in positions.items())
    return _Selection(positions, skipped=sum(retained.rows.values()) - inserted - dropped, dropped=dropped)


def _takes_identical_rows_once(parser: FileParser, kind: str) -> bool:
    """Whether the format takes rows identical in every column once (``duplicate_rows = "once"``)."""
    return parser.duplicate_rows(LAYOUTS[kind]) == "once"


def _repeats_are_identical(conn: Connection, table: str, kind: str, retained: Retained) -> bool:
    """Whether every record of a kind whose key repeats in the file is identical to the first with that key in
    every column but its position (compared in Arrow, over the kept records with those keys)."""
    repeated = pa.array(conn.execute(text(
        f"SELECT record_key FROM {table} GROUP BY record_key HAVING COUNT(*) > 1")).scalars().all(), pa.string())
    parts = [batch.filter(pc.is_in(batch.column("record_key"), value_set=repeated)).drop_columns(["position"])
             for batch in retained.replay(kind)]
    rows = pa.Table.from_batches([part for part in parts if part.num_rows], schema=parts[0].schema if parts else None)
    rows = _extra_as_objects(rows, retained.extra_columns.get(kind))
    distinct_rows = rows.group_by(rows.column_names, use_threads=False).aggregate([]).num_rows
    return distinct_rows == len(repeated)


def _extra_as_objects(rows: pa.Table, names: list[str] | None) -> pa.Table:
    """``rows`` with every ``extra`` as an object's compact text when some are stored by position and some not
    (batches of one file may differ: ``FileParser.batches``), so that identical rows compare equal."""
    if not names or rows.num_rows == 0:
        return rows
    extra = rows.column("extra")
    starts = pc.utf8_slice_codeunits(extra, 0, 1)
    if not (pc.any(pc.equal(starts, "[")).as_py() and pc.any(pc.equal(starts, "{")).as_py()):
        return rows  # one form throughout: identical rows have identical text
    objects = [None if value is None else json.dumps(extra_mapping(value, names), separators=(",", ":"),
                                                     ensure_ascii=False) for value in extra.to_pylist()]
    return rows.set_column(rows.schema.get_field_index("extra"), "extra", pa.array(objects, pa.string()))


def _fail_repeated(app: App, conn: Connection, row: dict, parser: FileParser, repeat: tuple, actor: str
                   ) -> LoadResult:
    """Fail the file for a key repeated inside it, naming the lines of its first two rows."""
    _kind, key, first, second = repeat
    lines = parser.record_lines(_source(app, row), (first, second))
    where = (f"lines {lines[first]} and {lines[second]}" if first in lines and second in lines
             else f"records {first} and {second}")
    message = f"{_label(row)}: record key {key} appears twice in the file ({where}); nothing was loaded"
    catalog_files.transition(conn, row["id"], "failed", allowed_from=("queued",), actor=actor, action="failed",
                             why=message, reason="parse-error", error=message)
    return LoadResult(row["id"], "failed", message=message)


def _hold_overlap(conn: Connection, row: dict, keys: dict[str, str], actor: str) -> LoadResult | None:
    """Hold the file as an overlap if any of its keys were loaded before: how many, and from which files."""
    file_id = row["id"]
    # Records, not rows: a row repeated identically in the file (a format that takes it once) is one record.
    parts = [f"SELECT r.file_id AS file_id, COUNT(DISTINCT s.record_key) AS n FROM {table} s"
             f" JOIN {LAYOUTS[kind].table} r"
             " ON r.carrier = CAST(:carrier AS VARCHAR) AND r.record_key = s.record_key GROUP BY r.file_id"
             for kind, table in keys.items()]
    if not parts:
        return None
    overlaps = conn.execute(text(
        f"SELECT file_id, SUM(n) FROM ({' UNION ALL '.join(parts)}) AS hits GROUP BY file_id ORDER BY file_id"
    ), {"carrier": row["carrier"]}).all()
    overlaps = [(int(other), int(count)) for other, count in overlaps]
    overlapping = sum(count for _, count in overlaps)
    if not overlapping:
        return None
    total = sum(conn.execute(text(f"SELECT COUNT(DISTINCT record_key) FROM {table}")).scalar_one()
                for table in keys.values())
    earlier = ", ".join(f"#{other} ({count})" for other, count in overlaps)
    message = f"{overlapping} of {total} records were already loaded, from {earlier}"
    catalog_files.transition(conn, file_id, "held", allowed_from=("queued",), actor=actor, action="held",
                             why=message, reason="overlap", error=message)
    catalog_files.add_links(conn, file_id, [catalog_files.Link(other, "overlap", count) for other, count in overlaps])
    return LoadResult(file_id, "held", message=message)


def _loaded(app: App, conn: Connection, row: dict, loaded: catalog_files.Loaded, actor: str) -> LoadResult:
    """Mark the file loaded with its counts, the spans of record ids it was given and its records' own dates
    (see ``catalog_files.mark_loaded``)."""
    catalog_files.mark_loaded(conn, row["id"], loaded, actor=actor)
    catalog_files.supersede_failed(conn, row["id"], actor=actor, name_identifies=_name_identifies(app, row))
    faults.point("load.before-commit")
    return LoadResult(row["id"], "loaded", loaded.inserted, loaded.skipped)


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


def _fail(app: App, file_id: int, reason: str, message: str, actor: str) -> LoadResult:
    try:
        with app.catalog.write() as conn:
            catalog_files.transition(conn, file_id, "failed", allowed_from=("queued",), actor=actor,
                                     action="failed", why=message, reason=reason, error=message)
    except InvalidState as exc:  # taken meanwhile (discarded by an admin, loaded by another loader)
        return LoadResult(file_id, "skipped", message=str(exc))
    return LoadResult(file_id, "failed", message=message)


__all__ = ["LoadResult", "load_file", "load_queued"]
