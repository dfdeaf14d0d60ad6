"""Migration 0007: the one ``records`` table becomes ``calls`` and ``charges``, every record moved exactly
(ids, keys, fields, money in millionths, the unmapped columns in ``extra``), files' spans recomputed; and a
catalog it cannot move exactly is refused in one line and left as it was. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text, type_coerce
from sqlalchemy.exc import IntegrityError

from ingest.catalog import schema
from ingest.catalog.db import HEAD_REVISION, MIGRATIONS, Catalog, _lock_key
from ingest.errors import PermanentError
from tests.conftest import wait_until


def _upgrade(catalog: Catalog, target: str) -> None:
    """What Catalog.migrate does, up to ``target``."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with catalog.connect() as conn:
        conn = conn.execution_options(cdr_write=True)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
        conn.commit()


@pytest.fixture
def catalog_0006(database_url):
    """A catalog at revision 0006, built by the migrations up to it (money as NUMERIC or text, as then)."""
    catalog = Catalog(database_url, migrate=False)
    _upgrade(catalog, "0006")
    assert _columns(catalog, "records")["charge"]["type"].__class__.__name__ in ("NUMERIC", "VARCHAR")
    yield catalog
    catalog.dispose()


def _columns(catalog: Catalog, table: str) -> dict[str, dict]:
    return {c["name"]: c for c in inspect(catalog.engine).get_columns(table)}


# --- the 0006 catalog ---------------------------------------------------------------------------------------

FILE_DEFAULTS = dict(source="tests", size=100, blob="b" * 32, blob_size=100, compression="none", status="loaded",
                     released=False, records_skipped=0, received_at="2026-10-02 00:00:00",
                     updated_at="2026-10-02 00:00:00", type="cdr")
FILES = [
    # Hero: ids 1..3 and 11 (its span holds file 4's 9 and 10; id 4 was never used)
    dict(id=1, name="hero_cdr_20261001.csv", carrier="hero", records_loaded=4, first_record_id=1, last_record_id=11),
    # Tech Connections: calls and service fees
    dict(id=2, name="TC_CDR_20261001.csv", carrier="techconnections", records_loaded=4, first_record_id=5,
         last_record_id=8),
    # no records
    dict(id=3, name="hero_cdr_20261003.csv", carrier="hero", records_loaded=0, first_record_id=None,
         last_record_id=None),
    # a record keyed by its hash (no feed id), and one more
    dict(id=4, name="hero_cdr_20261002.csv", carrier="hero", records_loaded=2, first_record_id=9, last_record_id=10),
]

RECORD_COLUMNS = ("id", "file_id", "carrier", "record_key", "record_type", "position", "feed_id", "account_code",
                  "direction", "call_type", "bill_date", "local_date", "local_time", "utc_time", "utc_offset",
                  "a_party", "b_party", "bill_number", "seconds", "network_seconds", "connect_seconds", "charge",
                  "charge_excl", "free_units_used", "text_desc1", "text_desc2", "release_cause", "call_status",
                  "service_type", "billing_group", "calling_group", "profile")


def _record(**given) -> dict:
    row = dict.fromkeys(RECORD_COLUMNS)
    row.update(given)
    return row


