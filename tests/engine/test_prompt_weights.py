"""Weighted prompts: A1111's syntax read, written for compel, and the embeddings moving the way the weights say."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from app.engine import prompt_weights
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run


@pytest.mark.parametrize(
    ("typed", "compel_reads"),
    [
        ("a red boat", "a red boat"),
        ("a (red:1.5) boat", "a (red)1.5 boat"),
        ("a (red) boat", "a (red)1.1 boat"),
        ("a ((red)) boat", "a (red)1.21 boat"),
        ("a [red] boat", "a (red)0.9091 boat"),
        ("a (red:1) boat", "a red boat"),
        ("a (red boat, blue:0.5) sky", "a (red boat, blue)0.5 sky"),
        ("a red++ boat", "a red++ boat"),
        (r"a \(red\) boat", r"a \(red\) boat"),
        ("a red boat AND a blue sky :0.5", '("a red boat", "a blue sky").and(1, 0.5)'),
    ],
)
def test_a1111_syntax_is_written_as_compel_reads_it(typed: str, compel_reads: str) -> None:
    assert prompt_weights.to_compel(typed) == compel_reads


def test_only_weighting_syntax_counts_as_weighting() -> None:
    assert not prompt_weights.has_weighting("a well-known red boat, at dusk")
    for weighted in ("a (red) boat", "a [red] boat", "a red++ boat", "a red-- boat", "a boat AND a sun"):
        assert prompt_weights.has_weighting(weighted), weighted


def _token_distance(painter: tuple[ModelRegistry, str], prompt: str) -> float:
    """How far the token "red" (position 2: [CLS] a red ...) stands from the empty prompt's embedding there."""
    registry, model = painter
    pipeline = registry.pipeline(model, "cpu")
    family = registry.spec(model).family
    with torch.inference_mode():
        weighted = prompt_weights.embeddings(pipeline, family, prompt)["prompt_embeds"][0]
        empty = prompt_weights.embeddings(pipeline, family, "")["prompt_embeds"][0]
    return float((weighted[2] - empty[2]).norm())


def test_weights_move_the_word_s_embedding_away_from_or_towards_the_empty_prompt(
    painter: tuple[ModelRegistry, str],
) -> None:
    plain = _token_distance(painter, "a red boat")
    assert _token_distance(painter, "a (red:1.5) boat") == pytest.approx(plain * 1.5, rel=1e-3)
    assert _token_distance(painter, "a (red) boat") == pytest.approx(plain * 1.1, rel=1e-3)
    assert _token_distance(painter, "a red++ boat") == pytest.approx(plain * 1.21, rel=1e-3)
    assert _token_distance(painter, "a [red] boat") < plain
    assert _token_distance(painter, "a (red:0.5) boat") < _token_distance(painter, "a [red] boat")


def test_an_unweighted_prompt_is_encoded_exactly_as_the_pipeline_does(painter: tuple[ModelRegistry, str]) -> None:
    registry, model = painter
    pipeline = registry.pipeline(model, "cpu")
    family = registry.spec(model).family
    with torch.inference_mode():
        own = pipeline.encode_prompt("a red boat", "cpu", 1, False)[0]
        through_compel = prompt_weights.embeddings(pipeline, family, "a (red:1) boat")["prompt_embeds"]
    assert torch.equal(own, through_compel)
    arguments = {"prompt": "a red boat", "negative_prompt": "blur"}
    prompt_weights.weigh(pipeline, family, arguments)
    assert arguments == {"prompt": "a red boat", "negative_prompt": "blur"}


def test_an_and_blend_encodes_both_parts(painter: tuple[ModelRegistry, str]) -> None:
    registry, model = painter
    pipeline = registry.pipeline(model, "cpu")
    family = registry.spec(model).family
    with torch.inference_mode():
        blend = prompt_weights.embeddings(pipeline, family, "a red boat AND a yellow sun")
        single = pipeline.encode_prompt("a red boat", "cpu", 1, False)[0]
    length = single.shape[1]
    assert blend["prompt_embeds"].shape[1] == 2 * length
    assert torch.equal(blend["prompt_embeds"][:, :length], single)
    # The negative prompt is padded to the blend's length, so guidance can pair them.
    assert blend["negative_prompt_embeds"].shape == blend["prompt_embeds"].shape


def test_a_family_without_weighted_prompts_takes_the_text_as_is(painter: tuple[ModelRegistry, str]) -> None:
    registry, model = painter
    pipeline = registry.pipeline(model, "cpu")
    family = registry.spec(model).family
    plain = replace(family, capabilities=replace(family.capabilities, weighted_prompts=False))
    arguments = {"prompt": "a (red:1.5) boat", "negative_prompt": ""}
    prompt_weights.weigh(pipeline, plain, arguments)
    assert arguments == {"prompt": "a (red:1.5) boat", "negative_prompt": ""}


def test_weighted_words_change_the_painting_and_weight_one_does_not(painter: tuple[ModelRegistry, str]) -> None:
    registry, model = painter

    def paint(prompt: str) -> np.ndarray:
        spec = GenerationSpec(model=model, prompt=prompt, seed=3, steps=2, width=64, height=64, scheduler="ddim")
        return np.asarray(run(registry, spec, device="cpu").images[0], dtype=np.int16)

    plain = paint("a red boat")
    assert np.array_equal(paint("a (red:1) boat"), plain)
    assert np.abs(paint("a (red:1.8) boat") - plain).mean() > 0.5


@pytest.fixture(scope="module")
def clip_registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    """Tiny random SD 1.x and SDXL builds with CLIP text encoders (SDXL: two, one pooled)."""
    from tests.families.builders import build_sd, build_sdxl

    root = tmp_path_factory.mktemp("clip-models")
    build_sd(root / "sd1")
    build_sdxl(root / "sdxl")
    return ModelRegistry(root, cache_size=2)


@pytest.mark.parametrize("model", ["sd1", "sdxl"])
def test_clip_families_weigh_words_and_paint_with_the_embeddings(clip_registry: ModelRegistry, model: str) -> None:
    pipeline = clip_registry.pipeline(model, "cpu")
    family = clip_registry.spec(model).family
    assert family.capabilities.weighted_prompts
    with torch.inference_mode():
        plain = prompt_weights.embeddings(pipeline, family, "a red boat")
        heavy = prompt_weights.embeddings(pipeline, family, "a (red:1.5) boat", "blur")
        empty = prompt_weights.embeddings(pipeline, family, "")
    # CLIP frames the prompt with its start token: "red" is the third position.
    red = lambda embeds: float((embeds["prompt_embeds"][0, 2] - empty["prompt_embeds"][0, 2]).norm())  # noqa: E731
    assert red(heavy) == pytest.approx(red(plain) * 1.5, rel=1e-3)
    if model == "sdxl":
        assert heavy["pooled_prompt_embeds"].shape == heavy["negative_pooled_prompt_embeds"].shape
    spec = GenerationSpec(
        model=model, prompt="a (red:1.5) boat AND a sun", seed=1, steps=2, width=64, height=64, scheduler="euler"
    )
    [image] = run(clip_registry, spec, device="cpu").images
    assert image.size == (64, 64)
