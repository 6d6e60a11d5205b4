"""Embedded worker pool: one thread per device inside the server process, plus a sweeper.

At start-up the jobs this host's pool left running are requeued, or failed once they used up
``max_attempts``: a job that crashes the whole process must not crash it at every start.

The pool starts in the background, so the web side answers at once: a start-up thread finds
the devices and imports the engine (torch, diffusers), then starts a worker thread per device,
each of which preloads the default model before it claims jobs. Jobs submitted meanwhile wait
in the queue. Importing this module loads no engine: ``app.workers.jobs`` is imported by the
``make_context`` the app passes in, on the start-up thread.

A worker thread outlives database errors (it logs, backs off and retries) and a failing job;
``problems()`` names any thread that died anyway, for ``/healthz``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from app.config import Settings
from app.engine.catalog import ModelState
from app.services import queue

if TYPE_CHECKING:
    from app.workers.jobs import JobContext

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0


def worker_prefix() -> str:
    """Names this process's workers; start-up requeues jobs left running under this host."""
    return f"embedded@{socket.gethostname()}:"


class WorkerPool:
    def __init__(self, settings: Settings, make_context: Callable[[], JobContext]) -> None:
        self.settings = settings
        self._make_context = make_context
        self.context: JobContext | None = None
        # Known once the start-up thread has asked torch (when STUDIO_DEVICES leaves it open).
        self.devices: list[str] = []
        self._stop = threading.Event()
        # Set by enqueue so an idle worker starts at once instead of at its next poll.
        self._wake = threading.Event()
        # Counts enqueues, so a worker painting a call's first steps looks for jobs to join it
        # only when one arrived since it last looked (workers.batches).
        self._enqueued = 0
        self._enqueued_lock = threading.Lock()
        self._starter: threading.Thread | None = None
        self._start_error: str | None = None
        self._threads: dict[str, threading.Thread] = {}
        self.busy: dict[str, int | None] = {}
        # device -> model -> state, written by the worker threads, read by /healthz and /api/models.
        self._models: dict[str, dict[str, ModelState]] = {}
        self._model_errors: dict[str, str] = {}
        self._state_lock = threading.Lock()

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the pool in the background and returns at once."""
        self._starter = threading.Thread(
            target=self._guarded,
            args=("pool start-up", self._start_workers),
            kwargs={"runs_until_stop": False},
            name="pool-start",
            daemon=True,
        )
        self._starter.start()

    def wait_started(self, timeout: float | None = None) -> bool:
        """Waits until the worker threads run (or the start failed); False on timeout."""
        if self._starter is None:
            return False
        self._starter.join(timeout)
        return not self._starter.is_alive()

    def notify(self) -> None:
        """A job was enqueued (its row committed): an idle worker claims it, a busy one may batch it."""
        with self._enqueued_lock:
            self._enqueued += 1
        self._wake.set()

    def enqueued(self) -> int:
        """How many times ``notify`` was called; only whether it moved since a read means anything."""
        return self._enqueued

    def stop(self, timeout: float = 10.0) -> None:
        """Stops the threads; a running job stops at its next step and goes back to the queue."""
        self._stop.set()
        self._wake.set()
        if self._starter is not None:
            self._starter.join(timeout)
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def _start_workers(self) -> None:
        try:
            devices = self.settings.device_list  # may import torch to count GPUs
            context = self._make_context()  # imports the engine
        except Exception as error:
            logger.exception("the worker pool could not start")
            self._start_error = f"the worker pool could not start: {error}"
            return
        self.context = context
        with self._state_lock:
            self.devices = devices
            self.busy.update({device: None for device in devices})
        # Whatever was running here when the process last stopped was interrupted: retry it.
        # Retried like a claim, since the database may not answer yet at start-up.
        self._retrying("requeueing interrupted generations", self._requeue_interrupted)
        if self._stop.is_set():
            return
        for device in devices:
            self._spawn(f"worker-{device}", partial(self._work, context, device))
        self._spawn("sweeper", partial(self._sweep, context))

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._guarded, args=(name, target), name=name, daemon=True)
        thread.start()
        # Registered once started: /healthz reads a registered thread that is not alive as dead.
        self._threads[name] = thread

    def _guarded(self, name: str, target: Callable[[], None], *, runs_until_stop: bool = True) -> None:
        try:
            target()
        except BaseException:
            # Past every retry loop: the thread really ends here. Say so; /healthz says it too.
            logger.critical("the %s thread died", name, exc_info=True)
            return
        if runs_until_stop and not self._stop.is_set():
            logger.error("the %s thread returned while the pool runs", name)

    def _requeue_interrupted(self) -> None:
        assert self.context is not None
        with self.context.session_factory() as session:
            changed = queue.requeue_interrupted(
                session, worker_prefix=worker_prefix(), max_attempts=self.settings.max_attempts
            )
        if changed:
            logger.info("requeued (or failed, past their attempts) %d interrupted generations", changed)

    def _retrying(self, what: str, action: Callable[[], None]) -> None:
        """Runs ``action`` until it succeeds or the pool stops, backing off after each failure."""
        failures = 0
        while not self._stop.is_set():
            try:
                action()
                return
            except Exception:
                failures += 1
                delay = self._backoff(failures)
                logger.exception("%s failed (%d in a row); retrying in %.1f s", what, failures, delay)
                self._stop.wait(delay)

    def _backoff(self, failures: int) -> float:
        return float(min(MAX_BACKOFF_SECONDS, self.settings.poll_seconds * 2 ** min(failures, 10)))

    # -- health -----------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Why the pool cannot run jobs, one sentence each; empty when it can (or is starting)."""
        if self._start_error is not None:
            return [self._start_error]
        if self._stop.is_set():
            return []
        if self._starter is not None and not self._starter.is_alive() and not self._threads:
            return ["the pool's start-up thread died before it started any worker; the log says why"]
        return [
            f"the {name} thread is dead; restart the studio (the log says why it stopped)"
            for name, thread in list(self._threads.items())
            if not thread.is_alive()
        ]

    def model_state(self, name: str) -> ModelState:
        """What the pool knows of a model: loading, ready (warm on a device), failed, or cold."""
        with self._state_lock:
            if self._start_error is not None:
                return "failed"
            states = {models.get(name) for models in self._models.values()}
            preloading = self.settings.preload_default_model and name == self.settings.default_model
            if "loading" in states or (preloading and not self._models):
                return "loading"
            if "ready" in states:
                return "ready"
            if "failed" in states:
                return "failed"
            return "cold"

    def model_error(self, name: str) -> str | None:
        with self._state_lock:
            return self._model_errors.get(name)

    def _set_model_state(self, device: str, name: str, state: ModelState) -> None:
        with self._state_lock:
            self._models.setdefault(device, {})[name] = state

    def _note_warm(self, context: JobContext, device: str) -> None:
        """After a job: the device's warm models are ready, evicted ones cold again."""
        warm = set(context.registry.warm_models(device))
        with self._state_lock:
            models = self._models.setdefault(device, {})
            for name in list(models):
                if models[name] == "ready" and name not in warm:
                    del models[name]
            for name in warm:
                models[name] = "ready"

    # -- threads ----------------------------------------------------------------------------

    def _preload(self, context: JobContext, device: str) -> None:
        model = self.settings.default_model
        self._set_model_state(device, model, "loading")
        try:
            context.registry.pipeline(model, device)
        except Exception as error:
            logger.exception("could not preload %s on %s", model, device)
            with self._state_lock:
                self._model_errors[model] = str(error)[:300]
            self._set_model_state(device, model, "failed")
        else:
            logger.info("%s is ready on %s", model, device)
            self._set_model_state(device, model, "ready")

    def _work(self, context: JobContext, device: str) -> None:
        from app.workers.batches import execute_claimed

        worker = f"{worker_prefix()}{os.getpid()}:{device}"
        if self.settings.preload_default_model:
            self._preload(context, device)
        failures = 0
        while not self._stop.is_set():
            # Any error here (the database refusing a claim, a bug in recording a job) is logged
            # and retried after a pause that grows while it keeps failing; the thread goes on.
            try:
                # Cleared before the claim, not after the wait: a job submitted once the claim has
                # looked sets the flag again, so the wait below returns at once for it.
                self._wake.clear()
                with context.session_factory() as session:
                    job = queue.claim(session, worker=worker, warm_models=context.registry.warm_models(device))
                    job_id = job.id if job is not None else None
                if job_id is None:
                    failures = 0
                    self._wake.wait(self.settings.poll_seconds)
                    continue
                self.busy[device] = job_id
                try:
                    # With the queued jobs that can share its pipeline call, claimed in fair order,
                    # and those enqueued while the call paints its first steps.
                    execute_claimed(
                        context, job_id, worker=worker, device=device, stop=self._stop, arrivals=self.enqueued
                    )
                finally:
                    self.busy[device] = None
                self._note_warm(context, device)
                failures = 0
            except Exception:
                failures += 1
                delay = self._backoff(failures)
                logger.exception("worker on %s failed (%d in a row); retrying in %.1f s", device, failures, delay)
                self._stop.wait(delay)

    def _sweep(self, context: JobContext) -> None:
        from app.workers.sweeper import Sweeper

        Sweeper(self.settings, session_factory=context.session_factory, store=context.store).run(self._stop)
