"""Scaled mode's re-dispatch: once a queued job is older than the window, each queued job that no
waiting broker message covers gets a message of its own; fresh jobs and covered ones get none."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.base import utcnow
from app.db.models import Generation, User
from app.workers import celery_app


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    messages: list[int] = []
    monkeypatch.setattr(celery_app.run_next_generation, "delay", lambda hint: messages.append(hint))
    return messages


def waiting_in_broker(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(celery_app, "messages_waiting", lambda settings: count)


def test_queued_jobs_no_message_covers_are_dispatched_again(
    settings: Settings,
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    sent: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = make_user(session)
    long_ago = utcnow() - timedelta(minutes=5)
    for _ in range(3):
        make_generation(session, owner=owner, created_at=long_ago)  # their messages died with a worker
    make_generation(session, owner=owner)  # fresh, its message is waiting
    waiting_in_broker(monkeypatch, 1)

    count = celery_app.redispatch_uncovered(
        settings.model_copy(update={"redispatch_after_seconds": 30}), session_factory
    )

    assert count == 3
    assert len(sent) == 3


def test_nothing_is_sent_while_every_queued_job_is_fresh_or_covered(
    settings: Settings,
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    sent: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = make_user(session)
    make_generation(session, owner=owner)
    make_generation(session, owner=owner)
    window = settings.model_copy(update={"redispatch_after_seconds": 30})
    waiting_in_broker(monkeypatch, 0)

    # Fresh: their messages may still be on the way to the broker.
    assert celery_app.redispatch_uncovered(window, session_factory) == 0
    make_generation(session, owner=owner, created_at=utcnow() - timedelta(minutes=5))
    waiting_in_broker(monkeypatch, 3)
    # Old enough, but three messages wait for three jobs.
    assert celery_app.redispatch_uncovered(window, session_factory) == 0
    assert sent == []
