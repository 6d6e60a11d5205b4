"""LoRAs in the engine: a peft-made LoRA changes the painting at weight 1, not at 0, and never leaks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine import loras
from app.engine.loras import LoraUse
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from tests.engine.conftest import REPO_ROOT, STUDIO_TINY, STUDIO_TINY_READY
from tests.tiny_lora import as_kohya, build_tiny_lora, write_header_only
from tests.tiny_pipeline import TINY


@pytest.fixture(scope="module")
def lora_models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with ``tiny`` (and studio-tiny when trained) and a LoRA for each in ``loras/``."""
    root = tmp_path_factory.mktemp("lora-models")
    shutil.copytree(tiny_models_dir / TINY, root / TINY)
    build_tiny_lora(root / TINY, root / "loras" / "ink.safetensors")
    as_kohya(root / "loras" / "ink.safetensors", root / "loras" / "ink-kohya.safetensors")
    if STUDIO_TINY_READY:
        (root / STUDIO_TINY).symlink_to(REPO_ROOT / "models" / STUDIO_TINY, target_is_directory=True)
        build_tiny_lora(root / STUDIO_TINY, root / "loras" / "studio" / "ink.safetensors")
    return root


@pytest.fixture(scope="module")
def lora_registry(lora_models: Path) -> ModelRegistry:
    return ModelRegistry(lora_models, cache_size=2)


PAINTERS = [
    (TINY, "ink"),
    pytest.param(
        STUDIO_TINY,
        "studio/ink",
        marks=pytest.mark.skipif(not STUDIO_TINY_READY, reason="models/studio-tiny is not trained yet"),
    ),
]


def _paint(registry: ModelRegistry, model: str, uses: list[LoraUse]) -> np.ndarray:
    spec = GenerationSpec(
        model=model, prompt="a red boat", seed=7, steps=2, width=64, height=64, scheduler="ddim", loras=uses
    )
    [image] = run(registry, spec, device="cpu").images
    return _pixels(image)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize(("model", "name"), PAINTERS)
def test_lora_changes_the_painting_at_weight_one_not_at_zero_and_leaves_no_trace(
    lora_registry: ModelRegistry, model: str, name: str
) -> None:
    plain = _paint(lora_registry, model, [])
    weighted = _paint(lora_registry, model, [LoraUse(name, 1.0)])
    zero = _paint(lora_registry, model, [LoraUse(name, 0.0)])
    after = _paint(lora_registry, model, [])

    assert np.abs(weighted - plain).mean() > 1.0
    assert np.array_equal(zero, plain)
    # Unloaded after its call: the next job on the same warm pipeline paints as before.
    assert np.array_equal(after, plain)
    pipeline = lora_registry.pipeline(model, "cpu")
    assert not any("lora" in key for key in pipeline.unet.state_dict())


def test_negative_weight_pushes_the_other_way(lora_registry: ModelRegistry) -> None:
    plain = _paint(lora_registry, TINY, [])
    positive = _paint(lora_registry, TINY, [LoraUse("ink", 1.0)])
    negative = _paint(lora_registry, TINY, [LoraUse("ink", -1.0)])
    assert np.abs(negative - plain).mean() > 1.0
    assert np.abs(negative - positive).mean() > np.abs(negative - plain).mean() / 2


def test_an_unknown_lora_fails_the_call_and_leaves_the_pipeline_clean(lora_registry: ModelRegistry) -> None:
    plain = _paint(lora_registry, TINY, [])
    with pytest.raises(ValueError, match="missing"):
        _paint(lora_registry, TINY, [LoraUse("ink", 1.0), LoraUse("missing", 1.0)])
    assert np.array_equal(_paint(lora_registry, TINY, []), plain)


def test_a_kohya_layout_lora_paints_as_its_diffusers_layout_twin(lora_registry: ModelRegistry) -> None:
    diffusers_layout = _paint(lora_registry, TINY, [LoraUse("ink", 0.8)])
    kohya_layout = _paint(lora_registry, TINY, [LoraUse("ink-kohya", 0.8)])
    assert np.array_equal(kohya_layout, diffusers_layout)
    assert np.abs(kohya_layout - _paint(lora_registry, TINY, [])).mean() > 1.0


