"""Galleries: creating and editing them, their items (order, captions, cover), who sees them, and ZIPs."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Gallery, GalleryItem, Image, ImageKind, Role, User, Visibility
from app.services import feedback, images
from app.services.errors import Conflict, InvalidInput, NotFound
from app.services.storage import ImageStore

MAX_TITLE = 200
MAX_DESCRIPTION = 5000
MAX_CAPTION = 2000
EXPLORE_PAGE = 24
SORTS = ("position", "rating", "newest")


def _is_owner(user: User | None, gallery: Gallery) -> bool:
    return user is not None and (user.role == Role.ADMIN or gallery.owner_id == user.id)


def can_see(user: User | None, gallery: Gallery) -> bool:
    """By its id: its owner and admins always; any signed-in user when it is public.

    An unlisted gallery reaches others only by its slug (``get_by_slug``, ``/g/{slug}``), so
    counting ids finds nothing; a private one only through a share link (app.services.sharing).
    """
    if _is_owner(user, gallery):
        return True
    return user is not None and gallery.visibility in images.LISTED_TO_USERS


def get_by_slug(session: Session, *, slug: str, user: User) -> Gallery:
    """The gallery at ``/g/{slug}``: unlisted or public ones for anyone signed in, any for its owner."""
    gallery = session.scalar(select(Gallery).where(Gallery.slug == slug[:64])) if slug else None
    if gallery is None or not (_is_owner(user, gallery) or gallery.visibility != Visibility.PRIVATE):
        raise NotFound("no gallery at this link: it may have been made private or deleted")
    return gallery


def slug_image(gallery: Gallery, *, image_id: int) -> Image:
    """One of the gallery's own images, reached through its slug."""
    item = _item(gallery, image_id)
    if item is None:
        raise NotFound(f"image {image_id} is not in this gallery")
    return item.image


def slug_path(gallery: Gallery) -> str:
    return f"/g/{gallery.slug}"


def get_visible(session: Session, *, gallery_id: int, user: User | None) -> Gallery:
    gallery = session.get(Gallery, gallery_id)
    if gallery is None or not can_see(user, gallery):
        raise NotFound(f"gallery {gallery_id} not found")
    return gallery


def get_owned(session: Session, *, gallery_id: int, user: User) -> Gallery:
    """The gallery when ``user`` may change it; for anyone else it does not exist (404, not 403)."""
    gallery = session.get(Gallery, gallery_id)
    if gallery is None or not _is_owner(user, gallery):
        raise NotFound(f"gallery {gallery_id} not found")
    return gallery


def _clean_title(title: str) -> str:
    title = title.strip()
    if not title:
        raise InvalidInput("give the gallery a title")
    if len(title) > MAX_TITLE:
        raise InvalidInput(f"title must be at most {MAX_TITLE} characters (got {len(title)})")
    return title


def _clean_description(description: str) -> str:
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"description must be at most {MAX_DESCRIPTION} characters (got {len(description)})")
    return description.strip()


def _visibility(value: str | Visibility) -> Visibility:
    try:
        return Visibility(value)
    except ValueError:
        choices = ", ".join(v.value for v in Visibility)
        raise InvalidInput(f"visibility must be one of {choices} (got {value!r})") from None


def create(
    session: Session,
    *,
    owner: User,
    title: str,
    description: str = "",
    visibility: str | Visibility = Visibility.PRIVATE,
) -> Gallery:
    gallery = Gallery(
        owner_id=owner.id,
        title=_clean_title(title),
        description=_clean_description(description),
        visibility=_visibility(visibility),
    )
    session.add(gallery)
    session.commit()
    return gallery


def update(
    session: Session,
    gallery: Gallery,
    *,
    title: str | None = None,
    description: str | None = None,
    visibility: str | Visibility | None = None,
    cover_image_id: int | None = None,
    clear_cover: bool = False,
) -> Gallery:
    if title is not None:
        gallery.title = _clean_title(title)
    if description is not None:
        gallery.description = _clean_description(description)
    if visibility is not None:
        gallery.visibility = _visibility(visibility)
    if clear_cover:
        gallery.cover_image_id = None
    elif cover_image_id is not None:
        if _item(gallery, cover_image_id) is None:
            raise InvalidInput(f"the cover must be one of the gallery's images (image {cover_image_id} is not in it)")
        gallery.cover_image_id = cover_image_id
    session.commit()
    return gallery


def delete(session: Session, gallery: Gallery) -> None:
    session.delete(gallery)
    session.commit()


def _item(gallery: Gallery, image_id: int) -> GalleryItem | None:
    return next((item for item in gallery.items if item.image_id == image_id), None)


def add_item(session: Session, gallery: Gallery, *, user: User, image_id: int, caption: str = "") -> GalleryItem:
    """Append one of ``user``'s images; an image already in the gallery is a Conflict."""
    image = images.get_owned(session, image_id=image_id, user=user)
    if _item(gallery, image.id) is not None:
        raise Conflict(f"image {image.id} is already in this gallery")
    if len(caption) > MAX_CAPTION:
        raise InvalidInput(f"caption must be at most {MAX_CAPTION} characters (got {len(caption)})")
    last = session.scalar(select(func.max(GalleryItem.position)).where(GalleryItem.gallery_id == gallery.id))
    item = GalleryItem(gallery_id=gallery.id, image_id=image.id, position=(last or 0) + 1, caption=caption.strip())
    gallery.items.append(item)
    session.commit()
    return item


