"""The studio's other brushes: style reference and inpainting (outpainting included)."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.generations import accepted
from app.deps import CatalogDep, CurrentUser, SessionDep, SettingsDep, SubmitDep
from app.schemas import GenerationAccepted, InpaintRequest, StyleRequest
from app.services import compose

router = APIRouter(tags=["generations"])


@router.post("/generate/style", status_code=202, response_model=GenerationAccepted)
def generate_style(
    body: StyleRequest,
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    settings: SettingsDep,
    submit: SubmitDep,
) -> GenerationAccepted:
    new = compose.style_generation(session, body, user=user, catalog=catalog, default_model=settings.default_model)
    return accepted(submit(owner=user, new=new))


@router.post("/generate/inpaint", status_code=202, response_model=GenerationAccepted)
def generate_inpaint(
    body: InpaintRequest,
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    settings: SettingsDep,
    submit: SubmitDep,
) -> GenerationAccepted:
    new, notes = compose.inpaint_generation(
        session, body, user=user, catalog=catalog, default_model=settings.default_model
    )
    return accepted(submit(owner=user, new=new), notes)
