"""Runner: one generation spec in, images out, with step progress and prompt cancellation."""

from __future__ import annotations

import copy
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    TCDScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image

from app.engine import (
    attention_maps,
    attention_signatures,
    control_pipelines,
    joint_style,
    prompt_cache,
    prompt_weights,
    regions,
    style,
)
from app.engine.attention_maps import WordMaps
from app.engine.control_pipelines import ControlGuide
from app.engine.families import Family, refusal
from app.engine.inpaint import Outpaint, composite, extend_canvas, fit_mask
from app.engine.loras import LoraUse, applied
from app.engine.previews import StepProgress, offer
from app.engine.regions import RegionPrompt
from app.engine.registry import ModelRegistry, PipelineMode
from app.engine.style import StyleReference
from app.engine.upscaling import enlarge_named

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
    # Few-step samplers for distilled models and LoRAs (LCM, TCD, Hyper-SD, Turbo): 1-8 steps, guidance 0 or 1.
    "lcm": (LCMScheduler, {}),
    "tcd": (TCDScheduler, {}),
}
DEFAULT_SCHEDULER = "dpm++-2m"
# TCD's gamma (the pipeline's ``eta``): the share of each step's noise drawn afresh, 0.3 as TCD's authors advise
# (0 is deterministic and softer, 1 is LCM's sampling).
TCD_GAMMA = 0.3


class Cancelled(Exception):
    """The job was cancelled while it ran; nothing it produced should be kept."""


# Called after every denoising step; returns True to keep going, False to cancel.
StepCallback = Callable[[StepProgress], bool]


@dataclass(frozen=True)
class InterpolationTarget:
    """Where an interpolation walks to from the spec's own prompt and seed (see ``interpolate``)."""

    prompt: str
    seed: int
    frames: int
    negative_prompt: str = ""


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
    # img2img and inpaint: how much of the source is repainted (1 = all of it)
    strength: float | None = None
    init_image: Image.Image | None = None
    # inpaint: white = repaint; blurred by mask_blur pixels when compositing over the source
    mask_image: Image.Image | None = None
    mask_blur: float = 4.0
    outpaint: Outpaint | None = None
    # style reference
    style_references: list[StyleReference] = field(default_factory=list)
    style_strength: float = 0.5
    style_method: str = "shared-attention"
    # interpolation: ``frames`` images walking from this spec's prompt and seed to the target's
    interpolate_to: InterpolationTarget | None = None
    # LoRAs loaded for this call only (see app.engine.loras)
    loras: list[LoraUse] = field(default_factory=list)
    # upscaling: the VAE encodes and decodes in tiles at any size, so a large canvas stays within memory
    tiled_vae: bool = False
    # upscaling: an upscaler network (its name under upscalers/) enlarges init_image to the size first
    upscaler: str | None = None
    # regional prompts: a prompt per box, by masked cross-attention (see app.engine.regions)
    regions: list[RegionPrompt] = field(default_factory=list)
    # ControlNet guides: images, their pre-processors, ControlNets, weights and spans (see app.engine.control_pipelines)
    control: list[ControlGuide] = field(default_factory=list)
    preview_every: int = 5
    # where each word of the prompt landed: cross-attention maps recorded during the call (every family)
    record_attention: bool = True


@dataclass
class GenerationResult:
    images: list[Image.Image]
    seeds: list[int]
    seconds: float
    # one per image: its prompt's words and their attention maps, None where none were recorded
    attention: list[WordMaps | None] = field(default_factory=list)


def image_seeds(seed: int, n_images: int) -> list[int]:
    """Image ``i`` of a batch uses ``seed + i``, so any single image can be painted again alone."""
    return [(seed + index) % 2**32 for index in range(n_images)]


def make_scheduler(name: str, base_config: Any) -> SchedulerMixin:
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    scheduler_class, overrides = SCHEDULERS[name]
    return scheduler_class.from_config(base_config, **overrides)


def sampler_arguments(pipeline: Any) -> dict[str, Any]:
    """What the pipeline's call takes for its scheduler: TCD's gamma (as ``eta``); nothing for the others."""
    return {"eta": TCD_GAMMA} if isinstance(pipeline.scheduler, TCDScheduler) else {}


# Above this many pixels the VAE decodes in tiles on CUDA, so a large canvas fits in memory.
VAE_TILING_PIXELS = 1536 * 1536


