"""Model registry: loads the catalog's pipelines lazily and keeps them warm per device.

Imports torch and diffusers, so only the places where work runs import it (the embedded pool's
threads, the Celery worker, the engine); the web side reads models through the torch-free
``app.engine.catalog``, whose names are re-exported here for the engine's callers.

Each device keeps warm base pipelines; image-to-image and inpainting pipelines are built from the
same modules with ``from_pipe`` (no second copy of the weights). What a model can run is its
family's (``app.engine.families``): UNet and transformer pipelines alike.

On CUDA a model runs in its family's half precision (float16, or bfloat16 where float16
overflows), with PyTorch's scaled-dot-product attention (diffusers' default processors), and
with model CPU offload when ``low_vram`` is set, and with the fast path of ``app.engine.fast_path``
(channels-last, fused QKV, a compiled and warmed denoiser) when ``compile`` is set. The warm cache
is bounded by memory on CUDA (the least recently used model goes when the next one would not fit
in what is free) and by count on the CPU.
"""

from __future__ import annotations

import builtins
import gc
import inspect
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import diffusers
import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    ControlNetModel,
    DiffusionPipeline,
    FluxControlNetModel,
    SD3ControlNetModel,
)

from app.engine import attention_signatures, execution_device, fast_path
from app.engine import controlnets as controlnet_folders
from app.engine.catalog import ModelCatalog, ModelNotFound, ModelSpec, RefusedModel, inspect_model, read_json
from app.engine.families import Family
from app.engine.fast_path import DEFAULT_COMPILE_MODE, CompileMode
from app.engine.single_file import convert_dropped, dropped_files
from app.engine.text_encoders import load_minilm, package_model_dir

__all__ = ["ModelNotFound", "ModelRegistry", "ModelSpec", "PipelineMode", "RefusedModel", "dtype_for", "inspect_model"]

logger = logging.getLogger(__name__)

PipelineMode = Literal["txt2img", "img2img", "inpaint"]


# How many ControlNets a device keeps warm (by name and dtype), least recently used out first.
CONTROLNET_CACHE_SIZE = 4
# A ControlNet folder's class (its config's ``_class_name``) when it is not a UNet ControlNet.
_CONTROLNET_CLASSES: dict[str, type[Any]] = {
    "FluxControlNetModel": FluxControlNetModel,
    "SD3ControlNetModel": SD3ControlNetModel,
}
# What a CUDA device keeps free beyond a model's weights, for activations and the VAE decode.
_CUDA_HEADROOM = 2 * 1024**3


@dataclass
class _Warm:
    base: DiffusionPipeline
    derived: dict[str, DiffusionPipeline] = field(default_factory=dict)


def dtype_for(device: str, family: Family | None = None) -> torch.dtype:
    """float32 on the CPU; on CUDA the family's half precision (float16 unless it needs bfloat16)."""
    if not device.startswith("cuda"):
        return torch.float32
    if family is not None and family.cuda_dtype == "bfloat16" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def weights_bytes(spec: ModelSpec) -> int:
    """The model's weights on disk: what loading it will take, at most, in the device's memory."""
    return sum(path.stat().st_size for path in spec.path.rglob("*.safetensors"))


def _free_cuda_bytes(device: str) -> int:
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


