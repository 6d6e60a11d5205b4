"""Model registry: loads only what the catalog accepts, by safe names, into a per-device LRU.

Discovery and refusal themselves are tested on the catalog (tests/engine/test_catalog.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.registry import ModelNotFound, ModelRegistry
from tests.tiny_pipeline import PICKLED, TINY, TINY_INPAINT


def test_the_registry_refuses_to_load_what_the_catalog_refuses(tiny_models_dir: Path) -> None:
    registry = ModelRegistry(tiny_models_dir)

    with pytest.raises(ModelNotFound, match="refused"):
        registry.pipeline(PICKLED, "cpu")
    with pytest.raises(ModelNotFound):
        registry.pipeline("no-such-model", "cpu")
    assert registry.warm_models("cpu") == []


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
