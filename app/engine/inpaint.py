"""Inpainting helpers: outpaint canvases, mask fitting and compositing over the source."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps


@dataclass(frozen=True)
class Outpaint:
    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0

    @property
    def any(self) -> bool:
        return bool(self.left or self.right or self.top or self.bottom)


def fit_mask(mask: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, bool]:
    """The mask as "L" at ``size``; True when it had to be resized."""
    mask = mask.convert("L")
    if mask.size == size:
        return mask, False
    return mask.resize(size, Image.Resampling.BILINEAR), True


def extend_canvas(image: Image.Image, mask: Image.Image | None, sides: Outpaint) -> tuple[Image.Image, Image.Image]:
    """A larger canvas with the source in place, the new border filled and marked for repainting.

    The border starts as the source's edge pixels stretched outwards and blurred: a neutral start
    that the denoiser repaints fully, with colours that continue the picture rather than grey.
    """
    width = image.width + sides.left + sides.right
    height = image.height + sides.top + sides.bottom
    source = np.asarray(image.convert("RGB"))
    padded = np.pad(source, ((sides.top, sides.bottom), (sides.left, sides.right), (0, 0)), mode="edge")
    canvas = Image.fromarray(padded).filter(ImageFilter.GaussianBlur(radius=max(2, min(width, height) // 16)))
    canvas.paste(image.convert("RGB"), (sides.left, sides.top))
    border = Image.new("L", (width, height), 255)
    inner = Image.new("L", image.size, 0) if mask is None else fit_mask(mask, image.size)[0]
    border.paste(inner, (sides.left, sides.top))
    return canvas, border


def composite(source: Image.Image, generated: Image.Image, mask: Image.Image, blur: float) -> Image.Image:
    """The generated pixels where the mask is white, the source's own elsewhere, blended softly.

    The VAE round trip shifts every pixel a little; compositing keeps the unmasked region exact.
    """
    generated = generated.convert("RGB")
    if source.size != generated.size:
        source = source.resize(generated.size, Image.Resampling.LANCZOS)
    soft = fit_mask(mask, generated.size)[0]
    if blur > 0:
        soft = soft.filter(ImageFilter.GaussianBlur(radius=blur))
    return Image.composite(generated, source.convert("RGB"), soft)


def invert(mask: Image.Image) -> Image.Image:
    return ImageOps.invert(mask.convert("L"))