class ModelRegistry(ModelCatalog):
    """The catalog's models as warm pipelines, ``cache_size`` per device."""

    def __init__(
        self,
        models_dir: Path,
        *,
        cache_size: int = 2,
        low_vram: bool = False,
        compile: bool = False,
        compile_mode: CompileMode = DEFAULT_COMPILE_MODE,
    ) -> None:
        super().__init__(models_dir)
        self.cache_size = max(1, cache_size)
        self.low_vram = low_vram
        # STUDIO_COMPILE: the CUDA fast path (app.engine.fast_path) applied to each model as it loads.
        self.compile = compile
        self.compile_mode = compile_mode
        self._warm: dict[str, OrderedDict[str, _Warm]] = {}
        self._controlnets: dict[str, OrderedDict[tuple[str, torch.dtype], Any]] = {}
        # One worker thread uses a device at a time, but listing and preloading may run on other
        # threads: the lock keeps the LRU consistent. Loading happens under it, so two threads
        # never load the same model twice.
        self._lock = threading.RLock()

    # -- single files dropped into the models folder ------------------------------------------

    def scan(self) -> tuple[builtins.list[ModelSpec], builtins.list[RefusedModel]]:
        self.convert_dropped()
        return super().scan()

    def spec(self, name: str) -> ModelSpec:
        if not (self.models_dir / name).exists() and dropped_files(self.models_dir):
            self.convert_dropped()
        return super().spec(name)

    def convert_dropped(self) -> builtins.list[Path]:
        """Converts ``.safetensors`` checkpoints dropped into the models folder into diffusers folders."""
        # Under the lock: two threads of this process never convert the same file; another
        # process converting it too loses the rename and leaves the winner's folder in place.
        with self._lock:
            return convert_dropped(self.models_dir)

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
                spec = self.spec(name)
                self._make_room(cache, device, spec)
                warm = _Warm(self._load(spec, device))
                cache[name] = warm
            cache.move_to_end(name)
            if mode == "txt2img":
                return warm.base
            if mode not in warm.derived:
                warm.derived[mode] = self._derive(warm.base, mode)
            return warm.derived[mode]

    def controlnet(self, name: str, device: str, *, dtype: torch.dtype) -> Any:
        """The ControlNet folder ``name`` under ``models/controlnet/`` on ``device`` in ``dtype``, kept warm."""
        with self._lock:
            cache = self._controlnets.setdefault(device, OrderedDict())
            key = (name, dtype)
            model = cache.get(key)
            if model is None:
                found = controlnet_folders.find(self.models_dir, name)
                if found is None:
                    folder = controlnet_folders.controlnet_folder(self.models_dir)
                    raise ValueError(f"ControlNet {name!r} is not in {folder}")
                while len(cache) >= CONTROLNET_CACHE_SIZE:
                    cache.popitem(last=False)
                logger.info("loading ControlNet %s on %s", name, device)
                # FLUX.1 and SD3 ControlNets are transformers of their own classes.
                model_class = _CONTROLNET_CLASSES.get(found.class_name, ControlNetModel)
                model = model_class.from_pretrained(
                    found.path, torch_dtype=dtype, use_safetensors=True, local_files_only=True
                ).to(device)
                model.eval()
                attention_signatures.sign_module(model)
                cache[key] = model
            cache.move_to_end(key)
            return model

    def _make_room(self, cache: OrderedDict[str, _Warm], device: str, spec: ModelSpec) -> None:
        """Evicts least recently used models: by free memory on CUDA, by count elsewhere."""
        if device.startswith("cuda") and not self.low_vram:
            needed = weights_bytes(spec) + _CUDA_HEADROOM
            while cache and _free_cuda_bytes(device) < needed:
                self._evict(cache, device)
            return
        while len(cache) >= self.cache_size:
            self._evict(cache, device)

    def _evict(self, cache: OrderedDict[str, _Warm], device: str) -> None:
        evicted, warm = cache.popitem(last=False)
        logger.info("evicted %s from %s", evicted, device)
        # Drop every reference before asking CUDA for the memory back.
        warm.derived.clear()
        del warm
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()

    @staticmethod
    def _derive(base: DiffusionPipeline, mode: PipelineMode) -> DiffusionPipeline:
        """The image-to-image or inpainting pipeline on the base's modules.

        A base that already takes the mode's inputs (FLUX.1 Fill takes a mask) is its own.
        """
        parameters = inspect.signature(base.__call__).parameters
        if mode == "inpaint" and "mask_image" in parameters:
            return base
        builder = AutoPipelineForImage2Image if mode == "img2img" else AutoPipelineForInpainting
        try:
            derived = builder.from_pipe(base)
        except ValueError:
            # diffusers' auto pipelines don't map every inpainting twin (FLUX.2 [klein]'s): found by its name.
            twin = getattr(diffusers, type(base).__name__.replace("Pipeline", "InpaintPipeline"), None)
            if mode != "inpaint" or twin is None:
                raise
            derived = twin.from_pipe(base)
        derived.set_progress_bar_config(disable=True)
        derived._studio_model_path = base._studio_model_path
        derived._studio_family = base._studio_family
        derived._studio_compiled = getattr(base, "_studio_compiled", None)  # the fast path's, on shared modules
        if (device := execution_device.kept(base)) is not None:
            execution_device.keep(derived, device)  # on the base's modules, so on its device
        return derived

    def _load(self, spec: ModelSpec, device: str) -> DiffusionPipeline:
        logger.info("loading model %s on %s", spec.name, device)
        dtype = dtype_for(device, spec.family)
        kwargs: dict[str, Any] = {"torch_dtype": dtype, "use_safetensors": True, "local_files_only": True}
        index = read_json(spec.path / "model_index.json")
        if "safety_checker" in index:
            kwargs.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        if spec.text_encoder_package:
            package_model_dir(spec.text_encoder_package)  # fails early with a clear message
            tokenizer, encoder = load_minilm(max_tokens=spec.max_tokens or 77, package=spec.text_encoder_package)
            kwargs.update(tokenizer=tokenizer, text_encoder=encoder.to(dtype))
        if spec.capabilities.txt2img and not spec.is_inpainting_model:
            pipeline = AutoPipelineForText2Image.from_pretrained(spec.path, **kwargs)
        else:
            # A folder that only repaints (FLUX.1 Fill, an SD inpainting UNet) loads as its own class.
            pipeline = DiffusionPipeline.from_pretrained(spec.path, **kwargs)
        if device.startswith("cuda") and self.low_vram:
            _offload(pipeline, device)
        else:
            pipeline.to(device)
            execution_device.keep(pipeline, device)
        pipeline.set_progress_bar_config(disable=True)
        # Where optional parts (IP-Adapter weights) are looked up later, and what the family allows.
        pipeline._studio_model_path = spec.path
        pipeline._studio_family = spec.family
        if self.compile and not (device.startswith("cuda") and self.low_vram):
            # Compiled, fused and warmed at the model's default size before it serves a job (a no-op off CUDA).
            fast_path.prepare(
                pipeline, device, mode=self.compile_mode, width=spec.default_width, height=spec.default_height
            )
        attention_signatures.sign(pipeline)
        return pipeline


def _offload(pipeline: DiffusionPipeline, device: str) -> None:
    """Keeps the weights in CPU memory and moves each component onto ``device`` while it runs."""
    try:
        pipeline.enable_model_cpu_offload(device=device)
    except (ImportError, ValueError, RuntimeError) as error:
        # Model offload needs accelerate; diffusers' own group offloading does not.
        logger.info("model CPU offload unavailable (%s); offloading by blocks", error)
        pipeline.enable_group_offload(onload_device=torch.device(device), offload_type="leaf_level")
