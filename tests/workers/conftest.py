"""Worker fixtures: an embedded pool over the tiny test models, on the test's database."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.models import Generation, Status
from app.engine.registry import ModelRegistry
from app.services.storage import ImageStore
from app.workers.events import MemoryEventBus
from app.workers.jobs import JobContext
from app.workers.pool import WorkerPool
from tests.tiny_pipeline import TINY, tiny_models


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test models (``tiny``, ``tiny-inpaint``, ``pickled``), built once per test run."""
    return tiny_models(tmp_path_factory)


@pytest.fixture
def models_dir(tmp_path: Path, tiny_models_dir: Path) -> Path:
    """A private models directory with a copy of ``tiny``, so a test may delete models from it."""
    root = tmp_path / "models"
    shutil.copytree(tiny_models_dir / TINY, root / TINY)
    return root


@pytest.fixture
def job_context(session_factory: sessionmaker[Session], models_dir: Path, tmp_path: Path) -> JobContext:
    return JobContext(
        session_factory=session_factory,
        registry=ModelRegistry(models_dir, cache_size=2),
        store=ImageStore(tmp_path / "images"),
        bus=MemoryEventBus(),
        heartbeat_seconds=0.1,
    )


@pytest.fixture
def pool_settings(settings: Settings, models_dir: Path) -> Settings:
    return settings.model_copy(
        update={
            "models_dir": models_dir,
            "default_model": TINY,
            "devices": "cpu",
            "poll_seconds": 0.05,
            "heartbeat_seconds": 0.1,
            "stale_after_seconds": 3600.0,
        }
    )


@pytest.fixture
def make_pool(pool_settings: Settings, job_context: JobContext) -> Iterator[Callable[..., WorkerPool]]:
    """``make_pool(context=None, **settings_overrides) -> WorkerPool``, started and running its
    threads; stopped when the test ends. ``context`` replaces the test's ``job_context``."""
    pools: list[WorkerPool] = []

    def make(context: JobContext | None = None, **overrides: Any) -> WorkerPool:
        chosen = context or job_context
        pool = WorkerPool(pool_settings.model_copy(update=overrides), lambda: chosen)
        pool.start()
        pools.append(pool)
        assert pool.wait_started(timeout=60), "the pool's start-up thread did not finish"
        return pool

    yield make
    for pool in pools:
        pool.stop()


def wait_for_status(
    session_factory: sessionmaker[Session], generation_id: int, wanted: set[Status], attempts: int = 1200
) -> Generation:
    """Polls the row until its status is one of ``wanted`` (a generous bound, not a timing check)."""
    for _ in range(attempts):
        with session_factory() as session:
            generation = session.get(Generation, generation_id)
            assert generation is not None
            if generation.status in wanted:
                session.refresh(generation, ["images"])
                session.expunge_all()
                return generation
        time.sleep(0.05)
    raise AssertionError(f"generation {generation_id} never reached {wanted}")


@pytest.fixture
def wait_status() -> Callable[..., Generation]:
    """``wait_status(session_factory, generation_id, {Status...}) -> Generation`` (detached)."""
    return wait_for_status
