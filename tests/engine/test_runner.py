"""Runner: seeded determinism, batches, schedulers, progress, cancellation and the image modes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from app.engine import previews
from app.engine.registry import ModelRegistry
from app.engine.runner import SCHEDULERS, Cancelled, GenerationSpec, StepProgress, image_seeds, run
from tests.tiny_pipeline import TINY, TINY_INPAINT

PROMPT = "a red barn under a blue sky"


def _spec(model: str = TINY, **overrides: object) -> GenerationSpec:
    values: dict[str, object] = {
        "model": model,
        "prompt": PROMPT,
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


# --- determinism and prompts (also on the real studio-tiny when it is trained) ----------------


def test_same_seed_paints_identical_pixels(painter: tuple[ModelRegistry, str]) -> None:
    registry, model = painter
    first = run(registry, _spec(model, seed=1234), device="cpu")
    second = run(registry, _spec(model, seed=1234), device="cpu")

    assert first.seeds == second.seeds == [1234]
    assert np.array_equal(_pixels(first.images[0]), _pixels(second.images[0]))


def test_different_seeds_paint_different_pixels(painter: tuple[ModelRegistry, str]) -> None:
    registry, model = painter
    first = run(registry, _spec(model, seed=1), device="cpu")
    second = run(registry, _spec(model, seed=2), device="cpu")

    assert not np.array_equal(_pixels(first.images[0]), _pixels(second.images[0]))


def test_different_prompts_paint_different_pixels_from_the_same_seed(painter: tuple[ModelRegistry, str]) -> None:
    registry, model = painter
    barn = run(registry, _spec(model, prompt="a red barn under a blue sky"), device="cpu")
    sea = run(registry, _spec(model, prompt="a green sea at night"), device="cpu")

    assert not np.array_equal(_pixels(barn.images[0]), _pixels(sea.images[0]))


def test_runs_paint_the_asked_size(painter: tuple[ModelRegistry, str]) -> None:
    registry, model = painter
    result = run(registry, _spec(model, width=64, height=64, n_images=2), device="cpu")

    assert [image.size for image in result.images] == [(64, 64), (64, 64)]


def test_a_non_square_size_is_painted_as_asked(tiny_registry: ModelRegistry) -> None:
    result = run(tiny_registry, _spec(width=64, height=48), device="cpu")

    assert [image.size for image in result.images] == [(64, 48)]


# --- batches ----------------------------------------------------------------------------------


def test_image_seeds_count_up_from_the_seed_and_wrap_at_32_bits() -> None:
    assert image_seeds(10, 3) == [10, 11, 12]
    assert image_seeds(2**32 - 1, 2) == [2**32 - 1, 0]


def test_batch_image_can_be_repainted_alone_from_its_seed(tiny_registry: ModelRegistry) -> None:
    batch = run(tiny_registry, _spec(seed=500, n_images=2), device="cpu")
    alone = run(tiny_registry, _spec(seed=501, n_images=1), device="cpu")

    assert batch.seeds == [500, 501]
    assert len(batch.images) == 2
    # A batch of two may round differently from a batch of one; the picture is the same.
    assert _max_difference(batch.images[1], alone.images[0]) <= 2
    assert _max_difference(batch.images[0], alone.images[0]) > 2


# --- schedulers -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_scheduler_paints_the_same_picture_again_from_the_same_seed(
    tiny_registry: ModelRegistry, scheduler: str
) -> None:
    seen: list[StepProgress] = []

    def on_step(progress: StepProgress) -> bool:
        seen.append(progress)
        return True

    result = run(tiny_registry, _spec(scheduler=scheduler), device="cpu", on_step=on_step)
    again = run(tiny_registry, _spec(scheduler=scheduler), device="cpu")

    assert [image.size for image in result.images] == [(64, 64)]
    pixels = _pixels(result.images[0])
    # A sampler that diverges paints NaN, which becomes one flat colour; the tiny model's
    # pictures vary by about 46 levels around their mean.
    assert pixels.std() > 10, f"{scheduler} painted a flat picture"
    # The ancestral samplers (euler-a, ddpm) add noise at every step: it must come from the seed.
    assert np.array_equal(pixels, _pixels(again.images[0]))
    # Some schedulers (PNDM) spend one extra warm-up step; progress still counts up to its total.
    assert [progress.step for progress in seen] == list(range(1, seen[-1].total + 1))
    assert seen[-1].total >= 2


# Schedulers whose three-step pictures coincide by construction: Euler is DDIM's step written in
# sigmas, Euler ancestral is DDPM's step, and UniPC starts as DPM-Solver++ does. Every other pair
# must differ, or the asked scheduler did not take the place of the folder's own.
SAME_STEP = {frozenset({"ddim", "euler"}), frozenset({"ddpm", "euler-a"}), frozenset({"dpm++-2m", "unipc"})}


def test_schedulers_of_different_kinds_paint_different_pictures_from_the_same_seed(
    tiny_registry: ModelRegistry,
) -> None:
    pictures = {
        name: _pixels(run(tiny_registry, _spec(scheduler=name, steps=3), device="cpu").images[0])
        for name in sorted(SCHEDULERS)
    }

    alike = [
        (first, second)
        for first, second in itertools.combinations(sorted(pictures), 2)
        if frozenset({first, second}) not in SAME_STEP
        # Rounding moves a pixel by a level or two; a different sampler moves some by ten or more.
        and int(np.abs(pictures[first] - pictures[second]).max()) <= 8
    ]
    assert alike == []


def test_every_call_gets_a_fresh_scheduler_so_none_carries_state_into_the_next(tiny_registry: ModelRegistry) -> None:
    # The kind's scheduler is built once and copied for each call: the copy, never the kept one, steps.
    first = run(tiny_registry, _spec(scheduler="dpm++-2m", steps=3), device="cpu")
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    used = pipeline.scheduler
    run(tiny_registry, _spec(scheduler="euler-a", steps=4), device="cpu")
    again = run(tiny_registry, _spec(scheduler="dpm++-2m", steps=3), device="cpu")

    assert pipeline.scheduler is not used
    assert all(kept is not pipeline.scheduler for kept in pipeline._studio_scheduler_templates.values())
    # A kept scheduler never stepped: it has no timesteps of any call.
    assert all(kept.num_inference_steps is None for kept in pipeline._studio_scheduler_templates.values())
    assert np.array_equal(_pixels(first.images[0]), _pixels(again.images[0]))


def test_unknown_scheduler_raises_value_error_naming_the_choices(tiny_registry: ModelRegistry) -> None:
    with pytest.raises(ValueError, match="unknown scheduler 'lms'.*ddim"):
        run(tiny_registry, _spec(scheduler="lms"), device="cpu")


# --- progress and cancellation ----------------------------------------------------------------


def test_on_step_is_called_once_per_step_with_increasing_steps_and_the_total(tiny_registry: ModelRegistry) -> None:
    seen: list[tuple[int, int]] = []

    def on_step(progress: StepProgress) -> bool:
        seen.append((progress.step, progress.total))
        return True

    run(tiny_registry, _spec(steps=3), device="cpu", on_step=on_step)

    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_previews_come_every_few_steps_but_not_on_the_last(tiny_registry: ModelRegistry) -> None:
    previews: dict[int, Image.Image | None] = {}

    def on_step(progress: StepProgress) -> bool:
        previews[progress.step] = progress.preview
        return True

    run(tiny_registry, _spec(steps=4, preview_every=2), device="cpu", on_step=on_step)

    assert [step for step, preview in previews.items() if preview is not None] == [2]
    preview = previews[2]
    assert preview is not None and max(preview.size) <= 128


def test_an_offered_preview_is_painted_only_when_the_callback_reads_it(
    tiny_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    painted: list[int] = []
    real = previews.latents_preview

    def counted(*args: object, **kwargs: object) -> Image.Image:
        painted.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(previews, "latents_preview", counted)
    offers: list[bool] = []

    def on_step(progress: StepProgress) -> bool:
        offers.append(progress.offers_preview)
        return True

    run(tiny_registry, _spec(steps=4, preview_every=2), device="cpu", on_step=on_step)

    assert offers == [False, True, False, False]
    assert painted == []


@pytest.mark.parametrize("stop_at", [1, 2])
def test_returning_false_from_on_step_cancels_after_that_step(tiny_registry: ModelRegistry, stop_at: int) -> None:
    calls: list[int] = []

    def on_step(progress: StepProgress) -> bool:
        calls.append(progress.step)
        return progress.step < stop_at

    with pytest.raises(Cancelled):
        run(tiny_registry, _spec(steps=5), device="cpu", on_step=on_step)

    assert calls == list(range(1, stop_at + 1))


# --- image-to-image and inpainting ------------------------------------------------------------


def _source(width: int = 64, height: int = 64) -> Image.Image:
    image = Image.new("RGB", (width, height), (200, 40, 40))
    image.paste((40, 40, 200), (0, height // 2, width, height))
    return image


def _mask(width: int = 64, height: int = 64) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    return mask


def test_img2img_returns_an_image_of_the_source_size(tiny_registry: ModelRegistry) -> None:
    spec = _spec(mode="img2img", init_image=_source(64, 48), strength=0.8, steps=3)

    result = run(tiny_registry, spec, device="cpu")

    assert [image.size for image in result.images] == [(64, 48)]


@pytest.mark.parametrize("model", [TINY, TINY_INPAINT], ids=["four-channel-unet", "inpainting-unet"])
def test_inpaint_returns_an_image_of_the_asked_size(tiny_registry: ModelRegistry, model: str) -> None:
    spec = _spec(model, mode="inpaint", init_image=_source(), mask_image=_mask(), strength=1.0, width=64, height=64)

    result = run(tiny_registry, spec, device="cpu")

    assert [image.size for image in result.images] == [(64, 64)]


def test_image_modes_without_their_inputs_are_refused(tiny_registry: ModelRegistry) -> None:
    with pytest.raises(ValueError, match="source image"):
        run(tiny_registry, _spec(mode="img2img"), device="cpu")
    with pytest.raises(ValueError, match="mask"):
        run(tiny_registry, _spec(mode="inpaint", init_image=_source()), device="cpu")
