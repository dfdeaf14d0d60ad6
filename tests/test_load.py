"""Loading: typed records in the database, all or nothing, each record once, overlap holds, retry."""

from __future__ import annotations

import io
import json
import logging
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Text, func, select, text, update

from ingest import admin
from ingest.catalog import files as catalog_files
from ingest.catalog.schema import calls, charges, files
from ingest.errors import InvalidState
from ingest.intake import Origin, receive
from ingest.load import load_file, load_queued
from tests.conftest import app_with
from tests.records import record, render


def upload(app, data: bytes, name: str, **given):
    [got] = receive(app, io.BytesIO(data), Origin("upload", name, **given))
    return got


def row(app, file_id):
    with app.catalog.read() as conn:
        return catalog_files.get_file(conn, file_id)


def record_count(app) -> int:
    with app.catalog.read() as conn:
        return sum(conn.execute(select(func.count()).select_from(table)).scalar_one() for table in (calls, charges))


NAMES = {"hero": "hero_cdr_20261001.{ext}", "techconnections": "TC_CDR_20261001.{ext}"}
EXT = {"csv": "csv", "txt": "txt", "pipe": "pipe", "json": "json"}


@pytest.mark.parametrize("carrier", ["hero", "techconnections"])
@pytest.mark.parametrize("fmt", ["csv", "txt", "pipe", "json"])
def test_upload_loads_typed_values_for_every_layout_and_format(app, carrier, fmt):
    rows = [
        record(1001, Charge="1.2345", ChargeExcl="1.0735", AParty="0016491234567", ReleaseCause="0017",
               UTCDateTime="2026-10-01T23:59:58Z", Time="12:59:58", Date="2026-10-02", Seconds="120",
               TextDesc2='Spark, "mobile"'),
        # A service fee for Tech Connections (no call time needed); for Hero every row is a call.
        record(1002, CallType="Line Rental", BParty="", Seconds="0", NetworkSeconds="", ConnectSeconds="",
               UTCDateTime="" if carrier == "techconnections" else "2026-10-01 10:00:00",
               Charge="25.00", ChargeExcl="21.74"),
    ]
    got = upload(app, render(rows, carrier=carrier, fmt=fmt), NAMES[carrier].format(ext=EXT[fmt]), file_format=fmt)
    [result] = load_queued(app)
    assert (result.file_id, result.status, result.loaded) == (got.id, "loaded", 2)
    loaded = admin.list_records(app, file_id=got.id, record_type="cdr")
    fees = admin.list_records(app, file_id=got.id, record_type="sdr")
    first = loaded[0]
    assert first["carrier_record_id"] == "1001" and first["record_key"] == "1001"
    assert first["charge"] == Decimal("1.2345") and isinstance(first["charge"], Decimal)
    assert first["charge_excl"] == Decimal("1.0735")
    assert first["start_time"] == datetime(2026, 10, 1, 23, 59, 58, tzinfo=timezone.utc)
    assert first["bill_date"] == date(2026, 10, 1)
    assert first["local_time"] == "12:59:58"
    assert first["a_number"] == "0016491234567" and first["release_cause"] == "0017"
    assert first["billed_seconds"] == 120 and first["extra"]["TextDesc2"] == 'Spark, "mobile"'
    assert first["position"] == 1
    if carrier == "techconnections":
        # The line rental is a charge: its number, product and costs (tax excluded and included).
        assert first["local_date"] == "2026-10-02"
        assert len(loaded) == 1
        [fee] = fees
        assert (fee["carrier_record_id"], fee["position"], fee["product_code"]) == ("1002", 2, "Line Rental")
        assert (fee["number_reference"], fee["customer_reference"]) == ("0016321234", "81234567")
        assert (fee["cost"], fee["cost_incl"], fee["quantity"]) == (Decimal("21.74"), Decimal("25.00"), Decimal("1.00"))
        assert fee["charge_date"] == date(2026, 10, 1)
    else:
        assert first["local_date"] is None
        assert fees == []
        second = loaded[1]
        assert second["position"] == 2 and second["connected_seconds"] is None
        assert second["charge"] == Decimal("25.00")
    stored = row(app, got.id)
    assert (stored["status"], stored["records_loaded"], stored["records_skipped"]) == ("loaded", 2, 0)


