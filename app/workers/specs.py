"""Job specs: the engine's view of a generation row, and what its PNGs record (parameters, origin)."""

from __future__ import annotations

from typing import Any

from PIL import Image as PILImage
from sqlalchemy.orm import Session

from app.db.models import Generation, ImageKind, Mode
from app.db.models import Image as ImageRow
from app.engine.control_pipelines import ControlGuide
from app.engine.inpaint import Outpaint as EngineOutpaint
from app.engine.loras import LoraUse
from app.engine.regions import RegionPrompt
from app.engine.runner import GenerationSpec, InterpolationTarget
from app.engine.style import StyleReference
from app.params import Parameters
from app.services import provenance
from app.services.imageio import to_mask
from app.services.images import load_pil
from app.services.storage import ImageStore


def _load_image(
    store: ImageStore, session: Session, image_id: int | None, *, rgb: bool = True
) -> PILImage.Image | None:
    if image_id is None:
        return None
    row = session.get(ImageRow, image_id)
    if row is None:
        raise ValueError(f"input image {image_id} no longer exists")
    image = load_pil(store, row)
    return image.convert("RGB") if rgb else image


def _region_mask(store: ImageStore, session: Session, mask_id: int | None) -> PILImage.Image | None:
    """A region's mask, read as an inpaint mask is: white (or painted, where it has alpha) is inside."""
    image = _load_image(store, session, mask_id, rgb=False)
    return to_mask(image) if image is not None else None


def spec_for(generation: Generation, session: Session, store: ImageStore) -> GenerationSpec:
    """The engine's view of a generation row: its parameters by name, the mode's extras, decoded inputs."""
    params = generation.params
    spec = GenerationSpec(**Parameters.of(generation).model_dump())
    spec.init_image = _load_image(store, session, generation.source_image_id)
    if generation.mode == Mode.INPAINT:
        spec.mode = "inpaint"
        # Kept as stored: a mask's alpha (transparent = keep) counts too.
        mask = _load_image(store, session, generation.mask_image_id, rgb=False)
        spec.mask_image = to_mask(mask) if mask is not None else None
        if spec.mask_image is None and spec.init_image is not None:
            spec.mask_image = PILImage.new("L", spec.init_image.size, 0)
        if params.mask_blur is not None:
            spec.mask_blur = params.mask_blur
        if params.outpaint is not None:
            spec.outpaint = EngineOutpaint(**params.outpaint.model_dump())
    elif spec.init_image is not None:
        spec.mode = "img2img"
        # An upscaler network enlarges the source itself (app.engine.upscaling); otherwise Lanczos does, here.
        if params.upscaler is None:
            spec.init_image = spec.init_image.resize((generation.width, generation.height), PILImage.Resampling.LANCZOS)
    if generation.mode == Mode.STYLE:
        weights = params.style_weights or [1.0] * len(generation.style_image_ids)
        spec.style_references = [
            StyleReference(image=image, weight=float(weight))
            for image_id, weight in zip(generation.style_image_ids, weights, strict=True)
            if (image := _load_image(store, session, image_id)) is not None
        ]
        if params.style_strength is not None:
            spec.style_strength = params.style_strength
        if params.style_method is not None:
            spec.style_method = params.style_method
    spec.loras = [LoraUse(name=lora.name, weight=lora.weight) for lora in params.loras or []]
    spec.tiled_vae = params.upscale_scale is not None
    spec.upscaler = params.upscaler
    spec.regions = [
        RegionPrompt(
            prompt=region.prompt,
            box=region.box,
            weight=region.weight,
            mask=_region_mask(store, session, region.mask_id),
        )
        for region in params.regions or []
    ]
    spec.control = [
        ControlGuide(image=image, kind=unit.kind, model=unit.model, weight=unit.weight, start=unit.start, end=unit.end)
        for unit in params.control or []
        if (image := _load_image(store, session, unit.image_id)) is not None
    ]
    if params.interpolate is not None:
        # A walk from this row's prompt and seed to another generation's (see services.interpolation).
        walk = params.interpolate
        spec.interpolate_to = InterpolationTarget(
            prompt=walk.prompt_b, negative_prompt=walk.negative_prompt_b, seed=walk.seed_b, frames=walk.frames
        )
    return spec


def png_parameters(generation: Generation, seed: int, index: int) -> dict[str, Any]:
    """What an output PNG records: every parameter (with the image's own seed), its mode and place."""
    return {
        **Parameters.of(generation).model_dump(),
        "seed": seed,
        "generation_id": generation.id,
        "index": index,
        "mode": generation.mode.value,
        "parent_id": generation.parent_id,
        **({"loras": [lora.model_dump() for lora in loras]} if (loras := generation.params.loras) else {}),
        **({"upscaler": upscaler} if (upscaler := generation.params.upscaler) else {}),
        **({"control": [unit.model_dump() for unit in control]} if (control := generation.params.control) else {}),
        **({"regions": [each.model_dump(mode="json") for each in rs]} if (rs := generation.params.regions) else {}),
    }


def origin_for(generation: Generation, session: Session, store: ImageStore) -> provenance.Origin:
    """Where an output comes from, for its Content Credentials: model, step and input pictures."""
    roles: list[tuple[provenance.Role, int | None]] = [
        ("source", generation.source_image_id),
        ("mask", generation.mask_image_id),
        *(("style", image_id) for image_id in generation.style_image_ids),
    ]
    ingredients = []
    source_is_upload = False
    for role, image_id in roles:
        row = session.get(ImageRow, image_id) if image_id is not None else None
        if row is None:
            continue
        if role == "source":
            source_is_upload = row.kind == ImageKind.UPLOAD
        made = f"painting {row.generation_id}" if row.generation_id is not None else row.kind.value
        ingredients.append(
            provenance.Ingredient(role=role, title=f"{role}: {made} (image {row.id})", png=store.read(row.sha256))
        )
    return provenance.Origin(
        model=generation.model,
        mode=generation.mode.value,
        title=f"painting {generation.id}",
        source_type=provenance.source_type_for(generation.mode.value, source_is_upload=source_is_upload),
        ingredients=tuple(ingredients),
    )
