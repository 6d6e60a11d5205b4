"""Batched painting: several jobs' specs that share one pipeline call, painted in that one call.

Specs share a call when everything but their prompts, negative prompts, seeds, image counts and
source images is the same (model, mode, size, steps, scheduler, guidance, strength, LoRAs) and
none asks for what a call carries once for the whole batch (style references, regions, an
inpainting mask, an interpolation, a tiled VAE) or for weighted prompts (their embeddings are
built per prompt by compel; such a spec is painted alone by ``runner.run``).

Every image keeps its own generator, seeded as it would be alone (image ``i`` of a spec uses
``seed + i``), so it equals its solo painting up to the float noise of a larger matrix product
and can be painted again from its seed. Each spec has its own step callback: one that says stop
drops that spec from the batch (its images are not returned) while the others go on; the call
stops only when every spec has been dropped.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Hashable, Sequence
from dataclasses import MISSING, fields
from typing import Any

import torch

from app.engine import prompt_cache
from app.engine.attention_maps import recording
from app.engine.families import refusal
from app.engine.loras import applied
from app.engine.previews import offer
from app.engine.prompt_weights import has_weighting
from app.engine.registry import ModelRegistry
from app.engine.runner import (
    Cancelled,
    GenerationResult,
    GenerationSpec,
    StepCallback,
    StepProgress,
    _vae_tiling,
    image_seeds,
    pipeline_for,
    sampler_arguments,
)

# What each image of a batch may have of its own.
_PER_IMAGE = ("prompt", "negative_prompt", "seed", "n_images", "init_image")
# What the call is made of: equal across a batch.
_SHARED = ("model", "mode", "width", "height", "steps", "scheduler", "guidance", "strength")
# How a job hears of its progress, which changes no pixel.
_REPORTING = ("preview_every", "record_attention")


def _defaults() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for spec_field in fields(GenerationSpec):
        if spec_field.default is not MISSING:
            found[spec_field.name] = spec_field.default
        elif spec_field.default_factory is not MISSING:
            found[spec_field.name] = spec_field.default_factory()
    return found


_DEFAULTS = _defaults()


def call_key(spec: GenerationSpec) -> tuple[Hashable, ...] | None:
    """What a spec's pipeline call is made of, besides texts, seeds and sources; None: paint it alone.

    Every field of the spec that is neither an image's own, nor the shared call's, nor reporting
    (style references, regions, a mask, an interpolation, a tiled VAE, ControlNets, an upscaler,
    whatever is added later) must be at its default: such a spec is painted alone.
    """
    if spec.mode not in ("txt2img", "img2img") or (spec.mode == "img2img" and spec.init_image is None):
        return None
    known = {*_PER_IMAGE, *_SHARED, *_REPORTING, "loras"}
    if any(getattr(spec, name) != default for name, default in _DEFAULTS.items() if name not in known):
        return None
    if has_weighting(spec.prompt) or has_weighting(spec.negative_prompt):
        return None  # compel builds weighted embeddings one prompt at a time
    return (
        *(getattr(spec, name) for name in _SHARED if name != "strength"),
        spec.strength if spec.mode == "img2img" else None,
        tuple((lora.name, lora.weight) for lora in spec.loras),
        # Some families read an absent negative prompt otherwise than an empty one (SDXL's zeroed
        # negative embeddings, FLUX's true CFG only with a negative): never mix the two.
        bool(spec.negative_prompt),
    )


def groups(specs: Sequence[GenerationSpec]) -> list[list[int]]:
    """The specs' indexes in groups that can each share one call, in order of their first member."""
    grouped: dict[Hashable, list[int]] = {}
    alone: list[list[int]] = []
    order: list[list[int]] = []
    for index, spec in enumerate(specs):
        key = call_key(spec)
        if key is None:
            alone.append([index])
            order.append(alone[-1])
        elif key in grouped:
            grouped[key].append(index)
        else:
            grouped[key] = [index]
            order.append(grouped[key])
    return order


