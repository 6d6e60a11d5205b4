"""Style reference and inpainting measured on pictures: each must do what it claims, by numbers.

The colour and region checks run on studio-tiny, which paints recognisable pictures; the
mechanics (compositing, outpainting sizes, processor restore) also run on the tiny test model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine.inpaint import Outpaint
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from app.engine.style import StyleReference

REPO_ROOT = Path(__file__).resolve().parents[2]
needs_studio_tiny = pytest.mark.skipif(
    not (REPO_ROOT / "models" / "studio-tiny" / "model_index.json").is_file(),
    reason="models/studio-tiny is not trained yet",
)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def centre_mask(size: int, margin: int) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (margin, margin, size - margin, size - margin))
    return mask


def test_inpainting_keeps_unmasked_pixels_exactly_on_any_unet(tiny_registry: ModelRegistry) -> None:
    source = Image.new("RGB", (64, 64), (20, 90, 200))
    for model in ("tiny", "tiny-inpaint"):
        spec = GenerationSpec(
            model=model,
            prompt="red",
            seed=3,
            steps=2,
            mode="inpaint",
            init_image=source,
            mask_image=centre_mask(64, 24),
            mask_blur=2.0,
            strength=1.0,
        )
        result = pixels(run(tiny_registry, spec, device="cpu").images[0])
        border = np.ones((64, 64), dtype=bool)
        border[16:48, 16:48] = False  # the mask plus room for its blurred edge
        assert np.abs(result[border] - pixels(source)[border]).mean() < 0.5, model


def test_outpainting_grows_the_canvas_and_keeps_the_source_in_place(tiny_registry: ModelRegistry) -> None:
    source = Image.new("RGB", (64, 64), (200, 40, 40))
    spec = GenerationSpec(
        model="tiny",
        prompt="more",
        seed=1,
        steps=2,
        mode="inpaint",
        init_image=source,
        mask_image=Image.new("L", (64, 64), 0),
        strength=1.0,
        mask_blur=0.0,
        outpaint=Outpaint(left=16, bottom=8),
    )
    image = run(tiny_registry, spec, device="cpu").images[0]
    assert image.size == (80, 72)
    kept = pixels(image)[0:64, 16:80]
    assert np.abs(kept - pixels(source)).mean() < 0.5


def test_style_reference_restores_the_unets_own_attention_processors(tiny_registry: ModelRegistry) -> None:
    unet = tiny_registry.pipeline("tiny", "cpu").unet
    before = {name: type(processor) for name, processor in unet.attn_processors.items()}
    spec = GenerationSpec(
        model="tiny",
        prompt="a boat",
        seed=2,
        steps=2,
        n_images=2,
        style_references=[StyleReference(Image.new("RGB", (64, 64), (250, 130, 0)))],
        style_strength=0.8,
    )
    result = run(tiny_registry, spec, device="cpu")
    assert len(result.images) == 2, "the references are not returned as images"
    assert {name: type(processor) for name, processor in unet.attn_processors.items()} == before


@needs_studio_tiny
def test_inpainting_on_studio_tiny_repaints_the_mask_red_and_keeps_the_rest(
    studio_tiny_registry: ModelRegistry,
) -> None:
    source_spec = GenerationSpec(model="studio-tiny", prompt="a blue circle in the centre under a blue sky", seed=5)
    source = run(studio_tiny_registry, source_spec, device="cpu").images[0]
    mask = centre_mask(64, 16)
    spec = GenerationSpec(
        model="studio-tiny",
        prompt="a red square in the centre under a blue sky",
        seed=6,
        mode="inpaint",
        init_image=source,
        mask_image=mask,
        strength=1.0,
        mask_blur=2.0,
    )
    result = pixels(run(studio_tiny_registry, spec, device="cpu").images[0])
    before = pixels(source)
    inside = np.zeros((64, 64), dtype=bool)
    inside[16:48, 16:48] = True
    outside = np.ones((64, 64), dtype=bool)
    outside[10:54, 10:54] = False

    def redness(values: np.ndarray) -> float:
        return float((values[..., 0] - (values[..., 1] + values[..., 2]) / 2).mean())

    assert np.abs(result[outside] - before[outside]).mean() < 1.0
    assert redness(result[inside]) > redness(before[inside]) + 20


@needs_studio_tiny
def test_style_reference_pulls_colours_towards_the_reference_more_with_strength(
    studio_tiny_registry: ModelRegistry,
) -> None:
    reference = run(
        studio_tiny_registry,
        GenerationSpec(model="studio-tiny", prompt="an orange sun in the centre at sunset", seed=11),
        device="cpu",
    ).images[0]
    target = pixels(reference).reshape(-1, 3).mean(axis=0)

    def distance(strength: float) -> float:
        spec = GenerationSpec(
            model="studio-tiny",
            prompt="a white house on the left under a blue sky",
            seed=21,
            n_images=3,
            style_references=[StyleReference(reference)] if strength > 0 else [],
            style_strength=strength,
            scheduler="ddim",  # what the style path runs on, so only the reference differs
        )
        images = run(studio_tiny_registry, spec, device="cpu").images
        means = np.stack([pixels(image).reshape(-1, 3).mean(axis=0) for image in images])
        return float(np.linalg.norm(means - target, axis=1).mean())

    without, medium, strong = distance(0.0), distance(0.5), distance(1.0)
    assert medium < without
    assert strong < medium
