"""Tests for app.services.estimates: a queued job's wait, from recent run times."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import event
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


@contextmanager
def counted(session: Session) -> Iterator[list[str]]:
    """The SQL statements run on ``session``'s engine inside the block."""
    engine = session.get_bind()
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_each_model_gets_its_own_typical_run_time_from_one_statement(
    session: Session, make_user: Callable[..., User], make_generation: Callable[..., Generation]
) -> None:
    alice = make_user(session)
    finished(make_generation, session, alice, 4)
    finished(make_generation, session, alice, 8)
    finished(make_generation, session, alice, 30, model="sd15")

    with counted(session) as statements:
        typical = estimates.typical_run_seconds_by_model(session, models=["studio-tiny", "sd15", "never-ran"])

    assert len(statements) == 1
    # A model that never ran borrows the mean of every model's recent jobs.
    assert typical == {"studio-tiny": 6, "sd15": 30, "never-ran": 14}
    assert typical["sd15"] == estimates.typical_run_seconds(session, model="sd15")


def test_only_the_most_recent_jobs_make_the_typical_run_time(
    session: Session, make_user: Callable[..., User], make_generation: Callable[..., Generation]
) -> None:
    alice = make_user(session)
    for _ in range(3):  # long ago and slow
        finished(make_generation, session, alice, 100)
    for minute in range(1, estimates.RECENT_JOBS + 1):
        make_generation(
            session,
            alice,
            status=Status.SUCCEEDED,
            started_at=T0 + timedelta(hours=1, minutes=minute),
            finished_at=T0 + timedelta(hours=1, minutes=minute, seconds=10),
        )

    assert estimates.typical_run_seconds_by_model(session, models=["studio-tiny"]) == {"studio-tiny": 10}


def test_nothing_ran_yet_means_no_typical_run_time_for_any_model(
    session: Session, make_user: Callable[..., User], make_generation: Callable[..., Generation]
) -> None:
    make_generation(session, make_user(session))
    assert estimates.typical_run_seconds_by_model(session, models=["studio-tiny"]) == {}
    assert estimates.typical_run_seconds_by_model(session, models=[]) == {}


def test_a_page_gets_the_position_and_wait_of_each_queued_job_in_two_statements(
    session: Session, make_user: Callable[..., User], make_generation: Callable[..., Generation]
) -> None:
    alice, bob = make_user(session), make_user(session)
    finished(make_generation, session, alice, 4)
    finished(make_generation, session, alice, 8)
    finished(make_generation, session, bob, 20, model="sd15")
    page = [
        make_generation(session, alice),
        make_generation(session, bob, model="sd15"),
        make_generation(session, alice, model="sd15"),
        make_generation(session, alice, status=Status.RUNNING),
        make_generation(session, alice, model="never-ran"),
    ]

    with counted(session) as statements:
        waits = estimates.queue_waits(session, page)

    assert len(statements) == 2
    queued = [generation for generation in page if generation.status == Status.QUEUED]
    assert set(waits) == {generation.id for generation in queued}
    for generation in queued:
        position = queue.queue_position(session, generation)
        assert waits[generation.id].position == position
        assert waits[generation.id].seconds == estimates.wait_seconds(session, generation, queue_position=position)
    # Turn 1 of each user first (alice's, then bob's), then alice's later jobs.
    assert [waits[generation.id].position for generation in queued] == [0, 1, 2, 3]
    assert waits[page[0].id].seconds == 6  # studio-tiny: 6 s, next in line
    assert waits[page[1].id].text == "about 40 s"  # sd15: 20 s, one job ahead


def test_a_page_without_queued_jobs_costs_no_statement(
    session: Session, make_user: Callable[..., User], make_generation: Callable[..., Generation]
) -> None:
    alice = make_user(session)
    page = [make_generation(session, alice, status=status) for status in (Status.RUNNING, Status.FAILED)]

    with counted(session) as statements:
        assert estimates.queue_waits(session, page) == {}
    assert statements == []
