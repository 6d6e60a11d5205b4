"""Interpolation: the walk's ends are the single runs, the middle is neither, slerp keeps the noise norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine.interpolate import frame_positions, lerp, slerp
from app.engine.registry import ModelRegistry
from app.engine.runner import Cancelled, GenerationSpec, InterpolationTarget, StepProgress, run
from tests.tiny_pipeline import TINY

PROMPT_A = "a red barn under a blue sky"
PROMPT_B = "a green sea at night"
SEED_A, SEED_B = 7, 99
# Frames and single runs take the same arithmetic path; a couple of levels allows for rounding.
TOLERANCE = 2


def _spec(**overrides: object) -> GenerationSpec:
    values: dict[str, object] = {
        "model": TINY,
        "prompt": PROMPT_A,
        "seed": SEED_A,
        "steps": 2,
        "guidance": 5.0,
        "width": 64,
        "height": 64,
        "scheduler": "ddim",
    }
    values.update(overrides)
    return GenerationSpec(**values)  # type: ignore[arg-type]


def _walk(frames: int = 4, **overrides: object) -> GenerationSpec:
    negative_b = str(overrides.pop("negative_prompt_b", ""))
    return _spec(
        interpolate_to=InterpolationTarget(prompt=PROMPT_B, seed=SEED_B, frames=frames, negative_prompt=negative_b),
        **overrides,
    )


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _difference(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(_pixels(a) - _pixels(b)).max())


@pytest.mark.parametrize("scheduler", ["ddim", "dpm++-2m", "euler-a"])
def test_first_and_last_frames_are_the_two_single_runs(tiny_registry: ModelRegistry, scheduler: str) -> None:
    walk = run(tiny_registry, _walk(frames=4, scheduler=scheduler), device="cpu")
    a = run(tiny_registry, _spec(scheduler=scheduler), device="cpu")
    b = run(tiny_registry, _spec(prompt=PROMPT_B, seed=SEED_B, scheduler=scheduler), device="cpu")

    assert len(walk.images) == 4
    assert _difference(walk.images[0], a.images[0]) <= TOLERANCE
    assert _difference(walk.images[-1], b.images[0]) <= TOLERANCE


def test_the_ends_match_with_negative_prompts_too(tiny_registry: ModelRegistry) -> None:
    walk = run(tiny_registry, _walk(frames=3, negative_prompt="blurry", negative_prompt_b="dark water"), device="cpu")
    a = run(tiny_registry, _spec(negative_prompt="blurry"), device="cpu")
    b = run(tiny_registry, _spec(prompt=PROMPT_B, seed=SEED_B, negative_prompt="dark water"), device="cpu")

    assert _difference(walk.images[0], a.images[0]) <= TOLERANCE
    assert _difference(walk.images[-1], b.images[0]) <= TOLERANCE


def test_middle_frames_differ_from_both_ends(tiny_registry: ModelRegistry) -> None:
    walk = run(tiny_registry, _walk(frames=5), device="cpu")
    first, last = walk.images[0], walk.images[-1]

    for middle in walk.images[1:-1]:
        assert _difference(middle, first) > TOLERANCE
        assert _difference(middle, last) > TOLERANCE
    assert [image.size for image in walk.images] == [(64, 64)] * 5


def test_the_same_walk_twice_paints_the_same_frames(tiny_registry: ModelRegistry) -> None:
    first = run(tiny_registry, _walk(frames=3), device="cpu")
    second = run(tiny_registry, _walk(frames=3), device="cpu")

    assert all(np.array_equal(_pixels(x), _pixels(y)) for x, y in zip(first.images, second.images, strict=True))
    assert first.seeds == [SEED_A, SEED_B, SEED_B]


def test_progress_counts_every_frames_steps_and_cancel_stops_the_walk(tiny_registry: ModelRegistry) -> None:
    seen: list[StepProgress] = []
    run(tiny_registry, _walk(frames=3), device="cpu", on_step=lambda progress: seen.append(progress) or True)
    assert [(progress.step, progress.total) for progress in seen] == [(step, 6) for step in range(1, 7)]

    calls: list[int] = []

    def stop_in_second_frame(progress: StepProgress) -> bool:
        calls.append(progress.step)
        return progress.step < 3

    with pytest.raises(Cancelled):
        run(tiny_registry, _walk(frames=3), device="cpu", on_step=stop_in_second_frame)
    assert calls == [1, 2, 3]


def test_slerp_keeps_the_norm_of_equal_norm_noise_where_a_straight_line_loses_it() -> None:
    generator = torch.Generator("cpu").manual_seed(0)
    a = torch.randn((1, 4, 32, 32), generator=generator)
    b = torch.randn((1, 4, 32, 32), generator=generator)
    b = b * (a.norm() / b.norm())

    for t in frame_positions(9):
        assert float(slerp(a, b, t).norm()) == pytest.approx(float(a.norm()), rel=1e-4)
    assert float(lerp(a, b, 0.5).norm()) < 0.8 * float(a.norm())


def test_slerp_of_unequal_noise_stays_between_the_two_norms_and_hits_both_ends() -> None:
    generator = torch.Generator("cpu").manual_seed(1)
    a = torch.randn((1, 4, 32, 32), generator=generator)
    b = torch.randn((1, 4, 32, 32), generator=generator) * 1.1
    low, high = sorted((float(a.norm()), float(b.norm())))

    for t in frame_positions(9):
        assert low * 0.999 <= float(slerp(a, b, t).norm()) <= high * 1.001
    assert torch.equal(slerp(a, b, 0.0), a)
    assert torch.equal(slerp(a, b, 1.0), b)


def test_slerp_of_parallel_tensors_is_a_straight_line() -> None:
    a = torch.ones(8)
    assert torch.allclose(slerp(a, 3 * a, 0.5), 2 * a)


def test_frame_counts_outside_the_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="between 2 and 64 frames"):
        frame_positions(1)
    assert frame_positions(3) == [0.0, 0.5, 1.0]
