"""Tests for app.services.watermark: the invisible mark survives a JPEG re-save and stays invisible."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
from PIL import Image

from app.services import watermark


def picture(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A smooth gradient with grain, closer to a painting than flat colour."""
    rng = np.random.default_rng(seed)
    width, height = size
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    channels = np.stack([x * y, (1 - x) * y, x * (1 - y)], axis=-1) * 255
    return Image.fromarray((channels + rng.normal(0, 8, channels.shape)).clip(0, 255).astype(np.uint8))


def test_the_watermark_survives_a_jpeg_re_save_at_quality_90() -> None:
    marked = watermark.add_watermark(picture((256, 256)))
    jpeg = io.BytesIO()
    marked.save(jpeg, format="JPEG", quality=90)

    with Image.open(io.BytesIO(jpeg.getvalue())) as reloaded:
        assert watermark.has_watermark(reloaded)
    assert not watermark.has_watermark(picture((256, 256)))


def test_the_watermark_is_invisible_to_the_eye() -> None:
    original = picture((256, 256))
    marked = watermark.add_watermark(original)

    difference = np.abs(np.asarray(marked, dtype=np.int16) - np.asarray(original, dtype=np.int16))
    peak_signal_to_noise = 10 * np.log10(255**2 / float((difference.astype(np.float64) ** 2).mean()))
    assert peak_signal_to_noise > 30  # the library's default strength gives about 33 dB


def test_a_picture_too_small_to_carry_the_mark_is_left_as_it_was() -> None:
    small = picture((128, 128))

    assert np.array_equal(np.asarray(watermark.add_watermark(small)), np.asarray(small))
    assert not watermark.has_watermark(small)


def test_looking_for_the_mark_never_imports_torch() -> None:
    # The web side checks uploads; the package's __init__ would pull torch in through its RivaGAN coder.
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "from app.services import watermark\n"
        "watermark.has_watermark(Image.new('RGB', (256, 256)))\n"
        "assert 'torch' not in sys.modules and 'imwatermark' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