def pipeline_for(registry: ModelRegistry, spec: GenerationSpec, device: str, *, scheduler: str | None = None) -> Any:
    """The warm pipeline for ``spec.mode`` on ``device``, on a fresh scheduler of the asked kind.

    Flow-matching families keep the scheduler their folder ships: the studio's schedulers are
    noise-prediction samplers they were not trained for.
    """
    pipeline = registry.pipeline(spec.model, device, spec.mode)
    family: Family | None = getattr(pipeline, "_studio_family", None)
    if family is not None and not family.capabilities.schedulers:
        return pipeline
    base_config = getattr(pipeline, "_studio_scheduler_config", None) or pipeline.scheduler.config
    pipeline._studio_scheduler_config = base_config  # the folder's own config, before any swap
    # Each call gets a fresh scheduler (they keep state from step to step): a copy of one built once
    # per kind, as building from the config (signature reads, validation) costs 1-2 ms a job on the CPU.
    templates: dict[str, SchedulerMixin] = pipeline.__dict__.setdefault("_studio_scheduler_templates", {})
    name = scheduler or spec.scheduler
    if name not in templates:
        templates[name] = make_scheduler(name, base_config)
    pipeline.scheduler = copy.deepcopy(templates[name])
    return pipeline


def run(
    registry: ModelRegistry,
    spec: GenerationSpec,
    *,
    device: str,
    on_step: StepCallback | None = None,
) -> GenerationResult:
    """Paints ``spec`` on ``device``. Raises ``Cancelled`` as soon as ``on_step`` says stop."""
    if spec.interpolate_to is not None:
        from app.engine.interpolate import interpolate  # built on this module, so imported late

        return interpolate(registry, spec, device=device, on_step=on_step)
    started = time.perf_counter()

    # 1. inputs: an outpaint canvas replaces the source and its mask
    init_image, mask_image = spec.init_image, spec.mask_image
    width, height = spec.width, spec.height
    if spec.mode == "inpaint":
        if init_image is None or mask_image is None:
            raise ValueError("inpainting needs an image and a mask")
        if spec.outpaint is not None and spec.outpaint.any:
            init_image, mask_image = extend_canvas(init_image, mask_image, spec.outpaint)
        else:
            mask_image = fit_mask(mask_image, init_image.size)[0]
        width, height = init_image.size
    elif spec.mode == "img2img" and init_image is None:
        raise ValueError("image-to-image needs a source image")
    if spec.upscaler is not None and init_image is not None and spec.mode == "img2img":
        init_image = enlarge_named(init_image, spec.upscaler, registry.models_dir, size=(width, height), device=device)

    # 2. what the model's family can do: refuse what it can't before loading anything more
    model = registry.spec(spec.model)
    outpainting = spec.mode == "inpaint" and spec.outpaint is not None and spec.outpaint.any
    style_method = spec.style_method if spec.style_references else None
    asked = "outpaint" if outpainting else spec.mode
    why = refusal(model.family, model.capabilities, mode=asked, style_method=style_method)
    if why is not None:
        raise ValueError(why)
    capabilities = model.capabilities

    # 3. the pipeline for the mode, on a scheduler of the asked kind (UNet style inverts with DDIM)
    shared = bool(spec.style_references) and spec.style_method == "shared-attention"
    styled = shared and model.family.denoiser == "unet"
    joint_styled = shared and not styled
    pipeline = pipeline_for(registry, spec, device, scheduler="ddim" if styled else spec.scheduler)
    if control_pipelines.active(spec.control):
        if spec.style_references:
            raise ValueError("ControlNets guide prompt and inpaint jobs, not style jobs")
        # The same mode's ControlNet pipeline on the warm modules, for this call only.
        pipeline = control_pipelines.controlled(registry, pipeline, spec.control, mode=spec.mode, device=device)

    # 4. seeds: one generator per image, created on the CPU so results match across devices
    seeds = image_seeds(spec.seed, spec.n_images)
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]

    arguments: dict[str, Any] = {
        "prompt": spec.prompt,
        "num_inference_steps": spec.steps,
        "num_images_per_prompt": spec.n_images,
        "generator": generators,
        "callback_on_step_end_tensor_inputs": ["latents"],
        "output_type": "pil",
    }
    arguments.update(sampler_arguments(pipeline))
    if capabilities.negative_prompt:
        # An empty negative prompt is None, except where guidance needs one to run at all (Qwen-Image).
        empty = " " if model.family.cfg_needs_negative and spec.guidance > 1 else None
        arguments["negative_prompt"] = spec.negative_prompt or empty
    if capabilities.guidance != "none":
        arguments[model.family.guidance_argument] = spec.guidance
    # Every mode names its size: a transformer's image-to-image otherwise paints at its own default.
    arguments.update(width=width, height=height)
    if spec.mode != "txt2img":
        strength = spec.strength if spec.strength is not None else 0.75
        arguments.update(image=init_image, strength=strength)
    if spec.mode == "inpaint":
        arguments["mask_image"] = mask_image
    adapter = bool(spec.style_references) and spec.style_method == "ip-adapter"
    if adapter:
        arguments["ip_adapter_image"] = [reference.image for reference in spec.style_references]

    # 5. style reference: the references ride at the front of the batch
    setup: style.StyleSetup | None = None
    if styled:
        setup = style.prepare(
            pipeline,
            spec.style_references,
            width=width,
            height=height,
            steps=spec.steps,
            strength=spec.style_strength,
            device=device,
        )
        _batch_with_references(pipeline, spec, arguments, setup, generators, width, height, init_image)
    joint: joint_style.JointStyleSetup | None = None
    if joint_styled:
        joint = joint_style.prepare(
            pipeline,
            spec.style_references,
            images=spec.n_images,
            width=width,
            height=height,
            strength=spec.style_strength,
        )
        _batch_joint(spec, arguments, joint, generators, width, height, init_image)

    # 6. progress and cancellation through the step-end callback
    skip = setup.count if setup is not None else joint.count if joint is not None else 0

    def step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if setup is not None:
            callback_kwargs["latents"] = style.step_end(setup, pipe, int(timestep), callback_kwargs["latents"])
        if joint is not None:
            callback_kwargs["latents"] = joint_style.step_end(joint, pipe, callback_kwargs["latents"])
        if on_step is not None:
            total = int(getattr(pipe, "num_timesteps", 0) or spec.steps)
            done = step + 1
            latents = callback_kwargs["latents"]
            # Packed transformer latents (tokens, not a picture) get no preview. An offered one is
            # painted only if on_step reads it.
            wanted = spec.preview_every > 0 and done % spec.preview_every == 0 and done < total
            render = offer(pipe, latents[skip : skip + 1]) if wanted and latents.ndim == 4 else None
            if not on_step(StepProgress(step=done, total=total, render=render)):
                raise Cancelled()
        return callback_kwargs

    arguments["callback_on_step_end"] = step_end
    # ControlNet guides: their maps at the painted size, weights and spans.
    control_pipelines.add_arguments(arguments, spec.control, pipeline=pipeline, width=width, height=height)
    # Only what this pipeline takes: an argument one family ignores is an error in another's call.
    accepted = inspect.signature(pipeline.__call__).parameters
    arguments = {key: value for key, value in arguments.items() if key in accepted}
    _vae_tiling(pipeline, device, width * height, always=spec.tiled_vae)

    # 7. run, with shared attention installed only for this call
    groups = 2 if spec.guidance > 1 else 1
    # LoRAs load outside inference mode (their layers are parameters) and unload after the call.
    with (
        applied(pipeline, spec.loras, registry.models_dir),
        torch.inference_mode(),
        regions.applied(pipeline, spec.regions, arguments, width=width, height=height),
        # The IP-Adapter replaces the attention processors as it loads: loaded before the recorder wraps them.
        _ip_adapter(pipeline, spec.style_strength) if adapter else nullcontext(),
        # Innermost, so it wraps whatever cross-attention processors the features above installed.
        attention_maps.recording(
            pipeline, width=width, height=height, enabled=spec.record_attention, steps=spec.steps
        ) as recorded,
    ):
        # Weighted prompts become embeddings here, after the LoRAs, which may reach the text encoder too
        # (a regional call has its embeddings already and is left as it is).
        prompt_weights.weigh(pipeline, model.family, arguments)
        # Plain prompts: the warm text encoder's kept embeddings (never with LoRAs, which may patch it).
        prompt_cache.reuse(pipeline, model.family, arguments, loras=bool(spec.loras), device=device)
        if setup is not None:
            with style.shared_attention(pipeline.unet, spec.style_references, spec.style_strength, groups=groups):
                output = pipeline(**arguments)
        elif joint is not None:
            with joint_style.shared_joint_attention(pipeline.transformer, joint):
                output = pipeline(**arguments)
        else:
            output = pipeline(**arguments)
    images = list(output.images)[skip:]
    attention = recorded.word_maps(getattr(pipeline, "tokenizer", None), [spec.prompt] * len(images), skip=skip)

    # 8. inpainting keeps the unmasked pixels exactly as they were
    if spec.mode == "inpaint" and init_image is not None and mask_image is not None:
        images = [composite(init_image, image, mask_image, spec.mask_blur) for image in images]
    return GenerationResult(images=images, seeds=seeds, seconds=time.perf_counter() - started, attention=attention)


