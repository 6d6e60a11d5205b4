"""Model registry: finds diffusers pipelines on disk, loads them lazily, keeps them warm per device.

A model is a diffusers pipeline folder (``model_index.json``) under the models directory. Only
safetensors weights are accepted: a folder that holds pickle checkpoints (``.ckpt``, ``.bin``,
``.pt``, ``.pth``, ``.pkl``) is refused, because unpickling runs arbitrary code.

Each device keeps a small LRU of warm base pipelines; image-to-image and inpainting pipelines are
built from the same modules with ``from_pipe`` (no second copy of the weights).
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    DiffusionPipeline,
)

from app.engine.text_encoders import load_minilm, package_model_dir

logger = logging.getLogger(__name__)

PipelineMode = Literal["txt2img", "img2img", "inpaint"]

PICKLE_SUFFIXES = {".ckpt", ".bin", ".pt", ".pth", ".pkl"}


class ModelNotFound(LookupError):
    """The asked model is not in the models directory, or was refused."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    pipeline_class: str
    default_width: int
    default_height: int
    unet_in_channels: int
    text_encoder_package: str | None = None
    max_tokens: int | None = None
    has_ip_adapter: bool = False
    description: str = ""

    @property
    def is_inpainting_model(self) -> bool:
        return self.unet_in_channels == 9

    @property
    def is_xl(self) -> bool:
        return "XL" in self.pipeline_class


@dataclass(frozen=True)
class RefusedModel:
    name: str
    reason: str


@dataclass
class _Warm:
    base: DiffusionPipeline
    derived: dict[str, DiffusionPipeline] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def inspect_model(folder: Path) -> ModelSpec | RefusedModel:
    """Reads a pipeline folder's configuration without loading any weights."""
    name = folder.name
    try:
        index = _read_json(folder / "model_index.json")
    except (OSError, ValueError) as error:
        return RefusedModel(name, f"unreadable model_index.json: {error}")
    pickles = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        return RefusedModel(name, f"pickle weights are refused, convert them to safetensors: {', '.join(pickles[:3])}")
    if not any(folder.rglob("*.safetensors")):
        return RefusedModel(name, "no safetensors weights found")
    try:
        unet_config = _read_json(folder / "unet" / "config.json")
        vae_config = _read_json(folder / "vae" / "config.json")
    except (OSError, ValueError) as error:
        return RefusedModel(name, f"not a UNet pipeline: {error}")
    vae_scale = 2 ** (len(vae_config.get("block_out_channels", [0, 0, 0, 0])) - 1)
    sample_size = unet_config.get("sample_size", 64)
    if isinstance(sample_size, list):
        sample_size = sample_size[0]
    description = ""
    readme = folder / "README.md"
    if readme.exists():
        for line in readme.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                description = line.strip()[:200]
                break
    return ModelSpec(
        name=name,
        path=folder,
        pipeline_class=str(index.get("_class_name", "StableDiffusionPipeline")),
        default_width=int(sample_size) * vae_scale,
        default_height=int(sample_size) * vae_scale,
        unet_in_channels=int(unet_config.get("in_channels", 4)),
        text_encoder_package=index.get("_studio_text_encoder_package"),
        max_tokens=index.get("_studio_max_tokens"),
        has_ip_adapter=(folder / "ip_adapter").is_dir() and (folder / "image_encoder").is_dir(),
        description=description,
    )


def dtype_for(device: str) -> torch.dtype:
    return torch.float16 if device.startswith("cuda") else torch.float32


class ModelRegistry:
    """Lists the models on disk and hands out warm pipelines, ``cache_size`` per device."""

    def __init__(self, models_dir: Path, *, cache_size: int = 2) -> None:
        self.models_dir = models_dir
        self.cache_size = max(1, cache_size)
        self._warm: dict[str, OrderedDict[str, _Warm]] = {}
        # One worker thread uses a device at a time, but listing and preloading may run on other
        # threads: the lock keeps the LRU consistent. Loading happens under it, so two threads
        # never load the same model twice.
        self._lock = threading.RLock()

    # -- discovery --------------------------------------------------------------------------

    def scan(self) -> tuple[builtins.list[ModelSpec], builtins.list[RefusedModel]]:
        specs: list[ModelSpec] = []
        refused: list[RefusedModel] = []
        if not self.models_dir.is_dir():
            return specs, refused
        for folder in sorted(self.models_dir.iterdir()):
            if not (folder / "model_index.json").is_file():
                continue
            found = inspect_model(folder)
            if isinstance(found, ModelSpec):
                specs.append(found)
            else:
                logger.warning("model %s refused: %s", found.name, found.reason)
                refused.append(found)
        return specs, refused

    def list(self) -> builtins.list[ModelSpec]:
        return self.scan()[0]

    def spec(self, name: str) -> ModelSpec:
        # Only names of folders directly under the models directory: never a path.
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ModelNotFound(f"unknown model {name!r}")
        folder = self.models_dir / name
        if not (folder / "model_index.json").is_file():
            raise ModelNotFound(f"unknown model {name!r}")
        found = inspect_model(folder)
        if isinstance(found, RefusedModel):
            raise ModelNotFound(f"model {name!r} is refused: {found.reason}")
        return found

    # -- loading ----------------------------------------------------------------------------

    def warm_models(self, device: str) -> builtins.list[str]:
        with self._lock:
            return list(self._warm.get(device, {}))

    def pipeline(self, name: str, device: str, mode: PipelineMode = "txt2img") -> DiffusionPipeline:
        """A pipeline for ``mode`` on ``device``, loading the model if it is not warm."""
        with self._lock:
            cache = self._warm.setdefault(device, OrderedDict())
            warm = cache.get(name)
            if warm is None:
                warm = _Warm(self._load(self.spec(name), device))
                cache[name] = warm
                while len(cache) > self.cache_size:
                    evicted, _ = cache.popitem(last=False)
                    logger.info("evicted %s from %s", evicted, device)
                    if device.startswith("cuda"):
                        torch.cuda.empty_cache()
            cache.move_to_end(name)
            if mode == "txt2img":
                return warm.base
            if mode not in warm.derived:
                builder = AutoPipelineForImage2Image if mode == "img2img" else AutoPipelineForInpainting
                derived = builder.from_pipe(warm.base)
                derived.set_progress_bar_config(disable=True)
                derived._studio_model_path = warm.base._studio_model_path
                warm.derived[mode] = derived
            return warm.derived[mode]

    def _load(self, spec: ModelSpec, device: str) -> DiffusionPipeline:
        logger.info("loading model %s on %s", spec.name, device)
        dtype = dtype_for(device)
        kwargs: dict[str, Any] = {"torch_dtype": dtype, "use_safetensors": True, "local_files_only": True}
        index = _read_json(spec.path / "model_index.json")
        if "safety_checker" in index:
            kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        if spec.text_encoder_package:
            package_model_dir(spec.text_encoder_package)  # fails early with a clear message
            tokenizer, encoder = load_minilm(max_tokens=spec.max_tokens or 77, package=spec.text_encoder_package)
            kwargs.update(tokenizer=tokenizer, text_encoder=encoder.to(dtype))
        pipeline = AutoPipelineForText2Image.from_pretrained(spec.path, **kwargs)
        pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)
        # Where optional parts (IP-Adapter weights) are looked up later.
        pipeline._studio_model_path = spec.path
        return pipeline
