"""Pages and form routes of the other brushes: the inpainting mask editor and style jobs from the studio."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.deps import CatalogDep, CurrentUser, FormCsrf, SessionDep, SettingsDep, SubmitDep, TemplatesDep
from app.http.csrf import csrf_token
from app.params import RowId
from app.schemas import InpaintRequest
from app.services import compose, images
from app.web.brush_forms import StyleFormFields, parse_style_form
from app.web.errors import refused_page
from app.web.forms import FormFields
from app.web.pages import model_names, studio_again, visible_or_none
from app.web.partials import form_accepted

router = APIRouter(include_in_schema=False, dependencies=[FormCsrf])

OUTPAINT_MAX = 1024  # OutpaintRequest: each side at most 1024 pixels, in multiples of 8


@router.get("/images/{image_id}/inpaint", response_class=HTMLResponse)
def inpaint_editor(
    image_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    settings: SettingsDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The mask editor over one image: paint what to repaint, or extend the canvas to outpaint."""
    image = images.get_visible(session, image_id=image_id, user=user)
    source = visible_or_none(session, image.generation_id, user=user)
    context = {
        "user": user,
        "image": image,
        "source": source,
        "models": model_names(catalog),
        "default_model": settings.default_model,
        "strength": InpaintRequest.model_fields["strength"].default,
        "mask_blur": InpaintRequest.model_fields["mask_blur"].default,
        "outpaint_max": OUTPAINT_MAX,
        "csrf_token": csrf_token(request),
        "active": "",
    }
    return templates.TemplateResponse(request, "pages/inpaint.html", context)


@router.post("/partials/generate/style", response_class=HTMLResponse)
@refused_page(studio_again)
def generate_style(
    request: Request,
    fields: FormFields,
    style: StyleFormFields,
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    settings: SettingsDep,
    submit: SubmitDep,
    templates: TemplatesDep,
) -> Response:
    """Submit a style job from the studio form and its reference chips, as ``POST /api/generate/style`` does.

    Answers like ``/partials/generate``: the job's card (htmx) or a redirect to its page; a refused
    form gets the errors fragment (htmx) or the studio again with what was typed and chosen.
    """
    body = parse_style_form(fields, style)
    new = compose.style_generation(session, body, user=user, catalog=catalog, default_model=settings.default_model)
    return form_accepted(request, templates, session, submit(owner=user, new=new))
