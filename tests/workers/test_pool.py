"""Embedded worker pool: runs queued jobs, resumes interrupted ones, honours cancels, survives failures,
stops on shutdown, sweeps stale jobs and says when a thread died."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.models import Generation, Status, User
from app.services import queue
from app.workers import jobs
from app.workers.jobs import JobContext
from app.workers.pool import WorkerPool, worker_prefix
from tests.tiny_pipeline import TINY

MakePool = Callable[..., WorkerPool]
WaitStatus = Callable[..., Generation]
FINAL = {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}


def test_pool_paints_a_queued_job_to_succeeded(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    job_context: JobContext,
    wait_status: WaitStatus,
) -> None:
    owner = make_user(session)
    queued = make_generation(session, owner=owner, model=TINY, steps=2, n_images=2)

    make_pool()
    done = wait_status(session_factory, queued.id, FINAL)

    assert done.status == Status.SUCCEEDED, done.error
    assert done.worker is not None and done.worker.startswith(worker_prefix())
    assert [(image.index, image.width, image.height) for image in sorted(done.images, key=lambda i: i.index)] == [
        (0, 64, 64),
        (1, 64, 64),
    ]
    assert all(job_context.store.exists(image.sha256) for image in done.images)
    statuses = [event.data["status"] for event in job_context.bus.read(queued.id) if event.name == "status"]
    assert statuses == ["running", "succeeded"]


def test_a_job_left_running_by_this_host_is_requeued_at_start_and_completed(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    wait_status: WaitStatus,
) -> None:
    owner = make_user(session)
    interrupted = make_generation(
        session, owner=owner, model=TINY, status=Status.RUNNING, worker=f"{worker_prefix()}999999:cpu", attempts=1
    )
    elsewhere = make_generation(
        session, owner=owner, model=TINY, status=Status.RUNNING, worker="embedded@another-host:1:cpu", attempts=1
    )

    make_pool()
    done = wait_status(session_factory, interrupted.id, FINAL)

    assert done.status == Status.SUCCEEDED, done.error
    assert done.attempts == 2
    assert len(done.images) == 1
    # Another host's running job is that host's to resume, not ours.
    with session_factory() as check:
        other = check.get(Generation, elsewhere.id)
        assert other is not None
        assert other.status == Status.RUNNING
        assert other.worker == "embedded@another-host:1:cpu"


def test_cancelling_a_running_job_ends_it_cancelled_without_images(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    job_context: JobContext,
    wait_status: WaitStatus,
) -> None:
    owner = make_user(session)
    long_job = make_generation(session, owner=owner, model=TINY, steps=200)
    pool = make_pool()

    for _ in range(2400):  # a generous bound on waiting for the first step
        if any(event.name == "progress" for event in job_context.bus.read(long_job.id)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the job never reported progress")
    with session_factory() as cancelling:
        queue.cancel(cancelling, generation_id=long_job.id, user=owner)

    done = wait_status(session_factory, long_job.id, FINAL)
    for _ in range(2400):  # the worker reports the end after it stops the engine
        events = job_context.bus.read(long_job.id)
        if events and events[-1].name == "status" and events[-1].data["status"] == "cancelled":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the worker never reported the cancel")

    assert done.status == Status.CANCELLED
    assert done.images == []
    steps = [event.data["step"] for event in job_context.bus.read(long_job.id) if event.name == "progress"]
    assert steps and max(steps) < 200
    # The worker clears its busy slot just after it reports the end: wait for it, don't race it.
    for _ in range(2400):
        if pool.busy["cpu"] is None:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the worker still says it is busy with {pool.busy['cpu']}")


def test_a_job_whose_model_vanished_fails_readably_and_the_worker_goes_on(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    models_dir: Path,
    wait_status: WaitStatus,
) -> None:
    shutil.copytree(models_dir / TINY, models_dir / "doomed")
    owner = make_user(session)
    orphan = make_generation(session, owner=owner, model="doomed", steps=2)
    next_job = make_generation(session, owner=owner, model=TINY, steps=2)
    shutil.rmtree(models_dir / "doomed")

    make_pool()
    failed = wait_status(session_factory, orphan.id, FINAL)
    succeeded = wait_status(session_factory, next_job.id, FINAL)

    assert failed.status == Status.FAILED
    assert failed.error is not None
    assert "doomed" in failed.error
    assert "Traceback" not in failed.error
    assert failed.images == []
    assert succeeded.status == Status.SUCCEEDED, succeeded.error


class FlakySessions:
    """A session factory that refuses its first ``failures`` sessions to one thread, as a database
    that went away would; every other call gets a real session."""

    def __init__(self, real: sessionmaker[Session], *, thread_name: str, failures: int) -> None:
        self._real = real
        self._thread_name = thread_name
        self._failures_left = failures
        self.refused = 0

    def __call__(self) -> Session:
        # Only the named thread decrements, so no lock is needed.
        if threading.current_thread().name == self._thread_name and self._failures_left > 0:
            self._failures_left -= 1
            self.refused += 1
            raise OperationalError("SELECT 1", {}, Exception("the database went away"))
        return self._real()


def test_a_worker_survives_database_errors_and_then_runs_the_job(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    job_context: JobContext,
    wait_status: WaitStatus,
    caplog: pytest.LogCaptureFixture,
) -> None:
    owner = make_user(session)
    queued = make_generation(session, owner=owner, model=TINY, steps=2)
    # The worker thread's first four sessions (its claims) meet a dead database.
    flaky = FlakySessions(session_factory, thread_name="worker-cpu", failures=4)

    with caplog.at_level(logging.ERROR, logger="app.workers.pool"):
        pool = make_pool(context=replace(job_context, session_factory=flaky))
        done = wait_status(session_factory, queued.id, FINAL)

    assert flaky.refused == 4
    assert done.status == Status.SUCCEEDED, done.error
    assert sum("worker on cpu failed" in record.getMessage() for record in caplog.records) == 4
    assert pool.problems() == []


def test_recording_a_failure_retries_a_failing_database_and_the_worker_goes_on(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    wait_status: WaitStatus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs, "RECORD_BACKOFF_SECONDS", 0.01)
    real_fail = queue.fail
    refusals = [OperationalError("UPDATE", {}, Exception("the database went away"))] * 2

    def flaky_fail(session: Session, **kwargs: Any) -> None:
        if refusals:
            raise refusals.pop()
        real_fail(session, **kwargs)

    monkeypatch.setattr(queue, "fail", flaky_fail)
    owner = make_user(session)
    broken = make_generation(session, owner=owner, model="no-such-model", steps=2)
    after = make_generation(session, owner=owner, model=TINY, steps=2)

    make_pool()
    failed = wait_status(session_factory, broken.id, FINAL)
    succeeded = wait_status(session_factory, after.id, FINAL)

    assert refusals == []
    assert failed.status == Status.FAILED
    assert failed.error is not None and "no-such-model" in failed.error
    assert succeeded.status == Status.SUCCEEDED, succeeded.error


def test_stopping_the_pool_stops_a_running_job_within_a_step_and_requeues_it(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    job_context: JobContext,
) -> None:
    owner = make_user(session)
    long_job = make_generation(session, owner=owner, model=TINY, steps=150)
    pool = make_pool()
    for _ in range(2400):  # a generous bound on waiting for the first step
        if any(event.name == "progress" for event in job_context.bus.read(long_job.id)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the job never reported progress")

    steps_before = len([event for event in job_context.bus.read(long_job.id) if event.name == "progress"])
    pool.stop()

    steps = [event.data["step"] for event in job_context.bus.read(long_job.id) if event.name == "progress"]
    # The step in flight when stop() was called may end, and one more may have ended between
    # counting and stopping; the engine stops at the step end after that.
    assert len(steps) <= steps_before + 2
    assert max(steps) < 150
    with session_factory() as check:
        stopped = check.get(Generation, long_job.id)
        assert stopped is not None
        assert stopped.status == Status.QUEUED
        assert stopped.worker is None
        assert stopped.error is None
        assert stopped.images == []
    statuses = [event.data["status"] for event in job_context.bus.read(long_job.id) if event.name == "status"]
    assert statuses == ["running", "queued"]
    # This pool's worker thread has ended (other tests' pools may still be winding down).
    assert not pool._threads["worker-cpu"].is_alive()


def test_the_sweeper_requeues_a_stale_job_and_fails_one_past_its_attempts(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    wait_status: WaitStatus,
) -> None:
    owner = make_user(session)
    long_ago = utcnow() - timedelta(hours=1)
    # Both were left running by a worker on another host that stopped heart-beating.
    stale = make_generation(
        session,
        owner=owner,
        model=TINY,
        status=Status.RUNNING,
        worker="embedded@gone-host:1:cpu",
        attempts=1,
        heartbeat_at=long_ago,
    )
    exhausted = make_generation(
        session,
        owner=owner,
        model=TINY,
        status=Status.RUNNING,
        worker="embedded@gone-host:1:cpu",
        attempts=5,
        heartbeat_at=long_ago,
    )

    # A short stale window makes the sweeper thread look every quarter second; the pool's own
    # heartbeats (every 0.1 s) stay well inside it.
    make_pool(stale_after_seconds=1.0, max_attempts=5)
    given_up = wait_status(session_factory, exhausted.id, FINAL)
    rerun = wait_status(session_factory, stale.id, FINAL)

    assert given_up.status == Status.FAILED
    assert given_up.error is not None and "stopped responding" in given_up.error
    # Only a requeue lets our worker claim it: it ran again, here, and finished.
    assert rerun.status == Status.SUCCEEDED, rerun.error
    assert rerun.worker is not None and rerun.worker.startswith(worker_prefix())
    assert rerun.attempts >= 2


def test_problems_name_a_worker_thread_that_died(make_pool: MakePool, monkeypatch: pytest.MonkeyPatch) -> None:
    class ThreadKiller(BaseException):
        """Escapes every retry loop, as a bug past them would."""

    pool = make_pool()
    assert pool.problems() == []

    def kill(*args: Any, **kwargs: Any) -> None:
        raise ThreadKiller()

    monkeypatch.setattr(queue, "claim", kill)
    for _ in range(2400):
        if pool.problems():
            break
        time.sleep(0.05)

    assert pool.problems() == ["the worker-cpu thread is dead; restart the studio (the log says why it stopped)"]


def test_an_interrupted_job_on_its_last_attempt_fails_at_start_instead_of_running_again(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    wait_status: WaitStatus,
) -> None:
    owner = make_user(session)
    # Left running by this host at its third start: it may be what crashed the process.
    crasher = make_generation(
        session, owner=owner, model=TINY, status=Status.RUNNING, worker=f"{worker_prefix()}999999:cpu", attempts=3
    )
    retried = make_generation(
        session, owner=owner, model=TINY, status=Status.RUNNING, worker=f"{worker_prefix()}999999:cpu", attempts=2
    )

    make_pool(max_attempts=3)
    given_up = wait_status(session_factory, crasher.id, FINAL)
    rerun = wait_status(session_factory, retried.id, FINAL)

    assert given_up.status == Status.FAILED
    assert given_up.attempts == 3
    assert given_up.error is not None
    assert "3 attempts" in given_up.error and "STUDIO_MAX_ATTEMPTS" in given_up.error
    assert given_up.images == []
    assert rerun.status == Status.SUCCEEDED, rerun.error
    assert rerun.attempts == 3


def test_a_job_handed_back_at_shutdown_keeps_its_attempts(
    session: Session, make_user: Callable[..., User], make_generation: Callable[..., Generation]
) -> None:
    owner = make_user(session)
    worker = f"{worker_prefix()}1:cpu"
    running = make_generation(session, owner=owner, model=TINY, status=Status.RUNNING, worker=worker, attempts=2)

    assert queue.release(session, generation_id=running.id, worker=worker)

    session.expire_all()
    released = session.get(Generation, running.id)
    assert released is not None
    assert released.status == Status.QUEUED
    # The claim that is undone counted one; a restart costs the job nothing.
    assert released.attempts == 1
