"""Dynamic batching in scaled mode: a Celery task claims its job and the queued jobs that share its call;
their own messages then find them taken."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.models import Generation, Status, User
from app.workers import batches, celery_app
from app.workers.jobs import JobContext
from tests.tiny_pipeline import TINY


def test_a_task_paints_the_jobs_that_share_its_call_and_their_messages_find_nothing(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    pool_settings: Settings,
    job_context: JobContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    ids = [
        make_generation(session, owner=owner, model=TINY, steps=2, prompt=f"a painting {index}", seed=index).id
        for index, owner in enumerate((alice, bob, alice, bob))
    ]
    other_call = make_generation(session, owner=alice, model=TINY, steps=3).id
    context = replace(job_context, max_batch=8)
    monkeypatch.setattr(celery_app, "_worker_context", lambda: (pool_settings, context))
    calls: list[int] = []
    real = batches.run_batch

    def spy(registry: Any, specs: Any, **kwargs: Any) -> Any:
        calls.append(len(specs))
        return real(registry, specs, **kwargs)

    monkeypatch.setattr(batches, "run_batch", spy)

    # One message per job; the first task paints the four that share a call.
    first = celery_app.run_next_generation(ids[0])
    second = celery_app.run_next_generation(ids[1])
    third = celery_app.run_next_generation(ids[2])

    assert first == ids[0]
    assert calls == [4]
    assert second == other_call  # the next message takes the job the batch could not
    assert third is None  # and the rest find nothing left
    with session_factory() as reading:
        rows = [reading.get(Generation, job_id) for job_id in [*ids, other_call]]
        assert all(row is not None and row.status == Status.SUCCEEDED for row in rows)
        assert all(row is not None and row.worker == celery_app.worker_name("cpu") for row in rows)
