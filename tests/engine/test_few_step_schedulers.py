"""Few-step schedulers (LCM, TCD): selectable per request, painting at 1-8 steps with guidance off (0 or 1)."""

from __future__ import annotations

import numpy as np
import pytest
from diffusers import LCMScheduler, TCDScheduler
from PIL import Image

from app.engine import runner as runner_module
from app.engine.batching import run_batch
from app.engine.registry import ModelRegistry
from app.engine.runner import TCD_GAMMA, GenerationSpec, StepProgress, pipeline_for, run, sampler_arguments
from app.params import SCHEDULER_NAMES
from tests.tiny_pipeline import TINY

FEW_STEP = {"lcm": LCMScheduler, "tcd": TCDScheduler}


def _spec(model: str, **overrides: object) -> GenerationSpec:
    values: dict[str, object] = {
        "model": model,
        "prompt": "a red barn under a blue sky",
        "seed": 11,
        "steps": 4,
        "guidance": 1.0,
        "width": 64,
        "height": 64,
        "scheduler": "lcm",
    }
    values.update(overrides)
    return GenerationSpec(**values)  # type: ignore[arg-type]


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_lcm_and_tcd_are_scheduler_names_a_request_may_give() -> None:
    assert {"lcm", "tcd"} <= set(SCHEDULER_NAMES)


@pytest.mark.parametrize("scheduler", sorted(FEW_STEP))
@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_few_step_schedulers_paint_in_exactly_the_asked_steps(
    painter: tuple[ModelRegistry, str], scheduler: str, steps: int
) -> None:
    registry, model = painter
    progress: list[StepProgress] = []

    result = run(
        registry,
        _spec(model, scheduler=scheduler, steps=steps),
        device="cpu",
        on_step=lambda update: progress.append(update) or True,
    )

    assert isinstance(registry.pipeline(model, "cpu").scheduler, FEW_STEP[scheduler])
    assert [update.step for update in progress] == list(range(1, steps + 1))
    assert _pixels(result.images[0]).std() > 5, f"{scheduler} at {steps} steps painted a flat picture"


@pytest.mark.parametrize("scheduler", sorted(FEW_STEP))
def test_guidance_zero_and_one_both_turn_guidance_off(tiny_registry: ModelRegistry, scheduler: str) -> None:
    def paint(guidance: float) -> np.ndarray:
        return _pixels(run(tiny_registry, _spec(TINY, scheduler=scheduler, guidance=guidance), device="cpu").images[0])

    off_at_zero, off_at_one, guided = paint(0.0), paint(1.0), paint(5.0)

    assert np.array_equal(off_at_zero, off_at_one)
    assert np.abs(guided - off_at_one).max() > 10


@pytest.mark.parametrize("scheduler", sorted(FEW_STEP))
def test_few_step_schedulers_repaint_an_image_at_one_to_four_steps(
    tiny_registry: ModelRegistry, scheduler: str
) -> None:
    source = run(tiny_registry, _spec(TINY, scheduler="ddim", steps=2), device="cpu").images[0]
    for steps in (2, 4):
        spec = _spec(TINY, scheduler=scheduler, steps=steps, mode="img2img", init_image=source, strength=0.5)

        [image] = run(tiny_registry, spec, device="cpu").images

        assert image.size == source.size
        assert _pixels(image).std() > 5


def test_lcm_and_tcd_take_the_place_of_the_folder_s_scheduler(tiny_registry: ModelRegistry) -> None:
    lcm = _pixels(run(tiny_registry, _spec(TINY, scheduler="lcm"), device="cpu").images[0])
    tcd = _pixels(run(tiny_registry, _spec(TINY, scheduler="tcd"), device="cpu").images[0])
    euler = _pixels(run(tiny_registry, _spec(TINY, scheduler="euler"), device="cpu").images[0])

    assert not np.array_equal(lcm, euler)
    assert not np.array_equal(tcd, euler)


def test_tcd_paints_with_its_gamma_drawn_from_the_seed(
    tiny_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(TINY, scheduler="tcd", steps=4)
    with_gamma = _pixels(run(tiny_registry, spec, device="cpu").images[0])
    again = _pixels(run(tiny_registry, spec, device="cpu").images[0])
    monkeypatch.setattr(runner_module, "TCD_GAMMA", 0.0)
    deterministic = _pixels(run(tiny_registry, spec, device="cpu").images[0])

    assert runner_module.TCD_GAMMA == 0.0 and TCD_GAMMA == 0.3
    assert np.array_equal(with_gamma, again)  # the fresh noise comes from the seed
    assert np.abs(with_gamma - deterministic).max() > 5
    assert sampler_arguments(pipeline_for(tiny_registry, _spec(TINY, scheduler="lcm"), "cpu")) == {}


def test_batched_few_step_jobs_paint_as_they_paint_alone(tiny_registry: ModelRegistry) -> None:
    for scheduler in sorted(FEW_STEP):
        specs = [
            _spec(TINY, scheduler=scheduler, prompt="a red boat on a lake", seed=1),
            _spec(TINY, scheduler=scheduler, prompt="a blue house at night", seed=99),
        ]
        batched = run_batch(tiny_registry, specs, device="cpu")
        for spec, result in zip(specs, batched, strict=True):
            assert result is not None
            alone = run(tiny_registry, spec, device="cpu").images[0]
            assert np.abs(_pixels(result.images[0]) - _pixels(alone)).max() <= 2
