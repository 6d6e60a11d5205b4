"""Job specs: the engine's view of a generation row, and the parameters written into its PNGs."""

from __future__ import annotations

from typing import Any

from PIL import Image as PILImage
from sqlalchemy.orm import Session

from app.db.models import Generation, Mode
from app.db.models import Image as ImageRow
from app.engine.inpaint import Outpaint
from app.engine.runner import GenerationSpec, InterpolationTarget
from app.engine.style import StyleReference
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


def spec_for(generation: Generation, session: Session, store: ImageStore) -> GenerationSpec:
    """The engine's view of a generation row: plain values and decoded input images."""
    params = dict(generation.params or {})
    spec = GenerationSpec(
        model=generation.model,
        prompt=generation.prompt,
        negative_prompt=generation.negative_prompt,
        seed=generation.seed,
        steps=generation.steps,
        guidance=generation.guidance,
        width=generation.width,
        height=generation.height,
        n_images=generation.n_images,
        scheduler=generation.scheduler,
        strength=generation.strength,
        extra=params,
    )
    spec.init_image = _load_image(store, session, generation.source_image_id)
    if generation.mode == Mode.INPAINT:
        spec.mode = "inpaint"
        # Kept as stored: a mask's alpha (transparent = keep) counts too.
        mask = _load_image(store, session, generation.mask_image_id, rgb=False)
        spec.mask_image = to_mask(mask) if mask is not None else None
        if spec.mask_image is None and spec.init_image is not None:
            spec.mask_image = PILImage.new("L", spec.init_image.size, 0)
        spec.mask_blur = float(params.get("mask_blur", 4.0))
        if params.get("outpaint"):
            spec.outpaint = Outpaint(**params["outpaint"])
    elif spec.init_image is not None:
        spec.mode = "img2img"
        spec.init_image = spec.init_image.resize((generation.width, generation.height), PILImage.Resampling.LANCZOS)
    if generation.mode == Mode.STYLE:
        weights = list(params.get("style_weights") or [1.0] * len(generation.style_image_ids))
        spec.style_references = [
            StyleReference(image=image, weight=float(weight))
            for image_id, weight in zip(generation.style_image_ids, weights, strict=True)
            if (image := _load_image(store, session, image_id)) is not None
        ]
        spec.style_strength = float(params.get("style_strength", 0.5))
        spec.style_method = str(params.get("style_method", "shared-attention"))
    walk = params.get("interpolate")
    if isinstance(walk, dict):
        # A walk from this row's prompt and seed to another generation's (see services.interpolation).
        spec.interpolate_to = InterpolationTarget(
            prompt=str(walk["prompt_b"]),
            negative_prompt=str(walk.get("negative_prompt_b") or ""),
            seed=int(walk["seed_b"]),
            frames=int(walk.get("frames") or generation.n_images),
        )
    return spec


def png_parameters(generation: Generation, seed: int, index: int) -> dict[str, Any]:
    return {
        "generation_id": generation.id,
        "index": index,
        "mode": generation.mode.value,
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "model": generation.model,
        "scheduler": generation.scheduler,
        "seed": seed,
        "steps": generation.steps,
        "guidance": generation.guidance,
        "width": generation.width,
        "height": generation.height,
        "strength": generation.strength,
        "parent_id": generation.parent_id,
    }
