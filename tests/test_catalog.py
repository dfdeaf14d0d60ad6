"""The catalog schema: migrations create it, the head constant matches the scripts, models match migrations."""

from __future__ import annotations

from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from ingest.catalog.db import HEAD_REVISION, MIGRATIONS, Catalog
from ingest.catalog.schema import metadata


def test_head_revision_constant_matches_the_migration_scripts():
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_first_use_creates_the_schema_and_reuse_is_idempotent(database_url):
    catalog = Catalog(database_url)
    try:
        assert catalog.current_revision() == HEAD_REVISION
        tables = set(inspect(catalog.engine).get_table_names())
        assert {"files", "file_links", "file_events", "calls", "charges", "alembic_version"} <= tables
        for table in metadata.sorted_tables:  # the migration created every column the models use
            columns = {c["name"] for c in inspect(catalog.engine).get_columns(table.name)}
            assert columns == {c.name for c in table.columns}, table.name
    finally:
        catalog.dispose()
    again = Catalog(database_url)  # a second process finds it current
    assert again.current_revision() == HEAD_REVISION
    again.dispose()


def test_a_new_sqlite_catalog_uses_wal_and_8k_pages(tmp_path):
    catalog = Catalog(f"sqlite:///{tmp_path}/new.sqlite")
    try:
        with catalog.read() as conn:
            assert conn.exec_driver_sql("PRAGMA page_size").scalar() == 8192
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        catalog.dispose()


def test_two_catalogs_on_one_sqlite_file_share_the_bulk_load_lock(tmp_path):
    """ADBC's own SQLite must never write the file while another connection of this process has it open,
    even one opened through a second Catalog object."""
    import threading

    first = Catalog(f"sqlite:///{tmp_path}/one.sqlite")
    second = Catalog(f"sqlite:///{tmp_path}/./one.sqlite", migrate=False)
    try:
        entered = threading.Event()

        def bulk_load():
            with second.exclusive():
                entered.set()

        with first.connect():
            worker = threading.Thread(target=bulk_load)
            worker.start()
            assert not entered.wait(0.3)  # held off while a connection is open
        assert entered.wait(5)
        worker.join(5)
    finally:
        first.dispose()
        second.dispose()
