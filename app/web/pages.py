"""Full HTML pages: the studio, a generation's page and the history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app.db.models import Generation, Mode, User
from app.deps import CatalogDep, CurrentUser, FormCsrf, SessionDep, SettingsDep, TemplatesDep
from app.engine.catalog import ModelCatalog
from app.http.csrf import csrf_token
from app.params import MAX_ID, RowId, parse_row_id
from app.services import estimates, feedback, generations, queue, sharing
from app.services.errors import NotFound
from app.services.steps import action_of
from app.web.brush_forms import (
    DEFAULT_STYLE_STRENGTH,
    MAX_REFERENCES,
    STYLE_METHODS,
    StyleChip,
    style_fields,
    visible_references,
)
from app.web.errors import Refusal, in_place_status
from app.web.forms import SCHEDULERS, StudioForm, default_model_spec

router = APIRouter(include_in_schema=False, dependencies=[FormCsrf])

RECENT_CARDS = 8
HISTORY_PAGE = 24
MODES = [item.value for item in Mode]


def model_names(catalog: ModelCatalog) -> list[str]:
    return [spec.name for spec in catalog.list()]


def render_studio(
    request: Request,
    templates: TemplatesDep,
    *,
    session: Session,
    user: User,
    catalog: ModelCatalog,
    default_model: str,
    form: StudioForm,
    error: str | None = None,
    status_code: int = 200,
    style_refs: list[StyleChip] | None = None,
    style_strength: str = "",
    style_method: str = "",
) -> HTMLResponse:
    """The studio page; also what a form posted without JavaScript gets back when refused.

    ``style_refs`` are the chosen style references: with any, the form paints a style job.
    """
    recent, _ = generations.list_for_user(session, user=user, limit=RECENT_CARDS)
    parent = visible_or_none(session, form.parent_id, user=user)
    context: dict[str, Any] = {
        "user": user,
        "form": form,
        "error": error,
        "models": model_names(catalog),
        "default_model": default_model,
        "schedulers": SCHEDULERS,
        "recent": recent,
        # Queue positions and waits of the queued cards, computed once for the page.
        "waits": estimates.queue_waits(session, recent),
        "parent": parent,
        "csrf_token": csrf_token(request),
        "active": "studio",
        "style_refs": style_refs or [],
        "style_strength": style_strength or f"{DEFAULT_STYLE_STRENGTH:g}",
        "style_method": style_method if style_method in STYLE_METHODS else STYLE_METHODS[0],
        "style_methods": STYLE_METHODS,
        "max_style_refs": MAX_REFERENCES,
    }
    return templates.TemplateResponse(request, "pages/studio.html", context, status_code=status_code)


def studio_again(refusal: Refusal) -> Response:
    """A studio form refused without JavaScript: the studio again, as it was typed and chosen, with the message."""
    if refusal.user is None:
        return refusal.plain_page()
    style = style_fields(refusal.form)
    return render_studio(
        refusal.request,
        refusal.templates,
        session=refusal.session,
        user=refusal.user,
        catalog=refusal.catalog,
        default_model=refusal.settings.default_model,
        form=StudioForm.submitted(refusal.fields),
        error=refusal.error.message,
        status_code=in_place_status(refusal.error),
        style_refs=visible_references(
            refusal.session, user=refusal.user, image_ids=style.image_ids, weights=style.weights
        ),
        style_strength=style.strength,
        style_method=style.method,
    )


def visible_or_none(session: Session, generation_id: int | str | None, *, user: User) -> Generation | None:
    """The generation when ``user`` may see it; a missing or hidden one (a parent, a source) shows as none."""
    row_id = parse_row_id(generation_id)
    if row_id is None:
        return None
    try:
        return generations.get_visible(session, generation_id=row_id, user=user)
    except NotFound:
        return None


@router.get("/", response_class=HTMLResponse)
def studio(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    settings: SettingsDep,
    templates: TemplatesDep,
    refine: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    style: Annotated[list[str] | None, Query()] = None,
) -> HTMLResponse:
    """The studio; ``?style=ID`` (repeatable) starts it with those images as style references."""
    form = StudioForm.fresh(default_model_spec(catalog, settings.default_model))
    if refine is not None:
        form = StudioForm.refining(generations.get_visible(session, generation_id=refine, user=user))
    return render_studio(
        request,
        templates,
        session=session,
        user=user,
        catalog=catalog,
        default_model=settings.default_model,
        form=form,
        style_refs=visible_references(session, user=user, image_ids=style or []),
    )


# How a page's header names the step that made a generation from its parent.
STEP_WORDS: dict[str, str] = {
    "refine": "Refines",
    "vary": "A variation of",
    "remix": "Remixes",
    "inpaint": "Inpainted from",
    "style": "Restyled from",
    "interpolate": "Interpolated from",
    "upscale": "Upscaled from",
}
# The generation page's explore forms, by the name a refusal is shown next to.
EXPLORE_FORMS = ("seeds", "matrix", "interpolate")


def render_generation(
    request: Request,
    templates: Jinja2Templates,
    *,
    session: Session,
    user: User,
    generation_id: int,
    refused_form: str | None = None,
    error: str | None = None,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A generation's page; with ``error``, one of its forms refused, shown as typed with the message next to it.

    ``refused_form`` is one of EXPLORE_FORMS; any other refusal (a Vary) is shown under the header.
    """
    generation = generations.get_visible(session, generation_id=generation_id, user=user)
    parent = visible_or_none(session, generation.parent_id, user=user)
    is_owner = generation.user_id == user.id
    action = action_of(generation)
    context = {
        "user": user,
        "generation": generation,
        "images": generation.images,
        "parent": parent,
        "step_words": STEP_WORDS.get(action.value if action else "refine", "Refines"),
        "my_feedback": feedback.for_user(session, user=user, image_ids=[image.id for image in generation.images]),
        "is_owner": is_owner,
        "links": sharing.links_for(session, generation=generation) if is_owner else [],
        "base_url": str(request.base_url).rstrip("/"),
        "queue_position": queue.queue_position(session, generation),
        "refused_form": refused_form if refused_form in EXPLORE_FORMS else ("page" if error else None),
        "form_error": error,
        "typed": typed or {},
        "csrf_token": csrf_token(request),
        "active": "",
    }
    return templates.TemplateResponse(request, "pages/generation.html", context, status_code=status_code)