RECORDS = [
    _record(id=1, file_id=1, carrier="hero", record_type="cdr", position=1, feed_id=1001, account_code="ACC1",
            direction="Outbound", call_type="Mobile", bill_date="2026-10-01", local_time="09:15:00",
            utc_time="2026-10-01 08:15:00", utc_offset="+01:00", a_party="441234567890", b_party="447700900123",
            bill_number="441234567890", seconds=61, network_seconds=58, connect_seconds=63, charge="0.1150",
            charge_excl="0.0958", free_units_used="1.2500", text_desc1="UK Mobile", text_desc2="Vodafone",
            release_cause="16", call_status="ANSWERED", service_type="Voice", billing_group="BG1",
            calling_group="CG1", profile="Standard"),
    _record(id=2, file_id=1, carrier="hero", record_type="cdr", position=2, feed_id=1002,
            bill_date="2026-10-01", utc_time="2026-10-01 09:00:00", charge="-3.5", charge_excl="-2.9166"),
    _record(id=3, file_id=1, carrier="hero", record_type="cdr", position=3, feed_id=1003, account_code="0016",
            bill_date="2026-10-01", utc_time="2026-10-01 10:30:45", charge="12", charge_excl="0.000001",
            text_desc2='Café "Zürich"\nline 2', connect_seconds=0, free_units_used="0"),
    _record(id=11, file_id=1, carrier="hero", record_type="cdr", position=4, feed_id=1004,
            bill_date="2026-10-01", utc_time="2026-10-01 23:59:59", charge="123456789.123456",
            charge_excl="9223372036854.775807"),
    _record(id=5, file_id=2, carrier="techconnections", record_type="cdr", position=1, feed_id=7001,
            account_code="TC1", direction="Outbound", call_type="National", bill_date="2026-10-20",
            local_date="2026-10-02", local_time="07:00:01", utc_time="2026-10-01 18:00:01", utc_offset="+13:00",
            a_party="6491234567", b_party="6497654321", bill_number="6491234567", seconds=30, network_seconds=29,
            charge=".5", charge_excl="+7.25", text_desc1="Auckland", call_status="Ok"),
    _record(id=6, file_id=2, carrier="techconnections", record_type="sdr", position=2, feed_id=7002,
            account_code="TC1", direction="Outbound", call_type="Rental", bill_date="2026-10-20",
            local_date="2026-10-01", local_time="00:00:00", utc_time="2026-09-30 11:00:00.000000",
            utc_offset="+13:00", a_party="6491234567", bill_number="6491234567", seconds=0, network_seconds=0,
            connect_seconds=0, charge="23.0000", charge_excl="20.0000", free_units_used="0.0000",
            text_desc1="Line rental", text_desc2="October", release_cause="0", call_status="Ok",
            service_type="Rental", billing_group="B", calling_group="C", profile="P"),
    _record(id=7, file_id=2, carrier="techconnections", record_type="cdr", position=3, feed_id=7003,
            bill_date="2026-10-20", utc_time="2026-10-01 19:00:00", charge="-0.000001", charge_excl="-.75"),
    _record(id=8, file_id=2, carrier="techconnections", record_type="sdr", position=4, feed_id=7004,
            call_type="Broadband", bill_date="2026-10-20", utc_time="2026-09-30 11:00:00.250000",
            charge="0007.10", charge_excl="0.1234560", seconds=0),
    _record(id=9, file_id=4, carrier="hero", record_key="h:5f2a9c:1", record_type="cdr", position=1,
            bill_date="2026-10-02", utc_time="2026-10-02 00:00:00", charge="0", charge_excl="-0", profile="X"),
    _record(id=10, file_id=4, carrier="hero", record_type="cdr", position=2, feed_id=1005,
            bill_date="2026-10-02", utc_time="2026-10-02 01:00:00", charge="5.", charge_excl="5"),
]


def _insert_0006(catalog: Catalog, records=RECORDS) -> None:
    """Plain SQL in the 0006 shape; times as SQLite keeps them (text, UTC) or as timestamptz literals."""
    pg = not catalog.is_sqlite

    def utc(value):
        return None if value is None else (value + "+00" if pg else value)

    with catalog.write() as conn:
        for f in FILES:
            row = {**FILE_DEFAULTS, **f}
            row["received_at"], row["updated_at"] = utc(row["received_at"]), utc(row["updated_at"])
            names = ", ".join(row)
            conn.execute(text(f"INSERT INTO files ({names}) VALUES ({', '.join(':' + k for k in row)})"), row)
            # Every real catalog has events (and maybe links) pointing at its files: the migration must cope.
            conn.execute(text("INSERT INTO file_events (file_id, at, actor, action, to_status) "
                              "VALUES (:f, :at, 'tester', 'received', 'loaded')"),
                         {"f": f["id"], "at": utc("2026-10-02 00:00:00")})
        conn.execute(text("INSERT INTO file_links (file_id, earlier_id, kind, records) VALUES (4, 1, 'overlap', 1)"))
        for r in records:
            row = {**r, "utc_time": utc(r["utc_time"])}
            conn.execute(text(f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) "
                              f"VALUES ({', '.join(':' + c for c in RECORD_COLUMNS)})"), row)