def test_header_absent_uses_the_documented_column_order(app):
    got = upload(app, render([record(7, Charge="9.99")], header=False), "hero_cdr_20261001.csv")
    load_queued(app)
    [loaded] = admin.list_records(app, file_id=got.id)
    assert loaded["carrier_record_id"] == "7" and loaded["charge"] == Decimal("9.99")


def test_malformed_file_fails_naming_line_and_field_and_loads_nothing(app):
    rows = [record(1), record(2), record(3, Charge="12,50"), record(4)]
    got = upload(app, render(rows), "hero_cdr_20261001.csv")
    [result] = load_queued(app)
    stored = row(app, got.id)
    assert result.status == "failed" and stored["status"] == "failed"
    assert stored["reason"] == "parse-error"
    assert "line 4" in stored["error"] and "field Charge" in stored["error"] and "hero_cdr_20261001.csv" in stored["error"]
    assert record_count(app) == 0
    assert app.staging.path_of(stored["blob"]).exists()


ACME = """
[carriers.acme]
parser = "techconnections"
[[carriers.acme.files]]
pattern = "ACME_{year}{month}{day}.csv"
type = "cdr"
cadence = "daily"
"""


def test_failed_file_can_be_retried_after_a_configuration_fix(make_config):
    # The carrier sends pipe-separated files named .csv, and its rule did not say so.
    data = render([record(1), record(2)], carrier="techconnections", fmt="pipe")
    broken = app_with(make_config, ACME)
    try:
        got = upload(broken, data, "ACME_20261001.csv")
        load_queued(broken)
        failed = row(broken, got.id)
        assert failed["status"] == "failed" and "line 1" in failed["error"]
    finally:
        broken.close()
    fixed = app_with(make_config, ACME + 'format = "pipe"\n')  # the admin fixes the rule
    try:
        admin.retry(fixed, got.id, actor="carol")
        [result] = load_queued(fixed)
        assert (result.status, result.loaded) == ("loaded", 2)
        history = admin.show(fixed, got.id)["history"]
        assert [(e["action"], e["actor"]) for e in history][-2:] == [("retried", "carol"), ("loaded", "tester")]
    finally:
        fixed.close()


def test_a_record_in_a_second_file_is_never_loaded_twice_the_file_is_held_as_overlap(app):
    first = upload(app, render([record(1), record(2), record(3)]), "hero_cdr_20261001.csv")
    load_queued(app)
    second = upload(app, render([record(3), record(4), record(2), record(5)]), "hero_cdr_20261002.csv")
    [result] = load_queued(app)
    stored = row(app, second.id)
    assert (result.status, stored["status"], stored["reason"]) == ("held", "held", "overlap")
    assert "2 of 4 records" in stored["error"]
    [link] = admin.show(app, second.id)["potential_duplicates"]
    assert (link["kind"], link["id"], link["records"]) == ("overlap", first.id, 2)
    assert record_count(app) == 3

    released = admin.release(app, second.id, reason="new calls inside", actor="dave")
    assert released["status"] == "queued" and released["released"]
    [result] = load_queued(app)
    assert (result.status, result.loaded, result.skipped) == ("loaded", 2, 2)
    stored = row(app, second.id)
    assert (stored["records_loaded"], stored["records_skipped"]) == (2, 2)
    keys = sorted(int(r["record_key"]) for r in admin.list_records(app))
    assert keys == [1, 2, 3, 4, 5]
    assert [r["record_key"] for r in admin.list_records(app, file_id=second.id)] == ["4", "5"]


def test_releasing_an_exact_duplicate_loads_nothing_twice(app):
    data = render([record(1), record(2)])
    upload(app, data, "hero_cdr_20261001.csv")
    load_queued(app)
    dup = upload(app, data, "hero_cdr_20261001.csv")
    admin.release(app, dup.id)
    [result] = load_queued(app)
    assert (result.status, result.loaded, result.skipped) == ("loaded", 0, 2)
    assert record_count(app) == 2


