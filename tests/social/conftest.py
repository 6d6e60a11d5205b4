"""Fixtures for accounts, galleries, sharing and feedback: an app with login required, several
browsers (one per person), and finished generations whose outputs are real small PNGs in the store."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner
from PIL import Image as PILImage
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Generation, Image, ImageKind, Role, Status, User
from app.main import create_app
from app.services.storage import ImageStore

PASSWORD = "correct horse battery"
CSRF = "test-csrf-token"


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    return settings.model_copy(update={"auth": "required", "models_dir": models_dir})


@pytest.fixture
def app(settings: Settings, engine: Engine) -> FastAPI:
    # ``engine`` has migrated the database, so the clients need no lifespan (and no workers run).
    return create_app(settings)


@pytest.fixture
def store(app: FastAPI) -> ImageStore:
    store: ImageStore = app.state.store
    return store


@pytest.fixture
def anonymous(app: FastAPI) -> TestClient:
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def browser(app: FastAPI, settings: Settings) -> Callable[[User], TestClient]:
    """``browser(user)``: a client holding the signed session cookie a login of ``user`` sets,
    and sending the session's CSRF token on every request (as the pages' htmx does)."""

    def make(user: User) -> TestClient:
        client = TestClient(app, follow_redirects=False, headers={"X-CSRF-Token": CSRF})
        payload = base64.b64encode(json.dumps({"user_id": user.id, "csrf_token": CSRF}).encode())
        client.cookies.set("session", TimestampSigner(settings.secret_key).sign(payload).decode())
        return client

    return make


@dataclass
class Output:
    generation: Generation
    images: list[Image]

    @property
    def image(self) -> Image:
        return self.images[0]


_colour = iter(range(1, 1_000_000))


def paint_output(
    session: Session,
    store: ImageStore,
    make_generation: Callable[..., Generation],
    owner: User,
    *,
    n: int = 1,
    **overrides: Any,
) -> Output:
    """A succeeded generation of ``owner`` with ``n`` distinct 16x16 PNG outputs in the store."""
    generation = make_generation(session, owner, status=Status.SUCCEEDED, n_images=n, **overrides)
    rows = []
    for index in range(n):
        shade = next(_colour)
        picture = PILImage.new("RGB", (16, 16), (shade % 256, (shade * 7) % 256, (shade * 13) % 256))
        stored = store.put_image(picture)
        image = Image(
            sha256=stored.sha256,
            width=16,
            height=16,
            format="png",
            kind=ImageKind.OUTPUT,
            generation_id=generation.id,
            index=index,
            user_id=owner.id,
        )
        session.add(image)
        rows.append(image)
    session.commit()
    session.refresh(generation)
    return Output(generation=generation, images=rows)


@pytest.fixture
def make_output(
    session: Session, store: ImageStore, make_generation: Callable[..., Generation]
) -> Callable[..., Output]:
    """``make_output(owner, n=1, **generation_overrides) -> Output``."""

    def make(owner: User, n: int = 1, **overrides: Any) -> Output:
        return paint_output(session, store, make_generation, owner, n=n, **overrides)

    return make


@dataclass
class Cast:
    alice: User
    bob: User
    admin: User


@pytest.fixture
def cast(session: Session, make_user: Callable[..., User]) -> Cast:
    return Cast(
        alice=make_user(session, "alice"),
        bob=make_user(session, "bob"),
        admin=make_user(session, "root", role=Role.ADMIN),
    )
