"""ControlNet painting on tiny random models: a guide changes the picture, weight 0 and the next job don't."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import FluxControlNetModel
from PIL import Image, ImageDraw

from app.engine.control_pipelines import ControlGuide
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from tests.families.builders import FLUX, SDXL, build_flux, build_sdxl
from tests.tiny_controlnet import build_tiny_controlnet, build_tiny_flux_controlnet
from tests.tiny_pipeline import TINY, TINY_INPAINT


@pytest.fixture(scope="module")
def control_registry(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """``tiny`` and ``tiny-inpaint`` with two ControlNets made from tiny's UNet (``edges`` and ``lines``)."""
    root = tmp_path_factory.mktemp("control-models")
    shutil.copytree(tiny_models_dir / TINY, root / TINY)
    shutil.copytree(tiny_models_dir / TINY_INPAINT, root / TINY_INPAINT)
    build_tiny_controlnet(root / TINY, root / "controlnet" / "edges", seed=1)
    build_tiny_controlnet(root / TINY, root / "controlnet" / "lines", seed=2)
    return ModelRegistry(root, cache_size=2)


def _guide_image() -> Image.Image:
    image = Image.new("RGB", (64, 64), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((12, 12, 52, 52), outline="black", width=3)
    draw.line((0, 0, 63, 63), fill="black", width=2)
    return image


def _paint(registry: ModelRegistry, model: str = TINY, **fields: Any) -> np.ndarray:
    spec = GenerationSpec(
        model=model, prompt="a red barn", seed=3, steps=2, width=64, height=64, scheduler="ddim", **fields
    )
    [image] = run(registry, spec, device="cpu").images
    return np.asarray(image, dtype=np.int16)


def _differ(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def test_a_guide_changes_the_picture_weight_zero_does_not_and_nothing_leaks(control_registry: ModelRegistry) -> None:
    plain = _paint(control_registry)
    guided = _paint(control_registry, control=[ControlGuide(image=_guide_image(), kind="canny", model="edges")])
    zero = _paint(control_registry, control=[ControlGuide(image=_guide_image(), kind="canny", model="edges", weight=0)])
    after = _paint(control_registry)

    assert _differ(guided, plain) > 1.0
    assert np.array_equal(zero, plain)
    assert np.array_equal(after, plain)


def test_the_map_kind_weight_and_span_each_reach_the_controlnet(control_registry: ModelRegistry) -> None:
    image = _guide_image()
    full = _paint(control_registry, control=[ControlGuide(image=image, kind="canny", model="edges")])
    as_is = _paint(control_registry, control=[ControlGuide(image=image, kind="none", model="edges")])
    half = _paint(control_registry, control=[ControlGuide(image=image, kind="canny", model="edges", weight=0.5)])
    # Of two steps, a span from 0.5 guides the second only.
    late = _paint(control_registry, control=[ControlGuide(image=image, kind="canny", model="edges", start=0.5)])
    plain = _paint(control_registry)

    assert _differ(full, as_is) > 0.5
    assert _differ(full, half) > 0.5
    # The last step alone moves the picture a little, and far less than a guide over both steps.
    assert _differ(late, full) > 0.5
    assert 0 < _differ(late, plain) < _differ(full, plain)


def test_two_guides_run_together(control_registry: ModelRegistry) -> None:
    image = _guide_image()
    edges = ControlGuide(image=image, kind="canny", model="edges")
    lines = ControlGuide(image=image, kind="scribble", model="lines")

    one = _paint(control_registry, control=[edges])
    both = _paint(control_registry, control=[edges, lines])
    # A guide at weight 0 beside another is as if it were absent.
    with_zero = _paint(
        control_registry, control=[edges, ControlGuide(image=image, kind="scribble", model="lines", weight=0)]
    )

    assert _differ(both, one) > 1.0
    assert np.array_equal(with_zero, one)


def test_image_to_image_and_inpainting_take_guides_too(control_registry: ModelRegistry) -> None:
    source = Image.new("RGB", (64, 64), (40, 90, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    guide = [ControlGuide(image=_guide_image(), kind="canny", model="edges")]

    repainted = _paint(control_registry, mode="img2img", init_image=source, strength=0.8)
    repainted_guided = _paint(control_registry, mode="img2img", init_image=source, strength=0.8, control=guide)
    inpaint = {"mode": "inpaint", "init_image": source, "mask_image": mask, "strength": 1.0, "mask_blur": 0.0}
    inpainted = _paint(control_registry, **inpaint)
    inpainted_guided = _paint(control_registry, **inpaint, control=guide)

    assert _differ(repainted_guided, repainted) > 0.5
    assert _differ(inpainted_guided[:, :32], inpainted[:, :32]) > 0.5
    # Outside the mask the source stays exactly as it was, guided or not.
    assert np.array_equal(inpainted_guided[:, 32:], np.asarray(source, dtype=np.int16)[:, 32:])


def test_an_inpainting_checkpoint_takes_a_guide_made_for_its_base(control_registry: ModelRegistry) -> None:
    # A ControlNet sees the 4 latent channels; the 9-channel inpainting UNet gets the mask beside them.
    source = Image.new("RGB", (64, 64), (40, 90, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    inpaint = {"mode": "inpaint", "init_image": source, "mask_image": mask, "strength": 1.0, "mask_blur": 0.0}

    plain = _paint(control_registry, model=TINY_INPAINT, **inpaint)
    guided = _paint(
        control_registry,
        model=TINY_INPAINT,
        **inpaint,
        control=[ControlGuide(image=_guide_image(), kind="canny", model="edges")],
    )

    assert _differ(guided[:, :32], plain[:, :32]) > 0.5
    assert np.array_equal(guided[:, 32:], plain[:, 32:])


def test_controlnets_are_kept_warm_by_name(control_registry: ModelRegistry) -> None:
    first = control_registry.controlnet("edges", "cpu", dtype=torch.float32)

    assert control_registry.controlnet("edges", "cpu", dtype=torch.float32) is first
    assert control_registry.controlnet("lines", "cpu", dtype=torch.float32) is not first
    with pytest.raises(ValueError, match="ControlNet 'missing' is not in"):
        control_registry.controlnet("missing", "cpu", dtype=torch.float32)


def test_a_style_job_refuses_a_guide(control_registry: ModelRegistry) -> None:
    from app.engine.style import StyleReference

    with pytest.raises(ValueError, match="not style jobs"):
        _paint(
            control_registry,
            style_references=[StyleReference(image=_guide_image())],
            control=[ControlGuide(image=_guide_image(), kind="canny", model="edges")],
        )


def test_an_sdxl_controlnet_guides_an_sdxl_model(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("control-sdxl")
    build_sdxl(root / SDXL)
    build_tiny_controlnet(root / SDXL, root / "controlnet" / "xl-edges", seed=3)
    registry = ModelRegistry(root, cache_size=1)

    plain = _paint(registry, model=SDXL)
    guided = _paint(registry, model=SDXL, control=[ControlGuide(image=_guide_image(), kind="canny", model="xl-edges")])

    assert _differ(guided, plain) > 1.0
    assert np.array_equal(_paint(registry, model=SDXL), plain)


@pytest.fixture(scope="module")
def flux_registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """A tiny FLUX.1 model with two ControlNets made from its transformer, one of them a union ControlNet."""
    root = tmp_path_factory.mktemp("control-flux")
    build_flux(root / FLUX)
    build_tiny_flux_controlnet(root / FLUX, root / "controlnet" / "flux-edges", seed=1)
    build_tiny_flux_controlnet(root / FLUX, root / "controlnet" / "flux-union", seed=2, union_modes=10)
    return ModelRegistry(root, cache_size=1)


def _paint_flux(registry: ModelRegistry, **fields: Any) -> np.ndarray:
    # FLUX.1 runs its own flow-matching scheduler and distilled guidance.
    spec = GenerationSpec(model=FLUX, prompt="a red barn", seed=3, steps=2, width=64, height=64, **fields)
    [image] = run(registry, spec, device="cpu").images
    return np.asarray(image, dtype=np.int16)


def test_a_flux_controlnet_guides_a_flux_model_and_weight_zero_does_not(flux_registry: ModelRegistry) -> None:
    edges = ControlGuide(image=_guide_image(), kind="canny", model="flux-edges")

    plain = _paint_flux(flux_registry)
    guided = _paint_flux(flux_registry, control=[edges])
    again = _paint_flux(flux_registry, control=[edges])
    half = _paint_flux(
        flux_registry, control=[ControlGuide(image=_guide_image(), kind="canny", model="flux-edges", weight=0.5)]
    )
    zero = _paint_flux(
        flux_registry, control=[ControlGuide(image=_guide_image(), kind="canny", model="flux-edges", weight=0)]
    )
    after = _paint_flux(flux_registry)

    assert _differ(guided, plain) > 1.0
    assert np.array_equal(again, guided)
    assert _differ(half, guided) > 0.5
    assert np.array_equal(zero, plain)
    assert np.array_equal(after, plain)
    assert isinstance(flux_registry.controlnet("flux-edges", "cpu", dtype=torch.float32), FluxControlNetModel)


def test_flux_guides_run_together_and_a_union_controlnet_is_told_its_mode(flux_registry: ModelRegistry) -> None:
    image = _guide_image()
    edges = ControlGuide(image=image, kind="canny", model="flux-edges")
    union = ControlGuide(image=image, kind="canny", model="flux-union")

    one = _paint_flux(flux_registry, control=[edges])
    both = _paint_flux(flux_registry, control=[edges, union])
    alone = _paint_flux(flux_registry, control=[union])
    seen: dict[str, Any] = {}
    real_forward = FluxControlNetModel.forward

    def spy(self: FluxControlNetModel, *args: Any, **kwargs: Any) -> Any:
        seen.setdefault("modes", []).append(kwargs.get("controlnet_mode"))
        return real_forward(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FluxControlNetModel, "forward", spy)
        _paint_flux(flux_registry, control=[union])

    assert _differ(both, one) > 1.0
    assert _differ(alone, _paint_flux(flux_registry)) > 1.0
    # canny is mode 0 of a union ControlNet, at every step.
    assert len(seen["modes"]) == 2
    assert all(mode is not None and mode.flatten().tolist() == [0] for mode in seen["modes"])


def test_flux_image_to_image_and_inpainting_take_guides(flux_registry: ModelRegistry) -> None:
    source = Image.new("RGB", (64, 64), (40, 90, 200))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    guide = [ControlGuide(image=_guide_image(), kind="canny", model="flux-edges")]

    repainted = _paint_flux(flux_registry, mode="img2img", init_image=source, strength=0.8)
    repainted_guided = _paint_flux(flux_registry, mode="img2img", init_image=source, strength=0.8, control=guide)
    inpaint = {"mode": "inpaint", "init_image": source, "mask_image": mask, "strength": 1.0, "mask_blur": 0.0}
    inpainted = _paint_flux(flux_registry, **inpaint)
    inpainted_guided = _paint_flux(flux_registry, **inpaint, control=guide)

    assert _differ(repainted_guided, repainted) > 0.5
    assert _differ(inpainted_guided[:, :32], inpainted[:, :32]) > 0.5
    assert np.array_equal(inpainted_guided[:, 32:], inpainted[:, 32:])
