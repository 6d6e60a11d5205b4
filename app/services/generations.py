"""Generations: what an artist asked for: reading, listing and enqueueing them."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from app.db.models import Feedback, Generation, Image, Mode, Role, Status, User
from app.params import MAX_SEED, JobParams, Parameters
from app.services import steps
from app.services.errors import InvalidInput, NotFound, RateLimited

__all__ = ["MAX_SEED"]
ACTIVE = (Status.QUEUED, Status.RUNNING)
# The request's quota of unfinished images per artist, put on its session by the Submitter
# (app.http.submit); sessions without it (the CLI, the workers) enqueue without a quota.
QUOTA_KEY = "max_queued_per_user"
# How soon a refused artist is told to try again: a small job finishes in about this long.
QUOTA_RETRY_AFTER_S = 30


@dataclass(kw_only=True)
class NewGeneration:
    """What a caller asks for; validated for shape by the API, for ownership here.

    Its parameter fields are ``app.params.Parameters``' (with the seed still optional), so
    ``Parameters.of(new)`` and the row's columns line up by name.
    """

    mode: Mode
    prompt: str
    negative_prompt: str = ""
    model: str
    scheduler: str
    seed: int | None = None
    steps: int
    guidance: float
    width: int
    height: int
    n_images: int = 1
    strength: float | None = None
    params: JobParams = field(default_factory=JobParams)
    source_image_id: int | None = None
    mask_image_id: int | None = None
    style_image_ids: list[int] = field(default_factory=list)
    parent_id: int | None = None
    priority: int = 0


# ---------------------------------------------------------------------------------------------
# Reading


def _can_see(user: User | None, generation: Generation) -> bool:
    return user is not None and (user.role == Role.ADMIN or generation.user_id == user.id)


def get_visible(session: Session, *, generation_id: int, user: User | None, with_images: bool = False) -> Generation:
    """The generation if ``user`` owns it or is an admin; otherwise NotFound, so ids leak nothing.

    ``with_images`` reads its images in the same statement (a job's JSON, asked for by every poll).
    """
    options = [joinedload(Generation.images)] if with_images else []
    generation = session.get(Generation, generation_id, options=options)
    if generation is None or not _can_see(user, generation):
        raise NotFound(f"generation {generation_id} not found")
    return generation


def list_for_user(
    session: Session,
    *,
    user: User,
    q: str | None = None,
    model: str | None = None,
    mode: Mode | None = None,
    limit: int = 50,
    cursor: int | None = None,
    min_rating: int | None = None,
    by_rating: bool = False,
    since: date | None = None,
    until: date | None = None,
) -> tuple[list[Generation], int | None]:
    """The user's generations, newest first; returns the page and the cursor of the next one.

    ``min_rating`` keeps generations with an image the user rated at least that; ``by_rating``
    orders by the user's best rating of each generation (unrated last), and then the cursor is an
    offset rather than an id. ``since`` and ``until`` bound the creation day, both days included.
    """
    limit = max(1, min(limit, 200))
    # The images of the whole page in one more statement, instead of one per card as it renders.
    stmt = select(Generation).where(Generation.user_id == user.id).options(selectinload(Generation.images))
    if min_rating is not None or by_rating:
        best = (
            select(Image.generation_id.label("generation_id"), func.max(Feedback.rating).label("rating"))
            .join(Feedback, Feedback.image_id == Image.id)
            .where(Feedback.user_id == user.id)
            .group_by(Image.generation_id)
            .subquery()
        )
        stmt = stmt.outerjoin(best, best.c.generation_id == Generation.id)
        if min_rating is not None:
            stmt = stmt.where(best.c.rating >= min_rating)
    if q:
        stmt = stmt.where(func.lower(Generation.prompt).contains(q.lower(), autoescape=True))
    if model:
        stmt = stmt.where(Generation.model == model)
    if mode:
        stmt = stmt.where(Generation.mode == mode)
    if since is not None:
        stmt = stmt.where(Generation.created_at >= datetime.combine(since, time.min))
    if until is not None:
        stmt = stmt.where(Generation.created_at < datetime.combine(until + timedelta(days=1), time.min))
    if by_rating:
        offset = cursor or 0
        ordered = stmt.order_by(func.coalesce(best.c.rating, 0).desc(), Generation.id.desc())
        rows = list(session.scalars(ordered.offset(offset).limit(limit + 1)))
        return (rows[:limit], offset + limit) if len(rows) > limit else (rows, None)
    if cursor is not None:
        stmt = stmt.where(Generation.id < cursor)
    rows = list(session.scalars(stmt.order_by(Generation.id.desc()).limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, rows[-1].id
    return rows, None


# ---------------------------------------------------------------------------------------------
# Enqueue


def _check_images_usable(session: Session, *, owner: User, image_ids: Sequence[int]) -> None:
    wanted = set(image_ids)
    if not wanted:
        return
    stmt = select(Image.id).where(Image.id.in_(wanted))
    if owner.role != Role.ADMIN:
        stmt = stmt.where(Image.user_id == owner.id)
    missing = wanted - set(session.scalars(stmt))
    if missing:
        raise NotFound(f"image {min(missing)} not found")


def unfinished_images(session: Session, *, owner: User) -> int:
    """How many images ``owner`` has queued or being painted (this transaction's new rows included)."""
    total = session.scalar(
        select(func.coalesce(func.sum(Generation.n_images), 0)).where(
            Generation.user_id == owner.id, Generation.status.in_(ACTIVE)
        )
    )
    return int(total or 0)


def check_quota(session: Session, *, owner: User, adding: int) -> None:
    """Refuse (429) a job that would take ``owner`` past their quota of unfinished images.

    The quota is the session's (STUDIO_MAX_QUEUED_PER_USER, from the Submitter) unless an admin set
    one for this artist; sessions without a quota enqueue freely.
    """
    if session.info.get(QUOTA_KEY) is None:
        return
    limit = owner.max_queued_images if owner.max_queued_images is not None else session.info[QUOTA_KEY]
    waiting = unfinished_images(session, owner=owner)
    if waiting + adding > limit:
        already = f"{waiting} of your images are" if waiting != 1 else "1 of your images is"
        raise RateLimited(
            f"{already} waiting or being painted, and at most {limit} may wait at once; this asks for "
            f"{adding} more. Wait for some to finish, or cancel some, then submit again (an admin can raise "
            "your limit)",
            retry_after=QUOTA_RETRY_AFTER_S,
        )


def enqueue(session: Session, *, owner: User, new: NewGeneration, commit: bool = True) -> Generation:
    """Write the job as a queued Generation row and commit; the seed is always recorded.

    A batch passes ``commit=False`` for its cells and commits once: its cells count against the
    quota together, and a batch the quota refuses leaves no cell behind.
    """
    if new.seed is not None and not 0 <= new.seed <= MAX_SEED:
        raise InvalidInput(f"seed must be between 0 and {MAX_SEED} (got {new.seed})")
    seed = new.seed if new.seed is not None else secrets.randbelow(MAX_SEED + 1)
    params = new.params
    if new.parent_id is not None:
        parent = get_visible(session, generation_id=new.parent_id, user=owner)
        # Every step records what kind it was (refine, vary, remix...) for the lineage.
        params = steps.step_params(params, parent=parent, owner=owner, mode=new.mode)
    image_ids = [i for i in (new.source_image_id, new.mask_image_id) if i is not None] + list(new.style_image_ids)
    # Regions' masks: uploads of the owner's, checked as inpaint masks are.
    image_ids += [region.mask_id for region in params.regions or [] if region.mask_id is not None]
    _check_images_usable(session, owner=owner, image_ids=image_ids)
    try:
        # Control images: the owner's own, as sources are; a foreign one is a bad field of the request.
        _check_images_usable(session, owner=owner, image_ids=[unit.image_id for unit in params.control or []])
    except NotFound as error:
        raise InvalidInput(f"control: {error} among your images") from error
    check_quota(session, owner=owner, adding=new.n_images)

    parameters = {name: getattr(new, name) for name in Parameters.names()}
    generation = Generation(
        **(parameters | {"seed": seed}),
        user_id=owner.id,
        mode=new.mode,
        params=params,
        source_image_id=new.source_image_id,
        mask_image_id=new.mask_image_id,
        style_image_ids=list(new.style_image_ids),
        parent_id=new.parent_id,
        status=Status.QUEUED,
        priority=new.priority,
        attempts=0,
    )
    session.add(generation)
    if commit:
        session.commit()
    else:
        session.flush()
    return generation
