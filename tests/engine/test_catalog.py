"""Model catalog: discovery, refusal of pickle weights and safe names, without loading anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.catalog import ModelCatalog, ModelNotFound, RefusedModel
from tests.tiny_pipeline import PICKLED, TINY, TINY_INPAINT


def test_lists_tiny_models_with_their_default_size(tiny_models_dir: Path) -> None:
    specs = {spec.name: spec for spec in ModelCatalog(tiny_models_dir).list()}

    assert set(specs) == {TINY, TINY_INPAINT}
    assert (specs[TINY].default_width, specs[TINY].default_height) == (64, 64)
    assert specs[TINY].pipeline_class == "StableDiffusionPipeline"
    assert not specs[TINY].is_inpainting_model
    assert specs[TINY_INPAINT].is_inpainting_model


def test_refuses_a_folder_with_pickle_weights_and_says_why(tiny_models_dir: Path) -> None:
    catalog = ModelCatalog(tiny_models_dir)

    _, refused = catalog.scan()

    assert [item.name for item in refused] == [PICKLED]
    assert isinstance(refused[0], RefusedModel)
    assert "pickle" in refused[0].reason
    assert "diffusion_pytorch_model.bin" in refused[0].reason
    with pytest.raises(ModelNotFound, match="refused"):
        catalog.spec(PICKLED)


@pytest.mark.parametrize("name", ["no-such-model", "", ".", "..", "a/b", "a\\b", ".hidden"])
def test_unknown_or_path_like_names_are_not_found(tiny_models_dir: Path, name: str) -> None:
    with pytest.raises(ModelNotFound):
        ModelCatalog(tiny_models_dir).spec(name)


def test_a_missing_models_dir_lists_nothing(tmp_path: Path) -> None:
    assert ModelCatalog(tmp_path / "absent").scan() == ([], [])
