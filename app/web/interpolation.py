"""Interpolation form: the generation page's "Interpolate to #…" button."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from app.deps import CurrentUser, FormCsrf, SubmitDep
from app.services import interpolation
from app.services.errors import InvalidInput
from app.web.forms import FormFields

router = APIRouter(include_in_schema=False, dependencies=[FormCsrf])


def _whole_number(fields: dict[str, Any], name: str, label: str, default: str = "") -> int:
    text = str(fields.get(name, default)).strip().lstrip("#")
    if not text.isdigit():
        raise InvalidInput(f"{label} must be a whole number (got {text!r})")
    return int(text)


@router.post("/partials/generations/{generation_id}/interpolate")
def interpolate_form(generation_id: int, fields: FormFields, user: CurrentUser, submit: SubmitDep) -> Response:
    """Queue a walk from this generation to the one named in the form, then open the walk's page."""
    walk = submit.through(
        interpolation.enqueue_walk,
        owner=user,
        from_id=generation_id,
        to_id=_whole_number(fields, "to_id", "the painting to interpolate to"),
        frames=_whole_number(fields, "frames", "the number of frames", str(interpolation.DEFAULT_FRAMES)),
    )
    return RedirectResponse(f"/generations/{walk.id}", status_code=303)
