"""ControlNet painting: a call's warm pipeline swapped for its ControlNet twin, and the guides' arguments.

The twin (``StableDiffusionControlNetPipeline``, its Img2Img and Inpaint siblings, the SDXL ones
and FLUX.1's ``FluxControlNetPipeline`` with its Img2Img and Inpaint siblings) is built with
``from_pipe`` on the warm pipeline's modules, so nothing is loaded twice: only the ControlNets,
which the registry keeps warm by name. Several guides run as one ``MultiControlNetModel`` (FLUX.1:
``FluxMultiControlNetModel``), each with its own map, weight (``controlnet_conditioning_scale``)
and span of the steps (``control_guidance_start``/``end``). A union ControlNet is also told which
map it is given (``control_mode``, see ``app.engine.controlnets.UNION_MODES``).

A guide at weight 0 is left out, so a call whose guides all weigh 0 paints exactly what no
ControlNet paints, on the plain pipeline.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diffusers import (
    FluxControlNetImg2ImgPipeline,
    FluxControlNetInpaintPipeline,
    FluxControlNetPipeline,
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
)
from diffusers.models.controlnets.controlnet_flux import FluxMultiControlNetModel
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
from PIL import Image

from app.engine.control_maps import control_map
from app.engine.controlnets import UNION_MODES

if TYPE_CHECKING:
    from app.engine.registry import ModelRegistry

# (family, mode) -> the ControlNet pipeline class; SD 2.x runs on SD 1.x's classes.
_PIPELINES: dict[tuple[str, str], type[Any]] = {
    ("sd1", "txt2img"): StableDiffusionControlNetPipeline,
    ("sd1", "img2img"): StableDiffusionControlNetImg2ImgPipeline,
    ("sd1", "inpaint"): StableDiffusionControlNetInpaintPipeline,
    ("sd2", "txt2img"): StableDiffusionControlNetPipeline,
    ("sd2", "img2img"): StableDiffusionControlNetImg2ImgPipeline,
    ("sd2", "inpaint"): StableDiffusionControlNetInpaintPipeline,
    ("sdxl", "txt2img"): StableDiffusionXLControlNetPipeline,
    ("sdxl", "img2img"): StableDiffusionXLControlNetImg2ImgPipeline,
    ("sdxl", "inpaint"): StableDiffusionXLControlNetInpaintPipeline,
    ("flux", "txt2img"): FluxControlNetPipeline,
    ("flux", "img2img"): FluxControlNetImg2ImgPipeline,
    ("flux", "inpaint"): FluxControlNetInpaintPipeline,
}
# Several ControlNets run as one: the family's own wrapper (UNet families: MultiControlNetModel).
_MULTI: dict[str, type[Any]] = {"flux": FluxMultiControlNetModel}


@dataclass(frozen=True)
class ControlGuide:
    """One guide: the image, the map computed from it (``kind``), the ControlNet, its weight and span."""

    image: Image.Image
    kind: str
    model: str
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0


def active(guides: Sequence[ControlGuide]) -> list[ControlGuide]:
    """The guides that do anything: weight 0 leaves a ControlNet out altogether."""
    return [guide for guide in guides if guide.weight > 0]


def controlled(
    registry: ModelRegistry, pipeline: Any, guides: Sequence[ControlGuide], *, mode: str, device: str
) -> Any:
    """The ControlNet pipeline for ``mode`` on ``pipeline``'s modules, or ``pipeline`` when no guide is active."""
    guides = active(guides)
    if not guides:
        return pipeline
    family = getattr(pipeline, "_studio_family", None)
    family_name = family.name if family is not None else ""
    pipeline_class = _PIPELINES.get((family_name, mode))
    if pipeline_class is None:
        label = family.label if family is not None else "this"
        raise ValueError(f"{label} models take no ControlNet")
    denoiser = pipeline.unet if hasattr(pipeline, "unet") else pipeline.transformer
    dtype = denoiser.dtype
    models = [registry.controlnet(guide.model, device, dtype=dtype) for guide in guides]
    controlnet = models[0] if len(models) == 1 else _MULTI.get(family_name, MultiControlNetModel)(models)
    # torch_dtype: from_pipe casts every shared module to it (float32 when not given), so it must be theirs.
    twin = pipeline_class.from_pipe(pipeline, controlnet=controlnet, torch_dtype=dtype)
    twin.set_progress_bar_config(disable=True)
    for name in ("_studio_model_path", "_studio_family", "_studio_scheduler_config"):
        if hasattr(pipeline, name):
            setattr(twin, name, getattr(pipeline, name))
    return twin


def _union_modes(pipeline: Any, guides: Sequence[ControlGuide]) -> list[int | None] | None:
    """Each guide's ``control_mode`` where a union ControlNet follows it (None for the others), or None
    when no union ControlNet is in the call."""
    controlnet = getattr(pipeline, "controlnet", None)
    nets = list(getattr(controlnet, "nets", None) or [controlnet])
    unions = [getattr(getattr(net, "config", None), "num_mode", None) is not None for net in nets]
    if not any(unions):
        return None
    return [UNION_MODES[guide.kind] if union else None for guide, union in zip(guides, unions, strict=True)]


def add_arguments(
    arguments: dict[str, Any], guides: Sequence[ControlGuide], *, pipeline: Any, width: int, height: int
) -> list[Image.Image]:
    """Adds the guides' maps (computed at the painted size), weights and spans to ``pipeline``'s call;
    returns the maps. The map goes as ``control_image`` where the pipeline takes one (every FLUX.1 one,
    and the UNet families' image-to-image and inpainting), else as ``image`` (their text-to-image)."""
    guides = active(guides)
    if not guides:
        return []
    maps = [control_map(guide.image, guide.kind, size=(width, height)) for guide in guides]
    one = len(guides) == 1
    accepted = inspect.signature(pipeline.__call__).parameters
    arguments["control_image" if "control_image" in accepted else "image"] = maps[0] if one else maps
    modes = _union_modes(pipeline, guides)
    if modes is not None:
        arguments["control_mode"] = modes[0] if one else modes
    weights = [guide.weight for guide in guides]
    starts = [guide.start for guide in guides]
    ends = [guide.end for guide in guides]
    arguments["controlnet_conditioning_scale"] = weights[0] if one else weights
    arguments["control_guidance_start"] = starts[0] if one else starts
    arguments["control_guidance_end"] = ends[0] if one else ends
    return maps
