"""Jobs: ``execute`` records every outcome it can and never raises, whatever the database does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.db.models import Generation, Status, User
from app.workers import jobs
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
