"""Gallery pages: my galleries, a gallery, explore, the share view at /s/{token}, feedback and A/B picks."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app.db.models import Gallery, Image, Role, User, Visibility
from app.deps import CurrentUser, FormCsrf, SessionDep, StoreDep, TemplatesDep
from app.http.csrf import csrf_token
from app.http.files import stored_png, stored_thumbnail
from app.http.zips import gallery_zip
from app.params import MAX_ID, RowId, parse_row_id
from app.services import feedback, galleries, generations, sharing
from app.services.errors import InvalidInput, NotFound
from app.web.errors import Refusal, in_place_status, is_htmx, refused_page
from app.web.forms import FormFields
from app.web.pages import generation_again

router = APIRouter(include_in_schema=False, dependencies=[FormCsrf])

SortName = Literal["position", "rating", "newest"]
VISIBILITIES = [item.value for item in Visibility]
ADDABLE = 24
# Shared images are public to whoever holds the link; a day of caching spares the store.
_SHARED = {"Cache-Control": "public, max-age=86400", "Content-Disposition": "inline"}


def _render(
    request: Request, templates: TemplatesDep, name: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    context.setdefault("active", "")
    context["csrf_token"] = csrf_token(request)
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _rating(value: Any) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.isdigit() and 1 <= int(text) <= 5 else None


# ---------------------------------------------------------------------------------------------
# My galleries and explore


def render_galleries(
    request: Request,
    templates: Jinja2Templates,
    *,
    session: Session,
    user: User,
    form_error: str | None = None,
    typed: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The artist's galleries; with ``form_error``, the new-gallery form refused, as it was typed."""
    rows = galleries.list_owned(session, owner=user)
    covers = {gallery.id: galleries.cover(gallery) for gallery in rows}
    return _render(
        request,
        templates,
        "pages/galleries.html",
        status_code=status_code,
        user=user,
        galleries=rows,
        covers=covers,
        visibilities=VISIBILITIES,
        form_error=form_error,
        typed=typed or {},
        active="galleries",
    )


def galleries_again(refusal: Refusal) -> Response:
    """A new gallery refused: the galleries page again, the form as typed, the message beside it."""
    if refusal.user is None:
        return refusal.plain_page()
    return render_galleries(
        refusal.request,
        refusal.templates,
        session=refusal.session,
        user=refusal.user,
        form_error=refusal.error.message,
        typed=refusal.fields,
        status_code=in_place_status(refusal.error),
    )


@router.get("/galleries", response_class=HTMLResponse)
def my_galleries(request: Request, session: SessionDep, user: CurrentUser, templates: TemplatesDep) -> HTMLResponse:
    return render_galleries(request, templates, session=session, user=user)


@router.post("/galleries")
@refused_page(galleries_again)
def create_gallery(fields: FormFields, session: SessionDep, user: CurrentUser) -> Response:
    gallery = galleries.create(
        session,
        owner=user,
        title=str(fields.get("title", "")),
        description=str(fields.get("description", "")),
        visibility=str(fields.get("visibility", "private")),
    )
    return _back(f"/galleries/{gallery.id}")


