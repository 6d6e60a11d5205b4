"""Models API and the health check."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_models_lists_tiny_as_the_default_and_leaves_out_refused_folders(idle_client: TestClient) -> None:
    response = idle_client.get("/api/models")

    assert response.status_code == 200
    models = {model["name"]: model for model in response.json()}
    assert set(models) == {"tiny", "tiny-inpaint"}
    assert models["tiny"]["default"] is True
    assert models["tiny-inpaint"]["default"] is False
    assert (models["tiny"]["width"], models["tiny"]["height"]) == (64, 64)
    assert models["tiny-inpaint"]["inpainting_unet"] is True


def test_healthz_reports_the_database_and_the_workers(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["workers"] == {"cpu": None}
