"""LoRAs: the ``.safetensors`` files under ``models/loras/``, what each fits, and applying them for one call.

A LoRA file is read without torch (the safetensors header is JSON), so the web side lists them and
refuses a wrong one before a job is queued. Its family is told from what the file says about itself
(kohya's ``ss_base_model_version``, the ``modelspec.architecture`` of SAI's model spec) or from its
keys and the width of its cross-attention (768 for SD 1.x, 1024 for SD 2.x, 2048 for SDXL); a LoRA
for a UNet of another width (studio-tiny's 384) has no family name but still must match the model.

``applied`` loads the LoRAs into a warm pipeline for one call and unloads them after, whatever
happens, so nothing leaks into the next job on the same pipeline.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from app.engine import safetensors_header

LORAS_FOLDER = "loras"

# Cross-attention width (the text encoder's hidden size) of the UNet families.
_CROSS_ATTENTION_FAMILIES = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
_BASE_MODEL_VERSIONS = (("sdxl", "sdxl"), ("sd_v1", "sd1"), ("sd_v2", "sd2"), ("sd3", "sd3"), ("flux", "flux"))
_ARCHITECTURES = (
    ("stable-diffusion-xl", "sdxl"),
    ("stable-diffusion-v1", "sd1"),
    ("stable-diffusion-v2", "sd2"),
    ("stable-diffusion-3", "sd3"),
    ("flux-1", "flux"),
)


@dataclass(frozen=True)
class LoraFile:
    """One LoRA file: its name (the path under ``loras/`` without ``.safetensors``), size and fit."""

    name: str
    path: Path
    size: int
    family: str | None
    # The UNet cross-attention width its attention layers take, when it has any (None for transformers).
    cross_attention_dim: int | None
    # "unet" or "transformer" when its keys say which kind of denoiser it patches, else None.
    denoiser: str | None = None


@dataclass(frozen=True)
class LoraUse:
    """A LoRA asked for by name, at a weight (0 leaves the model as it is)."""

    name: str
    weight: float


class UnreadableLora(ValueError):
    """The file is not a safetensors LoRA the studio can read."""


def read_header(path: Path) -> dict[str, Any]:
    """The safetensors header: tensor names to dtype/shape, and ``__metadata__``."""
    try:
        return safetensors_header.read_header(path)
    except safetensors_header.UnreadableSafetensors as error:
        raise UnreadableLora(str(error)) from error


def _cross_attention_dim(header: dict[str, Any]) -> int | None:
    """The input width of a cross-attention key projection's down matrix (PEFT, diffusers or kohya keys)."""
    for key, entry in header.items():
        lowered = key.lower()
        cross = "attn2" in lowered and ("to_k" in lowered or "to_v" in lowered)
        down = any(part in lowered for part in ("lora_a.", "lora.down.", "lora_down."))
        if cross and down and isinstance(entry, dict):
            shape = entry.get("shape")
            if isinstance(shape, list) and len(shape) >= 2:
                return int(shape[1])
    return None


def family_of(header: dict[str, Any]) -> tuple[str | None, int | None]:
    """(family name or None, cross-attention width or None) of a LoRA from its header."""
    metadata = header.get("__metadata__") or {}
    keys = [key for key in header if key != "__metadata__"]
    dim = _cross_attention_dim(header)
    version = str(metadata.get("ss_base_model_version", "")).lower()
    for prefix, name in _BASE_MODEL_VERSIONS:
        if version.startswith(prefix):
            return name, dim
    architecture = str(metadata.get("modelspec.architecture", "")).lower()
    for prefix, name in _ARCHITECTURES:
        if architecture.startswith(prefix):
            return name, dim
    if any("double_blocks" in key or "single_transformer_blocks" in key or "single_blocks" in key for key in keys):
        return "flux", None
    if any(key.startswith(("lora_te2_", "text_encoder_2.", "te2.")) for key in keys):
        return "sdxl", dim
    if dim is not None:
        return _CROSS_ATTENTION_FAMILIES.get(dim), dim
    return None, None


# Kohya names FLUX's blocks under "lora_unet_" too, so the transformer's own block names are read first.
_TRANSFORMER_KEY_PARTS = ("double_blocks", "single_blocks", "joint_blocks", "single_transformer_blocks")
_TRANSFORMER_KEY_PREFIXES = ("transformer.", "lora_transformer_", "diffusion_model.")
_UNET_KEY_PARTS = ("down_blocks", "up_blocks", "mid_block", "attn2")
_UNET_KEY_PREFIXES = ("lora_unet_", "unet.")


