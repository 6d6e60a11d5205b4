"""Galleries API: galleries, their items, captions, order and cover, ZIP download, and explore."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from app.db.models import Gallery, Visibility
from app.deps import CurrentUser, OptionalUser, SessionDep, StoreDep
from app.http.zips import gallery_zip
from app.params import MAX_ID, RowId
from app.schemas import UtcDatetime
from app.services import galleries

router = APIRouter(tags=["galleries"])

VisibilityName = Literal["private", "unlisted", "public"]


class GalleryCreate(BaseModel):
    title: str = Field(min_length=1, max_length=galleries.MAX_TITLE)
    description: str = Field(default="", max_length=galleries.MAX_DESCRIPTION)
    visibility: VisibilityName = "private"


class GalleryPatch(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=galleries.MAX_TITLE)
    description: str | None = Field(default=None, max_length=galleries.MAX_DESCRIPTION)
    visibility: VisibilityName | None = None
    cover_image_id: int | None = Field(
        default=None, ge=0, le=MAX_ID, description="one of the gallery's images; 0 clears the cover"
    )


class ItemCreate(BaseModel):
    image_id: RowId
    caption: str = Field(default="", max_length=galleries.MAX_CAPTION)


class ItemPatch(BaseModel):
    caption: str = Field(max_length=galleries.MAX_CAPTION)


class Order(BaseModel):
    image_ids: list[RowId] = Field(max_length=10_000)


class ItemOut(BaseModel):
    image_id: int
    position: int
    caption: str
    url: str
    thumb_url: str
    width: int
    height: int
    my_rating: int | None = None


class GalleryOut(BaseModel):
    id: int
    owner_id: int
    title: str
    description: str
    visibility: str
    cover_image_id: int | None
    created_at: UtcDatetime
    items: list[ItemOut]
    link: str | None = Field(
        default=None, description="an unlisted gallery's page (/g/{slug}): it opens to anyone signed in who has it"
    )


class GallerySummary(BaseModel):
    id: int
    title: str
    visibility: str
    cover_url: str | None
    created_at: UtcDatetime


class GalleryPage(BaseModel):
    items: list[GallerySummary]
    next_cursor: int | None


def gallery_summary(gallery: Gallery) -> GallerySummary:
    cover = galleries.cover(gallery)
    return GallerySummary(
        id=gallery.id,
        title=gallery.title,
        visibility=gallery.visibility.value,
        cover_url=f"/api/images/{cover.id}/thumb" if cover else None,
        created_at=gallery.created_at,
    )


def gallery_out(shown: list[galleries.ShownItem], gallery: Gallery) -> GalleryOut:
    cover = galleries.cover(gallery)
    return GalleryOut(
        id=gallery.id,
        owner_id=gallery.owner_id,
        title=gallery.title,
        description=gallery.description,
        visibility=gallery.visibility.value,
        cover_image_id=cover.id if cover else None,
        created_at=gallery.created_at,
        # Only its owner reads an unlisted gallery by id, so only the owner is handed its link.
        link=galleries.slug_path(gallery) if gallery.visibility == Visibility.UNLISTED else None,
        items=[
            ItemOut(
                image_id=entry.image.id,
                position=entry.item.position,
                caption=entry.item.caption,
                url=f"/api/images/{entry.image.id}",
                thumb_url=f"/api/images/{entry.image.id}/thumb",
                width=entry.image.width,
                height=entry.image.height,
                my_rating=entry.my_rating,
            )
            for entry in shown
        ],
    )


@router.post("/galleries", status_code=201, response_model=GalleryOut)
def create_gallery(body: GalleryCreate, session: SessionDep, user: CurrentUser) -> GalleryOut:
    gallery = galleries.create(
        session, owner=user, title=body.title, description=body.description, visibility=Visibility(body.visibility)
    )
    return gallery_out([], gallery)


@router.get("/galleries", response_model=list[GallerySummary])
def my_galleries(session: SessionDep, user: CurrentUser) -> list[GallerySummary]:
    return [gallery_summary(gallery) for gallery in galleries.list_owned(session, owner=user)]


@router.get("/explore", response_model=GalleryPage)
def explore(
    session: SessionDep, user: CurrentUser, cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None
) -> GalleryPage:
    """Public galleries, newest first."""
    rows, next_cursor = galleries.list_public(session, cursor=cursor)
    return GalleryPage(items=[gallery_summary(gallery) for gallery in rows], next_cursor=next_cursor)


@router.get("/galleries/{gallery_id}", response_model=GalleryOut)
def get_gallery(
    gallery_id: RowId,
    session: SessionDep,
    user: OptionalUser,
    sort: Annotated[Literal["position", "rating", "newest"], Query()] = "position",
    min_rating: Annotated[int | None, Query(ge=1, le=5)] = None,
) -> GalleryOut:
    """The gallery with its items; ``sort`` and ``min_rating`` use the caller's own ratings."""
    gallery = galleries.get_visible(session, gallery_id=gallery_id, user=user)
    shown = galleries.shown_items(session, gallery, viewer=user, sort=sort, min_rating=min_rating)
    return gallery_out(shown, gallery)


