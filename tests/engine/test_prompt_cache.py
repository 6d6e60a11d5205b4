"""Kept prompt embeddings, per warm text encoder: the same pixels as encoding the text on every call,
and never used by a call with LoRAs, embeddings of its own, clip_skip or another family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.engine import prompt_cache
from app.engine.batching import run_batch
from app.engine.families import family_named
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from tests.engine.conftest import STUDIO_TINY, STUDIO_TINY_READY
from tests.tiny_pipeline import TINY


def _spec(model: str, **overrides: object) -> GenerationSpec:
    return GenerationSpec(model=model, prompt="a red boat", seed=5, steps=2, scheduler="euler", **overrides)  # type: ignore[arg-type]


def _paint(registry: ModelRegistry, model: str, **overrides: object) -> np.ndarray:
    return np.asarray(run(registry, _spec(model, **overrides), device="cpu").images[0])


def _kept(registry: ModelRegistry, model: str) -> list[str]:
    cached = getattr(registry.pipeline(model, "cpu").text_encoder, prompt_cache.ATTRIBUTE, None)
    return [] if cached is None else list(cached[1])


@pytest.mark.parametrize(
    "model",
    [
        TINY,
        pytest.param(
            STUDIO_TINY, marks=pytest.mark.skipif(not STUDIO_TINY_READY, reason="models/studio-tiny is not built")
        ),
    ],
)
@pytest.mark.parametrize("negative", ["", "blurry, dark"])
def test_kept_and_encoded_prompts_paint_the_same_pixels(
    model: str,
    negative: str,
    tiny_registry: ModelRegistry,
    studio_tiny_registry: ModelRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = studio_tiny_registry if model == STUDIO_TINY else tiny_registry
    registry.pipeline(model, "cpu").text_encoder.__dict__.pop(prompt_cache.ATTRIBUTE, None)
    with monkeypatch.context() as patched:
        patched.setattr(prompt_cache, "FAMILIES", frozenset())
        encoded = _paint(registry, model, negative_prompt=negative)
        assert _kept(registry, model) == []

    filled = _paint(registry, model, negative_prompt=negative)  # encodes both texts once and keeps them
    assert _kept(registry, model) == ["a red boat", negative]
    reused = _paint(registry, model, negative_prompt=negative)

    assert np.array_equal(encoded, filled)
    assert np.array_equal(encoded, reused)


def test_a_kept_prompt_is_not_encoded_again_and_the_oldest_goes_first(
    tiny_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    pipeline.text_encoder.__dict__.pop(prompt_cache.ATTRIBUTE, None)
    family = family_named("sd1")
    encoded: list[str] = []
    encode = pipeline.encode_prompt

    def counting(text: str, *args: object, **options: object) -> object:
        encoded.append(text)
        return encode(text, *args, **options)

    monkeypatch.setattr(pipeline, "encode_prompt", counting)
    monkeypatch.setattr(prompt_cache, "CAPACITY", 2)
    with torch.inference_mode():
        for prompt in ("a boat", "a boat", "a house", "a boat", "a tree", "a boat", "a house"):
            arguments = {"prompt": prompt, "negative_prompt": None, "guidance_scale": 7.0}
            assert prompt_cache.reuse(pipeline, family, arguments, loras=False, device="cpu")
            assert "prompt" not in arguments and "negative_prompt" not in arguments
            assert arguments["prompt_embeds"].shape == arguments["negative_prompt_embeds"].shape
    # Two kept at most: "" (used by every call, so never the oldest) and the latest prompt.
    assert encoded == ["a boat", "", "a house", "a boat", "a tree", "a boat", "a house"]


def test_the_cache_never_asks_the_pipeline_for_its_execution_device(
    tiny_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # diffusers' _execution_device walks every module of every component (3-4 ms a call on the CPU):
    # the cache uses the device the runner names instead.
    pipeline = tiny_registry.pipeline(TINY, "cpu")

    def walked(_: object) -> None:
        raise AssertionError("_execution_device was asked")

    monkeypatch.setattr(type(pipeline), "_execution_device", property(walked))
    with torch.inference_mode():
        arguments = {"prompt": "a lighthouse never cached before", "negative_prompt": None, "guidance_scale": 7.0}
        assert prompt_cache.reuse(pipeline, family_named("sd1"), arguments, loras=False, device="cpu")
    assert arguments["prompt_embeds"].device.type == "cpu"


def test_a_batch_of_prompts_gets_one_row_per_prompt_and_negative(tiny_registry: ModelRegistry) -> None:
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    family = family_named("sd1")
    with torch.inference_mode():
        arguments = {"prompt": ["a boat", "a house", "a boat"], "negative_prompt": None, "guidance_scale": 7.0}
        assert prompt_cache.reuse(pipeline, family, arguments, loras=False, device="cpu")
        alone = {"prompt": "a house", "negative_prompt": None, "guidance_scale": 7.0}
        assert prompt_cache.reuse(pipeline, family, alone, loras=False, device="cpu")
    assert arguments["prompt_embeds"].shape[0] == 3 == arguments["negative_prompt_embeds"].shape[0]
    assert torch.equal(arguments["prompt_embeds"][1], alone["prompt_embeds"][0])
    assert torch.equal(arguments["prompt_embeds"][0], arguments["prompt_embeds"][2])


def test_batched_images_with_kept_prompts_stay_within_a_level_of_their_solo_paintings(
    tiny_registry: ModelRegistry,
) -> None:
    specs = [
        GenerationSpec(model=TINY, prompt=prompt, seed=seed, steps=2, scheduler="euler")
        for prompt, seed in (("a red boat", 1), ("a blue house", 2))
    ]
    batched = run_batch(tiny_registry, specs, device="cpu")
    for spec, result in zip(specs, batched, strict=True):
        assert result is not None
        solo = np.asarray(run(tiny_registry, spec, device="cpu").images[0], dtype=np.int16)
        assert np.abs(np.asarray(result.images[0], dtype=np.int16) - solo).max() <= 1


def test_the_cache_is_left_alone_by_loras_embeddings_clip_skip_and_other_families(
    tiny_registry: ModelRegistry,
) -> None:
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    family = family_named("sd1")

    def given(arguments: dict[str, object], *, loras: bool = False) -> bool:
        before = dict(arguments)
        with torch.inference_mode():
            reused = prompt_cache.reuse(pipeline, family, arguments, loras=loras, device="cpu")
        assert reused or arguments == before
        return reused

    plain = {"prompt": "a boat", "negative_prompt": None, "guidance_scale": 7.0}
    assert given(dict(plain))
    assert given({**plain, "negative_prompt": "blurry"})
    unguided = {**plain, "guidance_scale": 1.0}
    assert given(unguided) and "negative_prompt_embeds" not in unguided
    assert not given(dict(plain), loras=True)  # a LoRA may patch the text encoder
    assert not given({"prompt_embeds": object(), "guidance_scale": 7.0})
    assert not given({**plain, "clip_skip": 2})
    assert not given({**plain, "prompt": ["a boat", 3]})
    assert not given({**plain, "prompt": ["a", "b", "c"], "negative_prompt": ["x", "y"]})
    with torch.inference_mode():
        assert not prompt_cache.reuse(pipeline, family_named("sdxl"), dict(plain), loras=False, device="cpu")
