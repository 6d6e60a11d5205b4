"""Interpolation API: walk from one generation to another, and the walk as an animated WebP."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.generations import accepted
from app.deps import CurrentUser, SessionDep, StoreDep, SubmitDep
from app.params import RowId
from app.schemas import GenerationAccepted, InterpolateRequest
from app.services import generations, interpolation

router = APIRouter(tags=["interpolation"])


@router.post("/generations/{generation_id}/interpolate", status_code=202, response_model=GenerationAccepted)
def interpolate_generation(
    generation_id: RowId, body: InterpolateRequest, user: CurrentUser, submit: SubmitDep
) -> GenerationAccepted:
    """``frames`` frames from this generation to ``to_id`` (same model and size), recorded as an
    ``interpolate`` step: spherical interpolation of the starting noise, linear of the prompts."""
    generation = submit.through(
        interpolation.enqueue_walk, owner=user, from_id=generation_id, to_id=body.to_id, frames=body.frames
    )
    return accepted(generation)


@router.get(
    "/generations/{generation_id}/animation.webp",
    response_class=Response,
    responses={200: {"content": {"image/webp": {}}}},
)
def generation_animation(generation_id: RowId, session: SessionDep, user: CurrentUser, store: StoreDep) -> Response:
    """An interpolation's frames as a looping animated WebP, built from its stored frames."""
    generation = generations.get_visible(session, generation_id=generation_id, user=user)
    body = interpolation.animation_webp(store, generation)
    return Response(content=body, media_type="image/webp", headers={"Cache-Control": "private, max-age=60"})
