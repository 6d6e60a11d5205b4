"""Model folders for tests that read a model's configuration but never load its weights."""

from __future__ import annotations

import json
from pathlib import Path


def config_only_folder(models_dir: Path, name: str, **index: object) -> Path:
    """A minimal SD pipeline folder the catalog accepts (empty weights), whose model_index.json carries ``index``."""
    folder = models_dir / name
    (folder / "unet").mkdir(parents=True)
    (folder / "vae").mkdir()
    values = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], **index}
    (folder / "model_index.json").write_text(json.dumps(values))
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": 8, "in_channels": 4}))
    (folder / "vae" / "config.json").write_text(json.dumps({"block_out_channels": [32, 32, 32, 32]}))
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    return folder
