"""STUDIO_DEVICE_THREADS: the torch threads a worker paints with on the CPU."""

from __future__ import annotations

import torch

from app.config import Settings
from app.db.session import make_engine, make_session_factory
from app.services.storage import ImageStore
from app.workers.events import MemoryEventBus
from app.workers.jobs import build_job_context


def test_a_worker_context_sets_the_device_threads(settings: Settings) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        factory = make_session_factory(make_engine(settings.sqlalchemy_url))
        store = ImageStore(settings.images_dir)
        build_job_context(
            settings.model_copy(update={"device_threads": 1}),
            session_factory=factory,
            store=store,
            bus=MemoryEventBus(),
        )
        assert torch.get_num_threads() == 1
        # 0 leaves whatever torch has.
        torch.set_num_threads(2)
        build_job_context(settings, session_factory=factory, store=store, bus=MemoryEventBus())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
