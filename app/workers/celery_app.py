"""Scaled mode: Celery workers, one process per GPU, each running queued jobs, and their sweeper.

A task only says "a job is waiting": the worker claims the next job in fair order from the
database, which stays the source of truth. A lost message or a task run twice therefore loses
nothing and repeats nothing: each run claims at most one queued row (one guarded UPDATE), and
then the queued rows the fair order runs next while they can share its pipeline call (dynamic
batching, ``app.workers.batches``; each by its own guarded UPDATE): their own messages later find
them taken and claim the next job, or nothing.

The broker is ``STUDIO_BROKER_URL``: RabbitMQ by default, which hands a dead worker's
unacknowledged message to another worker as soon as the connection drops; ``redis://`` works,
with a visibility timeout above the longest job (``STUDIO_BROKER_VISIBILITY_TIMEOUT_SECONDS``).
Whatever the broker does, each worker also runs a sweeper on a timer thread
(``app.workers.sweeper``): it requeues rows whose worker stopped heart-beating and sends a
message for queued rows that no waiting message covers, so no row waits on a message that will
never come (a killed worker's, one the broker lost, one a web process failed to send).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
from datetime import timedelta
from functools import lru_cache
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings, get_settings

logger = logging.getLogger(__name__)


def make_celery(settings: Settings) -> Celery:
    celery = Celery("studio", broker=settings.broker_url)
    celery.conf.update(
        # Acknowledged after the task ran: a worker killed mid-job leaves its message to the
        # broker, which redelivers it (RabbitMQ at once, Redis after the visibility timeout).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.celery_queue,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if settings.broker_url.startswith(("redis://", "rediss://")):
        # A message not acknowledged within this time goes to another worker: set above the
        # longest job, or a job still painting is announced twice (a no-op claim, but waste).
        celery.conf.broker_transport_options = {"visibility_timeout": settings.broker_visibility_timeout_seconds}
    return celery


celery_app = make_celery(get_settings())


@lru_cache(maxsize=1)
def _session_factory() -> sessionmaker[Session]:
    from app.db.session import make_engine, make_session_factory

    settings = get_settings()
    return make_session_factory(
        make_engine(settings.sqlalchemy_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    )


@lru_cache(maxsize=1)
def _worker_context():  # type: ignore[no-untyped-def]
    # Built lazily inside the worker process, after any fork, so CUDA is initialised there; the
    # engine (torch, diffusers) is imported here, never by a web process that only dispatches.
    from app.services.storage import ImageStore
    from app.workers.events import RedisEventBus
    from app.workers.jobs import build_job_context

    settings = get_settings()
    return settings, build_job_context(
        settings,
        session_factory=_session_factory(),
        store=ImageStore(settings.images_dir),
        bus=RedisEventBus(settings.redis_url, prefix=settings.redis_prefix),
    )


def worker_name(device: str) -> str:
    return f"celery@{socket.gethostname()}:{os.getpid()}:{device}"


@celery_app.task(name="studio.run_next_generation")
def run_next_generation(hint_generation_id: int) -> int | None:
    from app.services import queue
    from app.workers.batches import execute_claimed

    settings, context = _worker_context()
    device = settings.device_list[0]
    worker = worker_name(device)
    with context.session_factory() as session:
        queue.requeue_stale(
            session, stale_after=timedelta(seconds=settings.stale_after_seconds), max_attempts=settings.max_attempts
        )
        job = queue.claim(session, worker=worker, warm_models=context.registry.warm_models(device))
        job_id = job.id if job is not None else None
    if job_id is None:
        return None
    # With the queued jobs that can share its call: their own messages then find them taken.
    execute_claimed(context, job_id, worker=worker, device=device)
    return job_id


def dispatch_to_celery(generation_id: int) -> None:
    """Announces a queued job; if the broker cannot be reached the sweeper announces it later."""
    try:
        run_next_generation.delay(generation_id)
    except Exception:
        logger.exception(
            "could not announce generation %s to the broker; a worker's sweeper will dispatch it", generation_id
        )


# ---------------------------------------------------------------------------------------------
# The sweeper of scaled mode


def messages_waiting(settings: Settings) -> int:
    """Task messages ready in the broker's queue (not those a worker holds while it runs them)."""
    with celery_app.connection_for_write() as connection, connection.channel() as channel:
        try:
            declared = channel.queue_declare(queue=settings.celery_queue, passive=True)
        except Exception:  # no such queue yet (or an empty Redis list): nothing waits
            return 0
        return int(declared.message_count)


def redispatch_uncovered(settings: Settings, session_factory: sessionmaker[Session]) -> int:
    """Sends a message for each queued row no waiting message covers; returns how many it sent.

    Acts only once some queued row is older than ``redispatch_after_seconds``: a fresh row's
    message may still be on its way. Every message claims at most one row, so the rows that a
    message covers number at most the messages waiting; the rest get one each. A message too
    many (a worker about to claim, a requeue that raced the count) finds nothing to claim.
    """
    from app.db.base import utcnow
    from app.services import queue

    cutoff = utcnow() - timedelta(seconds=settings.redispatch_after_seconds)
    with session_factory() as session:
        if queue.count_queued(session, created_before=cutoff) == 0:
            return 0
        queued = queue.count_queued(session)
    missing = queued - messages_waiting(settings)
    for _ in range(missing):
        run_next_generation.delay(0)
    return max(0, missing)


class SweeperTimer:
    """The sweeper on a daemon thread of a Celery worker, from ``worker_ready`` to shutdown.

    Every worker runs one, so the studio keeps sweeping while any worker lives; a short Redis
    lock lets one of them act per interval, and the sweep is safe to repeat anyway.
    """

    def __init__(self, settings: Settings) -> None:
        import redis

        from app.services.storage import ImageStore
        from app.workers.sweeper import Sweeper

        self._settings = settings
        self._stop = threading.Event()
        self._sweeper = Sweeper(
            settings,
            session_factory=_session_factory(),
            store=ImageStore(settings.images_dir),
            redispatch=lambda: redispatch_uncovered(settings, _session_factory()),
        )
        self._redis = redis.Redis.from_url(settings.redis_url)
        self._lock_key = f"{settings.redis_prefix}:sweeper"
        self._thread = threading.Thread(target=self._run, name="sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = self._sweeper.interval
        while not self._stop.wait(interval):
            try:
                # Held a little under one interval: the next round is anyone's again.
                if self._redis.set(self._lock_key, os.getpid(), nx=True, px=max(1, int(interval * 900))):
                    self._sweeper.sweep()
            except Exception:
                logger.exception("sweeping failed; trying again in %.1f s", interval)


_timer: list[SweeperTimer] = []


@worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    timer = SweeperTimer(get_settings())
    timer.start()
    _timer.append(timer)


@worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    for timer in _timer:
        timer.stop()


def run_worker(settings: Settings) -> None:
    """One solo-pool worker process per device, each seeing only its own device."""
    devices = settings.device_list
    if len(devices) == 1:
        os.environ["STUDIO_DEVICES"] = devices[0]
        celery_app.worker_main(
            [
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--loglevel=INFO",
                # Unique per process, so workers sharing a host never clash; no gossip or
                # mingle: the database, not the workers, knows what runs where.
                f"--hostname=studio-{os.getpid()}@{socket.gethostname()}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        )
        return
    processes = []
    for device in devices:
        env = dict(os.environ, STUDIO_DEVICES=device)
        processes.append(subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env))
    for process in processes:
        process.wait()
