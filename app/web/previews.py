"""Share previews: a shared painting enlarged for link previews, at /s/{token}/images/{image_id}/preview.png."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from app.deps import SessionDep, StoreDep
from app.params import RowId
from app.services import previews, sharing

router = APIRouter(include_in_schema=False)

# Like the shared images themselves: anyone holding the link may cache it.
_SHARED = {"Cache-Control": "public, max-age=86400", "Content-Disposition": "inline"}


@router.get("/s/{token}/images/{image_id}/preview.png")
def shared_preview(token: str, image_id: RowId, session: SessionDep, store: StoreDep) -> Response:
    """The shared image enlarged pixel for pixel to about 600 px, for OpenGraph and chat previews."""
    image = sharing.shared_image(session, sharing.resolve(session, token), image_id=image_id)
    return Response(previews.preview_png(store.read(image.sha256)), media_type="image/png", headers=_SHARED)
