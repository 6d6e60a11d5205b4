"""Stored pictures as responses: a small file is read whole in the route's thread, a large one streamed.

Starlette's ``FileResponse`` checks, opens, reads and closes its file each in a worker-thread hop
of its own. A PNG of the studio is tens of kilobytes, and each hop (a worker thread woken, then the
event loop) costs more than reading it: on two cores the four hops were about half of fetching a
finished job's PNG. The route already runs in a worker thread, so a file up to
``WHOLE_FILE_BYTES`` is read there and sent as it is; a larger one (an upscaled canvas) still
streams. The store names files by their SHA-256, which is their ETag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from fastapi.responses import FileResponse, Response

# Up to this size a file is read into memory and sent in one piece.
WHOLE_FILE_BYTES = 4 * 1024 * 1024


def stored_file(path: Path, *, media_type: str, headers: Mapping[str, str], sha256: str) -> Response:
    """The file at ``path`` (named by its ``sha256``) with ``headers``, read whole where it is small."""
    try:
        with path.open("rb") as file:
            content = file.read() if os.fstat(file.fileno()).st_size <= WHOLE_FILE_BYTES else None
    except FileNotFoundError:
        content = None  # FileResponse answers for a missing file as it always has
    if content is None:
        return FileResponse(path, media_type=media_type, headers=dict(headers))
    return Response(content, media_type=media_type, headers={**headers, "ETag": f'"{sha256}"'})
