"""Interpolation form: the generation page's "Interpolate to #…" button."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from app.deps import CurrentUser, DispatchDep, SessionDep, TemplatesDep
from app.services import interpolation
from app.services.errors import InvalidInput, StudioError
from app.web.forms import FormFields, check_csrf, csrf_token

router = APIRouter(include_in_schema=False)


def _whole_number(fields: dict[str, Any], name: str, label: str, default: str = "") -> int:
    text = str(fields.get(name, default)).strip().lstrip("#")
    if not text.isdigit():
        raise InvalidInput(f"{label} must be a whole number (got {text!r})")
    return int(text)


@router.post("/partials/generations/{generation_id}/interpolate")
def interpolate_form(
    generation_id: int,
    request: Request,
    fields: FormFields,
    session: SessionDep,
    user: CurrentUser,
    dispatch: DispatchDep,
    templates: TemplatesDep,
) -> Response:
    """Queue a walk from this generation to the one named in the form, then open the walk's page."""
    try:
        check_csrf(request, fields)
        walk = interpolation.enqueue_walk(
            session,
            owner=user,
            from_id=generation_id,
            to_id=_whole_number(fields, "to_id", "the painting to interpolate to"),
            frames=_whole_number(fields, "frames", "the number of frames", str(interpolation.DEFAULT_FRAMES)),
        )
    except StudioError as error:
        context = {"message": error.message, "csrf_token": csrf_token(request), "active": ""}
        return templates.TemplateResponse(request, "pages/not_found.html", context, status_code=error.status_code)
    dispatch(walk.id)
    return RedirectResponse(f"/generations/{walk.id}", status_code=303)
