"""Provenance pages: the /provenance check a picture is dropped on, and the Content Credentials fragments.

The painting page and the share pages load a painting's Content Credentials as an htmx fragment,
read from the stored file itself, so what they show is what the file carries.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, UploadFile
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from app.db.models import Image
from app.deps import CurrentUser, FormCsrf, OptionalUser, SessionDep, SettingsDep, StoreDep, TemplatesDep
from app.http.csrf import csrf_token
from app.params import RowId
from app.services import galleries, images, provenance, sharing
from app.services.errors import StudioError
from app.services.storage import ImageStore

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


Slug = Annotated[str, Path(min_length=1, max_length=64)]


def _credentials(
    request: Request, templates: TemplatesDep, store: ImageStore, settings: SettingsDep, image: Image
) -> HTMLResponse:
    report = provenance.stored_credentials(store.read(image.sha256), identity=provenance.identity_for(settings))
    context = {"report": report, "image": image}
    return templates.TemplateResponse(request, "partials/credentials.html", context)


@router.get("/partials/images/{image_id}/credentials", response_class=HTMLResponse)
def image_credentials(
    request: Request,
    image_id: RowId,
    session: SessionDep,
    user: OptionalUser,
    store: StoreDep,
    settings: SettingsDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """A painting's Content Credentials, to whoever may see the painting."""
    image = images.get_visible(session, image_id=image_id, user=user)
    return _credentials(request, templates, store, settings, image)


@router.get("/s/{token}/images/{image_id}/credentials", response_class=HTMLResponse)
def shared_credentials(
    request: Request,
    token: str,
    image_id: RowId,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """A shared painting's Content Credentials, to anyone holding the link."""
    image = sharing.shared_image(session, sharing.resolve(session, token), image_id=image_id)
    return _credentials(request, templates, store, settings, image)


@router.get("/g/{slug}/images/{image_id}/credentials", response_class=HTMLResponse)
def unlisted_credentials(
    request: Request,
    slug: Slug,
    image_id: RowId,
    session: SessionDep,
    user: CurrentUser,
    store: StoreDep,
    settings: SettingsDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The Content Credentials of a painting in an unlisted gallery, to anyone signed in with its link."""
    image = galleries.slug_image(galleries.get_by_slug(session, slug=slug, user=user), image_id=image_id)
    return _credentials(request, templates, store, settings, image)
