"""Quota (issue 14, class: queue flooding): at most STUDIO_MAX_QUEUED_PER_USER unfinished images per artist.

Past it a submit answers 429 with Retry-After and a sentence saying how many are waiting; the
quota counts images, so a seed grid of 16 counts 16 and n_images counts each image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Generation, Mode, Status, User
from app.services import generations
from app.services.errors import RateLimited

JOB = {"prompt": "a red barn", "steps": 2, "width": 64, "height": 64, "scheduler": "ddim"}


def _count(session: Session) -> int:
    session.expire_all()
    return int(session.scalar(select(func.count()).select_from(Generation)) or 0)


def test_the_default_quota_is_fifty_images(settings: Settings) -> None:
    assert settings.max_queued_per_user == 50


def test_past_the_quota_a_submit_answers_429_saying_how_many_wait(
    make_client: Callable[..., TestClient], session: Session
) -> None:
    client = make_client(start_workers=False, max_queued_per_user=5)
    for _ in range(2):
        assert client.post("/api/generate/prompt", json={**JOB, "n_images": 2}).status_code == 202

    refused = client.post("/api/generate/prompt", json={**JOB, "n_images": 2})

    assert refused.status_code == 429
    detail = refused.json()["detail"]
    assert "4 of your images are waiting" in detail and "at most 5" in detail and "2 more" in detail
    assert int(refused.headers["retry-after"]) > 0
    assert _count(session) == 2, "the refused job left no row"
    assert client.post("/api/generate/prompt", json={**JOB, "n_images": 1}).status_code == 202, "one more fits"


def test_a_seed_grid_counts_each_cell_and_is_refused_whole(
    make_client: Callable[..., TestClient], session: Session
) -> None:
    client = make_client(start_workers=False, max_queued_per_user=20)
    assert client.post("/api/generate/seeds", json={**JOB, "count": 16}).status_code == 202

    refused = client.post("/api/generate/seeds", json={**JOB, "count": 16})

    assert refused.status_code == 429, refused.text
    assert "16 of your images are waiting" in refused.json()["detail"]
    assert "this asks for 16 more" in refused.json()["detail"]
    assert _count(session) == 16, "no cell of the refused grid was queued"
    assert client.post("/api/generate/seeds", json={**JOB, "count": 4}).status_code == 202


def test_finished_jobs_free_the_quota(make_client: Callable[..., TestClient], session: Session) -> None:
    client = make_client(start_workers=False, max_queued_per_user=3)
    assert client.post("/api/generate/prompt", json={**JOB, "n_images": 3}).status_code == 202
    assert client.post("/api/generate/prompt", json=JOB).status_code == 429

    session.execute(update(Generation).values(status=Status.SUCCEEDED))
    session.commit()

    assert client.post("/api/generate/prompt", json={**JOB, "n_images": 3}).status_code == 202


def _new(**overrides: Any) -> generations.NewGeneration:
    values: dict[str, Any] = {
        "mode": Mode.TXT2IMG,
        "prompt": "a barn",
        "model": "studio-tiny",
        "scheduler": "ddim",
        "steps": 2,
        "guidance": 5.0,
        "width": 64,
        "height": 64,
    }
    return generations.NewGeneration(**(values | overrides))


def test_the_quota_is_per_artist_and_only_on_submitted_sessions(
    session: Session, make_user: Callable[..., User]
) -> None:
    alice, bob = make_user(session), make_user(session)
    # No quota on a session the Submitter did not prepare (the CLI, the workers).
    for _ in range(2):
        generations.enqueue(session, owner=alice, new=_new(n_images=4))

    session.info[generations.QUOTA_KEY] = 8
    with pytest.raises(RateLimited, match="8 of your images are waiting"):
        generations.enqueue(session, owner=alice, new=_new())
    session.rollback()
    generations.enqueue(session, owner=bob, new=_new(n_images=8))
    assert generations.unfinished_images(session, owner=bob) == 8


def test_an_admin_raises_and_resets_one_artists_quota(make_client: Callable[..., TestClient]) -> None:
    client = make_client(start_workers=False, max_queued_per_user=2)  # local mode: the local artist is an admin
    me = client.get("/api/auth/me").json()["id"]
    assert client.post("/api/generate/prompt", json={**JOB, "n_images": 2}).status_code == 202
    assert client.post("/api/generate/prompt", json=JOB).status_code == 429

    raised = client.patch(f"/api/admin/users/{me}", json={"max_queued_images": 5})

    assert raised.status_code == 200 and raised.json()["max_queued_images"] == 5
    assert raised.json()["role"] == "admin", "the role is left as it was"
    assert client.post("/api/generate/prompt", json={**JOB, "n_images": 3}).status_code == 202
    refused = client.post("/api/generate/prompt", json=JOB)
    assert refused.status_code == 429 and "at most 5" in refused.json()["detail"]

    reset = client.patch(f"/api/admin/users/{me}", json={"max_queued_images": None})
    assert reset.status_code == 200 and reset.json()["max_queued_images"] is None
    assert "at most 2" in client.post("/api/generate/prompt", json=JOB).json()["detail"]
    assert client.patch(f"/api/admin/users/{me}", json={"max_queued_images": 0}).status_code == 422
    refused_role = client.patch(f"/api/admin/users/{me}", json={"role": "artist"})
    assert refused_role.status_code == 422 and "from yourself" in refused_role.json()["detail"]
