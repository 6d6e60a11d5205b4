"""Submitting jobs: every route that creates jobs dispatches each of them, once they are committed."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Generation, Status, User
from app.http.submit import Submitter
from app.services import users
from app.services.errors import InvalidInput

MakeGeneration = Callable[..., Generation]
PAINTING = {"prompt": "a red barn under a blue sky", "steps": 2, "width": 64, "height": 64, "seed": 7}


def upload(client: TestClient) -> int:
    buffer = io.BytesIO()
    PILImage.new("RGB", (64, 64), (200, 60, 40)).save(buffer, format="PNG")
    response = client.post("/api/uploads", files={"file": ("picture.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def job_ids(app: FastAPI) -> set[int]:
    with app.state.session_factory() as session:
        return set(session.scalars(select(Generation.id)))


def finished(app: FastAPI, make_generation: MakeGeneration, **overrides: Any) -> int:
    with app.state.session_factory() as session:
        owner = users.ensure_local_user(session)
        return int(make_generation(session, owner, status=Status.SUCCEEDED, **overrides).id)


def test_every_route_that_creates_jobs_dispatches_each_job_it_created(
    client: TestClient, app: FastAPI, dispatched: list[int], make_generation: MakeGeneration
) -> None:
    start = finished(app, make_generation)
    end = finished(app, make_generation, prompt="a green sea", seed=11)
    image_id = upload(client)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert csrf
    form = {"csrf_token": csrf.group(1), **{name: str(value) for name, value in PAINTING.items()}}
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/api/generate/prompt", {"json": PAINTING}),
        ("/api/generate/style", {"json": {**PAINTING, "style_image_ids": [image_id]}}),
        ("/api/generate/inpaint", {"json": {**PAINTING, "image_id": image_id, "mask_id": image_id}}),
        (f"/api/generations/{start}/vary", {}),
        ("/api/generate/seeds", {"json": {**PAINTING, "count": 3}}),
        ("/api/generate/matrix", {"json": {**PAINTING, "replace": "red", "alternatives": ["blue", "white"]}}),
        (f"/api/generations/{start}/interpolate", {"json": {"to_id": end, "frames": 3}}),
        ("/partials/generate", {"data": form}),
        ("/partials/generate/style", {"data": {**form, "style_image_id": str(image_id)}}),
        (f"/partials/generations/{start}/vary", {"data": {"csrf_token": form["csrf_token"]}}),
        (f"/partials/generations/{start}/grid", {"data": {"csrf_token": form["csrf_token"], "count": "2"}}),
        (
            f"/partials/generations/{start}/interpolate",
            {"data": {"csrf_token": form["csrf_token"], "to_id": str(end), "frames": "3"}},
        ),
    ]
    for path, body in requests:
        before, told = job_ids(app), len(dispatched)

        response = client.post(path, follow_redirects=False, **body)

        assert response.status_code in (202, 303), (path, response.text)
        created = job_ids(app) - before
        assert created, path
        assert sorted(dispatched[told:]) == sorted(created), path


def test_a_service_failing_after_some_commits_still_dispatches_those_jobs(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    owner = make_user(session)
    told: list[int] = []
    made: list[int] = []

    def two_then_refused(session: Session, *, owner: User) -> None:
        made.extend(make_generation(session, owner).id for _ in range(2))
        raise InvalidInput("the third cell is refused")

    with pytest.raises(InvalidInput):
        Submitter(session, told.append).through(two_then_refused, owner=owner)

    assert told == made and len(made) == 2


def test_a_job_rolled_back_is_never_dispatched_and_one_committed_after_it_is(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    owner = make_user(session)
    told: list[int] = []
    kept: list[int] = []

    def rolled_back_then_committed(session: Session, *, owner: User) -> None:
        session.add(
            Generation(
                user_id=owner.id,
                mode="txt2img",
                prompt="never committed",
                model="studio-tiny",
                scheduler="ddim",
                seed=1,
                steps=2,
                guidance=5.0,
                width=64,
                height=64,
            )
        )
        session.flush()
        session.rollback()
        kept.append(make_generation(session, owner).id)

    Submitter(session, told.append).through(rolled_back_then_committed, owner=owner)

    assert told == kept
