"""A job's attention maps follow its PNGs: a clean-up that removed both between the files' write and
the rows' commit gets both written back, and the painting still answers its words."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from app.db.models import Generation, Status, User
from app.services import attention
from app.workers import jobs
from app.workers.jobs import JobContext, execute
from tests.tiny_pipeline import TINY


def test_a_clean_up_racing_completion_removes_nothing_the_painting_keeps_its_maps(
    session: Session,
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    job_context: JobContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_complete = jobs.queue.complete
    removed: list[str] = []

    def complete_after_a_clean_up(session: Session, **kwargs: object) -> bool:
        # As the periodic clean-up does with files no row references yet: the PNG and its maps go.
        for output in kwargs["outputs"]:  # type: ignore[attr-defined]
            assert job_context.store.attention_path(output.sha256).is_file()
            job_context.store.remove(output.sha256)
            removed.append(output.sha256)
        return real_complete(session, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jobs.queue, "complete", complete_after_a_clean_up)
    owner = make_user(session)
    worker = "embedded@test:1:cpu"
    generation = make_generation(
        session, owner=owner, model=TINY, prompt="a red boat", status=Status.RUNNING, worker=worker, attempts=1
    )

    assert execute(job_context, generation.id, worker=worker, device="cpu") == Status.SUCCEEDED

    assert len(removed) == 1
    store = job_context.store
    assert store.exists(removed[0]) and store.attention_path(removed[0]).is_file()
    session.expire_all()
    image = session.get(Generation, generation.id).images[0]  # type: ignore[union-attr]
    found = attention.for_image(session, store, image_id=image.id, user=owner)
    assert found.available and [word.word for word in found.words] == ["a", "red", "boat"]
