"""Model registry: loads the catalog's pipelines lazily and keeps them warm per device.

Imports torch and diffusers, so only the places where work runs import it (the embedded pool's
threads, the Celery worker, the engine); the web side reads models through the torch-free
``app.engine.catalog``, whose names are re-exported here for the engine's callers.

Each device keeps a small LRU of warm base pipelines; image-to-image and inpainting pipelines are
built from the same modules with ``from_pipe`` (no second copy of the weights).
"""

from __future__ import annotations

import builtins
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

from app.engine.catalog import ModelCatalog, ModelNotFound, ModelSpec, RefusedModel, inspect_model, read_json
from app.engine.text_encoders import load_minilm, package_model_dir

__all__ = ["ModelNotFound", "ModelRegistry", "ModelSpec", "PipelineMode", "RefusedModel", "dtype_for", "inspect_model"]

logger = logging.getLogger(__name__)

PipelineMode = Literal["txt2img", "img2img", "inpaint"]


@dataclass
class _Warm:
    base: DiffusionPipeline
    derived: dict[str, DiffusionPipeline] = field(default_factory=dict)


def dtype_for(device: str) -> torch.dtype:
    return torch.float16 if device.startswith("cuda") else torch.float32


class ModelRegistry(ModelCatalog):
    """The catalog's models as warm pipelines, ``cache_size`` per device."""

    def __init__(self, models_dir: Path, *, cache_size: int = 2) -> None:
        super().__init__(models_dir)
        self.cache_size = max(1, cache_size)
        self._warm: dict[str, OrderedDict[str, _Warm]] = {}
        # One worker thread uses a device at a time, but listing and preloading may run on other
        # threads: the lock keeps the LRU consistent. Loading happens under it, so two threads
        # never load the same model twice.
        self._lock = threading.RLock()

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
        index = read_json(spec.path / "model_index.json")
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
