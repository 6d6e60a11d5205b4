"""The GPU fast path (``STUDIO_COMPILE=1``): channels-last, fused QKV and a compiled denoiser, warmed once per model.

On CUDA, when a model loads (``ModelRegistry._load``):

1. the UNet's weights go channels-last, the layout cuDNN's convolution kernels are fastest in;
2. attention projections are fused (``fuse_qkv_projections``: one matmul for query, key and value in
   self-attention, key and value in cross-attention) where the pipeline or the transformer offers it;
3. the denoiser (UNet or transformer) is compiled in place with ``torch.compile``, mode
   ``max-autotune-no-cudagraphs`` by default (``STUDIO_COMPILE_MODE``): autotuned Triton kernels
   without CUDA graphs, because a graph replays fixed input buffers, and the studio's calls vary
   what graphs cannot follow (batch sizes from dynamic batching, LoRAs loaded for one call,
   per-call attention processors for regions and style, step callbacks that read the latents).
   Compiling in place (``module.compile``) keeps the module the pipeline and PEFT know, so LoRAs
   still load into it;
4. one short call at the model's default size compiles the graph (the warm-up), so the first job
   does not pay it. A new size or batch size compiles once more on its first call (torch marks
   the changed dimension dynamic then, so later sizes reuse that graph).

On the CPU every step is skipped (``prepare`` returns False): inductor's CPU code gains little for
the studio's small models, and the warm-up would delay the start of every CPU worker.

A LoRA needs the unfused projections (PEFT wraps ``to_q``, ``to_k`` and ``to_v``, which the fused
processor bypasses): ``plain_attention`` swaps in the plain SDPA processors for such a call.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch

logger = logging.getLogger(__name__)

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
DEFAULT_COMPILE_MODE: CompileMode = "max-autotune-no-cudagraphs"
WARM_UP_STEPS = 2


def denoiser_of(pipeline: Any) -> torch.nn.Module | None:
    """The pipeline's denoiser: its UNet, or its transformer."""
    for name in ("unet", "transformer"):
        module = getattr(pipeline, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


def fuse_projections(pipeline: Any) -> bool:
    """Fuses the denoiser's attention projections where diffusers offers it; False where it does not."""
    try:
        if isinstance(getattr(pipeline, "unet", None), torch.nn.Module):
            # The pipeline's own method also sets the fused processors; the VAE stays as it is.
            pipeline.fuse_qkv_projections(unet=True, vae=False)
        else:
            denoiser: Any = denoiser_of(pipeline)
            if denoiser is None or not hasattr(denoiser, "fuse_qkv_projections"):
                return False
            denoiser.fuse_qkv_projections()
    except (ValueError, AttributeError, NotImplementedError, TypeError) as error:
        # Added KV projections (IP-Adapter folded in) and some attention classes refuse to fuse.
        logger.info("attention projections left unfused: %s", error)
        return False
    # Marked on the module, which the image-to-image and inpainting pipelines derived from this one share.
    fused = denoiser_of(pipeline)
    if fused is not None:
        fused._studio_fused_qkv = True  # type: ignore[assignment]
    return True


def compile_denoiser(pipeline: Any, mode: CompileMode) -> bool:
    denoiser = denoiser_of(pipeline)
    if denoiser is None:
        return False
    denoiser.compile(mode=None if mode == "default" else mode)
    # Read by what would change the denoiser per call (attention maps); derived pipelines copy it.
    pipeline._studio_compiled = mode
    return True


def warm_up(pipeline: Any, width: int, height: int) -> float:
    """One short call at ``width`` x ``height``, so the compiled graph is built before the first job; seconds taken."""
    arguments: dict[str, Any] = {
        "prompt": "a warm-up painting",
        "num_inference_steps": WARM_UP_STEPS,
        "width": width,
        "height": height,
        "output_type": "latent",
        "generator": torch.Generator("cpu").manual_seed(0),
    }
    accepted = inspect.signature(pipeline.__call__).parameters
    started = time.perf_counter()
    with torch.inference_mode():
        pipeline(**{key: value for key, value in arguments.items() if key in accepted})
    return time.perf_counter() - started


def prepare(pipeline: Any, device: str, *, mode: CompileMode, width: int, height: int, warm: bool = True) -> bool:
    """Channels-last, fused QKV, a compiled denoiser and its warm-up on CUDA; nothing elsewhere (returns False)."""
    if not device.startswith("cuda"):
        logger.info("STUDIO_COMPILE is for CUDA devices; %s paints as it is", device)
        return False
    if isinstance(getattr(pipeline, "unet", None), torch.nn.Module):
        pipeline.unet.to(memory_format=torch.channels_last)
    fuse_projections(pipeline)
    if not compile_denoiser(pipeline, mode):
        return False
    if warm:
        try:
            seconds = warm_up(pipeline, width, height)
        except Exception:  # a failed warm-up leaves a working pipeline: the first job compiles instead
            logger.exception("compile warm-up failed at %dx%d on %s", width, height, device)
        else:
            logger.info("compiled the denoiser (%s) and warmed it at %dx%d in %.1f s", mode, width, height, seconds)
    return True


@contextmanager
def plain_attention(pipeline: Any, *, active: bool) -> Iterator[None]:
    """For the block, a fused pipeline's denoiser attends through separate ``to_q``, ``to_k`` and ``to_v``.

    Used while LoRAs are loaded: PEFT wraps the separate projections, which the fused ones bypass. A UNet
    gets back the processors it had before fusing; a transformer unfuses and fuses again after.
    """
    denoiser: Any = denoiser_of(pipeline)
    if not active or denoiser is None or not getattr(denoiser, "_studio_fused_qkv", False):
        yield
        return
    original = getattr(denoiser, "original_attn_processors", None)
    if original:
        fused = dict(denoiser.attn_processors)
        denoiser.set_attn_processor(dict(original))
        try:
            yield
        finally:
            denoiser.set_attn_processor(fused)
        return
    denoiser.unfuse_qkv_projections()
    try:
        yield
    finally:
        denoiser.fuse_qkv_projections()
