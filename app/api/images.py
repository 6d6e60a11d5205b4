"""Images API: uploads in, stored PNGs and thumbnails out, only to those who may see them."""

from __future__ import annotations

from fastapi import APIRouter, UploadFile
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from app.db.session import reading
from app.deps import CallerDep, CurrentUser, SessionDep, SettingsDep, StoreDep
from app.http.files import stored_png, stored_thumbnail
from app.params import RowId
from app.schemas import UploadOut
from app.services import images
from app.services.errors import TooLarge

router = APIRouter(tags=["images"])

# Served with our own content type and no user-supplied name; cache forever (content addressed).
_IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable", "Content-Disposition": "inline"}


@router.post("/uploads", status_code=201, response_model=UploadOut)
async def upload_image(
    file: UploadFile, session: SessionDep, user: CurrentUser, store: StoreDep, settings: SettingsDep
) -> UploadOut:
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise TooLarge(f"the file is larger than {settings.max_upload_bytes // (1024 * 1024)} MiB")
    image = await run_in_threadpool(
        images.create_upload, session, store, owner=user, data=data, max_pixels=settings.max_upload_pixels
    )
    return UploadOut(id=image.id, width=image.width, height=image.height)


@router.get("/images/{image_id}", response_class=FileResponse)
def get_image(image_id: RowId, session: SessionDep, caller: CallerDep, store: StoreDep) -> Response:
    with reading(session):  # who asks, the row and the file in this one worker-thread hop
        image = images.get_visible(session, image_id=image_id, user=caller.optional())
        return stored_png(store, image.sha256, headers=_IMMUTABLE)


@router.get("/images/{image_id}/thumb", response_class=FileResponse)
def get_thumbnail(image_id: RowId, session: SessionDep, caller: CallerDep, store: StoreDep) -> Response:
    with reading(session):
        image = images.get_visible(session, image_id=image_id, user=caller.optional())
        return stored_thumbnail(store, image.sha256, headers=_IMMUTABLE)