def test_the_same_id_twice_inside_one_file_fails_the_file(app):
    got = upload(app, render([record(1), record(2), record(1, Charge="5.00")]), "hero_cdr_20261001.csv")
    [result] = load_queued(app)
    assert result.status == "failed"
    assert "appears twice" in row(app, got.id)["error"]
    assert record_count(app) == 0


def test_a_file_that_is_no_longer_queued_is_not_loaded(app):
    got = upload(app, render([record(1)]), "hero_cdr_20261001.csv")
    admin.discard(app, got.id, reason="not ours")
    result = load_file(app, got.id)
    assert result.status == "skipped"
    assert record_count(app) == 0


def test_records_of_one_carrier_do_not_collide_with_another_carriers_ids(app):
    upload(app, render([record(1)]), "hero_cdr_20261001.csv")
    upload(app, render([record(1)], carrier="techconnections"), "TC_CDR_20261001.csv")
    assert [r.status for r in load_queued(app)] == ["loaded", "loaded"]


def test_large_file_loads_in_several_batches(app):
    rows = [record(i, TextDesc1="x" * 150) for i in range(1, 30001)]
    got = upload(app, render(rows), "hero_cdr_20261001.csv")
    [result] = load_queued(app)
    assert (result.status, result.loaded) == ("loaded", 30000)
    with app.catalog.read() as conn:
        positions = conn.execute(select(func.min(calls.c.position), func.max(calls.c.position),
                                        func.count(func.distinct(calls.c.position)))
                                 .where(calls.c.file_id == got.id)).one()
    assert tuple(positions) == (1, 30000, 30000)


def test_loaded_file_status_change_is_audited(app):
    got = upload(app, render([record(1)]), "hero_cdr_20261001.csv")
    load_queued(app, actor="loader")
    history = admin.show(app, got.id)["history"]
    assert [(e["action"], e["from_status"], e["to_status"], e["actor"]) for e in history] == [
        ("received", None, "queued", "tester"), ("loaded", "queued", "loaded", "loader")]
    assert "loaded 1 records" in history[-1]["reason"]


def test_staged_bytes_gone_missing_fail_the_load_clearly_and_keep_the_file(app):
    got = upload(app, render([record(1)]), "hero_cdr_20261001.csv")
    blob = app.staging.path_of(row(app, got.id)["blob"])
    blob.chmod(0o644)
    blob.unlink()
    [result] = load_queued(app)
    stored = row(app, got.id)
    assert (result.status, stored["status"], stored["reason"]) == ("failed", "failed", "load-error")
    assert "cannot read its staged bytes" in stored["error"] and "hero_cdr_20261001.csv" in stored["error"]


def test_decompression_limit_met_while_loading_fails_the_file(make_config):
    import gzip

    data = gzip.compress(render([record(i) for i in range(1, 2001)]))
    roomy = app_with(make_config, "")
    try:
        got = upload(roomy, data, "hero_cdr_20261001.csv.gz")
    finally:
        roomy.close()
    tight = app_with(make_config, "[intake]\nmax_expanded_bytes = 1000\n")  # limits lowered since intake
    try:
        [result] = load_queued(tight)
        assert result.status == "failed"
        assert "intake.max_expanded_bytes" in row(tight, got.id)["error"]
        assert record_count(tight) == 0
    finally:
        tight.close()