# --- the expected result ------------------------------------------------------------------------------------

def _t(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)


CALL_NULLS = dict(carrier_record_id=None, account_code=None, direction=None, call_type=None, answer_time=None,
                  end_time=None, connected_seconds=None, billed_seconds=None, a_number=None, b_number=None,
                  bill_number=None, currency=None, status=None, release_cause=None, description=None,
                  local_date=None, local_time=None, utc_offset=None, extra=None)
EXPECTED_CALLS = {
    1: dict(CALL_NULLS, file_id=1, carrier="hero", record_key="1001", position=1, carrier_record_id="1001",
            account_code="ACC1", direction="Outbound", call_type="Mobile", start_time=_t("2026-10-01 08:15:00"),
            connected_seconds=58, billed_seconds=61, a_number="441234567890", b_number="447700900123",
            bill_number="441234567890", charge=Decimal("0.115"), charge_excl=Decimal("0.0958"), status="ANSWERED",
            release_cause="16", description="UK Mobile", bill_date=date(2026, 10, 1), local_time="09:15:00",
            utc_offset="+01:00",
            extra='{"ConnectSeconds":"63","FreeUnitsUsed":"1.2500","TextDesc2":"Vodafone","ServiceType":"Voice",'
                  '"BillingGroup":"BG1","CallingGroup":"CG1","Profile":"Standard"}'),
    2: dict(CALL_NULLS, file_id=1, carrier="hero", record_key="1002", position=2, carrier_record_id="1002",
            start_time=_t("2026-10-01 09:00:00"), charge=Decimal("-3.5"), charge_excl=Decimal("-2.9166"),
            bill_date=date(2026, 10, 1)),
    3: dict(CALL_NULLS, file_id=1, carrier="hero", record_key="1003", position=3, carrier_record_id="1003",
            account_code="0016", start_time=_t("2026-10-01 10:30:45"), charge=Decimal("12"),
            charge_excl=Decimal("0.000001"), bill_date=date(2026, 10, 1),
            extra='{"ConnectSeconds":"0","FreeUnitsUsed":"0","TextDesc2":"Café \\"Zürich\\"\\nline 2"}'),
    11: dict(CALL_NULLS, file_id=1, carrier="hero", record_key="1004", position=4, carrier_record_id="1004",
             start_time=_t("2026-10-01 23:59:59"), charge=Decimal("123456789.123456"),
             charge_excl=Decimal("9223372036854.775807"), bill_date=date(2026, 10, 1)),
    5: dict(CALL_NULLS, file_id=2, carrier="techconnections", record_key="7001", position=1,
            carrier_record_id="7001", account_code="TC1", direction="Outbound", call_type="National",
            start_time=_t("2026-10-01 18:00:01"), connected_seconds=29, billed_seconds=30, a_number="6491234567",
            b_number="6497654321", bill_number="6491234567", charge=Decimal("0.5"), charge_excl=Decimal("7.25"),
            status="Ok", description="Auckland", bill_date=date(2026, 10, 20), local_date="2026-10-02",
            local_time="07:00:01", utc_offset="+13:00"),
    7: dict(CALL_NULLS, file_id=2, carrier="techconnections", record_key="7003", position=3,
            carrier_record_id="7003", start_time=_t("2026-10-01 19:00:00"), charge=Decimal("-0.000001"),
            charge_excl=Decimal("-0.75"), bill_date=date(2026, 10, 20)),
    9: dict(CALL_NULLS, file_id=4, carrier="hero", record_key="h:5f2a9c:1", position=1,
            start_time=_t("2026-10-02 00:00:00"), charge=Decimal("0"), charge_excl=Decimal("0"),
            bill_date=date(2026, 10, 2), extra='{"Profile":"X"}'),
    10: dict(CALL_NULLS, file_id=4, carrier="hero", record_key="1005", position=2, carrier_record_id="1005",
             start_time=_t("2026-10-02 01:00:00"), charge=Decimal("5"), charge_excl=Decimal("5"),
             bill_date=date(2026, 10, 2)),
}
EXPECTED_CHARGES = {
    6: dict(file_id=2, carrier="techconnections", record_key="7002", position=2, carrier_record_id="7002",
            customer_reference="TC1", number_reference="6491234567", product_code="Rental",
            description="Line rental", period_start=None, period_end=None, charge_date=date(2026, 10, 20),
            quantity=Decimal("1"), unit_cost=None, cost=Decimal("20"), cost_incl=Decimal("23"), currency=None,
            extra='{"Direction":"Outbound","Date":"2026-10-01","Time":"00:00:00","UTCDateTime":"2026-09-30 11:00:00",'
                  '"UTCOffset":"+13:00","AParty":"6491234567","Seconds":"0","NetworkSeconds":"0",'
                  '"ConnectSeconds":"0","FreeUnitsUsed":"0.0000","TextDesc2":"October","ReleaseCause":"0",'
                  '"Status":"Ok","ServiceType":"Rental","BillingGroup":"B","CallingGroup":"C","Profile":"P"}'),
    8: dict(file_id=2, carrier="techconnections", record_key="7004", position=4, carrier_record_id="7004",
            customer_reference=None, number_reference=None, product_code="Broadband", description=None,
            period_start=None, period_end=None, charge_date=date(2026, 10, 20), quantity=Decimal("1"),
            unit_cost=None, cost=Decimal("0.123456"), cost_incl=Decimal("7.1"), currency=None,
            extra='{"UTCDateTime":"2026-09-30 11:00:00.250000","Seconds":"0"}'),
}


