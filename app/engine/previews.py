"""Previews: small, cheap pictures of the latents while a generation is still denoising.

The engine offers a preview every few steps; it is painted only if the step callback reads it
(``StepProgress.preview``), so a worker whose job nobody watches pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
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


class StepProgress:
    """A denoising step done: ``step`` of ``total``, and the latents' preview where one is offered.

    An offered preview is painted the first time ``preview`` is read, at most once. Read it inside
    the step callback: after the callback returns the pipeline moves on from those latents.
    """

    __slots__ = ("_preview", "_render", "step", "total")

    def __init__(
        self,
        step: int,
        total: int,
        preview: Image.Image | None = None,
        *,
        render: Callable[[], Image.Image] | None = None,
    ) -> None:
        self.step = step
        self.total = total
        self._preview = preview
        self._render = render

    @property
    def offers_preview(self) -> bool:
        """Whether reading ``preview`` gives a picture (without painting it)."""
        return self._preview is not None or self._render is not None

    @property
    def preview(self) -> Image.Image | None:
        if self._render is not None:
            self._preview, self._render = self._render(), None
        return self._preview

    def __repr__(self) -> str:
        return f"StepProgress(step={self.step}, total={self.total}, offers_preview={self.offers_preview})"


def offer(pipeline: Any, latents: torch.Tensor) -> Callable[[], Image.Image]:
    """A preview of the first latent of ``latents``, painted when called."""
    return lambda: latents_preview(pipeline, latents)
