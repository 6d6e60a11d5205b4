"""Regional prompts: the attention bias of each box or mask, SDXL's two encoders, and colours moving into
their boxes on studio-tiny."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.engine import prompt_weights, regions
from app.engine.regions import RegionPrompt
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from tests.engine.conftest import STUDIO_TINY, STUDIO_TINY_READY
from tests.families.builders import SDXL, build_sdxl
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


def left_half_mask(width: int = 64, height: int = 64) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (0, 0, width // 2, height))
    return mask


def test_a_mask_s_white_part_is_its_region_at_every_layer_s_resolution() -> None:
    boxed = RegionPrompt("a red boat", (0.0, 0.0, 0.5, 1.0), weight=1.5)
    masked = RegionPrompt("a red boat", mask=left_half_mask(), weight=1.5)
    for queries in (64, 16, 4):
        as_box, as_mask = (
            regions.attention_bias(
                [region], tokens=2, queries=queries, width=64, height=64, dtype=torch.float32, device="cpu"
            )
            for region in (boxed, masked)
        )
        assert torch.equal(as_box, as_mask), queries


def test_a_mask_follows_its_shape_not_its_bounding_box() -> None:
    # An L of white: the top-left, bottom-left and bottom-right quarters.
    mask = Image.new("L", (64, 64), 255)
    mask.paste(0, (32, 0, 64, 32))
    cells = regions.region_cells(RegionPrompt("a wall", mask=mask), 2, 2)
    assert cells.tolist() == [[True, False], [True, True]]
    # Stretched over the canvas: a 32x32 mask reads the same on a 4x4 grid.
    assert regions.region_cells(RegionPrompt("a boat", mask=left_half_mask(32, 32)), 4, 4)[:, :2].all()


def test_a_mask_too_thin_for_a_coarse_layer_keeps_its_whitest_cell() -> None:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (50, 10, 54, 14))
    cells = regions.region_cells(RegionPrompt("a bird", mask=mask), 2, 2)
    assert cells.tolist() == [[False, True], [False, False]]
    assert not regions.region_cells(RegionPrompt("nothing", mask=Image.new("L", (64, 64), 0)), 2, 2).all()


def test_a_region_takes_exactly_one_of_a_box_and_a_mask() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RegionPrompt("a red boat")
    with pytest.raises(ValueError, match="exactly one"):
        RegionPrompt("a red boat", (0.0, 0.0, 0.5, 1.0), mask=left_half_mask())


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


def test_a_mask_region_paints_as_the_box_it_fills(tiny_registry: ModelRegistry) -> None:
    def paint(region: RegionPrompt) -> np.ndarray:
        spec = GenerationSpec(model=TINY, prompt="a painting", seed=3, steps=2, scheduler="ddim", regions=[region])
        return np.asarray(run(tiny_registry, spec, device="cpu").images[0], dtype=np.int16)

    boxed = paint(RegionPrompt("a red boat", (0.0, 0.0, 0.5, 1.0)))
    assert np.array_equal(paint(RegionPrompt("a red boat", mask=left_half_mask())), boxed)
    right = Image.new("L", (64, 64), 0)
    right.paste(255, (32, 0, 64, 64))
    assert np.abs(paint(RegionPrompt("a red boat", mask=right)) - boxed).mean() > 0.5


def test_prompts_of_different_lengths_get_their_own_spans_of_the_bias() -> None:
    left = RegionPrompt("a red boat AND a sail", (0.0, 0.0, 0.5, 1.0))
    bias = regions.attention_bias(
        [left], tokens=[2, 4], queries=4, width=64, height=64, dtype=torch.float32, device="cpu"
    ).reshape(2, 2, 6)
    assert torch.allclose(bias[:, :1, :2], torch.tensor(math.log(regions.BASE_SHARE)))
    assert torch.all(bias[:, 1:, :2] == 0)
    assert torch.all(bias[:, :1, 2:] == 0) and torch.all(torch.isinf(bias[:, 1:, 2:]))
    with pytest.raises(ValueError, match="2 prompt lengths for a base prompt and 2 regions"):
        regions.attention_bias([left, left], tokens=[2, 4], queries=4, width=64, height=64, dtype=None, device="cpu")


def test_weighted_region_prompts_are_read_as_compel_reads_them(tiny_registry: ModelRegistry) -> None:
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    family = tiny_registry.spec(TINY).family
    asked = [
        RegionPrompt("a (red:1.5) boat", (0.0, 0.0, 0.5, 1.0)),
        RegionPrompt("a yellow sun AND a blue sky", (0.5, 0.0, 1.0, 1.0)),
    ]
    arguments = {"prompt": "a harbour", "negative_prompt": ""}
    with torch.inference_mode():
        weighted = prompt_weights.embeddings(pipeline, family, "a (red:1.5) boat")["prompt_embeds"]
        blend = prompt_weights.embeddings(pipeline, family, "a yellow sun AND a blue sky")["prompt_embeds"]
        with regions.applied(pipeline, asked, arguments, width=64, height=64):
            embeds = arguments["prompt_embeds"]
            base = embeds.shape[1] - weighted.shape[1] - blend.shape[1]
            assert blend.shape[1] > weighted.shape[1]  # an AND blend is a longer sequence
            assert torch.equal(embeds[:, base : base + weighted.shape[1]], weighted)
            assert torch.equal(embeds[:, base + weighted.shape[1] :], blend)
            assert arguments["negative_prompt_embeds"].shape == embeds.shape
    spec = GenerationSpec(model=TINY, prompt="a harbour", seed=1, steps=2, scheduler="ddim", regions=asked)
    assert run(tiny_registry, spec, device="cpu").images[0].size == (64, 64)


@pytest.fixture(scope="module")
def sdxl_registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    folder: Path = tmp_path_factory.mktemp("sdxl-models")
    build_sdxl(folder / SDXL)
    return ModelRegistry(folder, cache_size=1)


def test_sdxl_regions_keep_the_base_prompt_s_pooled_embeddings(sdxl_registry: ModelRegistry) -> None:
    pipeline = sdxl_registry.pipeline(SDXL, "cpu")
    arguments = {"prompt": "a harbour", "negative_prompt": "blur"}
    boxes = [RegionPrompt("a red boat", (0.0, 0.0, 0.5, 1.0)), RegionPrompt("a yellow sun", (0.5, 0.0, 1.0, 1.0))]
    with torch.inference_mode():
        embeds, negative, pooled, negative_pooled = pipeline.encode_prompt(
            prompt="a harbour", device="cpu", num_images_per_prompt=1, negative_prompt="blur"
        )
        boat = pipeline.encode_prompt(prompt="a red boat", device="cpu", do_classifier_free_guidance=False)[0]
        with regions.applied(pipeline, boxes, arguments, width=64, height=64):
            assert set(arguments) == {
                "prompt_embeds",
                "negative_prompt_embeds",
                "pooled_prompt_embeds",
                "negative_pooled_prompt_embeds",
            }
            tokens = embeds.shape[1]
            # Both encoders side by side per token (32 + 48 wide), the three prompts one after another.
            assert arguments["prompt_embeds"].shape == (1, 3 * tokens, 80)
            assert torch.equal(arguments["prompt_embeds"][:, :tokens], embeds)
            assert torch.equal(arguments["prompt_embeds"][:, tokens : 2 * tokens], boat)
            assert torch.equal(arguments["negative_prompt_embeds"], negative.repeat(1, 3, 1))
            assert torch.equal(arguments["pooled_prompt_embeds"], pooled)
            assert torch.equal(arguments["negative_pooled_prompt_embeds"], negative_pooled)


def test_sdxl_regions_change_the_painting_and_restore_the_unet(sdxl_registry: ModelRegistry) -> None:
    def paint(asked: list[RegionPrompt]) -> np.ndarray:
        spec = GenerationSpec(model=SDXL, prompt="a painting", seed=2, steps=2, scheduler="ddim", regions=asked)
        return np.asarray(run(sdxl_registry, spec, device="cpu").images[0], dtype=np.int16)

    plain = paint([])
    unet = sdxl_registry.pipeline(SDXL, "cpu").unet
    before = dict(unet.attn_processors)
    boxed = paint([RegionPrompt("a red boat", (0.0, 0.0, 0.5, 1.0))])
    assert np.abs(boxed - plain).mean() > 0.5
    assert np.array_equal(paint([RegionPrompt("a red boat", mask=left_half_mask())]), boxed)
    assert dict(unet.attn_processors) == before
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
                model=STUDIO_TINY,
                prompt="a red boat and a yellow sun",
                seed=seed,
                steps=10,
                scheduler="euler",
                regions=asked,
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