def test_a_files_spans_and_dates_are_those_of_its_records(app):
    """The loader counts each kind's records and own dates as it inserts them; what it writes on the file is
    what an aggregate over the file's records says (ids through the key, dates by ``record_date``)."""
    from ingest.layouts import CALL, CHARGE

    upload(app, render([record(1, UTCDateTime="2026-09-30 23:59:59"), record(2, UTCDateTime="2026-10-02 10:00:00")]),
           "hero_cdr_20261001.csv")
    upload(app, render([record(11, UTCDateTime="2026-10-03 08:00:00"),
                        record(12, CallType="Line Rental", BParty="", Seconds="0", UTCDateTime="", BillDate="2026-10-15"),
                        record(13, UTCDateTime="2026-10-01 07:00:00")], carrier="techconnections"),
           "TC_CDR_20261001.csv")
    assert [r.status for r in load_queued(app)] == ["loaded", "loaded"]
    with app.catalog.read() as conn:
        for file_id in (1, 2):
            stored = catalog_files.get_file(conn, file_id)
            lows, highs = [], []
            for layout, table in ((CALL, calls), (CHARGE, charges)):
                dates = catalog_files.record_date(conn.dialect.name, layout)
                first, last, low, high = conn.execute(
                    select(func.min(table.c.id), func.max(table.c.id), func.min(dates), func.max(dates))
                    .where(table.c.file_id == file_id)).one()
                assert (stored[f"first_{layout.kind}_id"], stored[f"last_{layout.kind}_id"]) == (first, last)
                lows += [str(low)] if low is not None else []
                highs += [str(high)] if high is not None else []
            assert (str(stored["records_from"]), str(stored["records_to"])) == (min(lows), max(highs))
    assert (str(row(app, 1)["records_from"]), str(row(app, 2)["records_to"])) == ("2026-09-30", "2026-10-15")


def test_a_load_that_slips_in_after_the_decision_makes_the_released_file_decide_again(app, monkeypatch):
    """A released file is decided on (what is new), then inserted; a load committed in between takes one of its
    records: the insert collides and the file is decided on again, never failed nor loaded twice."""
    from ingest import load as load_module

    upload(app, render([record(1), record(2), record(3)]), "hero_cdr_20261001.csv")
    load_queued(app)
    second = upload(app, render([record(3), record(4), record(2), record(5)]), "hero_cdr_20261002.csv")
    assert [r.status for r in load_queued(app)] == ["held"]
    admin.release(app, second.id)
    third = upload(app, render([record(4), record(9)]), "hero_cdr_20261003.csv")
    # SQLite decides under the write lock and inserts once it is let go; PostgreSQL decides and copies in one
    # transaction: the other load comes between the two either way.
    name = "_decide_sqlite" if app.catalog.is_sqlite else "_decide"
    decide, slipped_in = getattr(load_module, name), []

    def decide_then_another_load(*args, **kwargs):
        decided = decide(*args, **kwargs)
        if not slipped_in:
            slipped_in.append(load_file(app, third.id))
        return decided

    monkeypatch.setattr(load_module, name, decide_then_another_load)
    result = load_file(app, second.id)
    assert [r.status for r in slipped_in] == ["loaded"]
    assert (result.status, result.loaded, result.skipped) == ("loaded", 1, 3)
    assert sorted(int(r["record_key"]) for r in admin.list_records(app, limit=0)) == [1, 2, 3, 4, 5, 9]
    assert [r["record_key"] for r in admin.list_records(app, file_id=second.id)] == ["5"]


def test_a_kept_parse_that_is_not_whole_is_not_used(app):
    """A held file's kept parse with a kind's batches removed (or cut short) is not loaded from: the release
    parses the file again, and no record is lost as "already loaded"."""
    from pathlib import Path

    upload(app, render([record(1), record(2), record(3)]), "hero_cdr_20261001.csv")
    load_queued(app)
    second = upload(app, render([record(3), record(4), record(2), record(5)]), "hero_cdr_20261002.csv")
    assert [r.status for r in load_queued(app)] == ["held"]
    kept = Path(app.staging.root) / "parsed" / str(second.id) / "call.arrow"
    assert kept.exists()
    kept.unlink()
    admin.release(app, second.id)
    [result] = load_queued(app)
    assert (result.status, result.loaded, result.skipped) == ("loaded", 2, 2)
    assert [r["record_key"] for r in admin.list_records(app, file_id=second.id)] == ["4", "5"]
    assert not kept.parent.exists()  # forgotten once loaded


