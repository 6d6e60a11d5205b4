"""Image store: content-addressed PNG files and their WebP thumbnails on disk.

A file's name is the SHA-256 of its bytes (``root/ab/cd/<sha256>.png``; a painting's attention maps
beside it under ``root/attention/ab/<sha256>.npz``), so the same picture is
stored once, a path is never built from anything a user typed, and a file never changes once
written. Writes go to a temporary file in the destination directory and are moved into place
with ``os.replace``: a reader sees the whole file or none, and two workers writing the same
bytes at once both end with the same complete file.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from app.services import imageio
from app.services.errors import InvalidInput, NotFound

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    path: Path
    width: int | None = None
    height: int | None = None


def _write_atomically(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Writes ``path`` whole or not at all; ``durable`` also syncs it to disk before it takes the name.

    A painting is synced before its row commits (a row never points at a file a crash lost). What
    can be made again or done without (a thumbnail, attention maps) is not: a sync costs a job
    about 2 ms on this kind of disk. After a crash such a file may be left empty or cut short,
    and its readers treat that as no file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same directory as the destination, so os.replace is a rename on one file system.
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(descriptor, "wb") as temp:
            temp.write(data)
            if durable:
                temp.flush()
                os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _whole(path: Path) -> bool:
    """A file that is there and not empty (an unsynced file a crash cut off may be left empty)."""
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False


class ImageStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @staticmethod
    def _checked(sha256: str) -> str:
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise InvalidInput(f"not an image hash: {sha256!r:.80} (expected 64 lowercase hex digits)")
        return sha256

    def path(self, sha256: str) -> Path:
        sha256 = self._checked(sha256)
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.png"

    def thumbnail_path(self, sha256: str, *, max_side: int = 256) -> Path:
        """The WebP thumbnail of a stored PNG, made on the first request and reused after."""
        sha256 = self._checked(sha256)
        thumb = self.root / "thumbs" / sha256[:2] / f"{sha256}.webp"
        if _whole(thumb):
            return thumb
        # Two requests may both get here and both render it; each replaces the file atomically
        # with identical bytes, so the race costs a little work and nothing else.
        with Image.open(io.BytesIO(self.read(sha256)), formats=["PNG"]) as image:
            image.load()
            _write_atomically(thumb, imageio.make_thumbnail(image, max_side=max_side), durable=False)
        return thumb

    def attention_path(self, sha256: str) -> Path:
        """Where the attention maps of a stored PNG are kept (written by app.services.attention)."""
        sha256 = self._checked(sha256)
        return self.root / "attention" / sha256[:2] / f"{sha256}.npz"

    def put_attention(self, sha256: str, data: bytes) -> None:
        _write_atomically(self.attention_path(sha256), data, durable=False)

    def hashes(self, *, older_than: float) -> list[str]:
        """The hashes of stored PNGs last written before ``older_than`` (a POSIX time)."""
        found = []
        for path in self.root.glob("??/??/*.png"):
            try:
                written = path.stat().st_mtime
            except FileNotFoundError:  # removed meanwhile
                continue
            if _SHA256.fullmatch(path.stem) and written < older_than:
                found.append(path.stem)
        return found

    def remove(self, sha256: str) -> bool:
        """Deletes a PNG and its thumbnail; False when there was no such file."""
        sha256 = self._checked(sha256)
        (self.root / "thumbs" / sha256[:2] / f"{sha256}.webp").unlink(missing_ok=True)
        self.attention_path(sha256).unlink(missing_ok=True)
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"image file {sha256} is missing from the store") from exc

    def put_png(self, png_bytes: bytes) -> StoredFile:
        if not png_bytes.startswith(b"\x89PNG\r\n\x1a\n"):
            raise InvalidInput("the image store keeps PNG files only")
        sha256 = hashlib.sha256(png_bytes).hexdigest()
        path = self.path(sha256)
        # The name is the content's hash, so a file already there holds these very bytes.
        if not path.is_file():
            _write_atomically(path, png_bytes)
        return StoredFile(sha256=sha256, path=path)

    def put_image(self, image: Image.Image, *, text_chunks: dict[str, str] | None = None) -> StoredFile:
        stored = self.put_png(imageio.encode_png(image, text_chunks))
        return StoredFile(sha256=stored.sha256, path=stored.path, width=image.width, height=image.height)
