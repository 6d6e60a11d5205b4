"""Watermark: the studio's invisible mark in a picture's pixels, written and found again.

invisible-watermark's DWT-DCT-SVD coder hides 32 bits in the U channel's wavelet coefficients; it
survives a JPEG re-save at quality 90 (a C2PA manifest does not survive any re-encoding), costs a
PSNR of about 33 dB, and needs pictures of at least 256x256 pixels.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image

# The watermark: 32 bits, so a picture that never carried it matches by chance once in 4 billion.
WATERMARK_PAYLOAD = b"PStu"
# The coder needs this many pixels (invisible-watermark refuses smaller pictures).
WATERMARK_MIN_PIXELS = 256 * 256
_WATERMARK_SCALES = [0, 36, 0]  # only the U channel, as the library's default

_coder_module: ModuleType | None = None


def _watermark_coder() -> Any:
    """invisible-watermark's DWT-DCT-SVD coder class, loaded from its own file.

    The package's ``__init__`` imports its RivaGAN coder and with it torch, which the web side
    never imports; the DWT-DCT-SVD coder needs only numpy, OpenCV and PyWavelets, so its module is
    loaded alone.
    """
    global _coder_module  # a cache of an immutable module, the same in every thread
    if _coder_module is None:
        package = importlib.util.find_spec("imwatermark")
        if package is None or not package.submodule_search_locations:
            raise RuntimeError("the invisible-watermark package is not installed")
        location = Path(next(iter(package.submodule_search_locations))) / "dwtDctSvd.py"
        spec = importlib.util.spec_from_file_location("_studio_imwatermark_dwtdctsvd", location)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {location}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _coder_module = module
    return _coder_module.EmbedDwtDctSvd


def _payload_bits() -> list[int]:
    return [int(bit) for bit in np.unpackbits(np.frombuffer(WATERMARK_PAYLOAD, dtype=np.uint8))]


def can_watermark(image: Image.Image) -> bool:
    return image.width * image.height >= WATERMARK_MIN_PIXELS


def add_watermark(image: Image.Image) -> Image.Image:
    """``image`` with the studio's mark in its pixels; pictures too small to carry it come back as they were."""
    if not can_watermark(image):
        return image
    bits = _payload_bits()
    coder = _watermark_coder()(bits, wmLen=len(bits), scales=_WATERMARK_SCALES)
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    marked = coder.encode(bgr)
    rgb = np.clip(np.rint(marked[:, :, ::-1]), 0, 255).astype(np.uint8)
    result = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        result.putalpha(alpha)
    return result


def has_watermark(image: Image.Image) -> bool:
    """Whether ``image`` carries the studio's mark (False for pictures too small to carry one)."""
    if not can_watermark(image):
        return False
    bits = _payload_bits()
    coder = _watermark_coder()([], wmLen=len(bits), scales=_WATERMARK_SCALES)
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    return [int(bit) for bit in coder.decode(bgr)] == bits
