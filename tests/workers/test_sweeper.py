"""The sweeper: stale jobs back to the queue, orphan image files removed after the grace period,
and in scaled mode a re-dispatch of queued jobs no message covers."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from PIL import Image as PILImage
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.base import utcnow
from app.db.models import Generation, Image, ImageKind, Status, User
from app.services.storage import ImageStore
from app.workers.sweeper import Sweeper


def painted(store: ImageStore, colour: str, *, age: timedelta) -> str:
    stored = store.put_image(PILImage.new("RGB", (8, 8), colour))
    written = time.time() - age.total_seconds()
    os.utime(stored.path, (written, written))
    return stored.sha256


def test_a_sweep_removes_old_files_no_row_references_and_keeps_the_rest(
    settings: Settings,
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = ImageStore(settings.images_dir)
    owner = make_user(session)
    orphan = painted(store, "red", age=timedelta(hours=2))
    young = painted(store, "green", age=timedelta(seconds=5))  # a row may be on its way
    kept = painted(store, "blue", age=timedelta(hours=2))
    session.add(Image(sha256=kept, width=8, height=8, format="png", kind=ImageKind.UPLOAD, user_id=owner.id))
    session.commit()
    sweeper = Sweeper(
        settings.model_copy(update={"orphan_grace_seconds": 3600.0}), session_factory=session_factory, store=store
    )

    with caplog.at_level(logging.INFO, logger="app.services.cleanup"):
        sweeper.sweep()

    assert not store.exists(orphan)
    assert store.exists(young) and store.exists(kept)
    assert any(orphan in record.getMessage() for record in caplog.records)


def test_a_sweep_requeues_a_stale_job_and_fails_one_past_its_bound(
    settings: Settings,
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
) -> None:
    owner = make_user(session)
    long_ago = utcnow() - timedelta(hours=1)
    stale = make_generation(
        session, owner=owner, status=Status.RUNNING, worker="celery@gone:1:cpu", attempts=1, heartbeat_at=long_ago
    )
    spent = make_generation(
        session, owner=owner, status=Status.RUNNING, worker="celery@gone:1:cpu", attempts=3, heartbeat_at=long_ago
    )
    redispatched: list[int] = []
    sweeper = Sweeper(
        settings.model_copy(update={"stale_after_seconds": 60.0, "max_attempts": 3}),
        session_factory=session_factory,
        store=ImageStore(settings.images_dir),
        redispatch=lambda: redispatched.append(1) or 1,
    )

    sweeper.sweep()

    session.expire_all()
    requeued, failed = session.get(Generation, stale.id), session.get(Generation, spent.id)
    assert requeued is not None and failed is not None
    assert requeued.status == Status.QUEUED and requeued.worker is None
    assert failed.status == Status.FAILED
    assert failed.error is not None and "3 attempts" in failed.error
    assert redispatched == [1]
