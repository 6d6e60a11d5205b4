"""Interpolation: frames that walk the latent space from one prompt and seed to another.

The starting noise is interpolated spherically (slerp: Gaussian noise lives near a sphere, and a
straight line between two noises passes through lower-norm noise that paints washed-out images);
the prompt embeddings, negative ones included, linearly. Every frame is painted alone with the
spec's steps, guidance, scheduler and size, so frame 0 is the spec's own first image and the last
frame is the image the target's prompt and seed paint with the same settings.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from diffusers.utils.torch_utils import randn_tensor

from app.engine.previews import offer
from app.engine.registry import ModelRegistry
from app.engine.runner import (
    Cancelled,
    GenerationResult,
    GenerationSpec,
    InterpolationTarget,
    StepCallback,
    StepProgress,
    pipeline_for,
)

MIN_FRAMES, MAX_FRAMES = 2, 64
# encode_prompt answers (embeds, negative embeds) on SD and adds the pooled pair on SDXL.
EMBEDDING_ARGUMENTS = (
    "prompt_embeds",
    "negative_prompt_embeds",
    "pooled_prompt_embeds",
    "negative_pooled_prompt_embeds",
)


def slerp(start: torch.Tensor, end: torch.Tensor, t: float, *, parallel: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation from ``start`` (t=0) to ``end`` (t=1), computed in float32.

    Nearly parallel tensors fall back to a straight line, where the two paths coincide anyway.
    """
    a, b = start.float(), end.float()
    cosine = float(torch.sum(a * b) / (a.norm() * b.norm()).clamp_min(1e-12))
    if abs(cosine) > parallel:
        mixed = (1.0 - t) * a + t * b
    else:
        theta = torch.arccos(torch.tensor(cosine, dtype=torch.float64))
        sin_theta = torch.sin(theta)
        mixed = float(torch.sin((1.0 - t) * theta) / sin_theta) * a + float(torch.sin(t * theta) / sin_theta) * b
    return mixed.to(start.dtype)


def lerp(start: torch.Tensor, end: torch.Tensor, t: float) -> torch.Tensor:
    return (1.0 - t) * start + t * end


def frame_positions(frames: int) -> list[float]:
    """``frames`` evenly spaced positions from 0 to 1, both ends included."""
    if not MIN_FRAMES <= frames <= MAX_FRAMES:
        raise ValueError(f"an interpolation has between {MIN_FRAMES} and {MAX_FRAMES} frames (got {frames})")
    return [index / (frames - 1) for index in range(frames)]


def _noise(seed: int, shape: tuple[int, ...], dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Generator]:
    """The starting noise the pipeline draws for ``seed``, and the CPU generator just past that draw.

    Drawn exactly as the pipeline's ``prepare_latents`` draws it for one image, so a run with this
    noise passed as ``latents`` paints what a run with the seed paints; the generator goes on to
    feed the noise that stochastic schedulers (euler-a, ddpm) add during the steps.
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = randn_tensor(shape, generator=[generator], device=torch.device(device), dtype=dtype)
    return noise, generator


def _encode(pipeline: Any, prompt: str, negative_prompt: str, device: str, guided: bool) -> dict[str, torch.Tensor]:
    encoded = pipeline.encode_prompt(
        prompt=prompt,
        device=torch.device(device),
        num_images_per_prompt=1,
        do_classifier_free_guidance=guided,
        negative_prompt=negative_prompt or None,
    )
    return {name: value for name, value in zip(EMBEDDING_ARGUMENTS, encoded, strict=False) if value is not None}


def _step_end(on_step: StepCallback | None, *, done_before: int, total: int, every: int) -> Any:
    """The step-end callback of one frame: progress over all frames, and cancellation."""

    def step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            done = done_before + step + 1
            render = None
            if every > 0 and done % every == 0 and done < total:
                render = offer(pipe, callback_kwargs["latents"][:1])  # painted only if on_step reads it
            if not on_step(StepProgress(step=done, total=total, render=render)):
                raise Cancelled()
        return callback_kwargs

    return step_end


def interpolate(
    registry: ModelRegistry,
    spec: GenerationSpec,
    *,
    device: str,
    on_step: StepCallback | None = None,
) -> GenerationResult:
    """Paints ``spec.interpolate_to.frames`` frames from ``spec``'s prompt and seed to the target's."""
    target: InterpolationTarget | None = spec.interpolate_to
    if target is None:
        raise ValueError("an interpolation needs a target prompt and seed")
    if spec.mode != "txt2img" or spec.style_references:
        raise ValueError("interpolation walks between prompt paintings; image, mask and style inputs are not used")
    started = time.perf_counter()
    positions = frame_positions(target.frames)

    # 1. the txt2img pipeline on the asked scheduler
    pipeline = pipeline_for(registry, spec, device)
    guided = spec.guidance > 1 and getattr(pipeline.unet.config, "time_cond_proj_dim", None) is None

    # 2. both ends' prompt embeddings (negative ones too), encoded as the pipeline encodes them
    with torch.inference_mode():
        embeds_a = _encode(pipeline, spec.prompt, spec.negative_prompt, device, guided)
        embeds_b = _encode(pipeline, target.prompt, target.negative_prompt, device, guided)

    # 3. both ends' starting noise, of the pipeline's latent shape and dtype
    shape = (
        1,
        pipeline.unet.config.in_channels,
        spec.height // pipeline.vae_scale_factor,
        spec.width // pipeline.vae_scale_factor,
    )
    dtype = embeds_a["prompt_embeds"].dtype
    noise_a, _ = _noise(spec.seed, shape, dtype, device)
    noise_b, _ = _noise(target.seed, shape, dtype, device)

    # 4. one frame at a time (memory stays that of one image); progress counts every frame's steps
    total = spec.steps * len(positions)
    images = []
    seeds = []
    for frame, t in enumerate(positions):
        # Stochastic schedulers add noise at every step: the nearer end's generator feeds it, so both
        # ends match their single runs exactly (the walk may jump at the middle on those schedulers).
        nearer_seed = spec.seed if t < 0.5 else target.seed
        _, generator = _noise(nearer_seed, shape, dtype, device)
        arguments: dict[str, Any] = {
            name: lerp(embeds_a[name], embeds_b[name], t) for name in embeds_a if name in embeds_b
        }
        arguments.update(
            latents=slerp(noise_a, noise_b, t),
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance,
            width=spec.width,
            height=spec.height,
            generator=[generator],
            callback_on_step_end=_step_end(
                on_step, done_before=frame * spec.steps, total=total, every=spec.preview_every
            ),
            callback_on_step_end_tensor_inputs=["latents"],
            output_type="pil",
        )
        with torch.inference_mode():
            output = pipeline(**arguments)
        images.append(output.images[0])
        seeds.append(nearer_seed)
    return GenerationResult(images=images, seeds=seeds, seconds=time.perf_counter() - started)
