"""The artist's controls each family takes: regional prompts and weighted prompts, asked of the family table."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.families.builders import SD1, SD3, SDXL


def test_models_say_which_take_weighted_and_regional_prompts(family_client: TestClient) -> None:
    models = {model["name"]: model["capabilities"] for model in family_client.get("/api/models").json()}
    assert models[SD1]["weighted_prompts"] and models[SD1]["regional_prompts"]
    assert models[SDXL]["weighted_prompts"] and not models[SDXL]["regional_prompts"]
    assert not models[SD3]["weighted_prompts"] and not models[SD3]["regional_prompts"]


def test_a_transformer_family_refuses_regions_with_the_reason(family_client: TestClient) -> None:
    response = family_client.post(
        "/api/generate/prompt",
        json={"prompt": "a harbour", "model": SD3, "regions": [{"prompt": "a boat", "box": [0, 0, 0.5, 1]}]},
    )
    assert response.status_code == 422
    assert "does not take regional prompts" in response.text
