"""Stored pictures as responses: a small file is read whole in the route's thread, a large one streamed.

Starlette's ``FileResponse`` checks, opens, reads and closes its file each in a worker-thread hop
of its own, each a thread woken and then the event loop. A PNG of the studio is tens of kilobytes,
and the route already runs in a worker thread, so a file up to ``WHOLE_FILE_BYTES`` is read there
and sent as it is (a finished job's PNG came 0.5-1 ms sooner on two cores); a larger one (an
upscaled canvas) still streams. The store names a PNG by its SHA-256, which is its ETag; a
thumbnail, made from it and made again the same way, gets that name as a weak ETag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from fastapi.responses import FileResponse, Response

from app.services.storage import ImageStore

# Up to this size a file is read into memory and sent in one piece.
WHOLE_FILE_BYTES = 4 * 1024 * 1024


def stored_png(store: ImageStore, sha256: str, *, headers: Mapping[str, str]) -> Response:
    """The stored PNG named ``sha256``."""
    return _file(store.path(sha256), media_type="image/png", headers=headers, etag=f'"{sha256}"')


def stored_thumbnail(store: ImageStore, sha256: str, *, headers: Mapping[str, str]) -> Response:
    """The WebP thumbnail of the stored PNG named ``sha256`` (made on the first request)."""
    return _file(store.thumbnail_path(sha256), media_type="image/webp", headers=headers, etag=f'W/"{sha256}"')


def _file(path: Path, *, media_type: str, headers: Mapping[str, str], etag: str) -> Response:
    try:
        with path.open("rb") as file:
            content = file.read() if os.fstat(file.fileno()).st_size <= WHOLE_FILE_BYTES else None
    except FileNotFoundError:
        content = None  # FileResponse answers for a missing file as it always has
    if content is None:
        return FileResponse(path, media_type=media_type, headers=dict(headers))
    return Response(content, media_type=media_type, headers={**headers, "ETag": etag})
