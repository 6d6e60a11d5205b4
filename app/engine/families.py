"""Model families: which diffusion family a pipeline folder is, and what the studio can do with it.

A family is told from the folder's ``model_index.json`` (its pipeline class) and its denoiser's
config, never from the folder's name, and without torch: the catalog and the web side read it
cheaply. The engine asks the family what it supports (modes, style methods, how guidance is
given, which scheduler drives it) instead of special-casing pipeline names, and the services
refuse what a family lacks with a sentence that says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

GuidanceKind = Literal["cfg", "distilled", "none"]
StyleMethod = Literal["shared-attention", "ip-adapter"]
DType = Literal["float16", "bfloat16"]

# Every side the studio paints is a multiple of this, whatever the family's own step.
MIN_SIZE_STEP = 8


@dataclass(frozen=True)
class Capabilities:
    """What a model can do through the studio's endpoints."""

    txt2img: bool = True
    img2img: bool = True
    inpaint: bool = True
    outpaint: bool = True
    style_methods: tuple[StyleMethod, ...] = ()
    lora: bool = True
    negative_prompt: bool = True
    guidance: GuidanceKind = "cfg"
    # The guidance slider's range and its default for this family.
    guidance_min: float = 1.0
    guidance_max: float = 20.0
    guidance_default: float = 7.0
    # False where the family runs its own flow-matching scheduler and the scheduler choice is moot.
    schedulers: bool = True
    # Weighted prompts ((word:1.3), [word], word++, AND) read through compel: the CLIP-style text
    # encoders of the UNet families (and studio-tiny's MiniLM); other families take the text as is.
    weighted_prompts: bool = False
    # A prompt per box or mask by masked cross-attention (app/engine/regions.py): the UNet families.
    regional_prompts: bool = False
    # Guide images through ControlNet pipelines (app/engine/control_pipelines.py): diffusers has them for
    # the UNet families SD 1.x, 2.x and XL as they are loaded here, and for FLUX.1 (not its Fill model).
    controlnet: bool = False
    # Why some modes are missing, said in the refusal.
    limits: str = ""


@dataclass(frozen=True)
class Family:
    """One row of the family table: how to recognise a family and what it supports."""

    name: str
    label: str
    pipeline_classes: frozenset[str]
    denoiser: Literal["unet", "transformer"]
    default_size: int
    # The latent is packed in 2x2 patches (FLUX, Qwen-Image, Z-Image): sides step by twice the VAE factor.
    patch: int = 1
    capabilities: Capabilities = field(default_factory=Capabilities)
    # The dtype the family runs in on CUDA; float16 overflows in some transformer families.
    cuda_dtype: DType = "float16"
    # The pipeline argument that carries the guidance scale (Qwen-Image's CFG is ``true_cfg_scale``).
    guidance_argument: str = "guidance_scale"
    # Why shared-attention style is missing here, said in the 422 when asked.
    style_refusal: str = ""
    # Classifier-free guidance runs only with a negative prompt (Qwen-Image): an empty one is sent as " ".
    cfg_needs_negative: bool = False


_TRANSFORMER_STYLE = (
    "shared-attention style reaches UNet self-attention and the joint attention of SD3, FLUX.1, "
    "FLUX.2, Qwen-Image and Z-Image transformers; this family's transformer is not covered yet"
)

