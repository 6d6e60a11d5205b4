"""Tests for app.services.estimates: a queued job's wait, from recent run times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.db.models import Generation, Status, User
from app.services import estimates, queue

T0 = datetime(2026, 1, 1, 12, 0, 0)


def finished(
    make_generation: Callable[..., Generation], session: Session, owner: User, seconds: float, **kw: object
) -> None:
    make_generation(
        session,
        owner,
        status=Status.SUCCEEDED,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=seconds),
        **kw,
    )


def test_no_finished_job_means_no_estimate(
    session: Session, make_user: Callable[..., User], make_generation: Callable[..., Generation]
) -> None:
    alice = make_user(session)
    queued = make_generation(session, alice)
    position = queue.queue_position(session, queued)
    assert position == 0
    assert estimates.wait_seconds(session, queued, queue_position=position) is None
    assert estimates.describe(None) is None


def test_the_wait_counts_the_jobs_ahead_at_the_models_typical_run_time(
    session: Session, make_user: Callable[..., User], make_generation: Callable[..., Generation]
) -> None:
    alice = make_user(session)
    finished(make_generation, session, alice, 4)
    finished(make_generation, session, alice, 8)
    finished(make_generation, session, alice, 100, model="sd15")
    make_generation(session, alice)
    make_generation(session, alice)
    third = make_generation(session, alice)
    position = queue.queue_position(session, third)
    assert position == 2
    assert estimates.typical_run_seconds(session, model="studio-tiny") == 6
    assert estimates.wait_seconds(session, third, queue_position=position) == 18
    assert estimates.describe(18) == "about 18 s"
    assert estimates.describe(240) == "about 4 min"


def test_a_model_without_history_borrows_every_models_run_time(
    session: Session, make_user: Callable[..., User], make_generation: Callable[..., Generation]
) -> None:
    alice = make_user(session)
    finished(make_generation, session, alice, 10, model="sd15")
    assert estimates.typical_run_seconds(session, model="studio-tiny") == 10


def test_a_job_that_is_not_queued_has_no_wait(
    session: Session, make_user: Callable[..., User], make_generation: Callable[..., Generation]
) -> None:
    alice = make_user(session)
    finished(make_generation, session, alice, 10)
    running = make_generation(session, alice, status=Status.RUNNING)
    assert estimates.wait_seconds(session, running, queue_position=None) is None