def test_an_overlap_counts_records_not_the_rows_taken_once(app):
    """A file repeating a row identically (taken once by its format) that overlaps an earlier file is held with
    its records counted, not its rows; released, it loads the new one and counts the repeat as dropped, from
    what the hold found in the parse it kept (its keys are not searched for repeats again)."""
    from sqlalchemy import event

    first = upload(app, render([record(1), record(2)]), "hero_cdr_20261001.csv")
    load_queued(app)
    second = upload(app, render([record(2), record(2), record(3)]), "hero_cdr_20261002.csv")
    [result] = load_queued(app)
    stored = row(app, second.id)
    assert (result.status, stored["reason"]) == ("held", "overlap")
    assert stored["error"] == f"1 of 2 records were already loaded, from #{first.id} (1)"
    [link] = admin.show(app, second.id)["potential_duplicates"]
    assert (link["id"], link["records"]) == (first.id, 1)
    admin.release(app, second.id)
    statements = []
    event.listen(app.catalog.engine, "before_cursor_execute",
                 lambda _conn, _cursor, statement, *_args: statements.append(statement))
    [result] = load_queued(app)
    assert (result.status, result.loaded, result.skipped) == ("loaded", 1, 1)
    assert row(app, second.id)["records_dropped"] == 1
    assert statements and not [s for s in statements if "HAVING COUNT(*) > 1" in s]


def test_binary_copy_rows_carry_every_kind_exactly(app, monkeypatch):
    """The rows a PostgreSQL load sends are built by Arrow in COPY's binary format (``ingest.load._binary_rows``):
    every kind of column, NULLs in some rows and in every row, a batch that is a slice of a larger one (its
    buffers start at an offset), a larger batch after it and a smaller one (read through the larger one's row
    order) are read back as they were sent."""
    if app.catalog.is_sqlite:
        pytest.skip("binary COPY is PostgreSQL's")
    import pyarrow as pa

    from ingest import load
    from ingest.load import _copy_columns

    monkeypatch.setattr(load, "_ORDERS", {})

    columns = {
        "a_text": ("text", pa.string(), ["a", None, "", "ünïcode ☎", "x" * 300]),
        "b_int": ("int", pa.int64(), [1, None, -5, 2**62, 0]),
        "c_money": ("money", pa.int64(), [-1234500, 7, None, 0, 99]),
        "d_utc": ("utc", pa.string(), ["2026-10-01 00:00:01", None, "1999-12-31 23:59:59", "2026-10-02 12:00:00",
                                       "2000-01-01 00:00:00"]),
        "e_date": ("date", pa.string(), ["2026-10-01", "1999-12-31", None, "2000-01-01", "2038-01-20"]),
        "f_none": ("text", pa.string(), [None] * 5),
        "g_none": ("int", pa.int64(), [None] * 5),
        "h_utc_all": ("utc", pa.string(), ["2026-11-28 04:05:06"] * 5),
    }
    whole = pa.record_batch([pa.array(values, type) for _kind, type, values in columns.values()],
                            names=list(columns))
    batches = [whole.slice(1, 4), whole, whole.slice(4, 1)]
    names = ("file_id", "carrier", *columns)
    with app.catalog.connect() as conn, conn.begin():
        conn.exec_driver_sql(
            "CREATE TEMP TABLE sent (file_id BIGINT, carrier TEXT, a_text TEXT, b_int BIGINT, c_money BIGINT, "
            "d_utc TIMESTAMPTZ, e_date DATE, f_none TEXT, g_none BIGINT, h_utc_all TIMESTAMPTZ, n SERIAL)")
        _copy_columns(conn, "sent", names, tuple(kind for kind, _type, _values in columns.values()), iter(batches),
                      constants=(7, "hero"))
        got = [tuple(r) for r in conn.exec_driver_sql(f"SELECT {', '.join(names)} FROM sent ORDER BY n")]

    def expected(index: int) -> tuple:
        values = []
        for kind, _type, column in columns.values():
            value = column[index]
            if value is not None and kind == "utc":
                value = datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
            elif value is not None and kind == "date":
                value = date.fromisoformat(value)
            values.append(value)
        return (7, "hero", *values)

    assert got == [expected(i) for i in (1, 2, 3, 4, 0, 1, 2, 3, 4, 4)]


