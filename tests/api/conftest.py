"""API fixtures: apps over the tiny test models, with and without the embedded worker pool.

The database is the one ``tests/conftest.py`` picks (SQLite in tmp, or STUDIO_DATABASE_URL).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db.models import Generation, Status
from app.main import create_app
from tests.tiny_pipeline import TINY, tiny_models

FINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test models (``tiny``, ``tiny-inpaint``, ``pickled``), built once per test run."""
    return tiny_models(tmp_path_factory)


@pytest.fixture
def api_settings(settings: Settings, tiny_models_dir: Path) -> Settings:
    """The shared settings pointed at the tiny models, with a fast-polling CPU worker."""
    return settings.model_copy(
        update={
            "models_dir": tiny_models_dir,
            "default_model": TINY,
            "devices": "cpu",
            "start_workers": True,
            "preload_default_model": False,
            "poll_seconds": 0.05,
            "heartbeat_seconds": 0.2,
            "auth": "local",
        }
    )


@pytest.fixture
def make_client(api_settings: Settings) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**settings_overrides)``: a started TestClient (the lifespan has run)."""
    opened: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(api_settings.model_copy(update=overrides)))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in reversed(opened):
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """An app whose embedded pool runs jobs on a worker thread."""
    return make_client()


@pytest.fixture
def idle_client(make_client: Callable[..., TestClient]) -> TestClient:
    """An app with no workers: jobs stay queued."""
    return make_client(start_workers=False)


def wait_until_final(client: TestClient, generation_id: int, attempts: int = 1200) -> dict[str, Any]:
    """Polls the generation until it reaches a final status (a generous bound, not a timing check)."""
    body: dict[str, Any] = {}
    for _ in range(attempts):
        response = client.get(f"/api/generations/{generation_id}")
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in FINAL:
            return body
        time.sleep(0.05)
    raise AssertionError(f"generation {generation_id} never finished: {body}")


def enqueue(client: TestClient, prompt: str = "a harbour at night") -> int:
    """Submits a small prompt job; its id (it runs only where the client's app has workers)."""
    response = client.post("/api/generate/prompt", json={"prompt": prompt, "steps": 2})
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def set_status(client: TestClient, generation_id: int, status: Status) -> None:
    """Writes a job's status straight into its row, as if a worker (or a sweeper) had."""
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        generation = session.get(Generation, generation_id)
        assert generation is not None
        generation.status = status
        session.commit()


def paint(client: TestClient, **fields: Any) -> dict[str, Any]:
    """Posts a small prompt job and waits for its final state."""
    request: dict[str, Any] = {"prompt": "a red barn", "steps": 2, "width": 64, "height": 64, "scheduler": "ddim"}
    request.update(fields)
    response = client.post("/api/generate/prompt", json=request)
    assert response.status_code == 202, response.text
    return wait_until_final(client, response.json()["id"])


@pytest.fixture
def wait_final() -> Callable[..., dict[str, Any]]:
    """``wait_final(client, generation_id) -> generation JSON`` once it is final."""
    return wait_until_final


@pytest.fixture
def paint_job() -> Callable[..., dict[str, Any]]:
    """``paint_job(client, **fields) -> generation JSON`` of a finished small prompt job."""
    return paint
