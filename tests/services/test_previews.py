"""Previews: a small painting is enlarged pixel for pixel, a large one is left at its size."""

from __future__ import annotations

import io

from PIL import Image

from app.services.previews import preview_png, preview_scale


def png(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height), (10, 20, 30))
    image.putpixel((0, 0), (250, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_a_64_px_painting_is_enlarged_ten_times_with_hard_pixels() -> None:
    with Image.open(io.BytesIO(preview_png(png(64, 64)))) as enlarged:
        assert enlarged.size == (640, 640)
        # Nearest-neighbour: the red corner pixel becomes a red 10x10 block, not a blur.
        assert enlarged.getpixel((9, 9)) == (250, 0, 0)
        assert enlarged.getpixel((10, 10)) == (10, 20, 30)


def test_the_factor_follows_the_longer_side_and_never_shrinks() -> None:
    assert preview_scale(64, 32) == 10
    assert preview_scale(512, 768) == 1
    assert preview_scale(700, 700) == 1
