"""Share links: random tokens that open one gallery or one generation to anyone who holds them."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import Gallery, Generation, Image, ImageKind, Role, ShareLink, ShareTarget, User
from app.services.errors import InvalidInput, NotFound

MAX_EXPIRY = timedelta(days=366)


def _new_token() -> str:
    # 192 random bits: unguessable, and short enough to paste.
    return secrets.token_urlsafe(24)


def _expiry(expires_in: timedelta | None) -> datetime | None:
    if expires_in is None:
        return None
    if expires_in <= timedelta(0) or expires_in > MAX_EXPIRY:
        raise InvalidInput(f"a link must expire in the future and within {MAX_EXPIRY.days} days")
    return utcnow() + expires_in


def share_gallery(session: Session, *, gallery: Gallery, user: User, expires_in: timedelta | None = None) -> ShareLink:
    """A new link to ``gallery`` (the caller has already checked that ``user`` owns it)."""
    link = ShareLink(
        token=_new_token(),
        target=ShareTarget.GALLERY,
        gallery_id=gallery.id,
        created_by=user.id,
        expires_at=_expiry(expires_in),
    )
    session.add(link)
    session.commit()
    return link


def share_generation(
    session: Session, *, generation: Generation, user: User, expires_in: timedelta | None = None
) -> ShareLink:
    link = ShareLink(
        token=_new_token(),
        target=ShareTarget.GENERATION,
        generation_id=generation.id,
        created_by=user.id,
        expires_at=_expiry(expires_in),
    )
    session.add(link)
    session.commit()
    return link


def is_live(link: ShareLink) -> bool:
    return link.revoked_at is None and (link.expires_at is None or link.expires_at > utcnow())


def resolve(session: Session, token: str) -> ShareLink:
    """The live link with this token; unknown, revoked and expired links all answer NotFound alike."""
    link = session.scalar(select(ShareLink).where(ShareLink.token == token)) if len(token) <= 64 else None
    if link is None or not is_live(link):
        raise NotFound("this link does not exist, or it was revoked or has expired")
    return link


def _may_manage(session: Session, link: ShareLink, user: User) -> bool:
    if user.role == Role.ADMIN or link.created_by == user.id:
        return True
    if link.gallery_id is not None:
        gallery = session.get(Gallery, link.gallery_id)
        return gallery is not None and gallery.owner_id == user.id
    generation = session.get(Generation, link.generation_id) if link.generation_id is not None else None
    return generation is not None and generation.user_id == user.id


def revoke(session: Session, *, token: str, user: User) -> ShareLink:
    link = session.scalar(select(ShareLink).where(ShareLink.token == token)) if len(token) <= 64 else None
    if link is None or not _may_manage(session, link, user):
        raise NotFound("share link not found")
    if link.revoked_at is None:
        link.revoked_at = utcnow()
        session.commit()
    return link


def links_for(
    session: Session, *, gallery: Gallery | None = None, generation: Generation | None = None
) -> list[ShareLink]:
    """The live links to a gallery or a generation, newest first."""
    stmt = select(ShareLink).order_by(ShareLink.id.desc())
    if gallery is not None:
        stmt = stmt.where(ShareLink.gallery_id == gallery.id)
    elif generation is not None:
        stmt = stmt.where(ShareLink.generation_id == generation.id)
    else:
        return []
    return [link for link in session.scalars(stmt) if is_live(link)]


def shared_gallery(session: Session, link: ShareLink) -> Gallery | None:
    return session.get(Gallery, link.gallery_id) if link.gallery_id is not None else None


def shared_generation(session: Session, link: ShareLink) -> Generation | None:
    return session.get(Generation, link.generation_id) if link.generation_id is not None else None


def shared_images(session: Session, link: ShareLink) -> list[Image]:
    """The images a link opens: the gallery's items in order, or the generation's outputs."""
    gallery = shared_gallery(session, link)
    if gallery is not None:
        return [item.image for item in gallery.items]
    generation = shared_generation(session, link)
    if generation is not None:
        return [image for image in generation.images if image.kind == ImageKind.OUTPUT]
    return []


def shared_image(session: Session, link: ShareLink, *, image_id: int) -> Image:
    for image in shared_images(session, link):
        if image.id == image_id:
            return image
    raise NotFound(f"image {image_id} not found")


def share_url(base_url: str, link: ShareLink) -> str:
    return f"{base_url.rstrip('/')}/s/{link.token}"
