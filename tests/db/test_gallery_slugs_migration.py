"""Migration 0004 gives the galleries that existed before it each a random slug (issue 14)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text

from app.db.migrate import alembic_config, upgrade_database


def test_existing_galleries_get_distinct_slugs(db_url: str) -> None:
    command.upgrade(alembic_config(db_url), "0003")
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (id, username, password_hash, role, created_at, session_version) "
                    "VALUES (1, 'alice', 'x', 'artist', CURRENT_TIMESTAMP, 0)"
                )
            )
            for title in ("one", "two", "three"):
                connection.execute(
                    text(
                        "INSERT INTO galleries (owner_id, title, description, visibility, created_at) "
                        "VALUES (1, :title, '', 'unlisted', CURRENT_TIMESTAMP)"
                    ),
                    {"title": title},
                )

        upgrade_database(db_url)

        with engine.connect() as connection:
            slugs = [row[0] for row in connection.execute(text("SELECT slug FROM galleries"))]
    finally:
        engine.dispose()
    assert len(slugs) == 3 and all(slug and len(slug) >= 22 for slug in slugs)
    assert len(set(slugs)) == 3
