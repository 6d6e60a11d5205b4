"""Provenance page: dropping a picture on /provenance to read its Content Credentials and watermark."""

from __future__ import annotations

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from app.deps import CurrentUser, FormCsrf, SettingsDep, TemplatesDep
from app.http.csrf import csrf_token
from app.services import provenance
from app.services.errors import StudioError

router = APIRouter(include_in_schema=False, dependencies=[FormCsrf])


def _render(
    request: Request,
    templates: TemplatesDep,
    user: CurrentUser,
    *,
    report: provenance.CheckReport | None = None,
    filename: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "user": user,
        "active": "provenance",
        "csrf_token": csrf_token(request),
        "report": report,
        "filename": filename,
        "error": error,
    }
    return templates.TemplateResponse(request, "pages/provenance.html", context, status_code=status_code)


@router.get("/provenance", response_class=HTMLResponse)
def provenance_page(request: Request, templates: TemplatesDep, user: CurrentUser) -> HTMLResponse:
    return _render(request, templates, user)


@router.post("/provenance", response_class=HTMLResponse)
async def check_picture(
    request: Request, file: UploadFile, templates: TemplatesDep, user: CurrentUser, settings: SettingsDep
) -> HTMLResponse:
    """The page again with what the dropped picture says about its origin (or why it cannot be read)."""
    name = (file.filename or "")[:200]
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        limit = settings.max_upload_bytes // (1024 * 1024)
        return _render(
            request, templates, user, filename=name, error=f"the file is larger than {limit} MiB", status_code=413
        )
    try:
        report = await run_in_threadpool(
            provenance.check, data, max_pixels=settings.max_upload_pixels, identity=provenance.identity_for(settings)
        )
    except StudioError as error:
        return _render(request, templates, user, filename=name, error=str(error), status_code=error.status_code)
    return _render(request, templates, user, report=report, filename=name)