def _rows(conn, table) -> dict[int, dict]:
    """Every row by id, ``extra`` as its stored text (its exact order and escaping are what is checked)."""
    columns = [type_coerce(c, sa.Text).label(c.name) if c.name == "extra" else c for c in table.c]
    return {row["id"]: {k: v for k, v in row.items() if k != "id"}
            for row in conn.execute(select(*columns).order_by(table.c.id)).mappings()}


# --- tests --------------------------------------------------------------------------------------------------

def test_0007_moves_every_record_exactly(catalog_0006):
    catalog = catalog_0006
    assert catalog.current_revision() == "0006"
    assert _columns(catalog, "records")["charge"]["type"].__class__.__name__ in ("NUMERIC", "VARCHAR")
    _insert_0006(catalog)

    catalog.migrate()
    assert catalog.current_revision() == HEAD_REVISION

    with catalog.read() as conn:
        calls, charges = _rows(conn, schema.calls), _rows(conn, schema.charges)
        files = {row["id"]: row for row in conn.execute(select(schema.files)).mappings()}
    assert calls == EXPECTED_CALLS  # ids kept, each field as it was, money exact
    assert charges == EXPECTED_CHARGES
    for call in calls.values():  # extra: compact, in the carrier's column order, exactly the text expected
        if call["extra"] is not None:
            assert json.dumps(json.loads(call["extra"]), ensure_ascii=False, separators=(",", ":")) == call["extra"]
    assert len(calls) + len(charges) == len(RECORDS)
    with catalog.read() as conn:  # 0012: objects stay objects; its views give them as they are
        named = dict(conn.execute(text("SELECT id, extra_named FROM calls_named")).all())
        assert {i: f["extra_columns"] for i, f in files.items()} == {i: None for i in files}
    assert named == {i: call["extra"] for i, call in calls.items()}

    spans = {i: (f["first_call_id"], f["last_call_id"], f["first_charge_id"], f["last_charge_id"], f["records_dropped"])
             for i, f in files.items()}
    assert spans == {1: (1, 11, None, None, 0), 2: (5, 7, 6, 8, 0), 3: (None, None, None, None, 0),
                     4: (9, 10, None, None, 0)}
    tables = set(inspect(catalog.engine).get_table_names())
    assert "records" not in tables and {"calls", "charges"} <= tables
    assert not {"first_record_id", "last_record_id"} & set(_columns(catalog, "files"))
    with catalog.read() as conn:  # the files' events and links are untouched
        assert conn.execute(text("SELECT COUNT(*) FROM file_events")).scalar() == len(FILES)
        assert conn.execute(text("SELECT COUNT(*) FROM file_links")).scalar() == 1

    # The unique keys hold, and a new record gets the next id (PostgreSQL: the sequence continues after the copy).
    new = dict(file_id=3, carrier="hero", record_key="1006", position=1, start_time=_t("2026-10-03 00:00:00"))
    with catalog.write() as conn:
        new_id = conn.execute(schema.calls.insert().values(**new).returning(schema.calls.c.id)).scalar()
        conn.execute(schema.calls.insert().values(**{**new, "carrier": "techconnections"}))  # another carrier
        charge_id = conn.execute(schema.charges.insert().values(
            file_id=3, carrier="hero", record_key="1001", position=1, charge_date=date(2026, 10, 3),
        ).returning(schema.charges.c.id)).scalar()  # the same key as a call: another table
    assert new_id == 12 and charge_id == 9
    duplicates = ((schema.calls, "hero", "1001", dict(start_time=_t("2026-10-03 00:00:00"))),
                  (schema.calls, "hero", "h:5f2a9c:1", dict(start_time=_t("2026-10-03 00:00:00"))),
                  (schema.charges, "techconnections", "7002", dict(charge_date=date(2026, 10, 3))))
    for table, carrier, key, required in duplicates:
        with pytest.raises(IntegrityError):
            with catalog.write() as conn:
                conn.execute(table.insert().values(file_id=3, carrier=carrier, record_key=key, position=9, **required))


