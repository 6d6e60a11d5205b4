"""Jobs: ``execute`` records every outcome it can and never raises, whatever the database does; a
cancelled job keeps no files and its stream ends with one ``cancelled``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from PIL import Image as PILImage
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.db.models import Generation, Status, User
from app.engine.previews import StepProgress
from app.services import queue
from app.workers import jobs
from app.workers.events import MemoryEventBus
from app.workers.jobs import JobContext, execute
from tests.tiny_pipeline import TINY


def refuse() -> Session:
    raise OperationalError("SELECT 1", {}, Exception("the database went away"))


def test_execute_with_an_unreachable_database_returns_none_instead_of_raising(
    job_context: JobContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "RECORD_BACKOFF_SECONDS", 0.0)
    dead = replace(job_context, session_factory=refuse)  # type: ignore[arg-type]

    status = execute(dead, 1, worker="embedded@test:1:cpu", device="cpu")

    assert status is None
    # The artist's stream hears that the job started, and no made-up final status after it.
    assert [(event.name, event.data) for event in job_context.bus.read(1)] == [("status", {"status": "running"})]


def test_execute_records_the_outputs_after_the_database_refused_them_once(
    session: Session,
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    job_context: JobContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobs, "RECORD_BACKOFF_SECONDS", 0.0)
    real_complete = jobs.queue.complete
    calls: list[int] = []

    def complete_after_one_refusal(session: Session, **kwargs: object) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE", {}, Exception("the database went away"))
        return real_complete(session, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs.queue, "complete", complete_after_one_refusal)
    owner = make_user(session)
    worker = "embedded@test:1:cpu"
    generation = make_generation(session, owner=owner, model=TINY, status=Status.RUNNING, worker=worker, attempts=1)

    status = execute(job_context, generation.id, worker=worker, device="cpu")

    assert status == Status.SUCCEEDED
    assert len(calls) == 2
    session.expire_all()
    stored = session.get(Generation, generation.id)
    assert stored is not None
    assert stored.status == Status.SUCCEEDED
    assert len(stored.images) == 1


def stored_files(context: JobContext) -> list[str]:
    return sorted(context.store.hashes(older_than=float("inf")))


def cancel_as_the_route_does(session: Session, context: JobContext, generation_id: int, owner: User) -> None:
    cancelled = queue.cancel(session, generation_id=generation_id, user=owner)
    context.bus.publish(generation_id, "status", {"status": cancelled.status.value})


def test_a_cancelled_running_job_keeps_no_files_and_its_stream_ends_with_one_cancelled(
    session: Session,
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    job_context: JobContext,
) -> None:
    owner = make_user(session)
    worker = "embedded@test:1:cpu"
    long_job = make_generation(
        session, owner=owner, model=TINY, steps=200, status=Status.RUNNING, worker=worker, attempts=1
    )
    outcome: list[Status | None] = []
    runner = threading.Thread(
        target=lambda: outcome.append(execute(job_context, long_job.id, worker=worker, device="cpu"))
    )
    runner.start()
    for _ in range(2400):  # a generous bound on waiting for the first step
        if any(event.name == "progress" for event in job_context.bus.read(long_job.id)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the job never reported progress")

    cancel_as_the_route_does(session, job_context, long_job.id, owner)
    runner.join(timeout=120)

    assert outcome == [Status.CANCELLED]
    events = job_context.bus.read(long_job.id)
    finals = [event for event in events if event.name == "status" and event.data["status"] != "running"]
    assert [event.data for event in finals] == [{"status": "cancelled"}]
    assert events[-1] == finals[0]
    assert stored_files(job_context) == []


def test_outputs_written_while_a_cancel_raced_completion_are_removed(
    session: Session,
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    job_context: JobContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = make_user(session)
    worker = "embedded@test:1:cpu"
    real_complete = queue.complete
    generation = make_generation(
        session, owner=owner, model=TINY, n_images=2, status=Status.RUNNING, worker=worker, attempts=1
    )

    def cancelled_just_before(session: Session, **kwargs: object) -> bool:
        # The files are on disk now; the artist's cancel commits before the worker's rows.
        cancel_as_the_route_does(session, job_context, generation.id, owner)
        return real_complete(session, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs.queue, "complete", cancelled_just_before)
    status = execute(job_context, generation.id, worker=worker, device="cpu")

    assert status == Status.CANCELLED
    assert stored_files(job_context) == []
    assert [event.data["status"] for event in job_context.bus.read(generation.id) if event.name == "status"] == [
        "running",
        "cancelled",
    ]


def test_a_refused_job_leaves_files_that_another_row_references(
    session: Session,
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    job_context: JobContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = make_user(session)
    worker = "embedded@test:1:cpu"
    # Same prompt, seed and model: the same bytes, so one file backs both jobs' images.
    first = make_generation(session, owner=owner, model=TINY, status=Status.RUNNING, worker=worker, attempts=1)
    assert execute(job_context, first.id, worker=worker, device="cpu") == Status.SUCCEEDED
    kept = stored_files(job_context)
    assert len(kept) == 1
    twin = make_generation(session, owner=owner, model=TINY, status=Status.RUNNING, worker=worker, attempts=1)
    real_complete = queue.complete

    def cancelled_just_before(session: Session, **kwargs: object) -> bool:
        cancel_as_the_route_does(session, job_context, twin.id, owner)
        return real_complete(session, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs.queue, "complete", cancelled_just_before)

    assert execute(job_context, twin.id, worker=worker, device="cpu") == Status.CANCELLED
    assert stored_files(job_context) == kept


# --- previews ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_preview_is_due_after_the_interval_and_the_next_ones_fit_the_budget() -> None:
    clock = Clock()
    pacer = jobs._PreviewPacer(1.0, clock=clock)
    assert not pacer.due()
    clock.now = 101.0
    assert pacer.due()

    # A cheap preview: the next one is due an interval later.
    pacer.painted(started=clock.now - 0.001)
    clock.now = 101.9
    assert not pacer.due()
    clock.now = 102.0
    assert pacer.due()

    # One that took 0.1 s may come again only when that is PREVIEW_BUDGET of the span since.
    pacer.painted(started=clock.now - 0.1)
    clock.now = 102.0 + 0.1 / jobs.PREVIEW_BUDGET - 0.01
    assert not pacer.due()
    clock.now += 0.02
    assert pacer.due()


def offered(step: int, painted: list[int]) -> StepProgress:
    def render() -> PILImage.Image:
        painted.append(step)
        return PILImage.new("RGB", (8, 8), "red")

    return StepProgress(step=step, total=10, render=render)


def test_an_offered_preview_is_painted_and_published_only_while_someone_watches() -> None:
    bus = MemoryEventBus()
    painted: list[int] = []
    on_step = jobs._progress_publisher(bus, 3, lambda: False, preview_seconds=0.0)

    assert on_step(offered(1, painted))
    unwatch = bus.watch(3, lambda: None)
    assert on_step(offered(2, painted))
    unwatch()
    assert on_step(offered(3, painted))

    assert painted == [2]
    progress = [event.data for event in bus.read(3)]
    assert [data["step"] for data in progress] == [1, 2, 3]
    assert [data["step"] for data in progress if "preview" in data] == [2]
    assert progress[1]["preview"].startswith("data:image/webp;base64,")


def test_a_watched_job_gets_previews_from_the_engine_on_its_stream(
    session: Session,
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    job_context: JobContext,
) -> None:
    owner = make_user(session)
    worker = "embedded@test:1:cpu"
    watched, unwatched = (
        make_generation(session, owner=owner, model=TINY, steps=6, status=Status.RUNNING, worker=worker, attempts=1)
        for _ in range(2)
    )
    context = replace(job_context, preview_seconds=0.0)
    job_context.bus.watch(watched.id, lambda: None)

    for generation in (watched, unwatched):
        assert execute(context, generation.id, worker=worker, device="cpu") == Status.SUCCEEDED

    def previews(generation_id: int) -> list[int]:
        events = job_context.bus.read(generation_id)
        return [event.data["step"] for event in events if event.name == "progress" and "preview" in event.data]

    # The engine offers one every 5 steps (not on the last); only the watched job paints it.
    assert previews(watched.id) == [5]
    assert previews(unwatched.id) == []
