"""Estimates: how long a queued job will likely wait, from how long recent jobs took to run."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, literal, select, union_all
from sqlalchemy.orm import Session

from app.db.models import Generation, Status
from app.services import queue

RECENT_JOBS = 20
ANY_MODEL = -1  # the branch of the statement that reads every model's recent jobs


@dataclass(frozen=True)
class QueueWait:
    """Where a queued job stands: how many jobs a worker takes first, and about how long until it is done."""

    position: int
    seconds: float | None

    @property
    def text(self) -> str | None:
        return describe(self.seconds)


def _recent_runs(branch: int, *where: ColumnElement[bool]) -> Select[int, datetime | None, datetime | None]:
    # Served by the (status, model, finished_at) and (status, finished_at) indexes: each branch
    # reads its RECENT_JOBS newest rows and stops.
    return (
        select(literal(branch).label("branch"), Generation.started_at, Generation.finished_at)
        .where(
            Generation.status == Status.SUCCEEDED,
            Generation.started_at.is_not(None),
            Generation.finished_at.is_not(None),
            *where,
        )
        .order_by(Generation.finished_at.desc())
        .limit(RECENT_JOBS)
    )


def typical_run_seconds_by_model(session: Session, *, models: Collection[str]) -> dict[str, float]:
    """The mean run time of each model's last finished jobs (any model's when it has none).

    One statement for all of ``models``; a model is left out when nothing has run at all.
    """
    wanted = sorted(set(models))
    if not wanted:
        return {}
    branches = [_recent_runs(index, Generation.model == model) for index, model in enumerate(wanted)]
    branches.append(_recent_runs(ANY_MODEL))
    # Each branch is wrapped in its own SELECT: SQLite refuses ORDER BY/LIMIT on a bare member
    # of a compound statement.
    stmt = union_all(*(select(branch.subquery()) for branch in branches))
    durations: dict[int, list[float]] = {}
    for branch, start, end in session.execute(stmt):
        if start and end and end >= start:
            durations.setdefault(branch, []).append((end - start).total_seconds())
    means = {branch: sum(values) / len(values) for branch, values in durations.items()}
    fallback = means.get(ANY_MODEL)
    typical = {model: means.get(index, fallback) for index, model in enumerate(wanted)}
    return {model: seconds for model, seconds in typical.items() if seconds is not None}


def typical_run_seconds(session: Session, *, model: str) -> float | None:
    """The mean run time of the model's last finished jobs (any model's when it has none), or None."""
    return typical_run_seconds_by_model(session, models=[model]).get(model)


def _wait(typical: float | None, queue_position: int) -> float | None:
    return None if typical is None else typical * (queue_position + 1)


def wait_seconds(session: Session, generation: Generation, *, queue_position: int | None) -> float | None:
    """About how long until ``generation`` is done: the jobs ahead of it and itself, one at a time.

    A rough, pessimistic guess: it assumes one worker and that every job ahead takes as long as
    this model's recent jobs did. None when the job is not queued or nothing has run yet.
    """
    if queue_position is None:
        return None
    return _wait(typical_run_seconds(session, model=generation.model), queue_position)


def queue_waits(session: Session, generations: Sequence[Generation]) -> dict[int, QueueWait]:
    """Position and wait of every queued one of ``generations``, by id: two statements for a whole page.

    Generations that are not queued are left out, so a page with none costs no statement.
    """
    positions = queue.queue_positions(session, generations)
    if not positions:
        return {}
    queued = [generation for generation in generations if generation.id in positions]
    typical = typical_run_seconds_by_model(session, models={generation.model for generation in queued})
    return {
        generation.id: QueueWait(
            position=positions[generation.id],
            seconds=_wait(typical.get(generation.model), positions[generation.id]),
        )
        for generation in queued
    }


def describe(seconds: float | None) -> str | None:
    """``about 40 s`` / ``about 3 min``; None when there is no estimate."""
    if seconds is None:
        return None
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"about {round(seconds)} s"
    return f"about {round(seconds / 60)} min"
