"""Scaled mode: Celery workers (Redis broker), one process per GPU, each running queued jobs.

A task only says "a job is waiting": the worker claims the next job in fair order from the
database, which stays the source of truth. A lost message or a task run twice therefore loses
nothing and repeats nothing: each run claims at most one queued row, and the sweeper requeues
rows whose worker died.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from datetime import timedelta
from functools import lru_cache

from celery import Celery

from app.config import Settings, get_settings

logger = logging.getLogger(__name__)


def make_celery(settings: Settings) -> Celery:
    celery = Celery("studio", broker=settings.redis_url)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="studio.generations",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return celery


celery_app = make_celery(get_settings())


@lru_cache(maxsize=1)
def _worker_context():  # type: ignore[no-untyped-def]
    # Built lazily inside the worker process, after any fork, so CUDA is initialised there; the
    # engine (torch, diffusers) is imported here, never by a web process that only dispatches.
    from app.db.session import make_engine, make_session_factory
    from app.services.storage import ImageStore
    from app.workers.events import RedisEventBus
    from app.workers.jobs import build_job_context

    settings = get_settings()
    return settings, build_job_context(
        settings,
        session_factory=make_session_factory(
            make_engine(settings.sqlalchemy_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
        ),
        store=ImageStore(settings.images_dir),
        bus=RedisEventBus(settings.redis_url),
    )


@celery_app.task(name="studio.run_next_generation")
def run_next_generation(hint_generation_id: int) -> int | None:
    from app.services import queue
    from app.workers.jobs import execute

    settings, context = _worker_context()
    device = settings.device_list[0]
    worker = f"celery@{socket.gethostname()}:{os.getpid()}:{device}"
    with context.session_factory() as session:
        queue.requeue_stale(
            session, stale_after=timedelta(seconds=settings.stale_after_seconds), max_attempts=settings.max_attempts
        )
        job = queue.claim(session, worker=worker, warm_models=context.registry.warm_models(device))
        job_id = job.id if job is not None else None
    if job_id is None:
        return None
    execute(context, job_id, worker=worker, device=device)
    return job_id


def dispatch_to_celery(generation_id: int) -> None:
    run_next_generation.delay(generation_id)


def run_worker(settings: Settings) -> None:
    """One solo-pool worker process per device, each seeing only its own device."""
    devices = settings.device_list
    if len(devices) == 1:
        os.environ["STUDIO_DEVICES"] = devices[0]
        celery_app.worker_main(["worker", "--pool=solo", "--concurrency=1", "--loglevel=INFO"])
        return
    processes = []
    for device in devices:
        env = dict(os.environ, STUDIO_DEVICES=device)
        processes.append(subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env))
    for process in processes:
        process.wait()
