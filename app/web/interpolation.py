"""Interpolation form: the generation page's "Interpolate to #…" button."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from app.deps import CurrentUser, FormCsrf, SubmitDep
from app.params import RowId, parse_row_id
from app.services import interpolation
from app.services.errors import InvalidInput
from app.web.errors import refused_page
from app.web.forms import FormFields
from app.web.pages import generation_again

router = APIRouter(include_in_schema=False, dependencies=[FormCsrf])


def _whole_number(fields: dict[str, Any], name: str, label: str, default: str = "") -> int:
    text = str(fields.get(name, default)).strip().lstrip("#")
    if not text.isdigit():
        raise InvalidInput(f"{label} must be a whole number (got {text[:20]!r})")
    if len(text) > 9:
        raise InvalidInput(f"{label} is far too large (got {text[:20]}…)")
    return int(text)


def _painting(fields: dict[str, Any]) -> int:
    to_id = parse_row_id(fields.get("to_id"))
    if to_id is None:
        given = str(fields.get("to_id", ""))[:20]
        raise InvalidInput(f"the painting to interpolate to must be a whole number, a generation's id (got {given!r})")
    return to_id


@router.post("/partials/generations/{generation_id}/interpolate")
@refused_page(generation_again)
def interpolate_form(generation_id: RowId, fields: FormFields, user: CurrentUser, submit: SubmitDep) -> Response:
    """Queue a walk from this generation to the one named in the form, then open the walk's page."""
    walk = submit.through(
        interpolation.enqueue_walk,
        owner=user,
        from_id=generation_id,
        to_id=_painting(fields),
        frames=_whole_number(fields, "frames", "the number of frames", str(interpolation.DEFAULT_FRAMES)),
    )
    return RedirectResponse(f"/generations/{walk.id}", status_code=303)