def test_0007_schema_matches_the_models(catalog_0006):
    """The migrated catalog is schema.py's: types, nullability, constraints and their names, collations."""
    catalog = catalog_0006
    _insert_0006(catalog)
    catalog.migrate()
    dialect = "sqlite" if catalog.is_sqlite else "postgresql"

    def on_this_database(obj, name, type_, reflected, compare_to):
        """An index the models create only on another database (``ddl_if``) is not expected here."""
        only = getattr(getattr(obj, "_ddl_if", None), "dialect", None)
        return only is None or only == dialect

    with catalog.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": on_this_database})
        diffs = compare_metadata(context, schema.metadata)
    assert diffs == []  # every table, column type, nullability, index and unique constraint of schema.py
    inspector = inspect(catalog.engine)
    for table in ("calls", "charges"):
        pk = inspector.get_pk_constraint(table)
        brin = table == "calls" and not catalog.is_sqlite  # migration 0009: a BRIN index, no primary key
        assert (pk["name"], pk["constrained_columns"]) == ((None, []) if brin else (f"pk_{table}", ["id"]))
        assert [(u["name"], u["column_names"]) for u in inspector.get_unique_constraints(table)] == [
            (f"uq_{table}_carrier_record_key", ["carrier", "record_key"])]
        # Two indexes only, the primary key's (or the BRIN one) and the unique key's (PostgreSQL lists the latter as
        # an index too).
        assert [i["name"] for i in inspector.get_indexes(table) if "duplicates_constraint" not in i] == (
            ["ix_calls_id"] if brin else [])
        model = schema.metadata.tables[table]
        assert [c["name"] for c in inspector.get_columns(table)] == [c.name for c in model.columns]
        if not catalog.is_sqlite:
            with catalog.read() as conn:
                collations = dict(conn.execute(text(
                    "SELECT column_name, collation_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = :t AND collation_name IS NOT NULL"),
                    {"t": table}).all())
            assert collations == {"carrier": "C", "record_key": "C"}
            with catalog.read() as conn:  # id is a BIGSERIAL's: a sequence owned by the column
                assert conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar()


