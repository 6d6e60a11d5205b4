"""Models API and the health check: the model's warmth, and a 503 that names a dead worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.engine.registry import ModelRegistry
from app.services import queue

MakeClient = Callable[..., TestClient]


def test_models_lists_tiny_as_the_default_and_leaves_out_refused_folders(idle_client: TestClient) -> None:
    response = idle_client.get("/api/models")

    assert response.status_code == 200
    models = {model["name"]: model for model in response.json()}
    assert set(models) == {"tiny", "tiny-inpaint"}
    assert models["tiny"]["default"] is True
    assert models["tiny-inpaint"]["default"] is False
    assert (models["tiny"]["width"], models["tiny"]["height"]) == (64, 64)
    assert models["tiny-inpaint"]["inpainting_unet"] is True
    # No pool in this process: nobody here knows how warm a model is.
    assert models["tiny"]["state"] is None


def test_healthz_reports_the_database_the_workers_and_the_default_model(client: TestClient) -> None:
    assert client.app.state.pool.wait_started(timeout=60)  # type: ignore[attr-defined]

    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["workers"] == {"cpu": None}
    # Preloading is off in these tests: the first job that asks for the model loads it.
    assert body["model"] == {"name": "tiny", "state": "cold", "error": None}
    assert body["detail"] is None


def test_the_model_is_loading_until_warm_and_a_job_sent_meanwhile_queues_then_runs(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, wait_final: Callable[..., dict[str, Any]]
) -> None:
    # Loading waits for the test's word, so "loading" is a state the test holds, not a race.
    gate = threading.Event()
    real_pipeline = ModelRegistry.pipeline

    def gated_pipeline(self: ModelRegistry, *args: Any, **kwargs: Any) -> Any:
        assert gate.wait(timeout=120), "the test never let the model load"
        return real_pipeline(self, *args, **kwargs)

    monkeypatch.setattr(ModelRegistry, "pipeline", gated_pipeline)
    client = make_client(preload_default_model=True)

    health = client.get("/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    assert health.json()["model"]["state"] == "loading"
    models = {model["name"]: model["state"] for model in client.get("/api/models").json()}
    assert models == {"tiny": "loading", "tiny-inpaint": "cold"}

    accepted = client.post("/api/generate/prompt", json={"prompt": "a red barn", "steps": 2, "scheduler": "ddim"})
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]
    assert client.get(f"/api/generations/{job_id}").json()["status"] == "queued"

    gate.set()
    done = wait_final(client, job_id)

    assert done["status"] == "succeeded", done["error"]
    assert client.get("/healthz").json()["model"] == {"name": "tiny", "state": "ready", "error": None}


def test_healthz_answers_503_naming_a_worker_thread_that_died(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.app.state.pool.wait_started(timeout=60)  # type: ignore[attr-defined]
    assert client.get("/healthz").status_code == 200

    class ThreadKiller(BaseException):
        """Escapes every retry loop, as a bug past them would."""

    def kill(*args: Any, **kwargs: Any) -> None:
        raise ThreadKiller()

    monkeypatch.setattr(queue, "claim", kill)
    response = client.get("/healthz")
    for _ in range(2400):  # a generous bound on the worker's next claim
        if response.status_code != 200:
            break
        time.sleep(0.05)
        response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["database"] == "ok"
    assert "the worker-cpu thread is dead" in body["detail"]
