"""IP-Adapter style reference: a model folder with adapter weights paints in a reference's style.

The folder is built here: the tiny pipeline, a tiny randomly initialised CLIP vision encoder in
``image_encoder/`` and a matching plain IP-Adapter in ``ip_adapter/ip-adapter.safetensors``, in
the layout diffusers' ``load_ip_adapter`` reads (``image_proj.*`` and one ``to_k_ip``/``to_v_ip``
pair per cross-attention layer, numbered 1, 3, 5, ... in the UNet's attention-processor order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from app.engine.attention_signatures import SignedCall
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationResult, GenerationSpec, run
from app.engine.style import StyleReference
from tests.tiny_pipeline import build_tiny_pipeline

MODEL = "tiny-ip"
IMAGE_EMBED_DIM = 32
# A plain IP-Adapter turns one image embedding into four extra cross-attention tokens.
IMAGE_TOKENS = 4


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


def build_ip_adapter_model(folder: Path, *, seed: int = 0) -> Path:
    """A tiny pipeline folder with ``image_encoder/`` and ``ip_adapter/`` beside its components."""
    build_tiny_pipeline(folder, seed=seed)
    torch.manual_seed(seed)
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

    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    cross = int(unet.config.cross_attention_dim)
    state = {
        "image_proj.proj.weight": torch.randn(IMAGE_TOKENS * cross, IMAGE_EMBED_DIM) * 0.1,
        "image_proj.proj.bias": torch.zeros(IMAGE_TOKENS * cross),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    for index, width in enumerate(_cross_attention_widths(unet)):
        key = 2 * index + 1
        state[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(width, cross) * 0.3
        state[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(width, cross) * 0.3
    (folder / "ip_adapter").mkdir()
    save_file(state, folder / "ip_adapter" / "ip-adapter.safetensors")
    return folder


@pytest.fixture(scope="module")
def ip_registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    root = tmp_path_factory.mktemp("ip-adapter-models")
    build_ip_adapter_model(root / MODEL)
    return ModelRegistry(root, cache_size=1)


def _reference() -> StyleReference:
    # Diagonal stripes: something with structure for the image encoder to embed.
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    stripes = (np.add.outer(np.arange(64), np.arange(64)) // 8) % 2 == 1
    pixels[stripes] = (220, 40, 30)
    pixels[~stripes] = (20, 60, 200)
    return StyleReference(image=Image.fromarray(pixels), weight=1.0)


def _paint(registry: ModelRegistry, **overrides: object) -> GenerationResult:
    values: dict[str, object] = {
        "model": MODEL,
        "prompt": "a red barn under a blue sky",
        "seed": 11,
        "steps": 2,
        "guidance": 5.0,
        "width": 64,
        "height": 64,
        "scheduler": "ddim",
    }
    values.update(overrides)
    return run(registry, GenerationSpec(**values), device="cpu")  # type: ignore[arg-type]


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_registry_reports_the_ip_adapter_of_a_folder_that_has_one(ip_registry: ModelRegistry) -> None:
    spec = ip_registry.spec(MODEL)

    assert spec.has_ip_adapter


def test_ip_adapter_paints_with_a_reference_and_its_strength_changes_the_image(ip_registry: ModelRegistry) -> None:
    reference = _reference()

    without = _paint(ip_registry, style_references=[reference], style_method="ip-adapter", style_strength=0.0)
    with_style = _paint(ip_registry, style_references=[reference], style_method="ip-adapter", style_strength=1.0)

    assert len(without.images) == len(with_style.images) == 1
    assert with_style.images[0].size == (64, 64)
    assert not np.array_equal(_pixels(without.images[0]), _pixels(with_style.images[0]))


def test_prompt_only_painting_works_after_an_ip_adapter_call(ip_registry: ModelRegistry) -> None:
    adapter_off = _paint(ip_registry, style_references=[_reference()], style_method="ip-adapter", style_strength=0.0)

    plain = _paint(ip_registry)

    # The adapter was unloaded: no image embeddings are needed, and with its scale at 0 it had
    # added nothing, so the plain painting matches the adapter-off one.
    assert len(plain.images) == 1
    assert np.abs(_pixels(plain.images[0]) - _pixels(adapter_off.images[0])).max() <= 1
    pipeline = ip_registry.pipeline(MODEL, "cpu")
    assert getattr(pipeline, "image_encoder", None) is None
    assert pipeline.unet.encoder_hid_proj is None
    # The default processors the unloading put back are signed again, as at load.
    processors = [module.processor for module in pipeline.unet.modules() if "processor" in vars(module)]
    assert processors and all(isinstance(vars(processor).get("__call__"), SignedCall) for processor in processors)
