"""Share links API: create links to a gallery or a generation, list and revoke them."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from app.db.models import ShareLink
from app.deps import CurrentUser, SessionDep
from app.params import RowId
from app.schemas import UtcDatetime
from app.services import galleries, generations, sharing

router = APIRouter(tags=["sharing"])


class ShareRequest(BaseModel):
    expires_in_hours: float | None = Field(
        default=None, gt=0, le=sharing.MAX_EXPIRY.days * 24, allow_inf_nan=False, description="none: never expires"
    )


class ShareOut(BaseModel):
    token: str
    url: str
    target: str
    expires_at: UtcDatetime | None
    created_at: UtcDatetime


def share_out(request: Request, link: ShareLink) -> ShareOut:
    return ShareOut(
        token=link.token,
        url=sharing.share_url(str(request.base_url), link),
        target=link.target.value,
        expires_at=link.expires_at,
        created_at=link.created_at,
    )


def _expires_in(body: ShareRequest | None) -> timedelta | None:
    if body is None or body.expires_in_hours is None:
        return None
    return timedelta(hours=body.expires_in_hours)


@router.post("/galleries/{gallery_id}/share", status_code=201, response_model=ShareOut)
def share_gallery(
    gallery_id: RowId, request: Request, session: SessionDep, user: CurrentUser, body: ShareRequest | None = None
) -> ShareOut:
    gallery = galleries.get_owned(session, gallery_id=gallery_id, user=user)
    link = sharing.share_gallery(session, gallery=gallery, user=user, expires_in=_expires_in(body))
    return share_out(request, link)


@router.get("/galleries/{gallery_id}/share", response_model=list[ShareOut])
def gallery_links(gallery_id: RowId, request: Request, session: SessionDep, user: CurrentUser) -> list[ShareOut]:
    gallery = galleries.get_owned(session, gallery_id=gallery_id, user=user)
    return [share_out(request, link) for link in sharing.links_for(session, gallery=gallery)]


@router.post("/generations/{generation_id}/share", status_code=201, response_model=ShareOut)
def share_generation(
    generation_id: RowId, request: Request, session: SessionDep, user: CurrentUser, body: ShareRequest | None = None
) -> ShareOut:
    generation = generations.get_visible(session, generation_id=generation_id, user=user)
    link = sharing.share_generation(session, generation=generation, user=user, expires_in=_expires_in(body))
    return share_out(request, link)


@router.delete("/share/{token}", status_code=204)
def revoke(token: str, session: SessionDep, user: CurrentUser) -> Response:
    sharing.revoke(session, token=token, user=user)
    return Response(status_code=204)
