"""Composing jobs: a validated request plus the model's defaults becomes a new generation."""

from __future__ import annotations

from app.db.models import Mode
from app.engine.registry import ModelNotFound, ModelRegistry
from app.schemas import GenerateRequest
from app.services.errors import InvalidInput
from app.services.generations import NewGeneration


def new_generation(
    request: GenerateRequest, *, mode: Mode, registry: ModelRegistry, default_model: str
) -> NewGeneration:
    """Fills what the request left out from the model (size) and checks the model exists."""
    name = request.model or default_model
    try:
        spec = registry.spec(name)
    except ModelNotFound as error:
        available = ", ".join(model.name for model in registry.list()) or "none installed"
        raise InvalidInput(f"{error.args[0]}; available models: {available}") from error
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
