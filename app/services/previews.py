"""Previews: a painting enlarged pixel for pixel, for link previews (OpenGraph) that would blur a 64 px PNG."""

from __future__ import annotations

import io
import math

from PIL import Image

# OpenGraph cards are drawn about 600 px wide; a smaller painting is enlarged to at least this.
PREVIEW_SIDE = 600


def preview_scale(width: int, height: int, *, side: int = PREVIEW_SIDE) -> int:
    """The whole-number factor that brings the longer side to at least ``side`` (1 when it already is)."""
    return max(1, math.ceil(side / max(width, height, 1)))


def preview_png(data: bytes, *, side: int = PREVIEW_SIDE) -> bytes:
    """The PNG ``data`` enlarged by ``preview_scale`` with nearest-neighbour sampling, so it stays crisp."""
    with Image.open(io.BytesIO(data)) as image:
        scale = preview_scale(image.width, image.height, side=side)
        enlarged = image.convert("RGB").resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    enlarged.save(out, format="PNG", optimize=False)
    return out.getvalue()