def denoiser_of(header: dict[str, Any]) -> str | None:
    """Which kind of denoiser a LoRA's keys patch: "unet", "transformer", or None (text encoder only)."""
    keys = [key for key in header if key != "__metadata__"]
    transformer = any(part in key for key in keys for part in _TRANSFORMER_KEY_PARTS) or any(
        key.startswith(_TRANSFORMER_KEY_PREFIXES) for key in keys
    )
    if transformer:
        return "transformer"
    unet = any(part in key for key in keys for part in _UNET_KEY_PARTS) or any(
        key.startswith(_UNET_KEY_PREFIXES) for key in keys
    )
    return "unet" if unet else None


def lora_folder(models_dir: Path) -> Path:
    return models_dir / LORAS_FOLDER


def scan(models_dir: Path) -> list[LoraFile]:
    """Every readable LoRA under ``models_dir/loras`` (subfolders too), sorted by name."""
    found: list[LoraFile] = []
    for name, path, header in safetensors_header.readable_files(lora_folder(models_dir)):
        family, dim = family_of(header)
        found.append(
            LoraFile(
                name=name,
                path=path,
                size=path.stat().st_size,
                family=family,
                cross_attention_dim=dim,
                denoiser=denoiser_of(header),
            )
        )
    return found


def find(models_dir: Path, name: str) -> LoraFile | None:
    """The LoRA of that name, looked up among the listed files (a name never becomes a path by itself)."""
    return next((lora for lora in scan(models_dir) if lora.name == name), None)


def model_cross_attention_dim(model_path: Path) -> int | None:
    """The model's UNet cross-attention width from its config, or None for a transformer or no config."""
    try:
        config = json.loads((model_path / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    dim = config.get("cross_attention_dim")
    return int(dim) if isinstance(dim, int) else None


def mismatch(
    lora: LoraFile, *, family: str, family_label: str, model_dim: int | None, denoiser: str | None = None
) -> str | None:
    """Why ``lora`` does not fit a model of ``family`` (with that cross-attention width and denoiser), or None."""
    if lora.family is not None and lora.family != family:
        return f"LoRA {lora.name!r} is for the {lora.family} family; this model is {family_label}"
    # A LoRA of no known family still says by its keys whether it patches a UNet or a transformer.
    if lora.denoiser is not None and denoiser is not None and lora.denoiser != denoiser:
        return f"LoRA {lora.name!r} patches a {lora.denoiser} model; this model ({family_label}) has a {denoiser}"
    if lora.cross_attention_dim is not None and model_dim is not None and lora.cross_attention_dim != model_dim:
        return (
            f"LoRA {lora.name!r} was trained for a cross-attention width of {lora.cross_attention_dim}; "
            f"this model's is {model_dim}"
        )
    return None


@lru_cache(maxsize=256)
def _addnet_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        file.seek(8 + safetensors_header.header_length(file, Path(path).name))
        for block in iter(lambda: file.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def short_hash(lora: LoraFile) -> str:
    """AUTOMATIC1111's ``Lora hashes`` value: the first 12 hex digits of the sha256 of the tensors
    after the header (the "addnet" hash), so edited metadata keeps the hash, as A1111 computes it."""
    stat = lora.path.stat()
    return _addnet_hash(str(lora.path), stat.st_size, stat.st_mtime_ns)[:12]


def _adapter_name(index: int) -> str:
    return f"studio_lora_{index}"


@contextmanager
def applied(pipeline: Any, loras: Sequence[LoraUse], models_dir: Path) -> Iterator[None]:
    """``loras`` loaded into ``pipeline`` at their weights for the block, unloaded after.

    A LoRA at weight 0 is not loaded at all, so it paints exactly what no LoRA paints. The
    pipeline is a warm one shared by every job of this device; unloading in ``finally`` restores
    its layers even when the call fails or is cancelled.
    """
    active = [lora for lora in loras if lora.weight != 0]
    if not active:
        yield
        return
    if not hasattr(pipeline, "load_lora_weights"):
        raise ValueError("this model's pipeline takes no LoRAs")
    names: list[str] = []
    try:
        for index, use in enumerate(active):
            lora = find(models_dir, use.name)
            if lora is None:
                raise ValueError(f"LoRA {use.name!r} is not in {lora_folder(models_dir)}")
            adapter = _adapter_name(index)
            pipeline.load_lora_weights(str(lora.path.parent), weight_name=lora.path.name, adapter_name=adapter)
            names.append(adapter)
        pipeline.set_adapters(names, adapter_weights=[use.weight for use in active])
        # LoRAs wrap the separate attention projections; a fused denoiser (STUDIO_COMPILE) uses them meanwhile.
        from app.engine.fast_path import plain_attention  # torch: only where LoRAs are applied

        with plain_attention(pipeline, active=True):
            yield
    finally:
        # Also after a load that failed half-way: whatever got in comes out.
        pipeline.unload_lora_weights()
