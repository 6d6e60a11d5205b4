"""ControlNets API: the ControlNet folders a generate request may name, and a guide image's map."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.deps import CatalogDep, CurrentUser, SessionDep, StoreDep
from app.params import ModelName
from app.schemas import ControlNetOut, ControlPreviewRequest
from app.services import controlnets

router = APIRouter(tags=["models"])


@router.get("/controlnets", response_model=list[ControlNetOut])
def list_controlnets(
    catalog: CatalogDep,
    model: Annotated[ModelName | None, Query(description="only the ControlNets that fit this model")] = None,
) -> list[ControlNetOut]:
    """Every ControlNet folder under the models folder's ``controlnet/``, its family where its config tells."""
    found = controlnets.installed(catalog.models_dir) if model is None else controlnets.fitting(catalog, model)
    return [ControlNetOut(name=item.name, family=item.family, size=item.size) for item in found]


@router.post(
    "/control/preview",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the control map as a PNG"}},
)
def control_preview(body: ControlPreviewRequest, session: SessionDep, user: CurrentUser, store: StoreDep) -> Response:
    """The map a ControlNet would follow, computed from one of your images (canny, scribble or none)."""
    png = controlnets.preview(
        session, store, image_id=body.image_id, kind=body.kind, user=user, width=body.width, height=body.height
    )
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})
