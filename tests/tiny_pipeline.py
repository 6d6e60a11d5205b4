"""Tiny pipelines: builds seeded, randomly initialised Stable Diffusion folders for tests.

The components are a few hundred kilobytes, so a pipeline loads and paints 64x64 in a moment on
a CPU; nothing comes from a hub (the tokenizer is the one the MiniLM package ships).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import BertConfig, BertModel, BertTokenizerFast

from app.engine.text_encoders import MINILM_PACKAGE, package_model_dir

TINY = "tiny"
TINY_INPAINT = "tiny-inpaint"
PICKLED = "pickled"
TOKEN_LIMIT = 16


def build_tiny_pipeline(folder: Path, *, seed: int = 0, in_channels: int = 4) -> Path:
    """Writes a StableDiffusionPipeline folder of tiny seeded components to ``folder``."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        # 32 latent pixels at the VAE's factor of 2: the model's default size is 64x64, the API's minimum.
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    tokenizer = BertTokenizerFast.from_pretrained(
        package_model_dir(MINILM_PACKAGE), model_max_length=TOKEN_LIMIT, local_files_only=True
    )
    text_encoder = BertModel(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
        )
    )
    scheduler = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        clip_sample=False,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    folder.mkdir(parents=True, exist_ok=True)
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def build_pickled_model(folder: Path) -> Path:
    """A folder that looks like a pipeline but carries a pickle checkpoint: it must be refused."""
    (folder / "unet").mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (folder / "unet" / "config.json").write_text(json.dumps({"sample_size": 8, "in_channels": 4}))
    torch.save({"weight": torch.zeros(1)}, folder / "unet" / "diffusion_pytorch_model.bin")
    return folder


_built: dict[str, Path] = {}


def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding ``tiny``, ``tiny-inpaint`` (9-channel UNet) and ``pickled``.

    Built once per test process, however many conftests ask for it.
    """
    if "root" not in _built:
        root = tmp_path_factory.mktemp("tiny-models")
        build_tiny_pipeline(root / TINY, seed=0)
        build_tiny_pipeline(root / TINY_INPAINT, seed=1, in_channels=9)
        build_pickled_model(root / PICKLED)
        _built["root"] = root
    return _built["root"]
