"""Start-up that composes: migrations from several processes at once on a fresh PostgreSQL
database all succeed, one of them migrating and the others waiting on its lock."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import create_engine, inspect, text

from tests.scaled.conftest import REPO_ROOT, scaled_env


def test_three_migrate_commands_started_together_on_a_fresh_database_all_succeed(fresh_database: str) -> None:
    env = scaled_env(fresh_database, REPO_ROOT / "unused-data", REPO_ROOT / "models", "amqp://unused//")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "app.cli", "migrate"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=300)[0].decode(errors="replace") for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], "\n".join(outputs)
    engine = create_engine(fresh_database)
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert len(versions) == 1
    assert {"users", "generations", "images"} <= tables
