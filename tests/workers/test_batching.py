"""Dynamic batching through the embedded pool: queued jobs that share a call are painted in one, and each
keeps its own events, heartbeat, cancel and outcome."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Generation, Status, User
from app.engine.runner import StepProgress, run
from app.services import queue
from app.workers import batches
from app.workers.batches import CPU_BATCH, batch_bound, memory_bound
from app.workers.jobs import JobContext
from app.workers.pool import WorkerPool
from app.workers.specs import spec_for
from tests.tiny_pipeline import TINY

MakePool = Callable[..., WorkerPool]
WaitStatus = Callable[..., Generation]
FINAL = {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}
PROMPTS = ["a red boat on a lake", "a yellow sun over a field", "a blue house at night", "a green tree"]


@pytest.fixture
def batching_context(job_context: JobContext) -> JobContext:
    return replace(job_context, max_batch=8)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The seeds of every batched pipeline call the workers make (the calls still paint)."""
    made: list[list[int]] = []
    real = batches.run_batch

    def spy(registry: Any, specs: Any, **kwargs: Any) -> Any:
        made.append([spec.seed for spec in specs])
        return real(registry, specs, **kwargs)

    monkeypatch.setattr(batches, "run_batch", spy)
    return made


def _queue_jobs(session: Session, owner: User, make_generation: Callable[..., Generation], **shared: Any) -> list[int]:
    values: dict[str, Any] = {"model": TINY, "steps": 2, **shared}
    return [
        make_generation(
            session, owner=owner, prompt=prompt, seed=100 + index, n_images=2 if index == 1 else 1, **values
        ).id
        for index, prompt in enumerate(PROMPTS)
    ]


def _events(context: JobContext, job_id: int, name: str) -> list[dict[str, Any]]:
    return [event.data for event in context.bus.read(job_id) if event.name == name]


def _wait_for_final_events(context: JobContext, job_ids: list[int]) -> None:
    """A job's outcome reaches the bus just after its row: wait for it there too (a generous bound)."""
    for _ in range(2400):
        if all(context.bus.ended(job_id) for job_id in job_ids):
            return
        time.sleep(0.05)
    raise AssertionError("the jobs' final statuses never reached the bus")


def _wait_for_progress(context: JobContext, job_ids: list[int]) -> None:
    for _ in range(2400):  # a generous bound on waiting for the first step
        if all(_events(context, job_id, "progress") for job_id in job_ids):
            return
        time.sleep(0.05)
    raise AssertionError("the jobs never reported progress")


def _wait_for_every_heartbeat(session_factory: sessionmaker[Session], job_ids: list[int]) -> None:
    """Returns once every job's heartbeat has moved; fails if one does not within two minutes."""

    def beats() -> dict[int, Any]:
        with session_factory() as reading:
            return {job_id: reading.get(Generation, job_id).heartbeat_at for job_id in job_ids}  # type: ignore[union-attr]

    first = beats()
    for _ in range(2400):  # heartbeats come every 0.1 s here; a generous bound on seeing one for each job
        later = beats()
        if all(later[job_id] != first[job_id] for job_id in job_ids):
            return
        time.sleep(0.05)
    raise AssertionError(f"not every member's heartbeat moved: {first} -> {later}")


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_queued_jobs_that_share_a_call_are_painted_in_one_and_each_equals_its_solo_painting(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    batching_context: JobContext,
    wait_status: WaitStatus,
    calls: list[list[int]],
) -> None:
    job_ids = _queue_jobs(session, make_user(session), make_generation, scheduler="euler-a")

    make_pool(batching_context)
    done = [wait_status(session_factory, job_id, FINAL) for job_id in job_ids]

    assert [job.status for job in done] == [Status.SUCCEEDED] * 4, [job.error for job in done]
    _wait_for_final_events(batching_context, job_ids)
    assert calls == [[100, 101, 102, 103]]
    assert [len(job.images) for job in done] == [1, 2, 1, 1]
    for job in done:
        # Each job's own events: running, its own steps, its own outcome.
        assert [data["status"] for data in _events(batching_context, job.id, "status")] == ["running", "succeeded"]
        assert [data["step"] for data in _events(batching_context, job.id, "progress")] == [1, 2]
        with session_factory() as reading:
            row = reading.get(Generation, job.id)
            assert row is not None
            solo = run(batching_context.registry, spec_for(row, reading, batching_context.store), device="cpu")
        for image, alone in zip(sorted(job.images, key=lambda image: image.index), solo.images, strict=True):
            painted = _pixels(batching_context.store.read(image.sha256))
            assert int(np.abs(painted - np.asarray(alone.convert("RGB"), dtype=np.int16)).max()) <= 2


