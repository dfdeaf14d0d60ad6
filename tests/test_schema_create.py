"""A new catalog is created from the models at once (``Catalog._create``, then stamped at the head revision); it
must be exactly the catalog the migrations build revision by revision: every table, column (type, nullability,
default sequence), primary key, unique constraint, index, foreign key and, on PostgreSQL, collation."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from ingest.catalog.db import HEAD_REVISION, MIGRATIONS, Catalog
from tests.conftest import postgres_schema


def _migrated(url: str, revision: str = "head") -> Catalog:
    """A catalog at ``url`` built by the migrations, revision by revision, up to ``revision``."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    catalog = Catalog(url, migrate=False)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with catalog.connect() as conn:
        cfg.attributes["connection"] = conn.execution_options(cdr_write=True)
        command.upgrade(cfg, revision)
        conn.commit()
    return catalog


def _shape(catalog: Catalog) -> dict:
    inspector = inspect(catalog.engine)
    shape = {}
    for table in sorted(inspector.get_table_names()):
        shape[table] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"], str(c.get("default")) if c.get("default") else None)
                        for c in inspector.get_columns(table)],
            "pk": inspector.get_pk_constraint(table),
            "unique": sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
            "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"],
                               str(i.get("dialect_options", {}))) for i in inspector.get_indexes(table)),
            "foreign_keys": sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"],
                                    tuple(f["referred_columns"])) for f in inspector.get_foreign_keys(table)),
        }
    for view in sorted(inspector.get_view_names()):
        shape[f"view {view}"] = {
            "definition": " ".join(inspector.get_view_definition(view).split()),
            "columns": [(c["name"], str(c["type"])) for c in inspector.get_columns(view)],
        }
    if not catalog.is_sqlite:
        with catalog.read() as conn:
            shape["collations"] = sorted(conn.execute(text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND collation_name IS NOT NULL")).all())
            shape["sequences"] = sorted(conn.execute(text(
                "SELECT s.relname, t.relname, a.attname, q.seqcache FROM pg_class s JOIN pg_depend d "
                "ON d.objid = s.oid JOIN pg_class t ON t.oid = d.refobjid JOIN pg_attribute a ON a.attrelid = t.oid "
                "AND a.attnum = d.refobjsubid JOIN pg_namespace n ON n.oid = s.relnamespace "
                "JOIN pg_sequence q ON q.seqrelid = s.oid "
                "WHERE s.relkind = 'S' AND n.nspname = current_schema()")).all())
    return shape


@pytest.fixture
def second_url(database_url, tmp_path):
    """Another empty database of the same kind as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path}/second.sqlite"
        return
    with postgres_schema() as url:
        yield url


def test_a_created_catalog_is_the_migrated_one(database_url, second_url):
    created = Catalog(database_url)
    migrated = _migrated(second_url)
    try:
        assert created.current_revision() == migrated.current_revision() == HEAD_REVISION
        assert _shape(created) == _shape(migrated)
    finally:
        created.dispose()
        migrated.dispose()


def test_a_catalog_of_an_older_revision_is_migrated_not_created(database_url):
    """A database with the catalog's tables is upgraded by the migrations, never created over."""
    catalog = _migrated(database_url, "0009")
    assert catalog.current_revision() == "0009"
    catalog.migrate()
    assert catalog.current_revision() == HEAD_REVISION
    assert "legs" in inspect(catalog.engine).get_table_names()
    catalog.dispose()
