"""Migrations: `alembic upgrade head` on an empty database yields exactly the models' schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import app.db.models  # noqa: F401  (registers every table)
from app.db.base import Base
from app.db.migrate import alembic_config, upgrade_database

TABLES = {
    "users",
    "api_tokens",
    "generations",
    "images",
    "galleries",
    "gallery_items",
    "share_links",
    "feedback",
    "preferences",
}


def _schema_diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_on_fresh_database_matches_the_models(db_url: str) -> None:
    upgrade_database(db_url)

    assert _tables(db_url) == TABLES | {"alembic_version"}
    assert _schema_diff(db_url) == []


def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    upgrade_database(db_url)
    upgrade_database(db_url)

    assert _schema_diff(db_url) == []


def test_upgrade_creates_the_sqlite_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "data" / "studio.db"

    upgrade_database(f"sqlite:///{path}")

    assert path.exists()
    assert _tables(f"sqlite:///{path}") >= TABLES


def test_downgrade_to_base_and_back_up(db_url: str) -> None:
    upgrade_database(db_url)

    command.downgrade(alembic_config(db_url), "base")
    assert _tables(db_url) <= {"alembic_version"}

    upgrade_database(db_url)
    assert _schema_diff(db_url) == []