FAMILIES: tuple[Family, ...] = (
    Family(
        "sd1",
        "Stable Diffusion 1.x",
        frozenset({"StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"}),
        "unet",
        512,
        capabilities=Capabilities(
            style_methods=("shared-attention",), weighted_prompts=True, regional_prompts=True, controlnet=True
        ),
    ),
    Family(
        "sd2",
        "Stable Diffusion 2.x",
        frozenset({"StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline"}),
        "unet",
        768,
        capabilities=Capabilities(
            style_methods=("shared-attention",), weighted_prompts=True, regional_prompts=True, controlnet=True
        ),
    ),
    Family(
        "sdxl",
        "Stable Diffusion XL",
        frozenset(
            {"StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline"}
        ),
        "unet",
        1024,
        capabilities=Capabilities(
            style_methods=("shared-attention",), weighted_prompts=True, regional_prompts=True, controlnet=True
        ),
    ),
    Family(
        "sd3",
        "Stable Diffusion 3.x",
        frozenset({"StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline", "StableDiffusion3InpaintPipeline"}),
        "transformer",
        1024,
        capabilities=Capabilities(
            style_methods=("shared-attention",), guidance_default=5.0, guidance_max=15.0, schedulers=False
        ),
        cuda_dtype="bfloat16",
    ),
    Family(
        "flux",
        "FLUX.1",
        frozenset({"FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"}),
        "transformer",
        1024,
        patch=2,
        capabilities=Capabilities(
            style_methods=("shared-attention",),
            negative_prompt=False,
            guidance="distilled",
            guidance_min=1.0,
            guidance_max=10.0,
            guidance_default=3.5,
            schedulers=False,
            controlnet=True,
        ),
        cuda_dtype="bfloat16",
    ),
    Family(
        "flux-fill",
        "FLUX.1 Fill",
        frozenset({"FluxFillPipeline"}),
        "transformer",
        1024,
        patch=2,
        capabilities=Capabilities(
            txt2img=False,
            img2img=False,
            limits="FLUX.1 Fill only repaints the masked part of an image",
            negative_prompt=False,
            guidance="distilled",
            guidance_min=1.0,
            guidance_max=50.0,
            guidance_default=30.0,
            schedulers=False,
        ),
        cuda_dtype="bfloat16",
        style_refusal=_TRANSFORMER_STYLE,
    ),
    Family(
        "flux2",
        "FLUX.2",
        frozenset({"Flux2Pipeline", "Flux2KleinPipeline"}),
        "transformer",
        1024,
        patch=2,
        # FLUX.2 takes images as references, not as a start to repaint: no strength-based modes.
        capabilities=Capabilities(
            style_methods=("shared-attention",),
            img2img=False,
            inpaint=False,
            outpaint=False,
            limits="FLUX.2 takes images as references, not as a picture to repaint",
            negative_prompt=False,
            guidance="distilled",
            guidance_min=1.0,
            guidance_max=10.0,
            guidance_default=4.0,
            schedulers=False,
        ),
        cuda_dtype="bfloat16",
    ),
    Family(
        "qwenimage",
        "Qwen-Image",
        frozenset({"QwenImagePipeline", "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline"}),
        "transformer",
        1024,
        patch=2,
        capabilities=Capabilities(
            style_methods=("shared-attention",), guidance_default=4.0, guidance_max=10.0, schedulers=False
        ),
        cuda_dtype="bfloat16",
        guidance_argument="true_cfg_scale",
        cfg_needs_negative=True,
    ),
    Family(
        "zimage",
        "Z-Image",
        frozenset({"ZImagePipeline", "ZImageImg2ImgPipeline", "ZImageInpaintPipeline"}),
        "transformer",
        1024,
        patch=2,
        capabilities=Capabilities(
            style_methods=("shared-attention",),
            guidance_min=0.0,
            guidance_max=10.0,
            guidance_default=5.0,
            schedulers=False,
        ),
        cuda_dtype="bfloat16",
    ),
)

FAMILY_NAMES = tuple(family.name for family in FAMILIES)
_BY_NAME = {family.name: family for family in FAMILIES}


def family_named(name: str) -> Family:
    return _BY_NAME[name]


class UnknownFamily(ValueError):
    """The folder's pipeline class belongs to no family the studio knows."""


@dataclass(frozen=True)
class FolderFamily:
    """A folder's family with the values its configs set: size, size step, capabilities."""

    family: Family
    default_width: int
    default_height: int
    size_step: int
    denoiser_in_channels: int
    capabilities: Capabilities


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def _is_sd2(unet: dict[str, Any]) -> bool:
    """SD 2.x UNets use linear projections in their transformers and 1024-wide OpenCLIP context."""
    return bool(unet.get("use_linear_projection")) or unet.get("cross_attention_dim") == 1024


