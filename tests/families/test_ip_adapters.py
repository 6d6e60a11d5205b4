"""IP-Adapter style on SDXL and FLUX.1: a folder with an adapter and a CLIP image encoder paints in a reference's style.

The adapters are random and tiny, in the layouts diffusers reads: for SDXL ``image_proj.*`` and one
``to_k_ip``/``to_v_ip`` pair per cross-attention layer (numbered 1, 3, 5, ... in the UNet's
processor order, as SD 1.x's in ``tests/engine/test_ip_adapter.py``); for FLUX.1 the XLabs layout,
``image_proj.*`` (an image embedding into four tokens of the joint attention's width) and one pair,
with biases, per double-stream block, numbered from 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationResult, GenerationSpec, run
from app.engine.style import StyleReference
from tests.families.builders import build_flux, build_sdxl

FLUX_IP, SDXL_IP = "flux-ip", "sdxl-ip"
IMAGE_EMBED_DIM = 32
IMAGE_TOKENS = 4


def _image_encoder(folder: Path) -> None:
    torch.manual_seed(1)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=IMAGE_EMBED_DIM,
        )
    )
    encoder.save_pretrained(folder / "image_encoder", safe_serialization=True)


def build_flux_ip_adapter(folder: Path) -> Path:
    build_flux(folder)
    _image_encoder(folder)
    config = json.loads((folder / "transformer" / "config.json").read_text())
    context = int(config["joint_attention_dim"])
    inner = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    state = {
        "image_proj.proj.weight": torch.randn(IMAGE_TOKENS * context, IMAGE_EMBED_DIM) * 0.3,
        "image_proj.proj.bias": torch.zeros(IMAGE_TOKENS * context),
        "image_proj.norm.weight": torch.ones(context),
        "image_proj.norm.bias": torch.zeros(context),
    }
    for block in range(int(config["num_layers"])):
        for projection in ("to_k_ip", "to_v_ip"):
            state[f"ip_adapter.{block}.{projection}.weight"] = torch.randn(inner, context) * 0.5
            state[f"ip_adapter.{block}.{projection}.bias"] = torch.zeros(inner)
    (folder / "ip_adapter").mkdir()
    save_file(state, folder / "ip_adapter" / "ip-adapter.safetensors")
    return folder


def _cross_attention_widths(unet: UNet2DConditionModel) -> list[int]:
    """The hidden size of each cross-attention layer, in the order diffusers numbers adapter keys."""
    blocks = list(unet.config.block_out_channels)
    widths = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention gets no adapter weights
        if name.startswith("mid_block"):
            widths.append(blocks[-1])
        elif name.startswith("up_blocks"):
            widths.append(list(reversed(blocks))[int(name[len("up_blocks.")])])
        else:
            widths.append(blocks[int(name[len("down_blocks.")])])
    return widths


def build_sdxl_ip_adapter(folder: Path) -> Path:
    build_sdxl(folder)
    _image_encoder(folder)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    cross = int(unet.config.cross_attention_dim)
    state = {
        "image_proj.proj.weight": torch.randn(IMAGE_TOKENS * cross, IMAGE_EMBED_DIM) * 0.3,
        "image_proj.proj.bias": torch.zeros(IMAGE_TOKENS * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    for index, width in enumerate(_cross_attention_widths(unet)):
        state[f"ip_adapter.{2 * index + 1}.to_k_ip.weight"] = torch.randn(width, cross) * 0.5
        state[f"ip_adapter.{2 * index + 1}.to_v_ip.weight"] = torch.randn(width, cross) * 0.5
    (folder / "ip_adapter").mkdir()
    save_file(state, folder / "ip_adapter" / "ip-adapter.safetensors")
    return folder


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    root = tmp_path_factory.mktemp("ip-adapters")
    build_flux_ip_adapter(root / FLUX_IP)
    build_sdxl_ip_adapter(root / SDXL_IP)
    return ModelRegistry(root, cache_size=2)


def reference() -> StyleReference:
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes = (np.add.outer(np.arange(64), np.arange(64)) // 8) % 2 == 1
    pixels[stripes] = (220, 40, 30)
    pixels[~stripes] = (20, 60, 200)
    return StyleReference(image=Image.fromarray(pixels), weight=1.0)


def paint(registry: ModelRegistry, model: str, **overrides: object) -> GenerationResult:
    values: dict[str, object] = {"model": model, "prompt": "a red barn", "seed": 5, "steps": 2, "guidance": 3.5}
    values.update(overrides)
    return run(registry, GenerationSpec(**values), device="cpu")  # type: ignore[arg-type]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize(("model", "family"), [(FLUX_IP, "flux"), (SDXL_IP, "sdxl")])
def test_a_folder_with_an_adapter_offers_ip_adapter_style(registry: ModelRegistry, model: str, family: str) -> None:
    spec = registry.spec(model)

    assert spec.family.name == family
    assert spec.capabilities.style_methods == ("shared-attention", "ip-adapter")


@pytest.mark.parametrize("model", [FLUX_IP, SDXL_IP])
def test_ip_adapter_style_follows_its_strength_and_leaves_the_pipeline_as_it_was(
    registry: ModelRegistry, model: str
) -> None:
    styled = {"style_references": [reference()], "style_method": "ip-adapter"}

    off = paint(registry, model, **styled, style_strength=0.0).images[0]
    full = paint(registry, model, **styled, style_strength=1.0).images[0]
    again = paint(registry, model, **styled, style_strength=1.0).images[0]
    plain = paint(registry, model).images[0]

    assert full.size == (64, 64)
    assert np.array_equal(pixels(full), pixels(again))
    assert not np.array_equal(pixels(off), pixels(full)), "the adapter at full strength changed nothing"
    # Unloaded after each call: a prompt alone needs no image embeddings, and scale 0 had added nothing.
    assert np.abs(pixels(plain) - pixels(off)).max() <= 1
    pipeline = registry.pipeline(model, "cpu")
    assert getattr(pipeline, "image_encoder", None) is None
    denoiser = pipeline.transformer if model == FLUX_IP else pipeline.unet
    assert denoiser.encoder_hid_proj is None
