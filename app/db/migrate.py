"""Schema migrations: bring a database up to the newest Alembic revision, from code.

Every web process migrates at start, and so do ``studio migrate`` and ``studio worker``; on
PostgreSQL they may all start at once against a fresh database. Two Alembic runs racing would
both create ``alembic_version`` (or both run a migration), and one crashes. So the upgrade runs
under a session-level advisory lock: the first process migrates, the others wait for it and
then find the schema current, a no-op.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import make_url

# The key of the advisory lock migrations take (any fixed 64-bit number; this spells "studiomg").
MIGRATION_LOCK_KEY = 0x73747564696F6D67

REPO_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = REPO_ROOT / "alembic.ini"
MIGRATIONS_DIR = REPO_ROOT / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config aimed at ``url``; migrations/env.py reads the URL from its attributes."""
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    # The server and the CLI own logging; the ini's logging section is for the alembic command.
    config.attributes["skip_logging"] = True
    return config


def upgrade_database(url: str) -> None:
    """Run ``alembic upgrade head`` on ``url``; safe to call at every start (a no-op when current)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if parsed.get_backend_name() != "postgresql":
        # SQLite serialises writers itself (a second process waits on the file lock).
        command.upgrade(alembic_config(url), "head")
        return
    # The lock lives on a connection of its own, held while Alembic migrates on another; it is
    # released by the unlock or, if this process dies, by PostgreSQL when the connection drops.
    locker = create_engine(url, poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with locker.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                command.upgrade(alembic_config(url), "head")
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
    finally:
        locker.dispose()
