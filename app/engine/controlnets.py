"""ControlNets on disk: the diffusers folders under ``models/controlnet/``, and which models each fits.

A ControlNet is a diffusers folder (``config.json`` and safetensors weights) named by its folder:
``models/controlnet/canny-sd15/`` is ``canny-sd15``. Read without torch, so the web side lists them
and refuses a wrong one before a job is queued. Its family is told from ``config.json``: SDXL
ControlNets add the ``text_time`` embedding (and take 2048-wide text), SD 1.x ones take 768-wide
text and SD 2.x ones 1024; a FLUX.1 or SD3 ControlNet says so by its class. A ControlNet of another
width (a test build) has no family name, and fits a model whose UNet has its cross-attention width
and block widths: a ControlNet adds its residuals to exactly those blocks. A FLUX.1 or SD3 ControlNet
adds its residuals to the transformer's hidden states, so it fits a transformer as wide as itself
(heads x head width) that reads text as wide; a union ControlNet (``num_mode``, as InstantX's FLUX.1
union) is also told which map it is given, by the mode number its authors assigned.

Only safetensors weights are read; a folder holding pickles (``.bin``, ``.ckpt``, ...) is not listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTROLNET_FOLDER = "controlnet"
_PICKLE_SUFFIXES = {".ckpt", ".bin", ".pt", ".pth", ".pkl"}
_TRANSFORMER_FAMILIES = {"flux", "sd3"}
_CROSS_ATTENTION_FAMILIES = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
_CLASS_FAMILIES = {"FluxControlNetModel": "flux", "SD3ControlNetModel": "sd3"}
# A union ControlNet's mode for each map the studio computes (InstantX's FLUX.1 union numbering:
# canny 0, tile 1, depth 2, blur 3, pose 4, gray 5, low quality 6); the other maps have no mode.
UNION_MODES = {"canny": 0}


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
    # A transformer ControlNet's width (heads x head width) and the text width it reads.
    inner_dim: int | None = None
    joint_attention_dim: int | None = None
    # A union ControlNet's number of modes (None for a ControlNet of one kind of map).
    union_modes: int | None = None


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


def _int(config: dict[str, Any], key: str) -> int | None:
    value = config.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _inner_dim(config: dict[str, Any]) -> int | None:
    heads, width = _int(config, "num_attention_heads"), _int(config, "attention_head_dim")
    return heads * width if heads is not None and width is not None else None


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
        inner_dim=_inner_dim(config),
        joint_attention_dim=_int(config, "joint_attention_dim"),
        union_modes=_int(config, "num_mode"),
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
    """The model's denoiser config (its UNet's, or its transformer's), or {} when it has none readable."""
    return _read_config(model_path / "unet") or _read_config(model_path / "transformer") or {}


def mismatch(
    controlnet: ControlNetFolder, *, family: str, family_label: str, unet_config: dict[str, Any]
) -> str | None:
    """Why ``controlnet`` cannot guide a model of ``family`` whose denoiser (UNet or transformer) is
    ``unet_config``, or None."""
    if controlnet.family is not None and controlnet.family != family:
        return f"ControlNet {controlnet.name!r} is for the {controlnet.family} family; this model is {family_label}"
    if controlnet.family is None and family in _TRANSFORMER_FAMILIES:
        # A UNet ControlNet's residuals fit UNet blocks; a transformer takes only its own family's.
        return f"ControlNet {controlnet.name!r} is a UNet ControlNet; this model is {family_label}"
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
    model_width, width = _inner_dim(unet_config), controlnet.inner_dim
    if family in _TRANSFORMER_FAMILIES and width is not None and model_width is not None and width != model_width:
        return f"ControlNet {controlnet.name!r} is {width} wide; this model's transformer is {model_width}"
    model_text, text = _int(unet_config, "joint_attention_dim"), controlnet.joint_attention_dim
    if family in _TRANSFORMER_FAMILIES and text is not None and model_text is not None and text != model_text:
        return f"ControlNet {controlnet.name!r} reads text {text} wide; this model's transformer reads {model_text}"
    if unet_config.get("addition_embed_type") == "text_time" and controlnet.family is None:
        # An SDXL UNet's blocks also take the pooled text and size embedding, which the ControlNet must share.
        return f"ControlNet {controlnet.name!r} is not an SDXL ControlNet; this model is {family_label}"
    return None


def kind_refusal(controlnet: ControlNetFolder, kind: str) -> str | None:
    """Why a union ControlNet cannot be given a map of ``kind`` (it has no mode for it), or None."""
    if controlnet.union_modes is None or kind in UNION_MODES:
        return None
    takes = ", ".join(f"{name} (mode {mode})" for name, mode in UNION_MODES.items())
    return (
        f"ControlNet {controlnet.name!r} is a union ControlNet, told its map by mode; "
        f"of the studio's maps it takes {takes}"
    )
