"""Lineage pages: a picture's tree of steps, comparing 2-4 generations, grids, and the vary/grid forms."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.db.models import Generation, User
from app.deps import CatalogDep, CurrentUser, FormCsrf, SessionDep, SubmitDep, TemplatesDep
from app.http.csrf import csrf_token
from app.params import MAX_ID, RowId, UpscaleFields, parse_row_id
from app.services import explore, generations, lineage, upscale
from app.services.errors import InvalidInput, NotFound
from app.services.steps import action_of
from app.web.errors import refused_page
from app.web.forms import FormFields
from app.web.pages import generation_again

router = APIRouter(include_in_schema=False, dependencies=[FormCsrf])

COMPARE_MIN, COMPARE_MAX = 2, 4
# The rows of the compare table: label and how to read the value from a generation.
COMPARE_ROWS: tuple[tuple[str, str], ...] = (
    ("Step", "action"),
    ("Negative prompt", "negative_prompt"),
    ("Mode", "mode"),
    ("Model", "model"),
    ("Scheduler", "scheduler"),
    ("Seed", "seed"),
    ("Steps", "steps"),
    ("Guidance", "guidance"),
    ("Size", "size"),
    ("Strength", "strength"),
    ("Status", "status"),
)


def _compare_value(generation: Generation, key: str) -> str:
    if key == "action":
        action = action_of(generation)
        return action.value if action else "first"
    values: dict[str, Any] = {
        "negative_prompt": generation.negative_prompt or "—",
        "mode": generation.mode.value,
        "model": generation.model,
        "scheduler": generation.scheduler,
        "seed": generation.seed,
        "steps": generation.steps,
        "guidance": f"{generation.guidance:g}",
        "size": f"{generation.width}×{generation.height}",
        "strength": "—" if generation.strength is None else f"{generation.strength:g}",
        "status": generation.status.value,
    }
    return str(values[key])


def parse_ids(values: list[str]) -> list[int]:
    """``ids=1,2,3`` or ``ids=1&ids=2``: distinct ids in the order given; malformed ones compare nothing (404)."""
    ids: list[int] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            number = parse_row_id(part)
            if number is None:
                raise NotFound(f"ids must be generation numbers separated by commas (got {part!r})")
            if number not in ids:
                ids.append(number)
    if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
        raise NotFound(f"pick between {COMPARE_MIN} and {COMPARE_MAX} generations to compare (got {len(ids)})")
    return ids


def compare_context(session: Session, *, user: User, ids: list[int]) -> dict[str, Any]:
    columns = [generations.get_visible(session, generation_id=generation_id, user=user) for generation_id in ids]
    first = columns[0]
    rows = []
    for label, key in COMPARE_ROWS:
        values = [_compare_value(generation, key) for generation in columns]
        rows.append({"label": label, "cells": values, "differs": len(set(values)) > 1})
    prompt_diffs = [None] + [lineage.prompt_diff(first.prompt, generation.prompt) for generation in columns[1:]]
    first_images = [generation.images[0] if generation.images else None for generation in columns]
    return {
        "columns": columns,
        "rows": rows,
        "prompt_diffs": prompt_diffs,
        "prompt_differs": len({generation.prompt for generation in columns}) > 1,
        "first_images": first_images,
        "image_ids": [image.id for image in first_images if image is not None],
    }


def render_lineage(
    request: Request,
    templates: TemplatesDep,
    *,
    session: Session,
    user: User,
    generation_id: int,
    compare_error: str | None = None,
    ticked: list[str] | None = None,
) -> HTMLResponse:
    """The lineage page; with ``compare_error``, its compare form refused, the ticked boxes kept."""
    tree = lineage.build_lineage(session, generation_id=generation_id, user=user)
    context = {
        "user": user,
        "tree": tree,
        "compare_error": compare_error,
        "ticked": {part.strip() for value in ticked or [] for part in value.split(",")},
        "csrf_token": csrf_token(request),
        "active": "",
    }
    return templates.TemplateResponse(request, "pages/lineage.html", context)


@router.get("/generations/{generation_id}/lineage", response_class=HTMLResponse)
def lineage_page(
    generation_id: RowId, request: Request, session: SessionDep, user: CurrentUser, templates: TemplatesDep
) -> HTMLResponse:
    return render_lineage(request, templates, session=session, user=user, generation_id=generation_id)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    templates: TemplatesDep,
    ids: Annotated[list[str], Query(max_length=200)] = [],  # noqa: B006 - FastAPI copies query defaults
    from_: Annotated[int | None, Query(alias="from", ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    """2 to 4 generations side by side; a missing, unseen or wrong number of ids answers 404.

    Sent from a lineage page (``from``), a wrong number of ticks answers that page again with the
    message by its Compare button, as it was ticked.
    """
    try:
        picked = parse_ids(ids)
    except NotFound as error:
        if from_ is None:
            raise
        return render_lineage(
            request, templates, session=session, user=user, generation_id=from_, compare_error=error.message, ticked=ids
        )
    context = compare_context(session, user=user, ids=picked)
    context.update(user=user, csrf_token=csrf_token(request), active="")
    return templates.TemplateResponse(request, "pages/compare.html", context)


@router.get("/batches/{batch}", response_class=HTMLResponse)
def batch_page(
    batch: str, request: Request, session: SessionDep, user: CurrentUser, templates: TemplatesDep
) -> HTMLResponse:
    cells = explore.batch_cells(session, batch=batch, user=user)
    if not cells:
        raise NotFound(f"grid {batch} not found")
    info = explore.batch_info(cells[0]) or {}
    context = {
        "user": user,
        "batch": batch,
        "kind": info.get("kind"),
        "cells": [{"generation": cell, "info": explore.batch_info(cell)} for cell in cells],
        "compare_ids": ",".join(str(cell.id) for cell in cells[:COMPARE_MAX]),
        "csrf_token": csrf_token(request),
        "active": "",
    }
    return templates.TemplateResponse(request, "pages/batch.html", context)


@router.post("/partials/generations/{generation_id}/vary")
@refused_page(generation_again)
def vary_form(generation_id: RowId, user: CurrentUser, submit: SubmitDep) -> Response:
    """The generation page's Vary button: a new seed, then the new generation's page."""
    generation = submit.through(explore.vary, owner=user, generation_id=generation_id)
    return RedirectResponse(f"/generations/{generation.id}", status_code=303)


@router.post("/partials/generations/{generation_id}/upscale")
@refused_page(generation_again)
def upscale_form(
    generation_id: RowId, fields: FormFields, user: CurrentUser, catalog: CatalogDep, submit: SubmitDep
) -> Response:
    """An image's Upscale x2 button: twice the size, lightly repainted, then the new generation's page."""
    text = str(fields.get("image_index", "0")).strip() or "0"
    if not (text.isascii() and text.isdigit() and int(text) <= 7):
        raise InvalidInput(f"image_index must be 0 to 7 (got {text[:20]!r})")
    request = UpscaleFields(image_index=int(text))
    generation = submit.through(
        upscale.upscale, owner=user, generation_id=generation_id, request=request, catalog=catalog
    )
    return RedirectResponse(f"/generations/{generation.id}", status_code=303)


@router.post("/partials/generations/{generation_id}/grid")
@refused_page(generation_again)
def grid_form(
    generation_id: RowId, fields: FormFields, session: SessionDep, user: CurrentUser, submit: SubmitDep
) -> Response:
    """The generation page's explorer: a seed grid or a prompt matrix from its parameters."""
    # Every cell is a step from the original, so the grid shows up in its lineage too.
    if fields.get("kind") == "matrix":
        alternatives = [part for part in str(fields.get("alternatives", "")).split(",") if part.strip()]
        batch, _ = submit.through(
            explore.prompt_matrix_from,
            owner=user,
            generation_id=generation_id,
            replace_text=str(fields.get("replace", "")).strip(),
            alternatives=alternatives,
        )
    else:
        count = str(fields.get("count", "4")).strip()
        if not count.isdigit() or len(count) > 9:
            raise InvalidInput(f"the number of seeds must be a whole number from 2 to 16 (got {count[:20]!r})")
        batch, _ = submit.through(explore.seed_grid_from, owner=user, generation_id=generation_id, count=int(count))
    return RedirectResponse(f"/batches/{batch}", status_code=303)
