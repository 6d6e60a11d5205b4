"""Composing jobs: a validated request plus the model's defaults becomes a new generation."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session

from app.db.models import Mode, User
from app.engine.catalog import ModelCatalog, ModelNotFound, ModelSpec
from app.engine.families import refusal
from app.params import (
    MAX_SIDE,
    InpaintFields,
    JobParams,
    LoraWeight,
    ParameterFields,
    Parameters,
    StyleFields,
    fit_side,
)
from app.services import controlnets, images, loras
from app.services.errors import InvalidInput
from app.services.generations import NewGeneration


def new_generation(request: ParameterFields, *, mode: Mode, catalog: ModelCatalog, default_model: str) -> NewGeneration:
    """Fills what the request left out from the model (size) and checks the model exists and can do it."""
    spec = resolve_model(request, catalog=catalog, default_model=default_model)
    if mode == Mode.TXT2IMG:
        refuse_unless_capable(spec, mode="txt2img")
    for side, value in (("width", request.width), ("height", request.height)):
        if value and value % spec.size_step:
            raise InvalidInput(
                f"{side} must be a multiple of {spec.size_step} for {spec.name!r} ({spec.family.label}) (got {value})"
            )
    given = request.model_dump(include=set(Parameters.names()) - {"strength"})
    # A request that names no schedule gets the model folder's own (steps only with its scheduler).
    if spec.default_scheduler is not None and "scheduler" not in request.model_fields_set:
        given["scheduler"] = spec.default_scheduler
        if spec.default_steps is not None and "steps" not in request.model_fields_set:
            given["steps"] = spec.default_steps
    asked_loras = loras.checked(request.loras, model=spec, models_dir=catalog.models_dir)
    if request.regions:
        if mode != Mode.TXT2IMG:
            raise InvalidInput("regions are painted on prompt jobs only (not style or inpaint jobs)")
        if not spec.capabilities.regional_prompts:
            raise InvalidInput(
                f"model {spec.name!r} ({spec.family.label}) does not take regional prompts: they need a UNet "
                "model (SD 1.x, 2.x, XL), whose cross-attention they mask per region"
            )
    if request.control and mode == Mode.STYLE:
        raise InvalidInput("ControlNets guide prompt and inpaint jobs (not style jobs)")
    asked_control = controlnets.checked(request.control, model=spec, models_dir=catalog.models_dir)
    return NewGeneration(
        mode=mode,
        **given
        | {
            "model": spec.name,
            "width": request.width or spec.default_width,
            "height": request.height or spec.default_height,
        },
        parent_id=request.parent_id,
        params=JobParams(
            loras=asked_loras or None, regions=list(request.regions) or None, control=asked_control or None
        ),
    )


def with_loras(params: JobParams, asked: list[LoraWeight] | None) -> JobParams:
    """A mode's params with the LoRAs the shared fields resolved to."""
    return params.model_copy(update={"loras": asked}) if asked else params


def resolve_model(request: ParameterFields, *, catalog: ModelCatalog, default_model: str) -> ModelSpec:
    name = request.model or default_model
    try:
        return catalog.spec(name)
    except ModelNotFound as error:
        available = ", ".join(model.name for model in catalog.list()) or "none installed"
        raise InvalidInput(f"{error.args[0]}; available models: {available}") from error


def refuse_unless_capable(spec: ModelSpec, *, mode: str, style_method: str | None = None) -> None:
    """Raises InvalidInput (422) with the reason when the model's family lacks ``mode`` or the style method."""
    why = refusal(spec.family, spec.capabilities, mode=mode, style_method=style_method)
    if why is not None:
        raise InvalidInput(f"model {spec.name!r}: {why}")


def style_generation(
    session: Session, request: StyleFields, *, user: User, catalog: ModelCatalog, default_model: str
) -> NewGeneration:
    """A style job: references (and an optional content image) the user may see, a method the model has."""
    spec = resolve_model(request, catalog=catalog, default_model=default_model)
    mode = "img2img" if request.image_id is not None else "txt2img"
    refuse_unless_capable(spec, mode=mode, style_method=request.style_method)
    for image_id in request.style_image_ids:
        images.get_visible(session, image_id=image_id, user=user)
    new = new_generation(request, mode=Mode.STYLE, catalog=catalog, default_model=default_model)
    width, height = new.width, new.height
    if request.image_id is not None:
        content = images.get_visible(session, image_id=request.image_id, user=user)
        width, height = request.width or fit_side(content.width), request.height or fit_side(content.height)
    return replace(
        new,
        width=width,
        height=height,
        strength=request.strength if request.image_id is not None else None,
        source_image_id=request.image_id,
        style_image_ids=list(request.style_image_ids),
        params=with_loras(
            JobParams(
                style_weights=request.style_weights or [1.0] * len(request.style_image_ids),
                style_strength=request.style_strength,
                style_method=request.style_method,
            ),
            new.params.loras,
        ),
    )


def inpaint_generation(
    session: Session, request: InpaintFields, *, user: User, catalog: ModelCatalog, default_model: str
) -> tuple[NewGeneration, list[str]]:
    """An inpaint job and the notes on what was adjusted (a mask of another size is resized)."""
    new = new_generation(request, mode=Mode.INPAINT, catalog=catalog, default_model=default_model)
    outpainting = request.outpaint is not None and any(
        (request.outpaint.left, request.outpaint.right, request.outpaint.top, request.outpaint.bottom)
    )
    refuse_unless_capable(catalog.spec(new.model), mode="outpaint" if outpainting else "inpaint")
    source = images.get_visible(session, image_id=request.image_id, user=user)
    notes: list[str] = []
    if request.mask_id is not None:
        mask = images.get_visible(session, image_id=request.mask_id, user=user)
        if (mask.width, mask.height) != (source.width, source.height):
            notes.append(
                f"the mask is {mask.width}x{mask.height} and was resized to the image's {source.width}x{source.height}"
            )
    outpaint = request.outpaint
    width = source.width + (outpaint.left + outpaint.right if outpaint else 0)
    height = source.height + (outpaint.top + outpaint.bottom if outpaint else 0)
    if width % 8 or height % 8:
        notes.append(f"the canvas is {width}x{height}; it is painted at {fit_side(width)}x{fit_side(height)}")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise InvalidInput(f"the canvas would be {width}x{height}; each side must stay within {MAX_SIDE}")
    return (
        replace(
            new,
            width=fit_side(width),
            height=fit_side(height),
            strength=request.strength,
            source_image_id=request.image_id,
            mask_image_id=request.mask_id,
            params=with_loras(
                JobParams(mask_blur=request.mask_blur, outpaint=outpaint, control=new.params.control),
                new.params.loras,
            ),
        ),
        notes,
    )
