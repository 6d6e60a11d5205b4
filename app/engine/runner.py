"""Runner: one generation spec in, images out, with step progress and prompt cancellation."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image

from app.engine.previews import latents_preview
from app.engine.registry import ModelRegistry, PipelineMode

logger = logging.getLogger(__name__)

SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}),
    "dpm++-2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpm++-2m-karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "unipc": (UniPCMultistepScheduler, {}),
    # Without skip_prk_steps PNDM cannot plan fewer than 4 steps (set_timesteps fails); SD ships it skipped.
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "ddpm": (DDPMScheduler, {}),
}
DEFAULT_SCHEDULER = "dpm++-2m"


class Cancelled(Exception):
    """The job was cancelled while it ran; nothing it produced should be kept."""


@dataclass(frozen=True)
class StepProgress:
    step: int
    total: int
    preview: Image.Image | None = None


# Called after every denoising step; returns True to keep going, False to cancel.
StepCallback = Callable[[StepProgress], bool]


@dataclass
class GenerationSpec:
    model: str
    prompt: str
    seed: int
    negative_prompt: str = ""
    steps: int = 20
    guidance: float = 7.0
    width: int = 64
    height: int = 64
    n_images: int = 1
    scheduler: str = DEFAULT_SCHEDULER
    mode: PipelineMode = "txt2img"
    strength: float | None = None
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None
    preview_every: int = 5
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationResult:
    images: list[Image.Image]
    seeds: list[int]
    seconds: float


def image_seeds(seed: int, n_images: int) -> list[int]:
    """Image ``i`` of a batch uses ``seed + i``, so any single image can be painted again alone."""
    return [(seed + index) % 2**32 for index in range(n_images)]


def make_scheduler(name: str, base_config: Any) -> SchedulerMixin:
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    scheduler_class, overrides = SCHEDULERS[name]
    return scheduler_class.from_config(base_config, **overrides)


def run(
    registry: ModelRegistry,
    spec: GenerationSpec,
    *,
    device: str,
    on_step: StepCallback | None = None,
) -> GenerationResult:
    """Paints ``spec`` on ``device``. Raises ``Cancelled`` as soon as ``on_step`` says stop."""
    started = time.perf_counter()

    # 1. resolve the pipeline for the mode, on a scheduler of the asked kind
    pipeline = registry.pipeline(spec.model, device, spec.mode)
    base_config = getattr(pipeline, "_studio_scheduler_config", None) or pipeline.scheduler.config
    pipeline._studio_scheduler_config = base_config  # the folder's own config, before any swap
    pipeline.scheduler = make_scheduler(spec.scheduler, base_config)

    # 2. seeds: one generator per image, created on the CPU so results match across devices
    seeds = image_seeds(spec.seed, spec.n_images)
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]

    # 3. progress and cancellation through the step-end callback
    def step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            total = int(getattr(pipe, "num_timesteps", 0) or spec.steps)
            preview = None
            done = step + 1
            if spec.preview_every > 0 and done % spec.preview_every == 0 and done < total:
                preview = latents_preview(pipe, callback_kwargs["latents"][:1])
            if not on_step(StepProgress(step=done, total=total, preview=preview)):
                raise Cancelled()
        return callback_kwargs

    # 4. run the pipeline
    arguments: dict[str, Any] = {
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt or None,
        "num_inference_steps": spec.steps,
        "guidance_scale": spec.guidance,
        "num_images_per_prompt": spec.n_images,
        "generator": generators,
        "callback_on_step_end": step_end,
        "callback_on_step_end_tensor_inputs": ["latents"],
        "output_type": "pil",
    }
    if spec.mode == "txt2img":
        arguments.update(width=spec.width, height=spec.height)
    else:
        if spec.init_image is None:
            raise ValueError(f"mode {spec.mode} needs an init image")
        arguments.update(image=spec.init_image, strength=spec.strength if spec.strength is not None else 0.75)
        if spec.mode == "inpaint":
            if spec.mask_image is None:
                raise ValueError("inpainting needs a mask image")
            arguments.update(mask_image=spec.mask_image, width=spec.width, height=spec.height)
    with torch.inference_mode():
        output = pipeline(**arguments)
    images = list(output.images)
    return GenerationResult(images=images, seeds=seeds, seconds=time.perf_counter() - started)
