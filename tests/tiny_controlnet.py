"""Tiny ControlNets for tests: built from a tiny model's UNet, with weights that do something.

``ControlNetModel.from_unet`` copies the UNet's encoder and zero-initialises the convolutions that
hand its residuals to the UNet (and the last conv of the map's embedding), so a fresh ControlNet
changes nothing. Those zero convolutions get seeded random weights here, so the map steers the
picture and a test can see it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import ControlNetModel, UNet2DConditionModel


def build_tiny_controlnet(model_folder: Path, out: Path, *, seed: int = 0, scale: float = 0.5) -> Path:
    """Writes a ControlNet for the model in ``model_folder`` (a diffusers pipeline folder) to ``out``."""
    unet = UNet2DConditionModel.from_pretrained(model_folder / "unet")
    vae_config = json.loads((model_folder / "vae" / "config.json").read_text())
    # The map's embedding downsamples by 2 per extra stage: as many stages as the VAE has downsamplings.
    stages = len(vae_config["block_out_channels"])
    channels = tuple(16 * 2**stage for stage in range(stages))
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels)
    generator = torch.Generator().manual_seed(seed)
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]
    zero_convs.append(controlnet.controlnet_cond_embedding.conv_out)
    with torch.no_grad():
        for conv in zero_convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * scale)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * scale)
    out.mkdir(parents=True, exist_ok=True)
    controlnet.save_pretrained(out, safe_serialization=True)
    return out
