"""ControlNets on disk: the diffusers folders under ``models/controlnet/``, and which models each fits.

A ControlNet is a diffusers folder (``config.json`` and safetensors weights) named by its folder:
``models/controlnet/canny-sd15/`` is ``canny-sd15``. Read without torch, so the web side lists them
and refuses a wrong one before a job is queued. Its family is told from ``config.json``: SDXL
ControlNets add the ``text_time`` embedding (and take 2048-wide text), SD 1.x ones take 768-wide
text and SD 2.x ones 1024; a FLUX.1 or SD3 ControlNet says so by its class. A ControlNet of another
width (a test build) has no family name, and fits a model whose UNet has its cross-attention width
and block widths: a ControlNet adds its residuals to exactly those blocks.

Only safetensors weights are read; a folder holding pickles (``.bin``, ``.ckpt``, ...) is not listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTROLNET_FOLDER = "controlnet"
_PICKLE_SUFFIXES = {".ckpt", ".bin", ".pt", ".pth", ".pkl"}
_CROSS_ATTENTION_FAMILIES = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
_CLASS_FAMILIES = {"FluxControlNetModel": "flux", "SD3ControlNetModel": "sd3"}


@dataclass(frozen=True)
class ControlNetFolder:
    """One ControlNet: its name (the folder's), size on disk and what it fits."""

    name: str
    path: Path
    size: int
    class_name: str
    family: str | None
    cross_attention_dim: int | None
    block_out_channels: tuple[int, ...] | None


def controlnet_folder(models_dir: Path) -> Path:
    return models_dir / CONTROLNET_FOLDER


def _read_config(path: Path) -> dict[str, Any] | None:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def family_of(config: dict[str, Any]) -> str | None:
    """The family a ControlNet's ``config.json`` is for, or None when it cannot be told."""
    class_name = str(config.get("_class_name", "ControlNetModel"))
    if class_name in _CLASS_FAMILIES:
        return _CLASS_FAMILIES[class_name]
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    dim = config.get("cross_attention_dim")
    return _CROSS_ATTENTION_FAMILIES.get(dim) if isinstance(dim, int) else None


def _blocks(config: dict[str, Any]) -> tuple[int, ...] | None:
    blocks = config.get("block_out_channels")
    return tuple(int(width) for width in blocks) if isinstance(blocks, list) else None


def read_folder(path: Path, *, name: str) -> ControlNetFolder | None:
    """The ControlNet in ``path``, or None when it has no readable config or no safetensors weights."""
    config = _read_config(path)
    if config is None:
        return None
    files = [file for file in path.rglob("*") if file.is_file()]
    if any(file.suffix.lower() in _PICKLE_SUFFIXES for file in files):
        return None  # unpickling runs code: never loaded, so never offered
    if not any(file.suffix == ".safetensors" for file in files):
        return None
    dim = config.get("cross_attention_dim")
    return ControlNetFolder(
        name=name,
        path=path,
        size=sum(file.stat().st_size for file in files),
        class_name=str(config.get("_class_name", "ControlNetModel")),
        family=family_of(config),
        cross_attention_dim=dim if isinstance(dim, int) else None,
        block_out_channels=_blocks(config),
    )


def scan(models_dir: Path) -> list[ControlNetFolder]:
    """Every readable ControlNet folder directly under ``models_dir/controlnet``, sorted by name."""
    folder = controlnet_folder(models_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and not path.name.startswith("."):
            controlnet = read_folder(path, name=path.name)
            if controlnet is not None:
                found.append(controlnet)
    return found


def find(models_dir: Path, name: str) -> ControlNetFolder | None:
    """The ControlNet of that name among the listed folders (a name never becomes a path by itself)."""
    return next((controlnet for controlnet in scan(models_dir) if controlnet.name == name), None)


def model_unet_config(model_path: Path) -> dict[str, Any]:
    """The model's UNet config, or {} for a transformer model or a missing config."""
    return _read_config(model_path / "unet") or {}


def mismatch(
    controlnet: ControlNetFolder, *, family: str, family_label: str, unet_config: dict[str, Any]
) -> str | None:
    """Why ``controlnet`` cannot guide a model of ``family`` whose UNet is ``unet_config``, or None."""
    if controlnet.family is not None and controlnet.family != family:
        return f"ControlNet {controlnet.name!r} is for the {controlnet.family} family; this model is {family_label}"
    model_dim = unet_config.get("cross_attention_dim")
    dim = controlnet.cross_attention_dim
    if dim is not None and isinstance(model_dim, int) and dim != model_dim:
        return f"ControlNet {controlnet.name!r} takes text {dim} wide; this model's UNet takes {model_dim}"
    model_blocks = _blocks(unet_config)
    blocks = controlnet.block_out_channels
    if blocks is not None and model_blocks is not None and blocks != model_blocks:
        return (
            f"ControlNet {controlnet.name!r} was built for UNet blocks {list(blocks)}; "
            f"this model's are {list(model_blocks)}"
        )
    if unet_config.get("addition_embed_type") == "text_time" and controlnet.family is None:
        # An SDXL UNet's blocks also take the pooled text and size embedding, which the ControlNet must share.
        return f"ControlNet {controlnet.name!r} is not an SDXL ControlNet; this model is {family_label}"
    return None
