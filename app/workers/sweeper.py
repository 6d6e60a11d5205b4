"""The sweeper: a periodic pass that requeues stale jobs, fails those past their bound, removes
orphan image files and, in scaled mode, dispatches queued jobs that no broker message covers.

The embedded pool runs one on a thread; in scaled mode every Celery worker runs one on a timer
thread (``app.workers.celery_app``). Each step is a guarded statement or idempotent, so sweepers
in several processes may run at once: a job is requeued once, a file removed once, and a
message dispatched twice only makes a worker find nothing to claim.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.services import cleanup, queue
from app.services.storage import ImageStore

logger = logging.getLogger(__name__)


class Sweeper:
    """One ``sweep()`` does a pass; ``run(stop)`` repeats it every quarter of the stale window."""

    def __init__(
        self,
        settings: Settings,
        *,
        session_factory: sessionmaker[Session],
        store: ImageStore,
        redispatch: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings
        self._session_factory = session_factory
        self._store = store
        self._redispatch = redispatch
        self._next_cleanup = 0.0

    @property
    def interval(self) -> float:
        return max(0.05, self.settings.stale_after_seconds / 4)

    def sweep(self) -> None:
        with self._session_factory() as session:
            changed = queue.requeue_stale(
                session,
                stale_after=timedelta(seconds=self.settings.stale_after_seconds),
                max_attempts=self.settings.max_attempts,
            )
        if changed:
            logger.info("requeued or failed %d generations whose worker stopped responding", changed)
        if self._redispatch is not None:
            sent = self._redispatch()
            if sent:
                logger.info("dispatched %d queued generations no message covered", sent)
        now = time.monotonic()
        if now >= self._next_cleanup:
            self._next_cleanup = now + self.settings.cleanup_interval_seconds
            with self._session_factory() as session:
                cleanup.remove_orphans(
                    session, self._store, older_than=timedelta(seconds=self.settings.orphan_grace_seconds)
                )

    def run(self, stop: threading.Event) -> None:
        """Sweeps until ``stop`` is set; a failing pass (the database away) is logged and retried."""
        while not stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:
                logger.exception("sweeping failed; trying again in %.1f s", self.interval)