def _assert_still_0006(catalog: Catalog, records: int) -> None:
    assert catalog.current_revision() == "0006"
    tables = set(inspect(catalog.engine).get_table_names())
    assert "records" in tables and not {"calls", "charges"} & tables
    columns = _columns(catalog, "files")
    assert {"first_record_id", "last_record_id"} <= set(columns)
    assert not {"first_call_id", "records_dropped"} & set(columns)
    with catalog.read() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM records")).scalar() == records
        assert conn.execute(text("SELECT charge, charge_excl FROM records WHERE id = 1")).one() in (
            ("0.1150", "0.0958"), (Decimal("0.1150"), Decimal("0.0958")))
        assert conn.execute(text("SELECT first_record_id, last_record_id FROM files WHERE id = 1")).one() == (1, 11)


def test_0007_refuses_an_amount_with_more_than_six_decimal_places_and_changes_nothing(catalog_0006):
    catalog = catalog_0006
    bad = [_record(id=20, file_id=4, carrier="hero", record_type="cdr", position=3, feed_id=1020,
                   bill_date="2026-10-02", utc_time="2026-10-02 02:00:00", charge="0.0000001", charge_excl="0"),
           _record(id=21, file_id=4, carrier="hero", record_type="sdr", position=4, feed_id=1021,
                   bill_date="2026-10-02", utc_time="2026-10-02 02:00:00", charge="1", charge_excl="-1.12345678")]
    _insert_0006(catalog, RECORDS + bad)

    with pytest.raises(PermanentError) as refused:
        catalog.migrate()
    message = str(refused.value)
    assert "\n" not in message
    assert message == ("cannot migrate the catalog to revision 0007: 2 records with an amount with more than 6 "
                       "decimal places (the first is record 20); the catalog is unchanged (correct or remove those "
                       "records, then start again)")
    _assert_still_0006(catalog, len(RECORDS) + 2)
    if not catalog.is_sqlite:  # the migration lock was let go (the database's: another test may hold it a while)
        with catalog.engine.connect() as other:
            wait_until(lambda: other.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                             {"k": _lock_key("cdr-migrate")}).scalar(), what="the migration lock")
            other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _lock_key("cdr-migrate")})

    # Corrected, the same catalog migrates.
    with catalog.write() as conn:
        conn.execute(text("DELETE FROM records WHERE id IN (20, 21)"))
    catalog.migrate()
    assert catalog.current_revision() == HEAD_REVISION
    with catalog.read() as conn:
        assert len(_rows(conn, schema.calls)) + len(_rows(conn, schema.charges)) == len(RECORDS)


