"""Database engine: what every SQLite connection is set up with."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from app.db.session import make_engine


def test_a_sqlite_connection_writes_ahead_syncs_at_checkpoints_and_checks_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'studio.db'}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            # 1 is NORMAL: no fsync at every commit (WAL keeps the file consistent without it).
            assert connection.execute(text("PRAGMA synchronous")).scalar() == 1
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    finally:
        engine.dispose()
