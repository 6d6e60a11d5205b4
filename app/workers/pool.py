"""Embedded worker pool: one thread per device inside the server process."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from app.config import Settings
from app.services import queue
from app.workers.jobs import JobContext, execute

logger = logging.getLogger(__name__)


def worker_prefix() -> str:
    """Names this process's workers; start-up requeues jobs left running under this host."""
    return f"embedded@{socket.gethostname()}:"


class WorkerPool:
    def __init__(self, settings: Settings, context: JobContext) -> None:
        self.settings = settings
        self.context = context
        self.devices = settings.device_list
        self._stop = threading.Event()
        # Set by enqueue so an idle worker starts at once instead of at its next poll.
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self.busy: dict[str, int | None] = {device: None for device in self.devices}

    def start(self) -> None:
        with self.context.session_factory() as session:
            # Whatever was running here when the process last stopped was interrupted: retry it.
            requeued = queue.requeue_interrupted(session, worker_prefix=worker_prefix())
        if requeued:
            logger.info("requeued %d interrupted generations", requeued)
        for device in self.devices:
            thread = threading.Thread(target=self._work, args=(device,), name=f"worker-{device}", daemon=True)
            thread.start()
            self._threads.append(thread)
        sweeper = threading.Thread(target=self._sweep, name="sweeper", daemon=True)
        sweeper.start()
        self._threads.append(sweeper)

    def preload(self, model: str) -> None:
        for device in self.devices:
            try:
                self.context.registry.pipeline(model, device)
            except Exception:
                logger.exception("could not preload %s on %s", model, device)

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self, device: str) -> None:
        worker = f"{worker_prefix()}{os.getpid()}:{device}"
        while not self._stop.is_set():
            try:
                with self.context.session_factory() as session:
                    job = queue.claim(session, worker=worker, warm_models=self.context.registry.warm_models(device))
                    job_id = job.id if job is not None else None
            except Exception:
                logger.exception("claim failed on %s", device)
                job_id = None
            if job_id is None:
                self._wake.wait(self.settings.poll_seconds)
                self._wake.clear()
                continue
            self.busy[device] = job_id
            try:
                execute(self.context, job_id, worker=worker, device=device)
            finally:
                self.busy[device] = None

    def _sweep(self) -> None:
        interval = max(1.0, self.settings.stale_after_seconds / 4)
        while not self._stop.wait(interval):
            try:
                with self.context.session_factory() as session:
                    queue.requeue_stale(
                        session,
                        stale_after=timedelta(seconds=self.settings.stale_after_seconds),
                        max_attempts=self.settings.max_attempts,
                    )
            except Exception:
                logger.exception("sweeping stale generations failed")
