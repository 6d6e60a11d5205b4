"""Tiny ControlNets for tests: built from a tiny model's UNet or FLUX.1 transformer, with weights that do something.

``ControlNetModel.from_unet`` copies the UNet's encoder and zero-initialises the convolutions that
hand its residuals to the UNet (and the last conv of the map's embedding), so a fresh ControlNet
changes nothing. Those zero convolutions get seeded random weights here, so the map steers the
picture and a test can see it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import ControlNetModel, FluxControlNetModel, FluxTransformer2DModel, UNet2DConditionModel


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


def build_tiny_flux_controlnet(
    model_folder: Path, out: Path, *, seed: int = 0, scale: float = 0.5, union_modes: int | None = None
) -> Path:
    """Writes a FLUX.1 ControlNet for the FLUX.1 folder ``model_folder`` to ``out``: one double and one
    single block copied from its transformer (InstantX's layout: the map goes through the VAE and is
    packed like the latents). ``union_modes``: a union ControlNet told its map by mode, as InstantX's."""
    torch.manual_seed(seed)  # whatever the transformer does not hand over starts from seeded weights
    transformer = FluxTransformer2DModel.from_pretrained(model_folder / "transformer")
    config = transformer.config
    controlnet = FluxControlNetModel.from_transformer(
        transformer,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=config.attention_head_dim,
        num_attention_heads=config.num_attention_heads,
    )
    # Rebuilt from its own settings: the transformer's out_channels, which a ControlNet does not take, left out.
    settings = {key: value for key, value in controlnet.config.items() if not key.startswith("_")}
    settings.pop("out_channels", None)
    if union_modes is not None:
        settings["num_mode"] = union_modes
    rebuilt = FluxControlNetModel.from_config(settings)
    # All the weights, but a union ControlNet's mode embedding, which is new.
    rebuilt.load_state_dict(controlnet.state_dict(), strict=union_modes is None)
    controlnet = rebuilt
    # The linear layers that hand the residuals to the transformer, and the map's embedding, start at zero.
    generator = torch.Generator().manual_seed(seed)
    zero_layers = [*controlnet.controlnet_blocks, *controlnet.controlnet_single_blocks]
    zero_layers.append(controlnet.controlnet_x_embedder)
    with torch.no_grad():
        for layer in zero_layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * scale)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * scale)
        if union_modes is not None:
            embedding = controlnet.controlnet_mode_embedder.weight
            embedding.copy_(torch.randn(embedding.shape, generator=generator))
    out.mkdir(parents=True, exist_ok=True)
    controlnet.save_pretrained(out, safe_serialization=True)
    return out
