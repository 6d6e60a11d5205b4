"""Model folders can't choose code (issue 14): a folder naming an unknown text encoder package is
refused, is not listed by GET /api/models, and a job asking for it is told why (422)."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from app.config import Settings
from tests.web.conftest import write_model_folder


def test_a_model_naming_an_unknown_package_is_not_listed_and_jobs_are_told_why(
    client: TestClient, settings: Settings
) -> None:
    folder = settings.models_dir / "sneaky"
    write_model_folder(folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_studio_text_encoder_package": "os"}))

    listed = client.get("/api/models")
    job = client.post("/api/generate/prompt", json={"prompt": "a barn", "model": "sneaky"})

    assert listed.status_code == 200
    assert [model["name"] for model in listed.json()] == ["studio-tiny"]
    assert job.status_code == 422
    assert "'os' is not a text encoder the studio knows" in job.json()["detail"]
