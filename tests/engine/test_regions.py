"""Regional prompts: the attention bias of each box, and colours moving into their boxes on studio-tiny."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from app.engine import regions
from app.engine.regions import RegionPrompt
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from tests.engine.conftest import STUDIO_TINY, STUDIO_TINY_READY
from tests.tiny_pipeline import TINY


def test_the_bias_opens_a_region_s_tokens_only_inside_its_box() -> None:
    left = RegionPrompt("a red boat", (0.0, 0.0, 0.5, 1.0), weight=2.0)
    bias = regions.attention_bias(
        [left], tokens=3, queries=16, width=64, height=64, dtype=torch.float32, device="cpu"
    ).reshape(4, 4, 6)
    # Base tokens: heard everywhere, at BASE_SHARE inside a box.
    assert torch.all(bias[:, 2:, :3] == 0)
    assert torch.allclose(bias[:, :2, :3], torch.tensor(math.log(regions.BASE_SHARE)))
    # Region tokens: log(weight) inside the left half, shut outside it.
    assert torch.allclose(bias[:, :2, 3:], torch.tensor(math.log(2.0)))
    assert torch.all(torch.isinf(bias[:, 2:, 3:]))


def test_a_box_smaller_than_a_cell_still_covers_one() -> None:
    assert regions._cells((0.1, 0.1, 0.12, 0.12), 2, 2) == (0, 1, 0, 1)


def test_regions_change_the_painting_and_restore_the_unet(tiny_registry: ModelRegistry) -> None:
    def paint(boxes: list[RegionPrompt]) -> np.ndarray:
        spec = GenerationSpec(model=TINY, prompt="a painting", seed=2, steps=2, scheduler="ddim", regions=boxes)
        return np.asarray(run(tiny_registry, spec, device="cpu").images[0], dtype=np.int16)

    plain = paint([])
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    before = {name: type(processor) for name, processor in pipeline.unet.attn_processors.items()}
    assert np.abs(paint([RegionPrompt("a red boat", (0.0, 0.0, 0.5, 1.0))]) - plain).mean() > 0.5
    assert {name: type(processor) for name, processor in pipeline.unet.attn_processors.items()} == before
    assert np.array_equal(paint([]), plain)


RED, YELLOW = (215, 30, 35), (245, 220, 35)


def _near(pixels: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    return np.linalg.norm(pixels - np.array(rgb, dtype=np.float32), axis=-1) < 70


@pytest.mark.slow
@pytest.mark.skipif(not STUDIO_TINY_READY, reason="models/studio-tiny is not trained yet")
def test_a_red_boat_left_and_a_yellow_sun_right_move_those_colours_into_their_boxes(
    studio_tiny_registry: ModelRegistry,
) -> None:
    boxes = [
        RegionPrompt("a red boat", (0.0, 0.0, 0.5, 1.0)),
        RegionPrompt("a yellow sun", (0.5, 0.0, 1.0, 1.0)),
    ]
    # Pixels near each colour, [left, right], summed over eight seeds with and without the regions.
    counts = {"regions": np.zeros((2, 2)), "base": np.zeros((2, 2))}
    for seed in range(8):
        for kind, asked in (("regions", boxes), ("base", [])):
            spec = GenerationSpec(
                model=STUDIO_TINY, prompt="a red boat and a yellow sun", seed=seed, steps=12, regions=asked
            )
            pixels = np.asarray(run(studio_tiny_registry, spec, device="cpu").images[0], dtype=np.float32)
            for row, colour in enumerate((RED, YELLOW)):
                near = _near(pixels, colour)
                counts[kind][row] += (near[:, :32].sum(), near[:, 32:].sum())
    share = {kind: (c[0, 0] / c[0].sum(), c[1, 1] / c[1].sum()) for kind, c in counts.items()}
    red_left, yellow_right = share["regions"]
    base_red_left, base_yellow_right = share["base"]
    assert red_left > base_red_left + 0.05
    assert yellow_right > base_yellow_right + 0.05
