"""Upscale API: a larger version of a generation's image, painted as a new step of its lineage."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.generations import accepted
from app.deps import CatalogDep, CurrentUser, SubmitDep
from app.params import RowId
from app.schemas import GenerationAccepted, UpscaleRequest
from app.services import upscale

router = APIRouter(tags=["lineage"])


@router.post("/generations/{generation_id}/upscale", status_code=202, response_model=GenerationAccepted)
def upscale_generation(
    generation_id: RowId, user: CurrentUser, catalog: CatalogDep, submit: SubmitDep, body: UpscaleRequest | None = None
) -> GenerationAccepted:
    """Image ``image_index`` resized by ``scale`` (Lanczos) and repainted at ``strength``, as an ``upscale`` step."""
    request = body or UpscaleRequest()
    generation = submit.through(
        upscale.upscale, owner=user, generation_id=generation_id, request=request, catalog=catalog
    )
    return accepted(generation)
