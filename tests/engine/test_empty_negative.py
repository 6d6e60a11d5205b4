"""The empty negative prompt's embeddings, cached per warm text encoder: the same pixels as encoding
them on every call, and never reused by a call with LoRAs, a negative prompt or embeddings of its own."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine import empty_negative
from app.engine.families import family_named
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from tests.engine.conftest import STUDIO_TINY, STUDIO_TINY_READY
from tests.tiny_pipeline import TINY


def _paint(registry: ModelRegistry, model: str, **overrides: object) -> np.ndarray:
    spec = GenerationSpec(model=model, prompt="a red boat", seed=5, steps=2, scheduler="euler", **overrides)  # type: ignore[arg-type]
    return np.asarray(run(registry, spec, device="cpu").images[0])


def _cached(registry: ModelRegistry, model: str) -> object:
    return getattr(registry.pipeline(model, "cpu").text_encoder, empty_negative.ATTRIBUTE, None)


@pytest.mark.parametrize(
    "model",
    [
        TINY,
        pytest.param(
            STUDIO_TINY, marks=pytest.mark.skipif(not STUDIO_TINY_READY, reason="models/studio-tiny is not built")
        ),
    ],
)
def test_cached_and_encoded_empty_negative_prompts_paint_the_same_pixels(
    model: str, tiny_registry: ModelRegistry, studio_tiny_registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = studio_tiny_registry if model == STUDIO_TINY else tiny_registry
    with monkeypatch.context() as patched:
        patched.setattr(empty_negative, "FAMILIES", frozenset())
        encoded = _paint(registry, model)
        assert _cached(registry, model) is None

    filled = _paint(registry, model)  # encodes "" once and keeps it
    assert _cached(registry, model) is not None
    reused = _paint(registry, model)

    assert np.array_equal(encoded, filled)
    assert np.array_equal(encoded, reused)


def test_the_cache_is_left_alone_by_loras_negative_prompts_embeddings_and_unguided_calls(
    tiny_registry: ModelRegistry,
) -> None:
    pipeline = tiny_registry.pipeline(TINY, "cpu")
    family = family_named("sd1")

    def given(arguments: dict[str, object], *, loras: bool = False) -> bool:
        before = dict(arguments)
        reused = empty_negative.reuse(pipeline, family, arguments, loras=loras)
        assert reused or arguments == before
        return reused

    plain = {"prompt": "a boat", "negative_prompt": None, "guidance_scale": 7.0}
    assert given(dict(plain))
    assert not given(dict(plain), loras=True)  # a LoRA may patch the text encoder
    assert not given({**plain, "negative_prompt": "blurry"})
    assert not given({**plain, "guidance_scale": 1.0})
    assert not given({"prompt_embeds": object(), "guidance_scale": 7.0})
    assert not given({**plain, "clip_skip": 2})
    assert not empty_negative.reuse(pipeline, family_named("sdxl"), dict(plain), loras=False)
