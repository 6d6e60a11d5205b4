"""Batched painting: every image of a shared call equals its solo painting; specs leave a batch one by one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.engine.batching import call_key, groups, run_batch
from app.engine.loras import LoraUse
from app.engine.regions import RegionPrompt
from app.engine.registry import ModelRegistry
from app.engine.runner import Cancelled, GenerationSpec, StepProgress, run
from app.engine.style import StyleReference
from tests.tiny_pipeline import TINY

# Within two levels of 255: a batch multiplies larger matrices, which rounds a little otherwise.
TOLERANCE = 2


def _spec(model: str = TINY, **overrides: object) -> GenerationSpec:
    values: dict[str, object] = {
        "model": model,
        "prompt": "a red barn under a blue sky",
        "seed": 7,
        "steps": 2,
        "guidance": 5.0,
        "width": 64,
        "height": 64,
        "scheduler": "ddim",
    }
    values.update(overrides)
    return GenerationSpec(**values)  # type: ignore[arg-type]


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _max_difference(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(_pixels(a) - _pixels(b)).max())


def _mixed_specs(model: str, **shared: object) -> list[GenerationSpec]:
    """Three jobs that share a call: other prompts, negative prompts and seeds; one paints two images."""
    return [
        _spec(model, prompt="a red boat on a lake", negative_prompt="blurry", seed=11, **shared),
        _spec(model, prompt="a yellow sun over a green field", negative_prompt="dark", seed=4_000_000, **shared),
        _spec(model, prompt="a blue house at night", negative_prompt="grey", seed=2**32 - 1, n_images=2, **shared),
    ]


def _assert_each_equals_its_solo(registry: ModelRegistry, specs: list[GenerationSpec]) -> None:
    batched = run_batch(registry, specs, device="cpu")
    solos = [run(registry, spec, device="cpu") for spec in specs]
    for spec, result, solo in zip(specs, batched, solos, strict=True):
        assert result is not None
        assert result.seeds == solo.seeds
        assert len(result.images) == spec.n_images
        for image, alone in zip(result.images, solo.images, strict=True):
            assert _max_difference(image, alone) <= TOLERANCE
    # The solos differ from each other, so a batch that mixed up prompts or seeds would show it.
    firsts = [solo.images[0] for solo in solos]
    assert _max_difference(firsts[0], firsts[1]) > TOLERANCE
    assert _max_difference(firsts[1], firsts[2]) > TOLERANCE


def test_each_batched_image_equals_its_solo_painting(painter: tuple[ModelRegistry, str]) -> None:
    registry, model = painter
    steps = 2 if model == TINY else 6

    _assert_each_equals_its_solo(registry, _mixed_specs(model, steps=steps, scheduler="dpm++-2m"))


def test_a_scheduler_that_adds_noise_each_step_draws_it_from_each_images_own_generator(
    tiny_registry: ModelRegistry,
) -> None:
    _assert_each_equals_its_solo(tiny_registry, _mixed_specs(TINY, scheduler="euler-a", steps=3))


def test_empty_negative_prompts_batch_as_they_paint_alone(tiny_registry: ModelRegistry) -> None:
    specs = [_spec(prompt="a red boat", seed=1), _spec(prompt="a green tree", seed=2), _spec(prompt="a cat", seed=3)]

    _assert_each_equals_its_solo(tiny_registry, specs)


def test_img2img_jobs_with_the_same_strength_batch_with_their_own_sources(tiny_registry: ModelRegistry) -> None:
    red = Image.new("RGB", (64, 64), (200, 40, 40))
    blue = Image.new("RGB", (64, 64), (40, 40, 200))
    specs = [
        _spec(mode="img2img", init_image=red, strength=0.6, steps=4, seed=5, prompt="a boat"),
        _spec(mode="img2img", init_image=blue, strength=0.6, steps=4, seed=6, prompt="a tree", n_images=2),
    ]
    batched = run_batch(tiny_registry, specs, device="cpu")
    solos = [run(tiny_registry, spec, device="cpu") for spec in specs]

    for result, solo in zip(batched, solos, strict=True):
        assert result is not None
        for image, alone in zip(result.images, solo.images, strict=True):
            assert _max_difference(image, alone) <= TOLERANCE
    # Each job repainted its own source: the red one stays redder than the blue one.
    assert batched[0] is not None and batched[1] is not None
    red_out, blue_out = _pixels(batched[0].images[0]).mean(axis=(0, 1)), _pixels(batched[1].images[0]).mean(axis=(0, 1))
    assert red_out[0] - red_out[2] > blue_out[0] - blue_out[2]


def test_a_spec_told_to_stop_leaves_the_batch_and_the_others_finish(tiny_registry: ModelRegistry) -> None:
    specs = _mixed_specs(TINY, steps=4)
    heard: list[list[int]] = [[], [], []]

    def listener(index: int, stop_after: int | None) -> object:
        def on_step(progress: StepProgress) -> bool:
            heard[index].append(progress.step)
            return stop_after is None or progress.step < stop_after

        return on_step

    results = run_batch(
        tiny_registry,
        specs,
        device="cpu",
        on_step=[listener(0, None), listener(1, 2), listener(2, None)],  # type: ignore[list-item]
    )

    assert results[1] is None
    assert heard == [[1, 2, 3, 4], [1, 2], [1, 2, 3, 4]]
    solo = run(tiny_registry, specs[2], device="cpu")
    assert results[2] is not None
    assert all(
        _max_difference(image, alone) <= TOLERANCE for image, alone in zip(results[2].images, solo.images, strict=True)
    )


def test_the_call_stops_once_every_spec_has_left(tiny_registry: ModelRegistry) -> None:
    steps_heard: list[int] = []

    def stop_at_two(progress: StepProgress) -> bool:
        steps_heard.append(progress.step)
        return progress.step < 2

    with pytest.raises(Cancelled):
        run_batch(tiny_registry, _mixed_specs(TINY, steps=6)[:2], device="cpu", on_step=[stop_at_two, stop_at_two])

    assert steps_heard == [1, 1, 2, 2]


def test_each_spec_hears_its_own_previews(tiny_registry: ModelRegistry) -> None:
    previews: list[list[int]] = [[], []]

    def collect(index: int) -> object:
        def on_step(progress: StepProgress) -> bool:
            if progress.preview is not None:
                previews[index].append(progress.step)
            return True

        return on_step

    run_batch(
        tiny_registry,
        _mixed_specs(TINY, steps=4, preview_every=2)[:2],
        device="cpu",
        on_step=[collect(0), collect(1)],  # type: ignore[list-item]
    )

    assert previews == [[2], [2]]


def test_specs_that_cannot_share_a_call_are_refused(tiny_registry: ModelRegistry) -> None:
    with pytest.raises(ValueError, match="cannot share one pipeline call"):
        run_batch(tiny_registry, [_spec(steps=2), _spec(steps=3)], device="cpu")


def test_call_key_keeps_apart_what_one_call_cannot_carry() -> None:
    base = _spec()
    assert call_key(base) == call_key(_spec(prompt="another", seed=99, n_images=3))
    for different in (
        _spec(steps=3),
        _spec(width=72),
        _spec(guidance=6.0),
        _spec(scheduler="euler"),
        _spec(model="other"),
        _spec(loras=[LoraUse(name="ink", weight=0.5)]),
        _spec(negative_prompt="blurry"),
        _spec(mode="img2img", init_image=Image.new("RGB", (64, 64)), strength=0.5),
    ):
        assert call_key(different) != call_key(base)
    for alone in (
        _spec(prompt="a (red:1.3) barn"),
        _spec(negative_prompt="[blurry]"),
        _spec(style_references=[StyleReference(image=Image.new("RGB", (64, 64)))]),
        _spec(regions=[RegionPrompt(prompt="sun", box=(0.0, 0.0, 0.5, 0.5))]),
        _spec(mode="inpaint", init_image=Image.new("RGB", (64, 64)), mask_image=Image.new("L", (64, 64))),
        _spec(tiled_vae=True),
    ):
        assert call_key(alone) is None


def test_groups_keep_order_and_put_each_spec_that_cannot_share_alone() -> None:
    specs = [_spec(), _spec(prompt="a (red:1.2) barn"), _spec(steps=3), _spec(seed=2), _spec(steps=3, seed=4)]

    assert groups(specs) == [[0, 3], [1], [2, 4]]
