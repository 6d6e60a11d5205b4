"""Previews: small, cheap pictures of the latents while a generation is still denoising."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

# Latent-to-RGB factors that approximate the Stable Diffusion 1.x/2.x VAE decoder; a well-known
# linear fit, far cheaper than decoding.
SD_LATENT_RGB = torch.tensor(
    [
        [0.298, 0.207, 0.208],
        [0.187, 0.286, 0.173],
        [-0.158, 0.189, 0.264],
        [-0.184, -0.271, -0.473],
    ]
)

# Below this many latent pixels, decoding with the VAE itself costs little and is exact.
_DECODE_LIMIT = 32 * 32


def latents_preview(pipeline: Any, latents: torch.Tensor, max_side: int = 128) -> Image.Image:
    """A preview of the first latent of a batch."""
    latent = latents[:1].detach()
    height, width = latent.shape[-2:]
    vae = pipeline.vae
    if height * width <= _DECODE_LIMIT or latent.shape[1] != 4:
        with torch.inference_mode():
            scaled = latent.to(vae.dtype) / vae.config.scaling_factor
            pixels = vae.decode(scaled).sample[0].float().clamp(-1, 1)
        array = ((pixels + 1) * 127.5).permute(1, 2, 0).byte().cpu().numpy()
    else:
        rgb = torch.einsum("chw,cr->hwr", latent[0].float().cpu(), SD_LATENT_RGB)
        array = ((rgb + 1) * 127.5).clamp(0, 255).byte().numpy()
    image = Image.fromarray(array)
    image.thumbnail((max_side, max_side))
    return image