def test_two_loras_at_once_differ_from_either_alone(lora_registry: ModelRegistry) -> None:
    one = _paint(lora_registry, TINY, [LoraUse("ink", 1.0)])
    both = _paint(lora_registry, TINY, [LoraUse("ink", 1.0), LoraUse("ink-kohya", 1.0)])
    assert np.abs(both - one).mean() > 1.0


def test_scan_lists_names_sizes_and_the_fit_of_each_file(lora_models: Path) -> None:
    found = {lora.name: lora for lora in loras.scan(lora_models)}
    assert found["ink-kohya"].cross_attention_dim == 32
    ink = found["ink"]
    assert ink.size == (lora_models / "loras" / "ink.safetensors").stat().st_size
    # The tiny UNet's cross-attention is 32 wide: no public family, but the width is known.
    assert (ink.family, ink.cross_attention_dim) == (None, 32)
    assert loras.model_cross_attention_dim(lora_models / TINY) == 32


def test_families_are_told_from_kohya_peft_and_metadata_layouts(tmp_path: Path) -> None:
    kohya_sd1 = write_header_only(
        tmp_path / "a.safetensors",
        {
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": [4, 768],
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": [320, 4],
        },
    )
    peft_sd2 = write_header_only(
        tmp_path / "b.safetensors",
        {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.lora_A.weight": [4, 1024]},
    )
    kohya_sdxl = write_header_only(
        tmp_path / "c.safetensors",
        {"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": [4, 1280]},
    )
    tagged = write_header_only(
        tmp_path / "d.safetensors", {"x.lora_down.weight": [4, 8]}, {"ss_base_model_version": "sdxl_base_v1-0"}
    )
    flux = write_header_only(
        tmp_path / "e.safetensors", {"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": [4, 64]}
    )
    told = {path.name: loras.family_of(loras.read_header(path))[0] for path in (kohya_sd1, peft_sd2, kohya_sdxl)}
    assert told == {"a.safetensors": "sd1", "b.safetensors": "sd2", "c.safetensors": "sdxl"}
    assert loras.family_of(loras.read_header(tagged))[0] == "sdxl"
    assert loras.family_of(loras.read_header(flux))[0] == "flux"


def test_mismatch_names_the_family_or_the_width() -> None:
    sdxl = loras.LoraFile("x", Path("x"), 1, "sdxl", 2048)
    tiny = loras.LoraFile("t", Path("t"), 1, None, 32)
    assert "sdxl" in (loras.mismatch(sdxl, family="sd1", family_label="SD 1.x", model_dim=768) or "")
    assert "384" in (loras.mismatch(tiny, family="sd1", family_label="SD 1.x", model_dim=384) or "")
    assert loras.mismatch(tiny, family="sd1", family_label="SD 1.x", model_dim=32) is None
    unet_patch = loras.LoraFile("u", Path("u"), 1, None, 32, denoiser="unet")
    why = loras.mismatch(unet_patch, family="flux", family_label="FLUX.1", model_dim=None, denoiser="transformer")
    assert "patches a unet model" in (why or "")


def test_the_denoiser_a_lora_patches_is_told_from_its_keys(tmp_path: Path) -> None:
    layouts = {
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": "unet",
        "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": "unet",
        # kohya names FLUX's blocks under lora_unet_ as well
        "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": "transformer",
        "transformer.transformer_blocks.0.attn.to_q.lora_A.weight": "transformer",
        "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": None,
    }
    for index, (key, expected) in enumerate(layouts.items()):
        path = write_header_only(tmp_path / f"{index}.safetensors", {key: [4, 8]})
        assert loras.denoiser_of(loras.read_header(path)) == expected, key


def test_a_truncated_file_is_not_listed(tmp_path: Path) -> None:
    (tmp_path / "loras").mkdir()
    (tmp_path / "loras" / "broken.safetensors").write_bytes(b"\x10\x00")
    assert loras.scan(tmp_path) == []