def detect(folder: Path, index: dict[str, Any]) -> FolderFamily:
    """The family of the pipeline folder ``folder`` whose ``model_index.json`` is ``index``.

    Raises ``UnknownFamily`` for a pipeline class no family claims, ``OSError``/``ValueError``
    when a config the family needs is missing or unreadable.
    """
    class_name = str(index.get("_class_name", "StableDiffusionPipeline"))
    candidates = [family for family in FAMILIES if class_name in family.pipeline_classes]
    if not candidates:
        known = ", ".join(sorted({name for family in FAMILIES for name in family.pipeline_classes}))
        raise UnknownFamily(f"{class_name} is not a pipeline the studio can run; it runs {known}")
    denoiser_kind = candidates[0].denoiser
    denoiser = _read(folder / denoiser_kind / "config.json")
    vae = _read(folder / "vae" / "config.json")
    family = candidates[0]
    if family.name == "sd1" and _is_sd2(denoiser):
        family = family_named("sd2")

    if isinstance(vae.get("temperal_downsample"), list):  # Qwen-Image's video-style VAE
        vae_scale = 2 ** len(vae["temperal_downsample"])
    else:
        vae_scale = 2 ** max(len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1, 0)
    step = vae_scale * family.patch * int(denoiser.get("patch_size", 1) if family.patch == 1 else 1)
    size_step = max(step, MIN_SIZE_STEP)
    sample_size = denoiser.get("sample_size")
    if isinstance(sample_size, list):
        sample_size = sample_size[0]
    if isinstance(sample_size, int) and sample_size > 0:
        default = sample_size * vae_scale
    else:
        # Transformers without a sample size (FLUX, Z-Image) paint at the family's size; a tiny
        # build's VAE says it is tiny, so the default follows its latent scale.
        default = family.default_size if vae_scale >= 8 else 64
    default = max(64, size_step, default - default % size_step)

    in_channels = int(denoiser.get("in_channels", 4))
    capabilities = family.capabilities
    if family.name == "flux" and denoiser.get("guidance_embeds") is False:
        # FLUX.1 schnell: timestep-distilled, no guidance at all.
        capabilities = replace(capabilities, guidance="none", guidance_min=0.0, guidance_default=0.0)
    if class_name == "Flux2KleinPipeline":
        # FLUX.2 [klein] inpaints through its own pipeline, and runs true classifier-free guidance (on an
        # empty negative), or none once step-distilled.
        capabilities = replace(
            capabilities,
            inpaint=True,
            outpaint=True,
            limits="FLUX.2 [klein] repaints only masked parts; whole images it takes as references",
        )
        if index.get("is_distilled"):
            capabilities = replace(capabilities, guidance="none", guidance_min=0.0, guidance_default=0.0)
        else:
            capabilities = replace(capabilities, guidance="cfg")
    if family.denoiser == "unet" and in_channels == 9:
        # An inpainting checkpoint: its UNet wants a mask and a masked image with every latent.
        capabilities = replace(
            capabilities,
            txt2img=False,
            img2img=False,
            limits="it is an inpainting checkpoint (a 9-channel UNet), which only repaints masked images",
        )
    has_adapter = (folder / "ip_adapter").is_dir() and (folder / "image_encoder").is_dir()
    if has_adapter and family.name in {"sd1", "sd2", "sdxl", "flux"}:
        capabilities = replace(capabilities, style_methods=(*capabilities.style_methods, "ip-adapter"))
    return FolderFamily(
        family=family,
        default_width=default,
        default_height=default,
        size_step=size_step,
        denoiser_in_channels=in_channels,
        capabilities=capabilities,
    )


def refusal(family: Family, capabilities: Capabilities, *, mode: str, style_method: str | None = None) -> str | None:
    """Why a model of ``family`` cannot run ``mode`` (and ``style_method``), or None when it can."""
    what = {
        "txt2img": capabilities.txt2img,
        "img2img": capabilities.img2img,
        "inpaint": capabilities.inpaint,
        "outpaint": capabilities.outpaint,
    }
    words = {
        "txt2img": "paint from a prompt alone",
        "img2img": "repaint a content image",
        "inpaint": "inpaint",
        "outpaint": "outpaint",
    }
    if mode in what and not what[mode]:
        because = f": {capabilities.limits}" if capabilities.limits else ""
        return f"this {family.label} model can't {words[mode]}{because}"
    if style_method is not None and style_method not in capabilities.style_methods:
        if style_method == "shared-attention" and family.style_refusal:
            return f"{family.label} can't use shared-attention style: {family.style_refusal}"
        if style_method == "ip-adapter":
            instead = (
                "; use style_method shared-attention, which works with any UNet model"
                if "shared-attention" in capabilities.style_methods
                else ""
            )
            return f"this {family.label} model has no IP-Adapter (an ip_adapter/ and image_encoder/ folder){instead}"
        return f"{family.label} models can't use {style_method} style"
    return None
