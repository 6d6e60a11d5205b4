"""Schema migrations: bring a database up to the newest Alembic revision, from code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

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
    command.upgrade(alembic_config(url), "head")
