"""Model registry: discovery, refusal of pickle weights, safe names, the per-device LRU."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.registry import ModelNotFound, ModelRegistry, RefusedModel
from tests.tiny_pipeline import PICKLED, TINY, TINY_INPAINT


def test_lists_tiny_models_with_their_default_size(tiny_models_dir: Path) -> None:
    specs = {spec.name: spec for spec in ModelRegistry(tiny_models_dir).list()}

    assert set(specs) == {TINY, TINY_INPAINT}
    assert (specs[TINY].default_width, specs[TINY].default_height) == (64, 64)
    assert specs[TINY].pipeline_class == "StableDiffusionPipeline"
    assert not specs[TINY].is_inpainting_model
    assert specs[TINY_INPAINT].is_inpainting_model


def test_refuses_a_folder_with_pickle_weights_and_says_why(tiny_models_dir: Path) -> None:
    registry = ModelRegistry(tiny_models_dir)

    _, refused = registry.scan()

    assert [item.name for item in refused] == [PICKLED]
    assert isinstance(refused[0], RefusedModel)
    assert "pickle" in refused[0].reason
    assert "diffusion_pytorch_model.bin" in refused[0].reason
    with pytest.raises(ModelNotFound, match="refused"):
        registry.spec(PICKLED)
    with pytest.raises(ModelNotFound):
        registry.pipeline(PICKLED, "cpu")


@pytest.mark.parametrize("name", ["no-such-model", "", ".", "..", "a/b", "a\\b", ".hidden"])
def test_unknown_or_path_like_names_are_not_found(tiny_models_dir: Path, name: str) -> None:
    with pytest.raises(ModelNotFound):
        ModelRegistry(tiny_models_dir).spec(name)


def test_a_name_that_climbs_out_of_the_models_dir_is_refused_even_when_it_would_resolve(
    tiny_models_dir: Path,
) -> None:
    # Rooted one level down, "../tiny-inpaint" names a real pipeline folder: it must still not load.
    registry = ModelRegistry(tiny_models_dir / TINY)
    assert (tiny_models_dir / TINY / ".." / TINY_INPAINT / "model_index.json").is_file()

    with pytest.raises(ModelNotFound):
        registry.spec(f"../{TINY_INPAINT}")
    with pytest.raises(ModelNotFound):
        registry.pipeline(f"../{TINY_INPAINT}", "cpu")


def test_lru_keeps_at_most_cache_size_models_per_device(tiny_models_dir: Path) -> None:
    registry = ModelRegistry(tiny_models_dir, cache_size=1)

    first = registry.pipeline(TINY, "cpu")
    assert registry.warm_models("cpu") == [TINY]
    assert registry.pipeline(TINY, "cpu") is first  # warm: no reload

    registry.pipeline(TINY_INPAINT, "cpu")
    assert registry.warm_models("cpu") == [TINY_INPAINT]

    reloaded = registry.pipeline(TINY, "cpu")
    assert reloaded is not first  # the first was evicted, so it loads again
    assert registry.warm_models("cpu") == [TINY]


def test_lru_evicts_the_least_recently_used_model(tiny_models_dir: Path) -> None:
    registry = ModelRegistry(tiny_models_dir, cache_size=2)
    registry.pipeline(TINY, "cpu")
    registry.pipeline(TINY_INPAINT, "cpu")

    registry.pipeline(TINY, "cpu")  # touch: tiny-inpaint is now the least recent

    assert registry.warm_models("cpu") == [TINY_INPAINT, TINY]


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_derived_pipelines_share_the_base_pipelines_weights(tiny_models_dir: Path, mode: str) -> None:
    registry = ModelRegistry(tiny_models_dir, cache_size=1)
    base = registry.pipeline(TINY, "cpu")

    derived = registry.pipeline(TINY, "cpu", mode)  # type: ignore[arg-type]

    assert derived is not base
    assert derived.unet is base.unet
    assert derived.vae is base.vae
    assert derived.text_encoder is base.text_encoder
    assert registry.pipeline(TINY, "cpu", mode) is derived  # type: ignore[arg-type]
    assert registry.warm_models("cpu") == [TINY]
