"""The artist's controls each family takes: regional prompts and weighted prompts, asked of the family table."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.families.builders import FLUX, FLUX2, QWEN, SD1, SD3, SDXL, ZIMAGE
from tests.families.test_families_api import wait
from tests.tiny_lora import write_header_only


def test_models_say_which_take_weighted_and_regional_prompts(family_client: TestClient) -> None:
    models = {model["name"]: model["capabilities"] for model in family_client.get("/api/models").json()}
    assert models[SD1]["weighted_prompts"] and models[SD1]["regional_prompts"]
    assert models[SDXL]["weighted_prompts"] and models[SDXL]["regional_prompts"]
    for transformer in (SD3, FLUX, QWEN, ZIMAGE, FLUX2):
        assert not models[transformer]["regional_prompts"], transformer
    assert not models[SD3]["weighted_prompts"]


@pytest.mark.parametrize("model", [SD3, FLUX, QWEN, ZIMAGE, FLUX2])
def test_a_transformer_family_refuses_regions_at_submit_saying_they_need_a_unet(
    family_client: TestClient, model: str
) -> None:
    response = family_client.post(
        "/api/generate/prompt",
        json={"prompt": "a harbour", "model": model, "regions": [{"prompt": "a boat", "box": [0, 0, 0.5, 1]}]},
    )
    assert response.status_code == 422
    assert "does not take regional prompts: they need a UNet model" in response.text


def test_sdxl_paints_regions_through_the_api(family_client: TestClient) -> None:
    region = {"prompt": "a red boat", "box": [0, 0, 0.5, 1], "weight": 1.0}
    response = family_client.post(
        "/api/generate/prompt",
        json={"prompt": "a harbour", "model": SDXL, "steps": 2, "width": 64, "height": 64, "regions": [region]},
    )
    assert response.status_code == 202, response.text
    generation = wait(family_client, response.json()["id"])
    assert generation["status"] == "succeeded", generation
    assert generation["regions"] == [region]


@pytest.mark.parametrize("model", [SD3, FLUX])
def test_a_unet_lora_of_no_known_family_is_refused_on_a_transformer_model(
    family_client: TestClient, family_models_dir: Path, model: str
) -> None:
    # A tiny UNet LoRA's width names no family; its keys still say it patches a UNet, which these models lack.
    write_header_only(
        family_models_dir / "loras" / "unet-only.safetensors",
        {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": [4, 32]},
    )
    response = family_client.post(
        "/api/generate/prompt",
        json={"prompt": "a harbour", "model": model, "loras": [{"name": "unet-only", "weight": 1}]},
    )
    assert response.status_code == 422, response.text
    assert "patches a unet model" in response.text
