"""Pages and form routes of the other brushes: the inpainting mask editor and style jobs from the studio."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from app.db.models import Generation
from app.deps import CurrentUser, DispatchDep, RegistryDep, SessionDep, SettingsDep, TemplatesDep
from app.schemas import InpaintRequest
from app.services import compose, generations, images
from app.services.errors import NotFound, StudioError
from app.web.brush_forms import StyleFormFields, parse_style_form, visible_references
from app.web.forms import FormFields, StudioForm, check_csrf, csrf_token
from app.web.pages import model_names, not_found, render_studio
from app.web.partials import form_accepted, form_refused

router = APIRouter(include_in_schema=False)

OUTPAINT_MAX = 1024  # OutpaintRequest: each side at most 1024 pixels, in multiples of 8


@router.get("/images/{image_id}/inpaint", response_class=HTMLResponse)
def inpaint_editor(
    image_id: int,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    registry: RegistryDep,
    settings: SettingsDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The mask editor over one image: paint what to repaint, or extend the canvas to outpaint."""
    try:
        image = images.get_visible(session, image_id=image_id, user=user)
    except NotFound as error:
        return not_found(request, templates, error.message)
    source: Generation | None = None
    if image.generation_id is not None:
        try:
            source = generations.get_visible(session, generation_id=image.generation_id, user=user)
        except NotFound:
            source = None
    context = {
        "user": user,
        "image": image,
        "source": source,
        "models": model_names(registry),
        "default_model": settings.default_model,
        "strength": InpaintRequest.model_fields["strength"].default,
        "mask_blur": InpaintRequest.model_fields["mask_blur"].default,
        "outpaint_max": OUTPAINT_MAX,
        "csrf_token": csrf_token(request),
        "active": "",
    }
    return templates.TemplateResponse(request, "pages/inpaint.html", context)


@router.post("/partials/generate/style", response_class=HTMLResponse)
def generate_style(
    request: Request,
    fields: FormFields,
    style: StyleFormFields,
    session: SessionDep,
    user: CurrentUser,
    registry: RegistryDep,
    settings: SettingsDep,
    dispatch: DispatchDep,
    templates: TemplatesDep,
) -> Response:
    """Enqueue a style job from the studio form and its reference chips, as ``POST /api/generate/style`` does.

    Answers like ``/partials/generate``: the job's card (htmx) or a redirect to its page; a refused
    form gets the errors fragment (htmx) or the studio again with what was typed and chosen.
    """
    try:
        check_csrf(request, fields)
        body = parse_style_form(fields, style)
        new = compose.style_generation(
            session, body, user=user, registry=registry, default_model=settings.default_model
        )
        generation = generations.enqueue(session, owner=user, new=new)
    except StudioError as error:
        message = error.message
        return form_refused(
            request,
            templates,
            error,
            lambda: render_studio(
                request,
                templates,
                session=session,
                user=user,
                registry=registry,
                default_model=settings.default_model,
                form=StudioForm.submitted(fields),
                error=message,
                status_code=422,
                style_refs=visible_references(session, user=user, image_ids=style.image_ids, weights=style.weights),
                style_strength=style.strength,
                style_method=style.method,
            ),
        )
    return form_accepted(request, templates, session, generation, dispatch)
