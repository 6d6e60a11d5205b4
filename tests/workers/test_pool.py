"""Embedded worker pool: runs queued jobs, resumes interrupted ones, honours cancels, survives failures."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Generation, Status, User
from app.services import queue
from app.workers.jobs import JobContext
from app.workers.pool import WorkerPool, worker_prefix
from tests.tiny_pipeline import TINY

MakePool = Callable[[], WorkerPool]
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
    assert pool.busy["cpu"] is None


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