def run_batch(
    registry: ModelRegistry,
    specs: Sequence[GenerationSpec],
    *,
    device: str,
    on_step: Sequence[StepCallback | None] | None = None,
) -> list[GenerationResult | None]:
    """Paints ``specs`` in one pipeline call on ``device``: each spec's result, None for one dropped.

    ``on_step[i]`` hears spec ``i``'s progress (with a preview of its first image); when it says
    stop, spec ``i`` leaves the batch: it hears nothing more and gets None. Raises ``Cancelled``
    once every spec with a callback has left, ``ValueError`` for specs that cannot share a call.
    """
    started = time.perf_counter()
    if not specs:
        return []
    callbacks = list(on_step) if on_step is not None else [None] * len(specs)
    if len(callbacks) != len(specs):
        raise ValueError(f"{len(specs)} specs but {len(callbacks)} step callbacks")

    # 1. the call they share: one key, a mode the model can paint
    first = specs[0]
    key = call_key(first)
    if key is None or any(call_key(spec) != key for spec in specs[1:]):
        raise ValueError("these specs cannot share one pipeline call (see app.engine.batching.call_key)")
    model = registry.spec(first.model)
    why = refusal(model.family, model.capabilities, mode=first.mode)
    if why is not None:
        raise ValueError(why)
    capabilities = model.capabilities
    pipeline = pipeline_for(registry, first, device)

    # 2. one prompt, negative prompt, source and generator per image; each spec's images seeded
    #    as it would seed them alone, generators on the CPU so results match across devices
    seeds = [image_seeds(spec.seed, spec.n_images) for spec in specs]
    offsets = [sum(spec.n_images for spec in specs[:index]) for index in range(len(specs))]
    per_image = [spec for spec in specs for _ in range(spec.n_images)]
    arguments: dict[str, Any] = {
        "prompt": [spec.prompt for spec in per_image],
        "num_inference_steps": first.steps,
        "num_images_per_prompt": 1,
        "generator": [torch.Generator("cpu").manual_seed(seed) for spec_seeds in seeds for seed in spec_seeds],
        "callback_on_step_end_tensor_inputs": ["latents"],
        "output_type": "pil",
        "width": first.width,
        "height": first.height,
    }
    if capabilities.negative_prompt:
        # As runner.run: an empty negative prompt is None, except where guidance needs one (Qwen-Image).
        empty = " " if model.family.cfg_needs_negative and first.guidance > 1 else None
        if first.negative_prompt:
            arguments["negative_prompt"] = [spec.negative_prompt for spec in per_image]
        elif empty is not None:
            arguments["negative_prompt"] = [empty] * len(per_image)
        else:
            arguments["negative_prompt"] = None
    if capabilities.guidance != "none":
        arguments[model.family.guidance_argument] = first.guidance
    if first.mode == "img2img":
        strength = first.strength if first.strength is not None else 0.75
        arguments.update(image=[spec.init_image for spec in per_image], strength=strength)
    arguments.update(sampler_arguments(pipeline))  # as runner.run: TCD's gamma

    # 3. each spec's progress through its own callback; a spec told to stop leaves the batch
    live = [True] * len(specs)

    def step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        total = int(getattr(pipe, "num_timesteps", 0) or first.steps)
        done = step + 1
        latents = callback_kwargs["latents"]
        for index, callback in enumerate(callbacks):
            if callback is None or not live[index]:
                continue
            spec = specs[index]
            render = None
            if spec.preview_every > 0 and done % spec.preview_every == 0 and done < total and latents.ndim == 4:
                # Painted only if the callback reads it (a worker does while someone watches the job).
                render = offer(pipe, latents[offsets[index] : offsets[index] + 1])
            if not callback(StepProgress(step=done, total=total, render=render)):
                live[index] = False
        if not any(live):  # a spec without a callback never leaves
            raise Cancelled()
        return callback_kwargs

    arguments["callback_on_step_end"] = step_end
    accepted = inspect.signature(pipeline.__call__).parameters
    arguments = {name: value for name, value in arguments.items() if name in accepted}
    _vae_tiling(pipeline, device, first.width * first.height)

    # 4. run, with the shared LoRAs loaded for this call only
    #    and the attention maps recorded: one per image of the batch, read against its own job's prompt
    with (
        applied(pipeline, first.loras, registry.models_dir),
        torch.inference_mode(),
        recording(
            pipeline,
            width=first.width,
            height=first.height,
            enabled=any(spec.record_attention for spec in specs),
            steps=first.steps,
        ) as recorded,
    ):
        # As runner.run: each prompt's kept embeddings (never with LoRAs, which may patch the text encoder).
        prompt_cache.reuse(pipeline, model.family, arguments, loras=bool(first.loras), device=device)
        output = pipeline(**arguments)
    images = list(output.images)
    attention = recorded.word_maps(getattr(pipeline, "tokenizer", None), [spec.prompt for spec in per_image])

    # 5. each spec's own images back, in its own order; a dropped spec gets None
    seconds = time.perf_counter() - started
    return [
        GenerationResult(
            images=images[offsets[index] : offsets[index] + spec.n_images],
            seeds=seeds[index],
            seconds=seconds,
            attention=attention[offsets[index] : offsets[index] + spec.n_images],
        )
        if live[index]
        else None
        for index, spec in enumerate(specs)
    ]
