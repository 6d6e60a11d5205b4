"""Fixtures for the HTML pages: an app on the test's settings (no workers) and a client on it."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner

from app.config import Settings
from app.db.models import User
from app.main import create_app

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def write_model_folder(folder: Path, *, sample_size: int = 8) -> None:
    """A pipeline folder the registry lists (configs and a safetensors file); no worker loads it here."""
    (folder / "unet").mkdir(parents=True)
    (folder / "vae").mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": sample_size, "in_channels": 4}))
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [32, 32, 32, 32]}))
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The shared settings with a models folder of our own holding a listed ``studio-tiny``."""
    models_dir = tmp_path / "models"
    write_model_folder(models_dir / "studio-tiny")
    return settings.model_copy(update={"models_dir": models_dir})


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def csrf(client: TestClient) -> str:
    """The session's CSRF token, as the studio page hands it to its form."""
    page = client.get("/")
    match = CSRF_INPUT.search(page.text)
    assert match, "the studio form carries a CSRF token"
    return match.group(1)


@pytest.fixture
def sign_in(client: TestClient, settings: Settings) -> Callable[[User], None]:
    """``sign_in(user)``: give the client the signed session cookie that a login of ``user`` sets."""

    def sign_in(user: User) -> None:
        payload = base64.b64encode(json.dumps({"user_id": user.id}).encode())
        client.cookies.set("session", TimestampSigner(settings.secret_key).sign(payload).decode())

    return sign_in
