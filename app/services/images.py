"""Images: the Image rows behind uploads, who may see them, and their pixels."""

from __future__ import annotations

import io

from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Gallery, GalleryItem, Image, ImageKind, Role, User, Visibility
from app.services.errors import NotFound
from app.services.imageio import decode_upload
from app.services.storage import ImageStore

# Galleries whose images any signed-in user may open by id (private ones only through a share link).
# Galleries whose images any signed-in user may open by id; an unlisted gallery's images open
# only through its slug (/g/{slug}/images/...), so counting ids finds nothing.
LISTED_TO_USERS = (Visibility.PUBLIC,)


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


def _in_visible_gallery(session: Session, image_id: int) -> bool:
    stmt = (
        select(GalleryItem.image_id)
        .join(Gallery, Gallery.id == GalleryItem.gallery_id)
        .where(GalleryItem.image_id == image_id, Gallery.visibility.in_(LISTED_TO_USERS))
        .limit(1)
    )
    return session.scalar(stmt) is not None


def can_see(session: Session, image: Image, user: User | None) -> bool:
    """Whether ``user`` may see ``image`` by its id: its owner, an admin, or any signed-in user when
    the image sits in a public gallery.

    Share links open images through their own routes (``/s/{token}/images/...``, checked by
    app.services.sharing), so an id alone never reaches a private image.
    """
    if user is None:
        return False
    if user.role == Role.ADMIN or image.user_id == user.id:
        return True
    return _in_visible_gallery(session, image.id)


def get_visible(session: Session, *, image_id: int, user: User | None) -> Image:
    """The image, when ``user`` may see it; otherwise NotFound, so ids leak nothing."""
    image = session.get(Image, image_id)
    if image is None or not can_see(session, image, user):
        raise NotFound(f"image {image_id} not found")
    return image


def get_owned(session: Session, *, image_id: int, user: User) -> Image:
    """The image, when ``user`` owns it (or is an admin): what may go into their galleries."""
    image = session.get(Image, image_id)
    if image is None or not (user.role == Role.ADMIN or image.user_id == user.id):
        raise NotFound(f"image {image_id} not found")
    return image


def load_pil(store: ImageStore, image: Image) -> PILImage.Image:
    """The stored pixels of ``image``, fully loaded (the file is our own re-encoded PNG)."""
    with PILImage.open(io.BytesIO(store.read(image.sha256)), formats=["PNG"]) as picture:
        picture.load()
        return picture.copy()