def _vae_tiling(pipeline: Any, device: str, pixels: int, *, always: bool = False) -> None:
    """Decodes in tiles on CUDA above ``VAE_TILING_PIXELS`` (or ``always``: upscales); whole otherwise."""
    vae = getattr(pipeline, "vae", None)
    if vae is None or not hasattr(vae, "enable_tiling"):
        return
    if always or (device.startswith("cuda") and pixels > VAE_TILING_PIXELS):
        vae.enable_tiling()
    else:
        vae.disable_tiling()


def _batch_joint(
    spec: GenerationSpec,
    arguments: dict[str, Any],
    setup: joint_style.JointStyleSetup,
    generators: list[torch.Generator],
    width: int,
    height: int,
    init_image: Image.Image | None,
) -> None:
    """Rewrites a transformer family's call so the batch is [references..., images...]."""
    count, images = setup.count, spec.n_images
    arguments["prompt"] = [""] * count + [spec.prompt] * images
    if "negative_prompt" in arguments:
        arguments["negative_prompt"] = [""] * count + [spec.negative_prompt] * images
    arguments["num_images_per_prompt"] = 1
    arguments["generator"] = [torch.Generator("cpu").manual_seed(0) for _ in range(count)] + generators
    if spec.mode != "txt2img":
        references = [reference.image.convert("RGB").resize((width, height)) for reference in spec.style_references]
        arguments["image"] = references + [init_image] * images