def test_a_copy_the_server_refuses_stops_sending_at_once(app, monkeypatch, caplog):
    """PostgreSQL tells a COPY's error only when the COPY ends: the loader stops sending as soon as the server
    speaks, so a file whose first record collides is held without being built and sent whole first; the error
    it expected is not logged as a warning."""
    if app.catalog.is_sqlite:
        pytest.skip("COPY is PostgreSQL's")
    from ingest import load
    from ingest.formats import Source, read

    monkeypatch.setattr(read, "BLOCK_SIZE", 1 << 16)  # batches of a few hundred rows
    upload(app, render([record(i) for i in range(1, 10001)]), "hero_cdr_20261001.csv")
    assert [r.status for r in load_queued(app)] == ["loaded"]
    second = render([record(i) for i in range(1, 20001)])  # its first 10,000 records are loaded already
    batches = sum(1 for _ in app.config.parser_for("hero").batches(Source("b", "csv", lambda: io.BytesIO(second))))
    built = []
    real = load._binary_rows
    monkeypatch.setattr(load, "_binary_rows",
                        lambda head, batch, kinds: built.append(len(kinds)) or real(head, batch, kinds))
    upload(app, second, "hero_cdr_20261002.csv")
    [held] = load_queued(app)
    assert (held.status, row(app, held.file_id)["reason"]) == ("held", "overlap")
    records_built = sum(1 for kinds in built if kinds > len(load.KEY_COLUMNS))  # not the keys' own COPY
    assert batches > 50 and 1 <= records_built <= batches // 2, (records_built, batches)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("psycopg")]


