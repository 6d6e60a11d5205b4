"""Single-file checkpoints: imported offline into diffusers folders, by command or dropped, then painted."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
from typer.testing import CliRunner

from app import cli
from app.config import get_settings
from app.engine.catalog import ModelCatalog
from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from app.engine.single_file import CONFIGS, CheckpointError, import_checkpoint, shipped_config
from tests.families.builders import FLUX, FLUX2, SD3, build_sd, build_sd3, build_sdxl
from tests.families.original_layout import (
    config_folder,
    write_flux2_transformer,
    write_flux_transformer,
    write_original_checkpoint,
    write_sd3_checkpoint,
    write_sd3_transformer,
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    """family -> (diffusers folder it came from, its single file, a --config folder), built once."""
    root = tmp_path_factory.mktemp("single-files")
    made = {}
    for family, build in (("sd1", build_sd), ("sdxl", build_sdxl)):
        source = build(root / f"source-{family}")
        file = write_original_checkpoint(source, root / f"{family}-original.safetensors")
        made[family] = (source, file, config_folder(source, root / f"{family}-config"))
    return made


def run_cli(models_dir: Path, monkeypatch: pytest.MonkeyPatch, *arguments: str) -> tuple[int, str]:
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(models_dir))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.app, list(arguments))
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


def same_weights(first: Path, second: Path) -> bool:
    [a], [b] = sorted(first.glob("*.safetensors")), sorted(second.glob("*.safetensors"))
    left, right = load_file(a), load_file(b)
    return left.keys() == right.keys() and all(torch.equal(left[key], right[key]) for key in left)


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_studio_models_import_turns_a_single_file_into_a_folder_that_paints(
    checkpoints: dict[str, tuple[Path, Path, Path]], family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, file, config = checkpoints[family]
    models_dir = tmp_path / "models"

    code, output = run_cli(models_dir, monkeypatch, "models", "import", str(file), "--config", str(config))

    assert code == 0, output
    assert f"imported {file.name} as {file.stem}" in output
    folder = models_dir / file.stem
    for component in ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl" else []):
        assert same_weights(source / component, folder / component), component
    [spec] = ModelCatalog(models_dir).list()
    assert spec.family.name == family
    assert "Imported from the single-file checkpoint" in spec.description
    spec_run = GenerationSpec(model=file.stem, prompt="a red barn", seed=1, steps=2, width=64, height=64)
    [image] = run(ModelRegistry(models_dir), spec_run, device="cpu").images
    assert image.size == (64, 64)


def test_a_dropped_single_file_waits_in_the_list_then_converts_on_the_workers_first_scan(
    checkpoints: dict[str, tuple[Path, Path, Path]], tmp_path: Path
) -> None:
    _source, file, config = checkpoints["sd1"]
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "dropped.safetensors").write_bytes(file.read_bytes())
    config_folder(config, models_dir / "dropped.config")  # its configs beside it, as SD3/FLUX files need

    specs, refused = ModelCatalog(models_dir).scan()
    assert specs == []
    assert [model.name for model in refused] == ["dropped"]
    assert "not converted yet" in refused[0].reason

    registry = ModelRegistry(models_dir)
    assert [spec.name for spec in registry.list()] == ["dropped"]
    assert registry.spec("dropped").family.name == "sd1"
    assert ModelCatalog(models_dir).scan()[1] == []
    [image] = run(registry, GenerationSpec(model="dropped", prompt="a barn", seed=2, steps=2), device="cpu").images
    assert image.size == (64, 64)


def test_a_dropped_file_that_fails_is_listed_with_the_reason_and_not_retried(tmp_path: Path) -> None:
    save_file({"something.else": torch.zeros(2)}, tmp_path / "odd.safetensors")

    registry = ModelRegistry(tmp_path)
    assert registry.list() == []
    [refused] = ModelCatalog(tmp_path).scan()[1]

    assert refused.name == "odd"
    assert "not a checkpoint the studio recognises" in refused.reason
    assert (tmp_path / "odd.import-error.txt").is_file()


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth"])
def test_pickle_checkpoints_are_refused_by_import_and_in_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    file = tmp_path / f"old{suffix}"
    file.write_bytes(b"not unpickled")

    code, output = run_cli(tmp_path / "models", monkeypatch, "models", "import", str(file))

    assert code == 1
    assert "pickle checkpoint" in output and ".safetensors only" in output
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / file.name).write_bytes(b"not unpickled")
    [refused] = ModelCatalog(tmp_path / "models").scan()[1]
    assert "pickle checkpoint" in refused.reason
    assert not (tmp_path / "models" / "old").exists()


def test_an_sd3_file_without_a_config_folder_asks_for_one(tmp_path: Path) -> None:
    file = tmp_path / "sd35.safetensors"
    save_file({"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": torch.zeros(4)}, file)

    with pytest.raises(CheckpointError, match="looks like sd3: pass --config DIR"):
        import_checkpoint(file, tmp_path / "models")
    assert not (tmp_path / "models" / "sd35").exists()


def test_the_shipped_clip_tokenizer_is_clips_own(tmp_path: Path) -> None:
    folder = shipped_config("sd1", {}, tmp_path)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)

    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_an_inpainting_checkpoint_gets_a_nine_channel_unet(tmp_path: Path) -> None:
    tensors = {"model.diffusion_model.input_blocks.0.0.weight": {"dtype": "F16", "shape": [320, 9, 3, 3]}}

    folder = shipped_config("sd1", tensors, tmp_path)

    assert json.loads((folder / "unet" / "config.json").read_text())["in_channels"] == 9


def test_the_shipped_configs_are_the_real_architectures() -> None:
    """Parameter counts of SD 1.5 and SDXL 1.0, built on the meta device (no memory, no weights)."""

    def count(module: torch.nn.Module) -> int:
        return sum(parameter.numel() for parameter in module.parameters())

    def config(path: str) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((CONFIGS / path).read_text())
        return loaded

    with torch.device("meta"):
        assert count(UNet2DConditionModel.from_config(config("sd1/unet/config.json"))) == 859_520_964
        assert count(AutoencoderKL.from_config(config("sd1/vae/config.json"))) == 83_653_863
        assert count(CLIPTextModel(CLIPTextConfig(**config("sd1/text_encoder/config.json")))) == 123_060_480
        assert count(UNet2DConditionModel.from_config(config("sdxl/unet/config.json"))) == 2_567_463_684
        bigg = CLIPTextModelWithProjection(CLIPTextConfig(**config("sdxl/text_encoder_2/config.json")))
        assert count(bigg) == 694_659_840


# -- SD3 and FLUX.1: the transformer alone, the rest from a --config folder ---------------------------------


def without_transformer_weights(folder: Path, target: Path, *, also: tuple[str, ...] = ()) -> Path:
    """A diffusers folder of the model with every weight but the transformer's (and ``also``'s): a --config folder."""
    left_out = {"transformer", *also}
    for path in folder.rglob("*"):
        if path.is_file() and not (path.suffix == ".safetensors" and path.parent.name in left_out):
            destination = target / path.relative_to(folder)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("with_vae", [False, True], ids=["transformer", "transformer-and-vae"])
def test_an_sd3_transformer_file_imports_with_a_config_folder_and_paints(
    family_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_vae: bool
) -> None:
    source = family_models_dir / SD3
    file = write_sd3_transformer(source, tmp_path / "sd35-finetune.safetensors", with_vae=with_vae)
    # What the file holds, the config folder need not: the VAE then comes from the file alone.
    config = without_transformer_weights(source, tmp_path / "sd3-config", also=("vae",) if with_vae else ())
    models_dir = tmp_path / "models"

    code, output = run_cli(models_dir, monkeypatch, "models", "import", str(file), "--config", str(config))

    assert code == 0, output
    assert "imported sd35-finetune.safetensors as sd35-finetune" in output
    folder = models_dir / "sd35-finetune"
    for component in ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        assert same_weights(source / component, folder / component), component
    [spec] = ModelCatalog(models_dir).list()
    assert (spec.family.name, spec.pipeline_class) == ("sd3", "StableDiffusion3Pipeline")
    registry = ModelRegistry(models_dir)
    paint = GenerationSpec(model="sd35-finetune", prompt="a red barn", seed=1, steps=2, width=64, height=64)
    [image] = run(registry, paint, device="cpu").images
    [original] = run(ModelRegistry(family_models_dir), replace(paint, model=SD3), device="cpu").images
    assert image.size == (64, 64)
    assert image.tobytes() == original.tobytes(), "the imported model paints as the one it was written from"


def test_a_flux2_transformer_file_imports_with_a_config_folder_and_paints(
    family_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = family_models_dir / FLUX2
    file = write_flux2_transformer(source, tmp_path / "flux2-dev.safetensors")
    config = without_transformer_weights(source, tmp_path / "flux2-config")
    models_dir = tmp_path / "models"

    code, output = run_cli(models_dir, monkeypatch, "models", "import", str(file), "--config", str(config))

    assert code == 0, output
    folder = models_dir / "flux2-dev"
    assert same_weights(source / "transformer", folder / "transformer")
    [spec] = ModelCatalog(models_dir).list()
    assert (spec.family.name, spec.pipeline_class) == ("flux2", "Flux2Pipeline")
    paint = GenerationSpec(model="flux2-dev", prompt="a red barn", seed=1, steps=2, guidance=4.0)
    [image] = run(ModelRegistry(models_dir), paint, device="cpu").images
    [original] = run(ModelRegistry(family_models_dir), replace(paint, model=FLUX2), device="cpu").images
    assert image.tobytes() == original.tobytes()


def test_a_whole_sd3_checkpoint_imports_with_a_folder_of_configs_alone(tmp_path: Path) -> None:
    source = build_sd3(tmp_path / "built" / "source", stability_shapes=True)
    file = write_sd3_checkpoint(source, tmp_path / "sd3-medium-incl-clips-t5.safetensors")
    config = config_folder(source, tmp_path / "configs-only")  # no weights at all: the file has them

    folder = import_checkpoint(file, tmp_path / "models", config=config, name="sd3-whole")

    for component in ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
        assert same_weights(source / component, folder / component), component
    paint = GenerationSpec(model="sd3-whole", prompt="a red barn", seed=1, steps=2, width=64, height=64)
    [image] = run(ModelRegistry(tmp_path / "models"), paint, device="cpu").images
    [original] = run(ModelRegistry(tmp_path / "built"), replace(paint, model="source"), device="cpu").images
    assert image.tobytes() == original.tobytes()


def test_a_transformer_file_whose_config_folder_has_no_weights_says_what_it_needs(
    family_models_dir: Path, tmp_path: Path
) -> None:
    file = write_sd3_transformer(family_models_dir / SD3, tmp_path / "sd3.safetensors")
    config = config_folder(family_models_dir / SD3, tmp_path / "configs-only")

    with pytest.raises(CheckpointError, match="holds only the transformer") as refused:
        import_checkpoint(file, tmp_path / "models", config=config)

    assert "vae" in str(refused.value) and "text_encoder_3" in str(refused.value)
    assert list((tmp_path / "models").iterdir()) == []


def test_a_flux_transformer_file_is_told_and_a_failed_conversion_leaves_nothing(
    family_models_dir: Path, tmp_path: Path
) -> None:
    """diffusers' FLUX.1 converter assumes the real width (3072): a tiny transformer can't be read.

    What the studio owes the artist then is a sentence and no half-made model folder.
    """
    file = write_flux_transformer(family_models_dir / FLUX, tmp_path / "flux1-tiny.safetensors")
    config = without_transformer_weights(family_models_dir / FLUX, tmp_path / "flux-config")

    with pytest.raises(CheckpointError, match="flux1-tiny.safetensors could not be converted with the configs in"):
        import_checkpoint(file, tmp_path / "models", config=config)

    assert list((tmp_path / "models").iterdir()) == []
    without = tmp_path / "alone.safetensors"
    without.write_bytes(file.read_bytes())
    with pytest.raises(CheckpointError, match="looks like flux: pass --config DIR"):
        import_checkpoint(without, tmp_path / "models")