@router.patch("/galleries/{gallery_id}", response_model=GalleryOut)
def update_gallery(gallery_id: RowId, body: GalleryPatch, session: SessionDep, user: CurrentUser) -> GalleryOut:
    gallery = galleries.get_owned(session, gallery_id=gallery_id, user=user)
    galleries.update(
        session,
        gallery,
        title=body.title,
        description=body.description,
        visibility=body.visibility,
        cover_image_id=body.cover_image_id or None,
        clear_cover=body.cover_image_id == 0,
    )
    return gallery_out(galleries.shown_items(session, gallery, viewer=user), gallery)


@router.delete("/galleries/{gallery_id}", status_code=204)
def delete_gallery(gallery_id: RowId, session: SessionDep, user: CurrentUser) -> Response:
    galleries.delete(session, galleries.get_owned(session, gallery_id=gallery_id, user=user))
    return Response(status_code=204)


@router.post("/galleries/{gallery_id}/items", status_code=201, response_model=GalleryOut)
def add_item(gallery_id: RowId, body: ItemCreate, session: SessionDep, user: CurrentUser) -> GalleryOut:
    gallery = galleries.get_owned(session, gallery_id=gallery_id, user=user)
    galleries.add_item(session, gallery, user=user, image_id=body.image_id, caption=body.caption)
    return gallery_out(galleries.shown_items(session, gallery, viewer=user), gallery)


@router.patch("/galleries/{gallery_id}/items/{image_id}", response_model=GalleryOut)
def caption_item(
    gallery_id: RowId, image_id: RowId, body: ItemPatch, session: SessionDep, user: CurrentUser
) -> GalleryOut:
    gallery = galleries.get_owned(session, gallery_id=gallery_id, user=user)
    galleries.set_caption(session, gallery, image_id=image_id, caption=body.caption)
    return gallery_out(galleries.shown_items(session, gallery, viewer=user), gallery)


@router.delete("/galleries/{gallery_id}/items/{image_id}", status_code=204)
def remove_item(gallery_id: RowId, image_id: RowId, session: SessionDep, user: CurrentUser) -> Response:
    gallery = galleries.get_owned(session, gallery_id=gallery_id, user=user)
    galleries.remove_item(session, gallery, image_id=image_id)
    return Response(status_code=204)


@router.put("/galleries/{gallery_id}/order", response_model=GalleryOut)
def reorder(gallery_id: RowId, body: Order, session: SessionDep, user: CurrentUser) -> GalleryOut:
    gallery = galleries.get_owned(session, gallery_id=gallery_id, user=user)
    galleries.reorder(session, gallery, image_ids=body.image_ids)
    return gallery_out(galleries.shown_items(session, gallery, viewer=user), gallery)


@router.get("/galleries/{gallery_id}/download")
def download(gallery_id: RowId, session: SessionDep, user: OptionalUser, store: StoreDep) -> Response:
    """The gallery's PNGs as a ZIP, in gallery order."""
    return gallery_zip(store, galleries.get_visible(session, gallery_id=gallery_id, user=user))