def _batch_with_references(
    pipeline: Any,
    spec: GenerationSpec,
    arguments: dict[str, Any],
    setup: style.StyleSetup,
    generators: list[torch.Generator],
    width: int,
    height: int,
    init_image: Image.Image | None,
) -> None:
    """Rewrites the call so the batch is [references..., images...]."""
    count, images = setup.count, spec.n_images
    arguments["prompt"] = [""] * count + [spec.prompt] * images
    arguments["negative_prompt"] = [""] * count + [spec.negative_prompt] * images
    arguments["num_images_per_prompt"] = 1
    arguments["generator"] = [torch.Generator("cpu").manual_seed(0) for _ in range(count)] + generators
    if spec.mode == "txt2img":
        first = int(pipeline.scheduler.timesteps[0])
        shape = (
            pipeline.unet.config.in_channels,
            height // pipeline.vae_scale_factor,
            width // pipeline.vae_scale_factor,
        )
        noise = [torch.randn(shape, generator=generator) for generator in generators]
        dtype = pipeline.unet.dtype
        device = setup.clean.device
        # DDIM starts from unit-variance noise; the references start where their inversion ended.
        starts = torch.cat([setup.trajectory[first].to(device, dtype), torch.stack(noise).to(device, dtype)])
        arguments["latents"] = starts
    else:
        references = [reference.image.convert("RGB").resize((width, height)) for reference in spec.style_references]
        arguments["image"] = references + [init_image] * images


@contextmanager
def _ip_adapter(pipeline: Any, scale: float) -> Iterator[None]:
    """The model folder's IP-Adapter, loaded for one call and unloaded after.

    Loaded adapters replace the UNet's attention processors and make image embeddings mandatory,
    which would break every later prompt-only call on this shared pipeline.
    """
    folder = Path(getattr(pipeline, "_studio_model_path", ""))
    weights = sorted((folder / "ip_adapter").glob("*.safetensors")) if folder.name else []
    if not weights or not (folder / "image_encoder").is_dir():
        raise ValueError("this model has no IP-Adapter weights and image encoder")
    encoder: dict[str, Any] = {"image_encoder_folder": str(folder / "image_encoder")}
    if "image_encoder_pretrained_model_name_or_path" in inspect.signature(pipeline.load_ip_adapter).parameters:
        # FLUX.1's loader names the encoder's folder otherwise, and would load it in float16.
        encoder = {"image_encoder_pretrained_model_name_or_path": encoder["image_encoder_folder"]}
        encoder["image_encoder_dtype"] = pipeline.transformer.dtype
    pipeline.load_ip_adapter(
        str(folder / "ip_adapter"), subfolder="", weight_name=weights[0].name, local_files_only=True, **encoder
    )
    try:
        pipeline.set_ip_adapter_scale(scale)
        yield
    finally:
        pipeline.unload_ip_adapter()
        # Unloading puts new default processors in: signed again, as at load (app.engine.attention_signatures).
        attention_signatures.sign(pipeline)
