"""Upscaling networks at work: a super-resolution model loaded by ``spandrel`` and run in tiles on a picture.

``spandrel`` reads a state dict in its original key layout (ESRGAN, Real-ESRGAN and its compact SRVGG
net, SPAN, SwinIR, HAT, DAT and others), tells the architecture and builds the network. The weights
come from ``.safetensors`` only (read here with ``safetensors``, so no pickle path of spandrel's loader
is ever taken).

spandrel's package imports ``torchvision`` at import time for two architectures the studio never runs
(LaMa's inpainting and RestoreFormer's face restoration use ``rotate`` and ``normalize``). PyPI's
torchvision does not load beside every torch build (a CPU build of another version fails with
"operator torchvision::nms does not exist"), so the studio does not depend on it: when it cannot be
imported, ``_spandrel()`` imports spandrel behind stand-ins for those three names that raise if ever
called, then takes the stand-ins out of ``sys.modules`` again, so no other library sees a torchvision.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import logging
import math
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

# Inputs larger than this many pixels on a side run in tiles, so memory stays bounded at any size.
TILE = 256
# Each tile sees this many pixels of its neighbours, so its seams have context; they are cropped after.
OVERLAP = 16

_TORCHVISION_NAMES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
_loaded: dict[tuple[str, int, str], Any] = {}
_lock = threading.Lock()


class UpscalerError(ValueError):
    """The file is not an upscaler the studio can run; the message says why."""


def _torchvision_works() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        importlib.import_module("torchvision.transforms.functional")
    except Exception as error:  # an installed torchvision built for another torch fails in many ways
        logger.info("torchvision does not import (%s); spandrel runs without it", error)
        return False
    return True


def _stand_ins() -> dict[str, types.ModuleType]:
    def unavailable(*args: object, **kwargs: object) -> None:
        raise RuntimeError("this spandrel architecture needs torchvision, which the studio does not install")

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    modules = {name: types.ModuleType(name) for name in _TORCHVISION_NAMES}
    functional = modules["torchvision.transforms.functional"]
    functional.rotate = unavailable  # type: ignore[attr-defined]
    functional.normalize = unavailable  # type: ignore[attr-defined]
    functional.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    modules["torchvision"].transforms = modules["torchvision.transforms"]  # type: ignore[attr-defined]
    modules["torchvision.transforms"].functional = functional  # type: ignore[attr-defined]
    return modules


def _spandrel() -> Any:
    """The ``spandrel`` module, imported without needing torchvision (see the module's docstring)."""
    if importlib.util.find_spec("spandrel") is None:
        raise UpscalerError("upscaler networks need spandrel: pip install --no-deps 'spandrel>=0.4.1,<0.5' einops")
    if "spandrel" in sys.modules or _torchvision_works():
        return importlib.import_module("spandrel")
    stand_ins = _stand_ins()
    saved = {name: sys.modules[name] for name in _TORCHVISION_NAMES if name in sys.modules}
    sys.modules.update(stand_ins)
    try:
        return importlib.import_module("spandrel")
    finally:
        for name in _TORCHVISION_NAMES:
            if sys.modules.get(name) is stand_ins[name]:
                del sys.modules[name]
        sys.modules.update(saved)


def load(path: Path, device: str) -> Any:
    """spandrel's descriptor of the super-resolution network in ``path`` on ``device``, kept once loaded.

    Raises ``UpscalerError`` for a file that is not safetensors, an architecture spandrel does not
    know, or a network that does not enlarge RGB pictures.
    """
    if path.suffix.lower() != ".safetensors":
        raise UpscalerError(f"{path.name}: only .safetensors upscalers are loaded (a pickle can run code)")
    key = (str(path), path.stat().st_mtime_ns, device)
    with _lock:
        if key in _loaded:
            return _loaded[key]
    from safetensors.torch import load_file

    spandrel = _spandrel()
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(load_file(str(path)))
    except spandrel.UnsupportedModelError as error:
        raise UpscalerError(f"{path.name}: spandrel knows no architecture with these weights") from error
    except (KeyError, RuntimeError, ValueError, AssertionError) as error:
        raise UpscalerError(f"{path.name}: the weights do not build a network ({error})") from error
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UpscalerError(f"{path.name} is a {descriptor.architecture.name} network, which takes more than a picture")
    if descriptor.scale < 2 or descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise UpscalerError(
            f"{path.name} is a {descriptor.architecture.name} network at x{descriptor.scale} for "
            f"{descriptor.input_channels} channels; an upscaler enlarges RGB pictures at least twice"
        )
    descriptor.to(device).eval()
    if device.startswith("cuda") and descriptor.supports_half:
        descriptor.half()
    with _lock:
        # One network per device is kept: upscales come one at a time, and another file replaces it.
        for stale in [cached for cached in _loaded if cached[2] == device]:
            del _loaded[stale]
        _loaded[key] = descriptor
    logger.info("loaded upscaler %s (%s x%d) on %s", path.name, descriptor.architecture.name, descriptor.scale, device)
    return descriptor


def _tiles(length: int) -> list[int]:
    """Tile starts along a side of ``length`` pixels: one tile when it fits, else TILE apart."""
    if length <= TILE:
        return [0]
    return list(range(0, length, TILE))


def run_network(descriptor: Any, image: Image.Image) -> Image.Image:
    """``image`` enlarged ``descriptor.scale`` times by the network, tile by tile above ``TILE`` pixels a side."""
    parameter = next(descriptor.model.parameters())
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    pixels = pixels.to(device=parameter.device, dtype=parameter.dtype)
    _, _, height, width = pixels.shape
    scale = int(descriptor.scale)
    out = torch.zeros((1, 3, height * scale, width * scale), dtype=torch.float32)
    with torch.inference_mode():
        for top in _tiles(height):
            for left in _tiles(width):
                # The tile with OVERLAP pixels of context each side, cropped back to the tile after the network.
                y0, x0 = max(0, top - OVERLAP), max(0, left - OVERLAP)
                y1, x1 = min(height, top + TILE + OVERLAP), min(width, left + TILE + OVERLAP)
                enlarged = descriptor(pixels[:, :, y0:y1, x0:x1]).float().cpu()
                tile_h, tile_w = min(TILE, height - top), min(TILE, width - left)
                dy, dx = (top - y0) * scale, (left - x0) * scale
                out[:, :, top * scale : (top + tile_h) * scale, left * scale : (left + tile_w) * scale] = enlarged[
                    :, :, dy : dy + tile_h * scale, dx : dx + tile_w * scale
                ]
    array = (out[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array, "RGB")


def enlarge(image: Image.Image, path: Path, *, size: tuple[int, int], device: str) -> Image.Image:
    """``image`` at ``size``: the network in ``path`` first (again while it falls short), then Lanczos to the size.

    A x4 network asked for x2 paints at x4 and is brought down; a x2 network asked for x4 runs twice.
    """
    descriptor = load(path, device)
    enlarged = image.convert("RGB")
    passes = max(1, math.ceil(math.log(max(size[0] / image.width, size[1] / image.height), descriptor.scale) - 1e-6))
    for _ in range(min(passes, 3)):
        enlarged = run_network(descriptor, enlarged)
    if enlarged.size != size:
        enlarged = enlarged.resize(size, Image.Resampling.LANCZOS)
    return enlarged


def enlarge_named(
    image: Image.Image, name: str, models_dir: Path, *, size: tuple[int, int], device: str
) -> Image.Image:
    """``enlarge`` with the upscaler called ``name`` under ``models_dir/upscalers``."""
    from app.engine.upscalers import find, upscaler_folder

    upscaler = find(models_dir, name)
    if upscaler is None:
        raise UpscalerError(f"upscaler {name!r} is not in {upscaler_folder(models_dir)}")
    return enlarge(image, upscaler.path, size=size, device=device)
