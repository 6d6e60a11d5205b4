"""Engine and session factory for the configured database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    """An engine for ``url``; ``pool_size`` and ``max_overflow`` bound a server database's connections."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # WAL lets the web threads read while a worker thread writes; foreign keys are off
            # by default in SQLite. In WAL mode, synchronous=NORMAL syncs at checkpoints instead
            # of at every commit (a job's claim, completion and heartbeats each cost an fsync
            # otherwise): the database never corrupts, and only a power loss, not a crash of the
            # studio, can take back the last commits. Image files are still synced before their
            # rows commit, so a row never points at a missing file.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def reading(session: Session) -> Iterator[Session]:
    """A read whose transaction ends with the block, in the thread that ran it, however the block ends.

    A request's session still in a transaction when its route returns is closed in a worker-thread
    hop of its own on PostgreSQL (the pool's ROLLBACK goes over the network); a route that only
    reads ends it here, in the hop it already runs in.
    """
    try:
        yield session
    finally:
        session.rollback()
