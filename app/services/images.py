"""Images: the Image rows behind uploads, who may see them, and their pixels."""

from __future__ import annotations

import io

from PIL import Image as PILImage
from sqlalchemy.orm import Session

from app.db.models import Image, ImageKind, Role, User
from app.services.errors import NotFound
from app.services.imageio import decode_upload
from app.services.storage import ImageStore


def create_upload(
    session: Session,
    store: ImageStore,
    *,
    owner: User,
    data: bytes,
    max_pixels: int,
    kind: ImageKind = ImageKind.UPLOAD,
) -> Image:
    """Decode an upload safely, store it re-encoded as a metadata-free PNG, and add its row."""
    decoded = decode_upload(data, max_pixels=max_pixels)
    # The file is written before the row is committed, so a row never points at a missing file.
    stored = store.put_image(decoded.image, text_chunks=None)
    image = Image(
        sha256=stored.sha256,
        width=decoded.width,
        height=decoded.height,
        format="png",
        kind=kind,
        generation_id=None,
        index=0,
        user_id=owner.id,
    )
    session.add(image)
    session.commit()
    return image


def can_see(image: Image, user: User | None) -> bool:
    """Whether ``user`` may see ``image``: its owner, or an admin.

    Share links and public galleries widen this later; they belong here, in this one predicate,
    so every route that shows an image asks the same question.
    """
    if user is None:
        return False
    return user.role == Role.ADMIN or image.user_id == user.id


def get_visible(session: Session, *, image_id: int, user: User | None) -> Image:
    """The image, when ``user`` may see it; otherwise NotFound, so ids leak nothing."""
    image = session.get(Image, image_id)
    if image is None or not can_see(image, user):
        raise NotFound(f"image {image_id} not found")
    return image


def load_pil(store: ImageStore, image: Image) -> PILImage.Image:
    """The stored pixels of ``image``, fully loaded (the file is our own re-encoded PNG)."""
    with PILImage.open(io.BytesIO(store.read(image.sha256)), formats=["PNG"]) as picture:
        picture.load()
        return picture.copy()