def generation_again(refusal: Refusal) -> Response:
    """A form of a generation's page refused: the page again, the form as typed, the message next to it."""
    generation_id = parse_row_id(refusal.request.path_params.get("generation_id"))
    if refusal.user is None or generation_id is None:
        return refusal.plain_page()
    path = refusal.request.url.path
    name = "interpolate" if path.endswith("/interpolate") else str(refusal.fields.get("kind") or "seeds")
    if path.endswith("/vary"):
        name = "page"
    try:
        return render_generation(
            refusal.request,
            refusal.templates,
            session=refusal.session,
            user=refusal.user,
            generation_id=generation_id,
            refused_form=name,
            error=refusal.error.message,
            typed=refusal.fields,
            status_code=in_place_status(refusal.error),
        )
    except NotFound:
        return refusal.plain_page()


@router.get("/generations/{generation_id}", response_class=HTMLResponse)
def generation_page(
    generation_id: RowId, request: Request, session: SessionDep, user: CurrentUser, templates: TemplatesDep
) -> HTMLResponse:
    return render_generation(request, templates, session=session, user=user, generation_id=generation_id)


def _day(value: str | None) -> date | None:
    """A day from a date input; an empty or malformed one means no bound."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class HistoryQuery:
    """The history filters as the filter form and the load-more link send them."""

    q: str | None = None
    model: str | None = None
    mode: str | None = None
    cursor: int | None = None
    min_rating: str | None = None
    sort: str | None = None
    since: str | None = None
    until: str | None = None


def history_query(
    q: Annotated[str | None, Query(max_length=200)] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    mode: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    min_rating: Annotated[str | None, Query(max_length=1)] = None,
    sort: Annotated[str | None, Query(max_length=16)] = None,
    since: Annotated[str | None, Query(max_length=10)] = None,
    until: Annotated[str | None, Query(max_length=10)] = None,
) -> HistoryQuery:
    return HistoryQuery(q, model, mode, cursor, min_rating, sort, since, until)


HistoryQueryDep = Annotated[HistoryQuery, Depends(history_query)]


def history_context(session: Session, *, user: User, query: HistoryQuery) -> dict[str, Any]:
    """One page of the user's history with the filters that made it (for the load-more link).

    An empty or unknown ``mode`` means any mode: the filter form sends "" for "any".
    """
    mode_filter = Mode(query.mode) if query.mode in MODES else None
    rating = int(query.min_rating) if query.min_rating in ("1", "2", "3", "4", "5") else None
    by_rating = query.sort == "rating"
    since_day, until_day = _day(query.since), _day(query.until)
    items, next_cursor = generations.list_for_user(
        session,
        user=user,
        q=query.q or None,
        model=query.model or None,
        mode=mode_filter,
        limit=HISTORY_PAGE,
        cursor=query.cursor,
        min_rating=rating,
        by_rating=by_rating,
        since=since_day,
        until=until_day,
    )
    filters = {
        "q": query.q or "",
        "model": query.model or "",
        "mode": mode_filter.value if mode_filter else "",
        "min_rating": str(rating or ""),
        "sort": "rating" if by_rating else "",
        "since": since_day.isoformat() if since_day else "",
        "until": until_day.isoformat() if until_day else "",
    }
    more_query = urlencode({**{k: v for k, v in filters.items() if v}, "cursor": next_cursor or ""})
    return {"items": items, "next_cursor": next_cursor, "more_query": more_query, "filters": filters}


@router.get("/history", response_class=HTMLResponse)
def history(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    templates: TemplatesDep,
    query: HistoryQueryDep,
) -> HTMLResponse:
    context = history_context(session, user=user, query=query)
    context.update(
        user=user,
        models=model_names(catalog),
        modes=MODES,
        csrf_token=csrf_token(request),
        active="history",
    )
    return templates.TemplateResponse(request, "pages/history.html", context)