def test_a_batch_never_takes_a_job_ahead_of_another_users_job_the_fair_order_runs_first(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    batching_context: JobContext,
    wait_status: WaitStatus,
    calls: list[list[int]],
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    a1, a2, a3 = (make_generation(session, owner=alice, model=TINY, steps=2, seed=seed).id for seed in (1, 2, 3))
    b1 = make_generation(session, owner=bob, model=TINY, steps=3, seed=4).id  # another call

    make_pool(batching_context)
    done = {job_id: wait_status(session_factory, job_id, FINAL) for job_id in (a1, a2, a3, b1)}

    assert all(job.status == Status.SUCCEEDED for job in done.values())
    # After a1, Bob's turn comes before Alice's next jobs: a1 runs alone, then b1, then a2 and a3 together.
    assert calls == [[2, 3]]
    claimed = sorted(done, key=lambda job_id: (done[job_id].claimed_at, job_id))
    assert claimed == [a1, b1, a2, a3]


def test_a_bound_of_one_paints_every_job_alone(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    job_context: JobContext,
    wait_status: WaitStatus,
    calls: list[list[int]],
) -> None:
    job_ids = _queue_jobs(session, make_user(session), make_generation)

    make_pool(replace(job_context, max_batch=1))
    done = [wait_status(session_factory, job_id, FINAL) for job_id in job_ids]

    assert [job.status for job in done] == [Status.SUCCEEDED] * 4
    assert calls == []


def test_cancelling_one_member_leaves_the_batch_and_the_others_finish(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    batching_context: JobContext,
    wait_status: WaitStatus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = make_user(session)
    job_ids = _queue_jobs(session, owner, make_generation, steps=6)
    calls: list[int] = []
    real = batches.run_batch

    def cancel_the_second_at_step_two(registry: Any, specs: Any, *, on_step: Any, **kwargs: Any) -> Any:
        calls.append(len(specs))
        first = on_step[0]

        def on_first_step(progress: StepProgress) -> bool:
            if progress.step == 2:  # the artist cancels job 2 while the batch paints, as the route does
                with session_factory() as cancelling:
                    cancelled = queue.cancel(cancelling, generation_id=job_ids[1], user=owner)
                batching_context.bus.publish(job_ids[1], "status", {"status": cancelled.status.value})
            return bool(first(progress))

        return real(registry, specs, on_step=[on_first_step, *on_step[1:]], **kwargs)

    monkeypatch.setattr(batches, "run_batch", cancel_the_second_at_step_two)
    make_pool(batching_context)
    done = [wait_status(session_factory, job_id, FINAL) for job_id in job_ids]

    assert [job.status for job in done] == [Status.SUCCEEDED, Status.CANCELLED, Status.SUCCEEDED, Status.SUCCEEDED]
    assert calls == [4]  # the others were not painted again
    assert [len(job.images) for job in done] == [1, 0, 1, 1]
    # The cancelled job heard its first step, then its cancel; the others went on to the end.
    assert [data["step"] for data in _events(batching_context, job_ids[1], "progress")] == [1]
    for job_id in (job_ids[0], job_ids[2], job_ids[3]):
        assert [data["step"] for data in _events(batching_context, job_id, "progress")] == list(range(1, 7))
    for _ in range(2400):  # the worker reports the others' ends after it records them
        if all(batching_context.bus.ended(job_id) for job_id in job_ids):
            break
        time.sleep(0.05)
    events = batching_context.bus.read(job_ids[1])
    # The cancelled job's stream ends with its cancel, and none of its outputs was stored.
    assert [(event.name, event.data.get("status")) for event in events[-1:]] == [("status", "cancelled")]
    stored = {image.sha256 for job in done for image in job.images}
    assert {path.stem for path in batching_context.store.root.glob("??/??/*.png")} == stored


def test_every_member_keeps_its_own_heartbeat(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    batching_context: JobContext,
    calls: list[list[int]],
) -> None:
    job_ids = _queue_jobs(session, make_user(session), make_generation, steps=400)
    pool = make_pool(batching_context)
    _wait_for_progress(batching_context, job_ids)

    _wait_for_every_heartbeat(session_factory, job_ids)
    assert len(calls) == 1
    pool.stop()


def test_a_member_taken_from_the_worker_leaves_the_batch_and_its_row_is_left_alone(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    batching_context: JobContext,
    wait_status: WaitStatus,
    calls: list[list[int]],
) -> None:
    job_ids = _queue_jobs(session, make_user(session), make_generation, steps=40)
    make_pool(batching_context)
    _wait_for_progress(batching_context, job_ids)

    # A sweeper requeued it and another worker claimed it: the heartbeat finds it no longer ours.
    with session_factory() as taking:
        row = taking.get(Generation, job_ids[2])
        assert row is not None
        row.worker = "embedded@elsewhere:1:cpu"
        taking.commit()
    done = [wait_status(session_factory, job_id, {Status.SUCCEEDED}) for job_id in (job_ids[0], job_ids[1], job_ids[3])]

    assert all(len(job.images) == job.n_images for job in done)
    with session_factory() as reading:
        taken = reading.get(Generation, job_ids[2])
        assert taken is not None
        assert (taken.status, taken.worker, taken.images) == (Status.RUNNING, "embedded@elsewhere:1:cpu", [])
    assert max(data["step"] for data in _events(batching_context, job_ids[2], "progress")) < 40


def test_an_engine_error_in_a_shared_call_paints_each_member_alone_and_fails_only_the_bad_one(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    batching_context: JobContext,
    wait_status: WaitStatus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_ids = _queue_jobs(session, make_user(session), make_generation)
    real_run = batches.run

    def shared_call_fails(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory painting 5 images")

    def one_job_fails(registry: Any, spec: Any, **kwargs: Any) -> Any:
        if spec.prompt == PROMPTS[2]:
            raise RuntimeError("this prompt breaks the model")
        return real_run(registry, spec, **kwargs)

    monkeypatch.setattr(batches, "run_batch", shared_call_fails)
    monkeypatch.setattr(batches, "run", one_job_fails)
    make_pool(batching_context)
    done = [wait_status(session_factory, job_id, FINAL) for job_id in job_ids]

    assert [job.status for job in done] == [Status.SUCCEEDED, Status.SUCCEEDED, Status.FAILED, Status.SUCCEEDED]
    assert done[2].error == "this prompt breaks the model"
    assert [len(job.images) for job in done] == [1, 2, 0, 1]
    _wait_for_final_events(batching_context, job_ids)
    assert [data["status"] for data in _events(batching_context, job_ids[2], "status")] == ["running", "failed"]


def test_stopping_the_pool_hands_every_member_back_to_the_queue(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    batching_context: JobContext,
    calls: list[list[int]],
) -> None:
    job_ids = _queue_jobs(session, make_user(session), make_generation, steps=150)
    pool = make_pool(batching_context)
    _wait_for_progress(batching_context, job_ids)

    pool.stop()

    assert len(calls) == 1
    with session_factory() as reading:
        for job_id in job_ids:
            row = reading.get(Generation, job_id)
            assert row is not None
            assert (row.status, row.worker, row.attempts, row.images) == (Status.QUEUED, None, 0, [])
            statuses = [data["status"] for data in _events(batching_context, job_id, "status")]
            assert statuses == ["running", "queued"]


def test_the_batch_bound_is_the_setting_or_eight_on_the_cpu_or_what_free_gpu_memory_holds() -> None:
    assert batch_bound(3, "cpu", width=512, height=512) == 3
    assert batch_bound(0, "cpu", width=512, height=512) == CPU_BATCH == 8
    gib = 1024**3
    assert memory_bound(80 * gib, width=1024, height=1024) == 16
    assert memory_bound(10 * gib, width=1024, height=1024) == 4
    assert memory_bound(2 * gib, width=1024, height=1024) == 1
    assert memory_bound(0, width=1024, height=1024) == 1
    assert memory_bound(10 * gib, width=512, height=512) == 16