def test_a_decision_on_postgresql_first_analyses_a_records_table_that_changed(app):
    """Deciding on a file joins its keys with the records: on PostgreSQL the table is analysed first when its
    statistics are missing or stale (a load changed it since), not left to autovacuum, which takes a minute
    or more (and records its own analyses apart: ``last_autoanalyze``)."""
    if app.catalog.is_sqlite:
        pytest.skip("PostgreSQL's planner statistics")
    from sqlalchemy import text

    def analysed() -> bool:
        with app.catalog.read() as conn:
            return conn.execute(text("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                                     "WHERE relid = CAST('calls' AS regclass)")).scalar_one()

    upload(app, render([record(i) for i in range(1, 2001)]), "hero_cdr_20261001.csv")
    assert [r.status for r in load_queued(app)] == ["loaded"]
    assert not analysed()
    upload(app, render([record(i) for i in range(1001, 3001)]), "hero_cdr_20261002.csv")
    assert [r.status for r in load_queued(app)] == ["held"]
    assert analysed()


def test_extra_is_stored_by_position_and_every_listing_names_its_values(app):
    """The loader stores a record's ``extra`` as a JSON array of values whose names its file lists once
    (``files.extra_columns``); a file whose values the fast path cannot write so (a line break in one) keeps
    objects. A listing across both files, in several chunks, gives every record's ``extra`` as its object."""
    many = [record(2000 + i, TextDesc2=f"note {i}") for i in range(4500)]  # more than two chunks of a stream
    compact = upload(app, render(many), "hero_cdr_20261001.csv")
    careful = upload(app, render([record(1001, TextDesc2="two\nlines")]), "hero_cdr_20261002.csv")
    assert [r.status for r in load_queued(app)] == ["loaded", "loaded"]
    with app.catalog.read() as conn:
        stored = dict(conn.execute(select(calls.c.carrier_record_id, calls.c.extra.cast(Text))).all())
        names = {f: conn.execute(select(files.c.extra_columns).where(files.c.id == f)).scalar_one()
                 for f in (compact.id, careful.id)}
    columns = json.loads(names[compact.id])["call"]
    assert names[careful.id] is None and stored["1001"].startswith("{")
    assert "TextDesc2" in columns and all(stored[str(2000 + i)].startswith('["') for i in range(4500))
    assert len(json.loads(stored["2000"])) == len(columns)
    listed = admin.list_records(app, limit=0)
    assert [r["carrier_record_id"] for r in listed] == [str(2000 + i) for i in range(4500)] + ["1001"]
    assert all(isinstance(r["extra"], dict) for r in listed)
    assert listed[0]["extra"] == dict(zip(columns, json.loads(stored["2000"])))
    assert listed[4499]["extra"]["TextDesc2"] == "note 4499" and listed[-1]["extra"]["TextDesc2"] == "two\nlines"


def test_a_record_whose_values_have_lost_their_names_is_never_shown_misnamed(app):
    got = upload(app, render([record(1001)]), "hero_cdr_20261001.csv")
    load_queued(app)
    with app.catalog.write() as conn:
        conn.execute(update(files).where(files.c.id == got.id).values(extra_columns=None))
    with pytest.raises(InvalidState, match=rf"record #\d+ of file #{got.id}: extra holds \d+ values by position"):
        admin.list_records(app, file_id=got.id)
    with app.catalog.read() as conn:  # the views name nothing then, on either database
        assert conn.execute(text("SELECT extra, extra_named FROM calls_named")).one()[1] is None
    with app.catalog.write() as conn:  # names that do not fit the values
        conn.execute(update(files).where(files.c.id == got.id).values(extra_columns='{"call": ["one"]}'))
    with app.catalog.read() as conn:
        stored, named = conn.execute(text("SELECT extra, extra_named FROM calls_named")).one()
    assert stored.startswith('["') and len(json.loads(stored)) > 1 and named is None


def test_sql_of_ones_own_reads_extra_by_name_through_the_named_views(app):
    """``calls_named`` and ``charges_named``: every column, and ``extra_named``, the object whichever way
    ``extra`` is stored, in the file's column order; a member read by name in plain SQL."""
    compact = upload(app, render([record(1001, TextDesc2='Spark, "mobile"'), record(1002, CallType="Line Rental",
                                                                                      TextDesc2="rental")],
                                 carrier="techconnections"), "TC_CDR_20261001.csv")
    careful = upload(app, render([record(1003, TextDesc2="two\nlines")]), "hero_cdr_20261002.csv")
    assert [r.status for r in load_queued(app)] == ["loaded", "loaded"]
    member = ("extra_named::jsonb ->> 'TextDesc2'" if app.catalog.engine.dialect.name == "postgresql"
              else "json_extract(extra_named, '$.TextDesc2')")
    with app.catalog.read() as conn:
        named = conn.execute(text(f"SELECT carrier_record_id, file_id, extra, extra_named, {member} FROM calls_named "
                                  "ORDER BY id")).all()
        fees = conn.execute(text(f"SELECT carrier_record_id, extra, extra_named, {member} FROM charges_named")).all()
    assert [(r[0], r[1], r[4]) for r in named] == [("1001", compact.id, 'Spark, "mobile"'),
                                                   ("1003", careful.id, "two\nlines")]
    assert named[0][2].startswith('["') and named[1][2] == named[1][3]  # by position / an object, as stored
    listed = {r["carrier_record_id"]: r["extra"] for r in admin.list_records(app, limit=0)}
    assert [list(json.loads(r[3]).items()) for r in named] == [list(listed[r[0]].items()) for r in named]
    [(fee_id, fee_extra, fee_named, fee_note)] = fees
    assert fee_extra.startswith('["') and fee_note == "rental"
    assert json.loads(fee_named) == admin.list_records(app, record_type="sdr")[0]["extra"]


def test_identical_rows_in_batches_that_store_extra_differently_are_still_one_record(app, monkeypatch):
    """A batch with a line break in a value keeps ``extra`` as objects while the file's other batches store it
    by position: a row repeated identically across two such batches is still taken once, not refused as two
    different records under one key."""
    from ingest.formats import read

    monkeypatch.setattr(read, "BLOCK_SIZE", 1 << 16)  # batches of a few hundred rows
    rows = [record(i, TextDesc2=f"note {i}") for i in range(1, 1001)]
    rows[3] = record(4, TextDesc2="two\nlines")  # the first batch keeps objects
    rows.append(dict(rows[1]))  # record 2 again, identical, in the last batch (by position)
    got = upload(app, render(rows), "hero_cdr_20261001.csv")
    [result] = load_queued(app)
    assert (result.status, result.loaded) == ("loaded", 1000), result.message
    assert row(app, got.id)["records_dropped"] == 1
    with app.catalog.read() as conn:
        stored = conn.execute(select(calls.c.extra.cast(Text)).order_by(calls.c.id)).scalars().all()
    assert stored[0].startswith("{") and stored[-1].startswith('["')  # both forms in one file
