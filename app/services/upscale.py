"""Upscaling: a larger version of one image of a generation, painted as a new step in its lineage.

The image is resized to the new size, with Lanczos (the worker does that for every source image,
see ``workers.specs``) or first by an upscaler network from ``models/upscalers/`` (``upscaler``, run
by the worker through ``app.engine.upscaling``), and repainted by image-to-image at that size with the generation's own
prompt, seed and model, lightly (``strength``) so it stays the same picture with finer detail.
The VAE encodes and decodes it in tiles (``JobParams.upscale_scale`` tells the worker), so a large
canvas keeps memory bounded.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db.models import Generation, Mode, User
from app.engine.catalog import ModelCatalog, ModelNotFound
from app.params import MAX_PIXELS, MAX_SIDE, MIN_SIDE, Action, Parameters, UpscaleFields
from app.services import generations, upscalers
from app.services.compose import refuse_unless_capable
from app.services.errors import InvalidInput
from app.services.generations import NewGeneration


def upscaled_side(side: int, scale: float, step: int) -> int:
    """``side`` times ``scale``, down to a multiple of the model's size step."""
    step = max(8, step)
    return max(MIN_SIDE, int(round(side * scale)) // step * step)


def upscale(
    session: Session, *, owner: User, generation_id: int, request: UpscaleFields, catalog: ModelCatalog
) -> Generation:
    """Enqueues the larger version of image ``request.image_index`` as an ``upscale`` step of the generation."""
    original = generations.get_visible(session, generation_id=generation_id, user=owner)
    images = sorted(original.images, key=lambda image: image.index)
    if not images:
        raise InvalidInput(f"generation {generation_id} has no images to upscale yet")
    if request.image_index >= len(images):
        raise InvalidInput(
            f"image_index {request.image_index} is out of range: generation {generation_id} has {len(images)} image(s)"
        )
    source = images[request.image_index]
    try:
        model = catalog.spec(original.model)
    except ModelNotFound as error:
        raise InvalidInput(f"{error.args[0]}; the generation's model is needed to upscale it") from error
    refuse_unless_capable(model, mode="img2img")
    upscaler = upscalers.checked(request.upscaler, models_dir=catalog.models_dir) if request.upscaler else None
    width = upscaled_side(source.width, request.scale, model.size_step)
    height = upscaled_side(source.height, request.scale, model.size_step)
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise InvalidInput(
            f"{source.width}x{source.height} at x{request.scale:g} would be {width}x{height}; "
            f"each side must stay within {MAX_SIDE}"
        )
    recorded = Parameters.of(original)
    # The image's own seed: image i of a batch was painted with seed + i.
    seed = (recorded.seed + source.index) % 2**32
    new = NewGeneration(
        mode=Mode.TXT2IMG,
        **recorded.model_dump(exclude={"width", "height", "n_images", "steps", "strength", "seed"}),
        seed=seed,
        width=width,
        height=height,
        n_images=1,
        steps=request.steps,
        strength=request.strength,
        params=original.params.without_step().model_copy(
            update={
                "action": Action.UPSCALE,
                "upscale_scale": request.scale,
                "upscaler": upscaler,
                "style_weights": None,
                "style_strength": None,
                "style_method": None,
                "mask_blur": None,
                "outpaint": None,
                "interpolate": None,
            }
        ),
        source_image_id=source.id,
        parent_id=original.id,
    )
    return generations.enqueue(session, owner=owner, new=new)
