"""Composing jobs: a validated request plus the model's defaults becomes a new generation."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session

from app.db.models import Mode, User
from app.engine.registry import ModelNotFound, ModelRegistry, ModelSpec
from app.schemas import MAX_SIDE, GenerateRequest, InpaintRequest, StyleRequest
from app.services import images
from app.services.errors import InvalidInput
from app.services.generations import NewGeneration


def new_generation(
    request: GenerateRequest, *, mode: Mode, registry: ModelRegistry, default_model: str
) -> NewGeneration:
    """Fills what the request left out from the model (size) and checks the model exists."""
    spec = resolve_model(request, registry=registry, default_model=default_model)
    return NewGeneration(
        mode=mode,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        model=spec.name,
        scheduler=request.scheduler,
        seed=request.seed,
        steps=request.steps,
        guidance=request.guidance,
        width=request.width or spec.default_width,
        height=request.height or spec.default_height,
        n_images=request.n_images,
        parent_id=request.parent_id,
    )


def resolve_model(request: GenerateRequest, *, registry: ModelRegistry, default_model: str) -> ModelSpec:
    name = request.model or default_model
    try:
        return registry.spec(name)
    except ModelNotFound as error:
        available = ", ".join(model.name for model in registry.list()) or "none installed"
        raise InvalidInput(f"{error.args[0]}; available models: {available}") from error


def _side(value: int) -> int:
    """A side the pipelines accept: a multiple of 8 within bounds."""
    return max(64, min(MAX_SIDE, value - value % 8))


def style_generation(
    session: Session, request: StyleRequest, *, user: User, registry: ModelRegistry, default_model: str
) -> NewGeneration:
    """A style job: references (and an optional content image) the user may see, a method the model has."""
    spec = resolve_model(request, registry=registry, default_model=default_model)
    if request.style_method == "ip-adapter" and not spec.has_ip_adapter:
        raise InvalidInput(
            f"model {spec.name!r} has no IP-Adapter (an ip_adapter/ and image_encoder/ folder); "
            "use style_method shared-attention, which works with any model"
        )
    for image_id in request.style_image_ids:
        images.get_visible(session, image_id=image_id, user=user)
    new = new_generation(request, mode=Mode.STYLE, registry=registry, default_model=default_model)
    width, height = new.width, new.height
    if request.image_id is not None:
        content = images.get_visible(session, image_id=request.image_id, user=user)
        width, height = request.width or _side(content.width), request.height or _side(content.height)
    weights = request.style_weights or [1.0] * len(request.style_image_ids)
    return replace(
        new,
        width=width,
        height=height,
        strength=request.strength if request.image_id is not None else None,
        source_image_id=request.image_id,
        style_image_ids=list(request.style_image_ids),
        params={
            "style_weights": weights,
            "style_strength": request.style_strength,
            "style_method": request.style_method,
        },
    )


def inpaint_generation(
    session: Session, request: InpaintRequest, *, user: User, registry: ModelRegistry, default_model: str
) -> tuple[NewGeneration, list[str]]:
    """An inpaint job and the notes on what was adjusted (a mask of another size is resized)."""
    new = new_generation(request, mode=Mode.INPAINT, registry=registry, default_model=default_model)
    source = images.get_visible(session, image_id=request.image_id, user=user)
    notes: list[str] = []
    if request.mask_id is not None:
        mask = images.get_visible(session, image_id=request.mask_id, user=user)
        if (mask.width, mask.height) != (source.width, source.height):
            notes.append(
                f"the mask is {mask.width}x{mask.height} and was resized to the image's {source.width}x{source.height}"
            )
    outpaint = request.outpaint.model_dump() if request.outpaint is not None else None
    width = source.width + (outpaint["left"] + outpaint["right"] if outpaint else 0)
    height = source.height + (outpaint["top"] + outpaint["bottom"] if outpaint else 0)
    if width % 8 or height % 8:
        notes.append(f"the canvas is {width}x{height}; it is painted at {_side(width)}x{_side(height)}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InvalidInput(f"the canvas would be {width}x{height}; each side must stay within {MAX_SIDE}")
    return (
        replace(
            new,
            width=_side(width),
            height=_side(height),
            strength=request.strength,
            source_image_id=request.image_id,
            mask_image_id=request.mask_id,
            params={"mask_blur": request.mask_blur, "outpaint": outpaint},
        ),
        notes,
    )