def test_0007_names_each_problem_it_refuses(catalog_0006):
    """Out of range, a call without its UTC time, no key at all (and on SQLite an amount that is not a plain
    decimal): counted, the first id named, nothing changed."""
    catalog = catalog_0006
    bad = [_record(id=30, file_id=4, carrier="hero", record_type="cdr", position=3, feed_id=1030,
                   bill_date="2026-10-02", utc_time=None, charge="1", charge_excl="1"),
           _record(id=31, file_id=4, carrier="hero", record_type="cdr", position=4, bill_date="2026-10-02",
                   utc_time="2026-10-02 02:00:00", charge="1", charge_excl="1"),
           _record(id=32, file_id=4, carrier="hero", record_type="cdr", position=5, feed_id=1032,
                   bill_date="2026-10-02", utc_time="2026-10-02 02:00:00", charge="9223372036854.775808",
                   charge_excl="1")]
    if catalog.is_sqlite:
        bad.append(_record(id=33, file_id=4, carrier="hero", record_type="cdr", position=6, feed_id=1033,
                           bill_date="2026-10-02", utc_time="2026-10-02 02:00:00", charge="1E-7", charge_excl="1"))
    else:  # NUMERIC holds NaN: no amount in millionths
        bad.append(_record(id=33, file_id=4, carrier="hero", record_type="cdr", position=6, feed_id=1033,
                           bill_date="2026-10-02", utc_time="2026-10-02 02:00:00", charge="1", charge_excl="NaN"))
    _insert_0006(catalog, RECORDS + bad)
    with pytest.raises(PermanentError) as refused:
        catalog.migrate()
    message = str(refused.value)
    assert "\n" not in message
    assert "1 record with neither a record_key nor a feed_id (the first is record 31)" in message
    assert ("1 record of type cdr without a UTC time (a call's start_time is required) (the first is record 30)"
            in message)
    outside = 1 if catalog.is_sqlite else 2
    assert (f"{outside} record{'s' if outside > 1 else ''} with an amount outside the range of 64-bit millionths "
            "(±9223372036854.775807) (the first is record 32)") in message
    if catalog.is_sqlite:
        assert "1 record with an amount that is not a plain decimal (the first is record 33)" in message
    _assert_still_0006(catalog, len(RECORDS) + len(bad))


def test_0007_on_an_empty_catalog(database_url):
    """A new catalog goes through 0007 with no records at all."""
    catalog = Catalog(database_url)
    try:
        assert catalog.current_revision() == HEAD_REVISION
        with catalog.write() as conn:
            new_id = conn.execute(schema.calls.insert().values(
                file_id=1, carrier="hero", record_key="1", position=1, start_time=_t("2026-10-03 00:00:00"),
                charge=Decimal("0.115")).returning(schema.calls.c.id)).scalar()
            assert new_id == 1
            assert conn.execute(select(schema.calls.c.charge)).scalar() == Decimal("0.115")
    finally:
        catalog.dispose()


def test_0007_cannot_be_downgraded(catalog_0006):
    catalog = catalog_0006
    catalog.migrate()
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with catalog.connect() as conn:
        cfg.attributes["connection"] = conn.execution_options(cdr_write=True)
        command.downgrade(cfg, "0007")  # the revisions after it only add tables
        conn.commit()
        with pytest.raises(PermanentError, match="cannot be downgraded below revision 0007"):
            command.downgrade(cfg, "0006")
        conn.rollback()
    assert catalog.current_revision() == "0007"


def test_0007_refused_mid_way_leaves_nothing_half_done(catalog_0006):
    """Two records that would share a key are only found by the unique constraint, after the migration has
    added columns and created tables: all of it is rolled back (SQLite: Alembic's transaction of the migration;
    PostgreSQL: the catalog's), and the refusal is one line."""
    catalog = catalog_0006
    clash = _record(id=40, file_id=4, carrier="hero", record_key="1001", record_type="cdr", position=3,
                    bill_date="2026-10-02", utc_time="2026-10-02 02:00:00", charge="1", charge_excl="1")
    _insert_0006(catalog, RECORDS + [clash])  # its key is record 1's feed_id as text
    with pytest.raises(PermanentError) as refused:
        catalog.migrate()
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("cannot migrate the catalog to revision 0007: two records of one kind would have "
                              "the same carrier and record key (")
    assert message.endswith("); the catalog is unchanged")
    _assert_still_0006(catalog, len(RECORDS) + 1)
