"""Families in the engine: detection from configs alone, image-to-image on every family, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine.catalog import ModelSpec, RefusedModel, inspect_model
from app.engine.families import family_named, refusal
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from app.engine.style import StyleReference
from tests.families.builders import FAMILY_OF, FLUX, FLUX2, FLUX2_KLEIN, QWEN, SD1, SD3, SDXL, ZIMAGE


@pytest.fixture(scope="module")
def registry(family_models_dir: Path) -> ModelRegistry:
    return ModelRegistry(family_models_dir, cache_size=8)


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


@pytest.mark.parametrize("model", [name for name in FAMILY_OF if FAMILY_OF[name] != "flux2"])
def test_image_to_image_repaints_the_content_less_the_lower_the_strength(registry: ModelRegistry, model: str) -> None:
    content = Image.new("RGB", (64, 64), (200, 60, 40))

    def repaint(strength: float) -> np.ndarray:
        spec = GenerationSpec(
            model=model, prompt="a barn", seed=2, steps=4, mode="img2img", init_image=content, strength=strength
        )
        [image] = run(registry, spec, device="cpu").images
        assert image.size == (64, 64)
        return as_array(image)

    light, heavy = repaint(0.25), repaint(1.0)

    # The random decoder never reproduces the content, but a light touch starts nearer to it.
    target = as_array(content)
    assert not np.array_equal(light, heavy)
    assert np.abs(light - target).mean() != np.abs(heavy - target).mean()


def test_sdxl_style_runs_with_its_two_text_encoders(registry: ModelRegistry) -> None:
    spec = GenerationSpec(
        model=SDXL,
        prompt="a lighthouse",
        seed=1,
        steps=2,
        scheduler="ddim",
        style_references=[StyleReference(Image.new("RGB", (64, 64), (220, 120, 30)))],
        style_strength=0.8,
    )

    [image] = run(registry, spec, device="cpu").images

    assert image.size == (64, 64)


# A strongly coloured reference per family: tiny random decoders draw most flat colours alike, and
# these are colours each build's decoder tells apart from its others (see builders.build_sd3).
BLUE, ORANGE = (20, 60, 230), (230, 120, 20)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "colour"),
    [(SD3, BLUE), (FLUX, ORANGE), (FLUX2, BLUE), (FLUX2_KLEIN, BLUE), (QWEN, BLUE), (ZIMAGE, BLUE)],
)
def test_joint_attention_style_moves_the_colours_towards_the_reference_with_strength(
    registry: ModelRegistry, model: str, colour: tuple[int, int, int]
) -> None:
    reference = Image.new("RGB", (64, 64), colour)
    pipeline = registry.pipeline(model, "cpu")
    with torch.no_grad():  # what this random decoder makes of the reference: the colour to move towards
        pixels = pipeline.image_processor.preprocess(reference, height=64, width=64)
        if getattr(pipeline.vae.config, "latents_mean", None) is not None:  # Qwen-Image's video VAE: one frame
            round_trip = pipeline.vae.decode(pipeline.vae.encode(pixels[:, :, None]).latent_dist.mean).sample[:, :, 0]
        else:
            round_trip = pipeline.vae.decode(pipeline.vae.encode(pixels).latent_dist.mean).sample
    target = as_array(pipeline.image_processor.postprocess(round_trip)[0]).mean(axis=(0, 1))

    def distance(strength: float) -> float:
        spec = GenerationSpec(
            model=model,
            prompt="a barn",
            seed=3,
            steps=4,
            n_images=2,
            style_references=[StyleReference(reference)],
            style_strength=strength,
        )
        images = run(registry, spec, device="cpu").images
        assert len(images) == 2  # the reference rode in the batch and was left out
        return float(np.abs(as_array(images[0]).mean(axis=(0, 1)) - target).mean())

    none, half, full = distance(0.0), distance(0.5), distance(1.0)

    assert none > half > full


@pytest.mark.parametrize(
    ("family", "mode", "style", "sentence"),
    [
        ("flux2", "inpaint", None, "this FLUX.2 model can't inpaint: FLUX.2 takes images"),
        ("flux-fill", "inpaint", "shared-attention", "FLUX.1 Fill can't use shared-attention style"),
        ("flux2", "img2img", None, "this FLUX.2 model can't repaint a content image: FLUX.2 takes images"),
        ("flux-fill", "txt2img", None, "this FLUX.1 Fill model can't paint from a prompt alone"),
        ("sd3", "txt2img", "ip-adapter", "this Stable Diffusion 3.x model has no IP-Adapter"),
    ],
)
def test_a_family_says_why_it_cannot(family: str, mode: str, style: str | None, sentence: str) -> None:
    row = family_named(family)

    why = refusal(row, row.capabilities, mode=mode, style_method=style)

    assert why is not None and why.startswith(sentence)


def test_a_flow_family_keeps_its_own_scheduler_whatever_is_asked(registry: ModelRegistry) -> None:
    spec = GenerationSpec(model=ZIMAGE, prompt="a barn", seed=1, steps=2, scheduler="euler-a")

    run(registry, spec, device="cpu")

    assert type(registry.pipeline(ZIMAGE, "cpu").scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"


# --- detection from configs alone --------------------------------------------------------------


def _copy_configs(source: Path, target: Path, **index_overrides: object) -> Path:
    """The configs of a built folder (no weights but one empty safetensors) with index overrides."""
    for config in source.rglob("*.json"):
        destination = target / config.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(config.read_text())
    index = json.loads((target / "model_index.json").read_text()) | index_overrides
    (target / "model_index.json").write_text(json.dumps(index))
    (target / "weights.safetensors").write_bytes(b"")
    return target


def test_each_family_is_told_from_its_configs(family_models_dir: Path) -> None:
    for name, family in FAMILY_OF.items():
        found = inspect_model(family_models_dir / name)
        assert isinstance(found, ModelSpec), found
        assert found.family.name == family


def test_flux_without_guidance_embeddings_is_schnell_with_no_guidance(family_models_dir: Path, tmp_path: Path) -> None:
    folder = _copy_configs(family_models_dir / FLUX, tmp_path / "schnell")
    config_path = folder / "transformer" / "config.json"
    config = json.loads(config_path.read_text()) | {"guidance_embeds": False}
    config_path.write_text(json.dumps(config))

    found = inspect_model(folder)

    assert isinstance(found, ModelSpec)
    assert (found.family.name, found.capabilities.guidance) == ("flux", "none")


def test_a_step_distilled_flux2_klein_takes_no_guidance(family_models_dir: Path, tmp_path: Path) -> None:
    guided = inspect_model(family_models_dir / FLUX2_KLEIN)
    distilled = inspect_model(_copy_configs(family_models_dir / FLUX2_KLEIN, tmp_path / "klein", is_distilled=True))

    assert isinstance(guided, ModelSpec) and isinstance(distilled, ModelSpec)
    assert (guided.family.name, guided.capabilities.guidance) == ("flux2", "cfg")
    assert (distilled.family.name, distilled.capabilities.guidance) == ("flux2", "none")


def test_a_flux_fill_folder_only_inpaints(family_models_dir: Path, tmp_path: Path) -> None:
    found = inspect_model(_copy_configs(family_models_dir / FLUX, tmp_path / "fill", _class_name="FluxFillPipeline"))

    assert isinstance(found, ModelSpec)
    assert found.family.name == "flux-fill"
    assert (found.capabilities.txt2img, found.capabilities.inpaint, found.capabilities.outpaint) == (False, True, True)


def test_a_pipeline_no_family_claims_is_refused_naming_it(family_models_dir: Path, tmp_path: Path) -> None:
    found = inspect_model(_copy_configs(family_models_dir / SD1, tmp_path / "odd", _class_name="KandinskyPipeline"))

    assert isinstance(found, RefusedModel)
    assert "KandinskyPipeline is not a pipeline the studio can run" in found.reason


@pytest.mark.parametrize("model", [FLUX, FLUX2])
def test_real_sized_configs_give_the_familys_size_and_step(family_models_dir: Path, tmp_path: Path, model: str) -> None:
    folder = _copy_configs(family_models_dir / model, tmp_path / "real-size")
    vae_path = folder / "vae" / "config.json"
    vae = json.loads(vae_path.read_text()) | {"block_out_channels": [128, 256, 512, 512]}
    vae_path.write_text(json.dumps(vae))

    found = inspect_model(folder)

    assert isinstance(found, ModelSpec)
    assert (found.default_width, found.default_height, found.size_step) == (1024, 1024, 16)


def test_qwen_image_guidance_acts_without_a_negative_prompt(registry: ModelRegistry) -> None:
    """Qwen-Image runs classifier-free guidance only with a negative prompt; an empty one still guides."""

    def paint(guidance: float) -> np.ndarray:
        spec = GenerationSpec(model=QWEN, prompt="a barn", seed=2, steps=2, guidance=guidance)
        return as_array(run(registry, spec, device="cpu").images[0])

    assert not np.array_equal(paint(1.0), paint(6.0))
