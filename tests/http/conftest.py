"""Fixtures for what api and web share: an app in local mode (no workers) whose dispatches are recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.web.conftest import write_model_folder


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    models_dir = tmp_path / "models"
    write_model_folder(models_dir / "studio-tiny")
    return settings.model_copy(update={"models_dir": models_dir})


@pytest.fixture
def dispatched(app: FastAPI) -> list[int]:
    """The generation ids the app dispatched to its workers, in order."""
    calls: list[int] = []
    app.state.dispatch = calls.append
    return calls


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client
