"""htmx fragments: submitting the studio form, job cards, and more history; hidden from OpenAPI."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.db.models import Generation, Mode
from app.deps import BusDep, CatalogDep, CurrentUser, FormCsrf, SessionDep, SettingsDep, SubmitDep, TemplatesDep
from app.http.csrf import csrf_token
from app.params import RowId
from app.services import estimates, generations, queue
from app.services.compose import new_generation
from app.services.errors import Conflict
from app.web.errors import is_htmx, refused_page
from app.web.forms import FormFields, parse_prompt_form
from app.web.pages import HistoryQueryDep, history_context, studio_again

router = APIRouter(prefix="/partials", include_in_schema=False, dependencies=[FormCsrf])


def card_response(
    request: Request, templates: TemplatesDep, session: Session, generation: Generation, *, clear_errors: bool = False
) -> HTMLResponse:
    queue_position = queue.queue_position(session, generation)
    context = {
        "generation": generation,
        "images": generation.images,
        "queue_position": queue_position,
        "wait_estimate": estimates.describe(estimates.wait_seconds(session, generation, queue_position=queue_position)),
        "clear_errors": clear_errors,
        "csrf_token": csrf_token(request),
    }
    return templates.TemplateResponse(request, "partials/card.html", context)


def form_accepted(request: Request, templates: TemplatesDep, session: Session, generation: Generation) -> Response:
    """A submitted job: its card for htmx, else a redirect to its page."""
    if not is_htmx(request):
        return RedirectResponse(f"/generations/{generation.id}", status_code=303)
    return card_response(request, templates, session, generation, clear_errors=True)


@router.post("/generate", response_class=HTMLResponse)
@refused_page(studio_again)
def generate(
    request: Request,
    fields: FormFields,
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    settings: SettingsDep,
    submit: SubmitDep,
    templates: TemplatesDep,
) -> Response:
    """Submit a prompt job from the studio form, exactly as ``POST /api/generate/prompt`` does.

    With htmx the answer is the job's card, or the form-errors fragment, answered in place with
    200 and retargeted into ``#form-errors``. Without JavaScript the answer is a
    redirect to the generation's page, or the studio page again with the error and what was typed.
    """
    body = parse_prompt_form(fields)
    new = new_generation(body, mode=Mode.TXT2IMG, catalog=catalog, default_model=settings.default_model)
    return form_accepted(request, templates, session, submit(owner=user, new=new))


@router.get("/generations/{generation_id}/card", response_class=HTMLResponse)
def card(
    generation_id: RowId, request: Request, session: SessionDep, user: CurrentUser, templates: TemplatesDep
) -> HTMLResponse:
    generation = generations.get_visible(session, generation_id=generation_id, user=user)
    return card_response(request, templates, session, generation)


@router.post("/generations/{generation_id}/cancel", response_class=HTMLResponse)
def cancel(
    generation_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    bus: BusDep,
    templates: TemplatesDep,
) -> Response:
    """Cancel the job and answer its card; a job that already ended just shows how it ended."""
    try:
        generation = queue.cancel(session, generation_id=generation_id, user=user)
        bus.publish(generation.id, "status", {"status": generation.status.value})
    except Conflict:
        # Not an error to show: the job ended before the click arrived, and its card says how.
        generation = generations.get_visible(session, generation_id=generation_id, user=user)
    if not is_htmx(request):
        return RedirectResponse(f"/generations/{generation.id}", status_code=303)
    return card_response(request, templates, session, generation)


@router.get("/history", response_class=HTMLResponse)
def history_items(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    templates: TemplatesDep,
    query: HistoryQueryDep,
) -> HTMLResponse:
    """The next page of history tiles, and the load-more link swapped out of band."""
    context = history_context(session, user=user, query=query)
    return templates.TemplateResponse(request, "partials/history_items.html", {**context, "oob": True})
