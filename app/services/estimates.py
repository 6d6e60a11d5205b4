"""Estimates: how long a queued job will likely wait, from how long recent jobs took to run."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Generation, Status

RECENT_JOBS = 20


def typical_run_seconds(session: Session, *, model: str) -> float | None:
    """The mean run time of the model's last finished jobs (any model's when it has none), or None."""
    for where in ((Generation.model == model,), ()):
        rows = session.execute(
            select(Generation.started_at, Generation.finished_at)
            .where(Generation.status == Status.SUCCEEDED, Generation.started_at.is_not(None), *where)
            .order_by(Generation.finished_at.desc())
            .limit(RECENT_JOBS)
        ).all()
        durations = [(end - start).total_seconds() for start, end in rows if start and end and end >= start]
        if durations:
            return sum(durations) / len(durations)
    return None


def wait_seconds(session: Session, generation: Generation, *, queue_position: int | None) -> float | None:
    """About how long until ``generation`` is done: the jobs ahead of it and itself, one at a time.

    A rough, pessimistic guess: it assumes one worker and that every job ahead takes as long as
    this model's recent jobs did. None when the job is not queued or nothing has run yet.
    """
    if queue_position is None:
        return None
    typical = typical_run_seconds(session, model=generation.model)
    return None if typical is None else typical * (queue_position + 1)


def describe(seconds: float | None) -> str | None:
    """``about 40 s`` / ``about 3 min``; None when there is no estimate."""
    if seconds is None:
        return None
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {round(seconds)} s"
    return f"about {round(seconds / 60)} min"
