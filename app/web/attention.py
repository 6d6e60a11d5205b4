"""Attention on the painting's page: the prompt as a strip of words with their heat maps, and the
one-click refines for words that barely landed (a fragment loaded by htmx, and its forms)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.deps import CurrentUser, FormCsrf, SessionDep, StoreDep, SubmitDep, TemplatesDep
from app.http.csrf import csrf_token
from app.params import RowId
from app.services import attention

router = APIRouter(prefix="/partials", include_in_schema=False, dependencies=[FormCsrf])


@router.get("/images/{image_id}/attention", response_class=HTMLResponse)
def attention_strip(
    image_id: RowId, request: Request, session: SessionDep, user: CurrentUser, store: StoreDep, templates: TemplatesDep
) -> HTMLResponse:
    """The word strip of one image of a painting (with buttons for its siblings)."""
    found = attention.for_image(session, store, image_id=image_id, user=user)
    siblings = found.image.generation.images if found.image.generation is not None else [found.image]
    context = {
        "attention": found,
        "image": found.image,
        "images": siblings,
        "weight_up": attention.WEIGHT_UP,
        "csrf_token": csrf_token(request),
    }
    return templates.TemplateResponse(request, "partials/attention.html", context)


@router.post("/images/{image_id}/attention/refine")
def refine_from_attention(
    image_id: RowId,
    how: Annotated[Literal["weight", "earlier"], Form()],
    user: CurrentUser,
    store: StoreDep,
    submit: SubmitDep,
) -> RedirectResponse:
    """The hint's buttons: the weak words weighted up or moved earlier, then the new painting's page."""
    generation = submit.through(attention.refine, store, owner=user, image_id=image_id, how=how)
    return RedirectResponse(f"/generations/{generation.id}", status_code=303)
