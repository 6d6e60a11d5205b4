"""Upscaler networks: the ``.safetensors`` files under ``models/upscalers/``, named and described without torch.

An upscaler is a super-resolution network (ESRGAN, Real-ESRGAN, its compact SRVGG variant, SPAN, and
the other architectures ``spandrel`` reads) whose weights the worker runs before the image-to-image
pass of an upscale (``app.engine.upscaling``). Here the web side lists them and refuses an unknown
name before a job is queued: the architecture and scale are told from the safetensors header (tensor
names and shapes) for the common families; a file of another architecture is still listed, without
them, and ``spandrel`` tells when it runs. Only safetensors are read: a pickle (``.pth``, ``.pt``,
``.ckpt``, ``.bin``) can run code when loaded, so such files are never listed or loaded.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.engine import safetensors_header

UPSCALERS_FOLDER = "upscalers"
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl")


@dataclass(frozen=True)
class UpscalerFile:
    """One upscaler: its name (the path under ``upscalers/`` without ``.safetensors``), size and kind."""

    name: str
    path: Path
    size: int
    # Told from the header for ESRGAN, Real-ESRGAN (Compact) and SPAN; None for other architectures.
    architecture: str | None
    scale: int | None


def upscaler_folder(models_dir: Path) -> Path:
    return models_dir / UPSCALERS_FOLDER


def _shape(header: dict[str, Any], key: str) -> list[int] | None:
    entry = header.get(key)
    shape = entry.get("shape") if isinstance(entry, dict) else None
    return [int(side) for side in shape] if isinstance(shape, list) else None


def _seq_len(keys: list[str], prefix: str) -> int:
    """One past the highest ``prefix.N.`` index among ``keys`` (how spandrel counts a Sequential)."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    indices = [int(match.group(1)) for key in keys if (match := pattern.match(key))]
    return max(indices) + 1 if indices else 0


def _pixel_shuffle_scale(channels: int, in_channels: int) -> int | None:
    """``scale`` with ``scale**2 * out_channels == channels``, trying the input's channels, then 3, 4 and 1."""
    for out_channels in (in_channels, 3, 4, 1):
        if channels % out_channels == 0 and math.isqrt(channels // out_channels) ** 2 == channels // out_channels:
            return math.isqrt(channels // out_channels)
    return None


def _unshuffled(scale: int, in_channels: int, out_channels: int) -> int:
    # Real-ESRGAN x2 and x1 fold the input with a pixel-unshuffle first: 4x or 16x the channels in.
    for factor in (2, 4):
        if in_channels == out_channels * factor * factor:
            return max(1, scale // factor)
    return scale


def describe(header: dict[str, Any]) -> tuple[str | None, int | None]:
    """(architecture, scale) from a header's tensor names and shapes, or (None, None) when not told."""
    keys = [key for key in header if key != "__metadata__"]
    present = set(keys)
    # ESRGAN in its original layout (model.N...), as ESRGAN, BSRGAN and most community models ship.
    if "model.0.weight" in present and any(key.startswith("model.1.sub.0.RDB1.") for key in keys):
        length = _seq_len(keys, "model")
        first, last = _shape(header, "model.0.weight"), _shape(header, f"model.{length - 1}.weight")
        if first is None or last is None or length < 5:
            return "ESRGAN", None
        return "ESRGAN", _unshuffled(2 ** ((length - 5) // 3), first[1], last[0])
    # ESRGAN in Real-ESRGAN's layout (conv_first, body.N.rdbM, conv_upN, conv_last) or BSRGAN's.
    if {"conv_first.weight", "conv_last.weight"} <= present and {"conv_body.weight", "trunk_conv.weight"} & present:
        ups = {match.group(2) for key in keys if (match := re.match(r"(upconv|conv_up)(\d)\.weight$", key))}
        first, last = _shape(header, "conv_first.weight"), _shape(header, "conv_last.weight")
        if first is None or last is None:
            return "ESRGAN", None
        return "ESRGAN", _unshuffled(2 ** len(ups), first[1], last[0])
    # Real-ESRGAN's compact SRVGG network: body.0 conv, PReLUs between, the last conv feeds a pixel shuffle.
    if {"body.0.weight", "body.1.weight"} <= present:
        length = _seq_len(keys, "body")
        first, last_bias = _shape(header, "body.0.weight"), _shape(header, f"body.{length - 1}.bias")
        if first is None or last_bias is None:
            return "Compact", None
        return "Compact", _pixel_shuffle_scale(last_bias[0], first[1])
    if {"conv_1.sk.weight", "conv_cat.weight", "upsampler.0.weight"} <= present:
        first, shuffle = _shape(header, "conv_1.sk.weight"), _shape(header, "upsampler.0.weight")
        if first is None or shuffle is None:
            return "SPAN", None
        return "SPAN", _pixel_shuffle_scale(shuffle[0], first[1])
    return None, None


def scan(models_dir: Path) -> list[UpscalerFile]:
    """Every readable ``.safetensors`` upscaler under ``models_dir/upscalers`` (subfolders too), sorted by name."""
    found: list[UpscalerFile] = []
    for name, path, header in safetensors_header.readable_files(upscaler_folder(models_dir)):
        architecture, scale = describe(header)
        found.append(
            UpscalerFile(name=name, path=path, size=path.stat().st_size, architecture=architecture, scale=scale)
        )
    return found


def pickles(models_dir: Path) -> list[Path]:
    """Pickled weights dropped under ``upscalers/``: never loaded (a pickle can run code), named in refusals."""
    folder = upscaler_folder(models_dir)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in PICKLE_SUFFIXES and path.is_file())


def find(models_dir: Path, name: str) -> UpscalerFile | None:
    """The upscaler of that name, looked up among the listed files (a name never becomes a path by itself)."""
    return next((upscaler for upscaler in scan(models_dir) if upscaler.name == name), None)
