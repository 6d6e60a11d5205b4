"""Shared fixtures: settings with a private data dir, a migrated database, and row factories.

The database is SQLite in the test's tmp dir, or PostgreSQL when STUDIO_DATABASE_URL is set.
On PostgreSQL a test run creates a database of its own (and drops it at the end), so two runs on
one server never collide, and every test starts from an empty schema in it, so tests never see
each other's rows.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: no test may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.migrate import upgrade_database
from app.db.models import Generation, Mode, Role, Status, User
from app.db.session import make_engine, make_session_factory
from app.services.users import hash_password

# The tiny models of the tests gain nothing from more threads, and several threads per process
# oversubscribe two cores badly when anything else runs beside the tests.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATABASE_URL_ENV = "STUDIO_DATABASE_URL"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


_RUN_DATABASE: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    """On PostgreSQL, point STUDIO_DATABASE_URL at a database private to this run.

    The environment variable is rewritten, so everything reads the private database: fixtures,
    tests that read the variable, and the server and worker processes tests start.
    """
    url = os.environ.get(DATABASE_URL_ENV)
    if not url or is_sqlite(url):
        return
    given = make_url(url)
    name = f"studio_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(given, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    _RUN_DATABASE.update(given=url, name=name)
    os.environ[DATABASE_URL_ENV] = given.set(database=name).render_as_string(hide_password=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _RUN_DATABASE:
        return
    os.environ[DATABASE_URL_ENV] = _RUN_DATABASE["given"]
    admin = create_engine(make_url(_RUN_DATABASE["given"]), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{_RUN_DATABASE["name"]}" WITH (FORCE)'))
    finally:
        admin.dispose()
    _RUN_DATABASE.clear()


def reset_database(url: str) -> None:
    """Leave a non-SQLite database with an empty public schema (no tables, no alembic_version)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Migrating once and copying the file keeps each test's fresh database cheap.
    path = tmp_path_factory.mktemp("template") / "studio.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """URL of an empty database for this test (not yet migrated)."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url and not is_sqlite(url):
        reset_database(url)
        return url
    return f"sqlite:///{tmp_path / 'studio.db'}"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        database_url=db_url,
        models_dir=REPO_ROOT / "models",
        start_workers=False,
        preload_default_model=False,
        auth="local",
        # The test clients send Host: testserver; the studio answers only the names it is told.
        allowed_hosts="127.0.0.1,localhost,::1,testserver",
        # Given, as a studio bound beyond loopback or scaled must be given it (create_app refuses otherwise).
        secret_key="tests-sign-their-sessions-with-this",
    )


@pytest.fixture
def engine(db_url: str, _migrated_sqlite_template: Path) -> Iterator[Engine]:
    """An engine on the test's database, migrated to the newest revision."""
    if is_sqlite(db_url):
        database = make_url(db_url).database
        assert database
        shutil.copyfile(_migrated_sqlite_template, database)
    else:
        upgrade_database(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


# A cheap argon2 hash computed once: factories make many users and hashing is slow on purpose.
_FACTORY_PASSWORD = "correct horse battery"
_FACTORY_HASH: list[str] = []


def _factory_hash() -> str:
    if not _FACTORY_HASH:
        _FACTORY_HASH.append(hash_password(_FACTORY_PASSWORD))
    return _FACTORY_HASH[0]


_user_counter = iter(range(1, 1_000_000))


def create_test_user(session: Session, username: str | None = None, role: Role = Role.ARTIST) -> User:
    """A committed user whose password is ``correct horse battery``."""
    user = User(
        username=username or f"artist{next(_user_counter)}",
        password_hash=_factory_hash(),
        role=role,
    )
    session.add(user)
    session.commit()
    return user


def create_test_generation(session: Session, owner: User, **overrides: Any) -> Generation:
    """A committed queued txt2img generation on studio-tiny; any column can be overridden."""
    values: dict[str, Any] = {
        "mode": Mode.TXT2IMG,
        "prompt": "a red barn under a blue sky",
        "negative_prompt": "",
        "model": "studio-tiny",
        "scheduler": "ddim",
        "seed": 1234,
        "steps": 2,
        "guidance": 5.0,
        "width": 64,
        "height": 64,
        "n_images": 1,
        "params": {},
        "style_image_ids": [],
        "status": Status.QUEUED,
        "priority": 0,
        "attempts": 0,
    }
    values.update(overrides)
    generation = Generation(user_id=owner.id, **values)
    session.add(generation)
    session.commit()
    return generation


LOCAL_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_url() -> str:
    """The local Redis the scaled bus and rate limits use; the test is skipped where none answers."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(LOCAL_REDIS).ping()
    except redis.RedisError as error:
        pytest.skip(f"no Redis at {LOCAL_REDIS}: {error}")
    return LOCAL_REDIS


@pytest.fixture
def make_user() -> Callable[..., User]:
    """``make_user(session, username=None, role=Role.ARTIST) -> User``."""
    return create_test_user


@pytest.fixture
def make_generation() -> Callable[..., Generation]:
    """``make_generation(session, owner=user, **overrides) -> Generation``."""
    return create_test_generation
