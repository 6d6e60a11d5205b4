"""ZIP downloads: a gallery's PNGs as one attachment, for the API, the gallery page and share links."""

from __future__ import annotations

from starlette.responses import Response

from app.db.models import Gallery
from app.services import galleries
from app.services.storage import ImageStore


def gallery_zip(store: ImageStore, gallery: Gallery) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{galleries.zip_name(gallery)}"'}
    return Response(galleries.zip_bytes(store, gallery), media_type="application/zip", headers=headers)