@router.get("/explore", response_class=HTMLResponse)
def explore(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    templates: TemplatesDep,
    cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    rows, next_cursor = galleries.list_public(session, cursor=cursor)
    owners = galleries.owner_names(session, rows)
    return _render(
        request,
        templates,
        "pages/explore.html",
        user=user,
        galleries=rows,
        covers={gallery.id: galleries.cover(gallery) for gallery in rows},
        owners=owners,
        next_cursor=next_cursor,
        active="explore",
    )


# ---------------------------------------------------------------------------------------------
# One gallery


def render_gallery(
    request: Request,
    templates: Jinja2Templates,
    *,
    session: Session,
    user: User,
    gallery_id: int,
    sort: SortName = "position",
    min_rating: int | None = None,
    form_error: str | None = None,
    typed: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A gallery's page; with ``form_error``, one of its owner's forms refused, the settings as typed."""
    gallery = galleries.get_visible(session, gallery_id=gallery_id, user=user)
    shown = galleries.shown_items(session, gallery, viewer=user, sort=sort, min_rating=min_rating)
    is_owner = gallery.owner_id == user.id or user.role == Role.ADMIN
    addable: list[Image] = galleries.addable_images(session, gallery, limit=ADDABLE) if is_owner else []
    links = sharing.links_for(session, gallery=gallery) if is_owner else []
    cover = galleries.cover(gallery)
    return _render(
        request,
        templates,
        "pages/gallery.html",
        status_code=status_code,
        user=user,
        gallery=gallery,
        owner_name=galleries.owner_names(session, [gallery]).get(gallery.owner_id),
        shown=shown,
        mine=feedback.for_user(session, user=user, image_ids=[entry.image.id for entry in shown]),
        is_owner=is_owner,
        addable=addable,
        links=links,
        base_url=str(request.base_url).rstrip("/"),
        cover=cover,
        sort=sort,
        min_rating=min_rating,
        visibilities=VISIBILITIES,
        form_error=form_error,
        typed=typed or {},
        active="galleries",
    )


def gallery_again(refusal: Refusal) -> Response:
    """An owner's gallery form refused: the gallery's page again, the message beside its settings."""
    gallery_id = parse_row_id(refusal.request.path_params.get("gallery_id"))
    if refusal.user is None or gallery_id is None:
        return refusal.plain_page()
    try:
        return render_gallery(
            refusal.request,
            refusal.templates,
            session=refusal.session,
            user=refusal.user,
            gallery_id=gallery_id,
            form_error=refusal.error.message,
            typed=refusal.fields,
            status_code=in_place_status(refusal.error),
        )
    except NotFound:
        return refusal.plain_page()


@router.get("/galleries/{gallery_id}", response_class=HTMLResponse)
def gallery_page(
    gallery_id: RowId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    templates: TemplatesDep,
    sort: Annotated[SortName, Query()] = "position",
    min_rating: Annotated[str | None, Query(max_length=1)] = None,
) -> HTMLResponse:
    return render_gallery(
        request, templates, session=session, user=user, gallery_id=gallery_id, sort=sort, min_rating=_rating(min_rating)
    )


def _owned(session: SessionDep, gallery_id: int, user: User) -> Gallery:
    return galleries.get_owned(session, gallery_id=gallery_id, user=user)


@router.post("/galleries/{gallery_id}/edit")
@refused_page(gallery_again)
def edit_gallery(gallery_id: RowId, fields: FormFields, session: SessionDep, user: CurrentUser) -> Response:
    gallery = _owned(session, gallery_id, user)
    galleries.update(
        session,
        gallery,
        title=fields.get("title"),
        description=fields.get("description"),
        visibility=fields.get("visibility"),
    )
    return _back(f"/galleries/{gallery.id}")


@router.post("/galleries/{gallery_id}/delete")
def delete_gallery(gallery_id: RowId, session: SessionDep, user: CurrentUser) -> Response:
    galleries.delete(session, _owned(session, gallery_id, user))
    return _back("/galleries")


@router.post("/galleries/{gallery_id}/items")
@refused_page(gallery_again)
def add_item(gallery_id: RowId, fields: FormFields, session: SessionDep, user: CurrentUser) -> Response:
    gallery = _owned(session, gallery_id, user)
    image_id = parse_row_id(fields.get("image_id"))
    if image_id is None:
        raise InvalidInput("choose an image to add")
    galleries.add_item(session, gallery, user=user, image_id=image_id, caption=str(fields.get("caption", "")))
    return _back(f"/galleries/{gallery.id}")


@router.post("/galleries/{gallery_id}/items/{image_id}")
@refused_page(gallery_again)
def change_item(
    gallery_id: RowId, image_id: RowId, fields: FormFields, session: SessionDep, user: CurrentUser
) -> Response:
    """One form per item; its ``action`` button says what to do: caption, cover, up, down or remove."""
    gallery = _owned(session, gallery_id, user)
    action = fields.get("action")
    if action == "caption":
        galleries.set_caption(session, gallery, image_id=image_id, caption=str(fields.get("caption", "")))
    elif action == "cover":
        galleries.update(session, gallery, cover_image_id=image_id)
    elif action == "remove":
        galleries.remove_item(session, gallery, image_id=image_id)
    elif action in ("up", "down"):
        order = [item.image_id for item in gallery.items]
        galleries.get_item(gallery, image_id=image_id)
        index = order.index(image_id)
        other = index - 1 if action == "up" else index + 1
        if 0 <= other < len(order):
            order[index], order[other] = order[other], order[index]
            galleries.reorder(session, gallery, image_ids=order)
    else:
        raise InvalidInput(f"unknown action {action!r}: caption, cover, up, down or remove")
    return _back(f"/galleries/{gallery.id}#item-{image_id}")


@router.get("/galleries/{gallery_id}/download")
def download(gallery_id: RowId, session: SessionDep, user: CurrentUser, store: StoreDep) -> Response:
    return gallery_zip(store, galleries.get_visible(session, gallery_id=gallery_id, user=user))


def _expires_in(fields: dict[str, Any]) -> timedelta | None:
    """The share dialog's hours; empty, zero or not a number: the link never expires."""
    hours = str(fields.get("expires_in_hours", "")).strip()
    if not hours.isdigit() or not hours.lstrip("0"):
        return None
    hours = hours.lstrip("0")
    if len(hours) > 6:
        raise InvalidInput(f"a link must expire within {sharing.MAX_EXPIRY.days} days; choose fewer hours")
    return timedelta(hours=int(hours))


@router.post("/galleries/{gallery_id}/share")
@refused_page(gallery_again)
def share_gallery(gallery_id: RowId, fields: FormFields, session: SessionDep, user: CurrentUser) -> Response:
    gallery = _owned(session, gallery_id, user)
    expires_in = _expires_in(fields)
    sharing.share_gallery(session, gallery=gallery, user=user, expires_in=expires_in)
    return _back(f"/galleries/{gallery.id}?shared=1#share")


@router.post("/generations/{generation_id}/share")
@refused_page(generation_again)
def share_generation(generation_id: RowId, fields: FormFields, session: SessionDep, user: CurrentUser) -> Response:
    """A new link to a generation; the generation page's dialog sends ``back`` to return to it."""
    generation = generations.get_visible(session, generation_id=generation_id, user=user)
    expires_in = _expires_in(fields)
    link = sharing.share_generation(session, generation=generation, user=user, expires_in=expires_in)
    return _back(safe_back(fields) if fields.get("back") else f"/s/{link.token}")


@router.post("/share/{token}/revoke")
def revoke_link(token: str, session: SessionDep, user: CurrentUser) -> Response:
    link = sharing.revoke(session, token=token, user=user)
    return _back(f"/galleries/{link.gallery_id}#share" if link.gallery_id else f"/generations/{link.generation_id}")


# ---------------------------------------------------------------------------------------------
# Feedback and A/B picks


@router.post("/images/{image_id}/feedback", response_class=HTMLResponse)
def give_feedback(
    image_id: RowId,
    request: Request,
    fields: FormFields,
    session: SessionDep,
    user: CurrentUser,
    templates: TemplatesDep,
) -> Response:
    """The rating stars, like button and comment box post here; htmx gets the refreshed widget back."""
    rating = _rating(fields.get("rating"))
    liked = {"true": True, "false": False}.get(str(fields.get("liked", "")))
    comment = fields.get("comment")
    row = feedback.give(
        session,
        user=user,
        image_id=image_id,
        rating=rating,
        liked=liked,
        comment=str(comment) if comment is not None else None,
    )
    if is_htmx(request):
        return templates.TemplateResponse(
            request,
            "partials/feedback.html",
            {"image_id": image_id, "mine": row, "csrf_token": csrf_token(request)},
        )
    return _back(safe_back(fields))


def safe_back(fields: dict[str, Any]) -> str:
    back = str(fields.get("back", ""))
    return back if back.startswith("/") and not back.startswith("//") else "/"


@router.get("/pick", response_class=HTMLResponse)
def pick_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    templates: TemplatesDep,
    generation: Annotated[int, Query(ge=1, le=MAX_ID)],
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> HTMLResponse:
    """ "Which is better?": two images of one prompt or lineage, side by side."""
    source = generations.get_visible(session, generation_id=generation, user=user)
    candidates = feedback.pair_candidates(session, user=user, generation=source)
    pairs = [(a, b) for i, a in enumerate(candidates) for b in candidates[i + 1 :]]
    pair = pairs[offset % len(pairs)] if pairs else None
    return _render(
        request,
        templates,
        "pages/pick.html",
        user=user,
        generation=source,
        pair=pair,
        next_offset=offset + 1,
    )


@router.post("/pick")
def pick(fields: FormFields, session: SessionDep, user: CurrentUser) -> Response:
    winner, loser = parse_row_id(fields.get("winner")), parse_row_id(fields.get("loser"))
    if winner is None or loser is None:
        raise InvalidInput("pick one of the two images")
    feedback.record_preference(session, user=user, winner_image_id=winner, loser_image_id=loser)
    generation, offset = parse_row_id(fields.get("generation")), str(fields.get("next_offset", "0"))
    if generation is not None and offset.isdigit() and len(offset) <= 5:
        return _back(f"/pick?generation={generation}&offset={offset}")
    return _back("/history")


# ---------------------------------------------------------------------------------------------
# The share view: everything under /s/ opens to anyone holding a live token, logged in or not.


@router.get("/s/{token}", response_class=HTMLResponse)
def shared(token: str, request: Request, session: SessionDep, templates: TemplatesDep) -> HTMLResponse:
    link = sharing.resolve(session, token)
    gallery = sharing.shared_gallery(session, link)
    generation = sharing.shared_generation(session, link)
    shown = sharing.shared_images(session, link)
    captions = {item.image_id: item.caption for item in gallery.items} if gallery else {}
    if gallery is not None:
        title, description = gallery.title, gallery.description
        first = galleries.cover(gallery)
    else:
        assert generation is not None
        title, description = generation.prompt[:120], f"Painted with {generation.model}, seed {generation.seed}"
        first = shown[0] if shown else None
    base = str(request.base_url).rstrip("/")
    return _render(
        request,
        templates,
        "pages/share.html",
        link=link,
        base_path=f"/s/{link.token}",
        gallery=gallery,
        generation=generation,
        images=shown,
        captions=captions,
        title=title,
        description=description or f"{len(shown)} paintings",
        page_url=f"{base}/s/{link.token}",
        og_image=f"{base}/s/{link.token}/images/{first.id}" if first else None,
        og_image_size=(first.width, first.height) if first else None,
    )


@router.get("/s/{token}/images/{image_id}")
def shared_image(token: str, image_id: RowId, session: SessionDep, store: StoreDep) -> Response:
    image = sharing.shared_image(session, sharing.resolve(session, token), image_id=image_id)
    return stored_png(store, image.sha256, headers=_SHARED)


@router.get("/s/{token}/images/{image_id}/thumb")
def shared_thumbnail(token: str, image_id: RowId, session: SessionDep, store: StoreDep) -> Response:
    image = sharing.shared_image(session, sharing.resolve(session, token), image_id=image_id)
    return stored_thumbnail(store, image.sha256, headers=_SHARED)


@router.get("/s/{token}/download")
def shared_download(token: str, session: SessionDep, store: StoreDep) -> Response:
    gallery = sharing.shared_gallery(session, sharing.resolve(session, token))
    if gallery is None:
        raise NotFound("only a shared gallery downloads as a ZIP")
    return gallery_zip(store, gallery)


# ---------------------------------------------------------------------------------------------
# The unlisted view: /g/{slug} opens a gallery to anyone signed in who holds its link; its id
# opens it to its owner only, so an unlisted gallery is never found by counting.

Slug = Annotated[str, Path(min_length=1, max_length=64)]
# Unlisted images may stop being visible at any moment (the gallery made private): not cached publicly.
_UNLISTED = {"Cache-Control": "private, max-age=300", "Content-Disposition": "inline"}


@router.get("/g/{slug}", response_class=HTMLResponse)
def unlisted(
    slug: Slug, request: Request, session: SessionDep, user: CurrentUser, templates: TemplatesDep
) -> HTMLResponse:
    gallery = galleries.get_by_slug(session, slug=slug, user=user)
    shown = [item.image for item in gallery.items]
    first = galleries.cover(gallery)
    base = str(request.base_url).rstrip("/")
    path = galleries.slug_path(gallery)
    return _render(
        request,
        templates,
        "pages/share.html",
        user=user,
        link=None,
        base_path=path,
        gallery=gallery,
        generation=None,
        images=shown,
        captions={item.image_id: item.caption for item in gallery.items},
        title=gallery.title,
        description=gallery.description or f"{len(shown)} paintings",
        page_url=f"{base}{path}",
        og_image=f"{base}{path}/images/{first.id}" if first else None,
        og_image_size=(first.width, first.height) if first else None,
    )


@router.get("/g/{slug}/images/{image_id}")
def unlisted_image(slug: Slug, image_id: RowId, session: SessionDep, user: CurrentUser, store: StoreDep) -> Response:
    image = galleries.slug_image(galleries.get_by_slug(session, slug=slug, user=user), image_id=image_id)
    return stored_png(store, image.sha256, headers=_UNLISTED)


@router.get("/g/{slug}/images/{image_id}/thumb")
def unlisted_thumbnail(
    slug: Slug, image_id: RowId, session: SessionDep, user: CurrentUser, store: StoreDep
) -> Response:
    image = galleries.slug_image(galleries.get_by_slug(session, slug=slug, user=user), image_id=image_id)
    return stored_thumbnail(store, image.sha256, headers=_UNLISTED)


@router.get("/g/{slug}/download")
def unlisted_download(slug: Slug, session: SessionDep, user: CurrentUser, store: StoreDep) -> Response:
    return gallery_zip(store, galleries.get_by_slug(session, slug=slug, user=user))