def get_item(gallery: Gallery, *, image_id: int) -> GalleryItem:
    item = _item(gallery, image_id)
    if item is None:
        raise NotFound(f"image {image_id} is not in this gallery")
    return item


def set_caption(session: Session, gallery: Gallery, *, image_id: int, caption: str) -> GalleryItem:
    if len(caption) > MAX_CAPTION:
        raise InvalidInput(f"caption must be at most {MAX_CAPTION} characters (got {len(caption)})")
    item = get_item(gallery, image_id=image_id)
    item.caption = caption.strip()
    session.commit()
    return item


def remove_item(session: Session, gallery: Gallery, *, image_id: int) -> None:
    item = get_item(gallery, image_id=image_id)
    if gallery.cover_image_id == image_id:
        gallery.cover_image_id = None
    gallery.items.remove(item)
    session.commit()


def reorder(session: Session, gallery: Gallery, *, image_ids: Sequence[int]) -> None:
    """Put the items in this order; the list must name every item exactly once."""
    current = {item.image_id: item for item in gallery.items}
    if sorted(image_ids) != sorted(current):
        raise InvalidInput("the new order must list every image of the gallery exactly once")
    for position, image_id in enumerate(image_ids, start=1):
        current[image_id].position = position
    session.commit()
    session.refresh(gallery, ["items"])


def cover(gallery: Gallery) -> Image | None:
    """The chosen cover, else the first image."""
    if gallery.cover_image_id is not None:
        item = _item(gallery, gallery.cover_image_id)
        if item is not None:
            return item.image
    return gallery.items[0].image if gallery.items else None


@dataclass
class ShownItem:
    item: GalleryItem
    image: Image
    my_rating: int | None
    liked: bool


def shown_items(
    session: Session,
    gallery: Gallery,
    *,
    viewer: User | None,
    sort: str = "position",
    min_rating: int | None = None,
) -> list[ShownItem]:
    """The items as a viewer sees them: with the viewer's own rating, sorted and filtered by it."""
    mine = feedback.for_user(session, user=viewer, image_ids=[item.image_id for item in gallery.items])
    shown = [
        ShownItem(
            item=item,
            image=item.image,
            my_rating=mine[item.image_id].rating if item.image_id in mine else None,
            liked=mine[item.image_id].liked if item.image_id in mine else False,
        )
        for item in gallery.items
    ]
    if min_rating is not None:
        shown = [entry for entry in shown if entry.my_rating is not None and entry.my_rating >= min_rating]
    if sort == "rating":
        shown.sort(key=lambda entry: (-(entry.my_rating or 0), entry.item.position))
    elif sort == "newest":
        shown.sort(key=lambda entry: -entry.image.id)
    return shown


def list_owned(session: Session, *, owner: User) -> list[Gallery]:
    return list(session.scalars(select(Gallery).where(Gallery.owner_id == owner.id).order_by(Gallery.id.desc())))


def list_public(
    session: Session, *, limit: int = EXPLORE_PAGE, cursor: int | None = None
) -> tuple[list[Gallery], int | None]:
    """Public galleries, newest first, a page at a time."""
    stmt = select(Gallery).where(Gallery.visibility == Visibility.PUBLIC)
    if cursor is not None:
        stmt = stmt.where(Gallery.id < cursor)
    rows = list(session.scalars(stmt.order_by(Gallery.created_at.desc(), Gallery.id.desc()).limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, rows[-1].id
    return rows, None


def owner_names(session: Session, galleries: Sequence[Gallery]) -> dict[int, str]:
    """The usernames of the galleries' owners, by user id, in one query."""
    owner_ids = {gallery.owner_id for gallery in galleries}
    if not owner_ids:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(owner_ids)))
    return {user_id: username for user_id, username in rows}


def addable_images(session: Session, gallery: Gallery, *, limit: int) -> list[Image]:
    """The owner's newest paintings not yet in the gallery, to offer on its page."""
    present = {item.image_id for item in gallery.items}
    stmt = (
        select(Image)
        .where(Image.user_id == gallery.owner_id, Image.kind == ImageKind.OUTPUT)
        .order_by(Image.id.desc())
        .limit(limit + len(present))
    )
    return [image for image in session.scalars(stmt) if image.id not in present][:limit]


def zip_bytes(store: ImageStore, gallery: Gallery) -> bytes:
    """A ZIP of the gallery's PNGs in gallery order (stored, not deflated: PNGs are compressed)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for number, item in enumerate(gallery.items, start=1):
            archive.writestr(f"{number:03d}-image-{item.image_id}.png", store.read(item.image.sha256))
    return buffer.getvalue()


def zip_name(gallery: Gallery) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in gallery.title.lower()).strip("-")[:60] or "gallery"
    return f"{slug}-{gallery.id}.zip"
