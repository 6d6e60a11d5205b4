"""Generations: enqueue, claim, cancel and requeue jobs; the Generation row is the queue."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, case, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from app.db.base import utcnow
from app.db.models import Feedback, Generation, Image, ImageKind, Mode, Role, Status, User
from app.services import steps
from app.services.errors import Conflict, InvalidInput, NotFound

MAX_SEED = 2**32 - 1
ACTIVE = (Status.QUEUED, Status.RUNNING)


@dataclass(kw_only=True)
class NewGeneration:
    """What a caller asks for; validated for shape by the API, for ownership here."""

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
    params: dict[str, Any] = field(default_factory=dict)
    source_image_id: int | None = None
    mask_image_id: int | None = None
    style_image_ids: list[int] = field(default_factory=list)
    parent_id: int | None = None
    priority: int = 0


@dataclass
class OutputImage:
    """An output already written to the image store (files first, rows second)."""

    sha256: str
    width: int
    height: int
    index: int
    format: str = "png"


# ---------------------------------------------------------------------------------------------
# Reading


def _can_see(user: User | None, generation: Generation) -> bool:
    return user is not None and (user.role == Role.ADMIN or generation.user_id == user.id)


def get_visible(session: Session, *, generation_id: int, user: User | None) -> Generation:
    """The generation if ``user`` owns it or is an admin; otherwise NotFound, so ids leak nothing."""
    generation = session.get(Generation, generation_id)
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
    stmt = select(Generation).where(Generation.user_id == user.id)
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


def is_cancelled(session: Session, *, generation_id: int) -> bool:
    status = session.scalar(select(Generation.status).where(Generation.id == generation_id))
    # A row that vanished (its owner was deleted) is as good as cancelled: stop working on it.
    return status is None or status == Status.CANCELLED


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


def enqueue(session: Session, *, owner: User, new: NewGeneration) -> Generation:
    """Write the job as a queued Generation row and commit; the seed is always recorded."""
    if new.seed is not None and not 0 <= new.seed <= MAX_SEED:
        raise InvalidInput(f"seed must be between 0 and {MAX_SEED} (got {new.seed})")
    seed = new.seed if new.seed is not None else secrets.randbelow(MAX_SEED + 1)
    params = dict(new.params)
    if new.parent_id is not None:
        parent = get_visible(session, generation_id=new.parent_id, user=owner)
        # Every step records what kind it was (refine, vary, remix...) for the lineage.
        params = steps.step_params(params, parent=parent, owner=owner, mode=new.mode)
    image_ids = [i for i in (new.source_image_id, new.mask_image_id) if i is not None] + list(new.style_image_ids)
    _check_images_usable(session, owner=owner, image_ids=image_ids)

    generation = Generation(
        user_id=owner.id,
        mode=new.mode,
        prompt=new.prompt,
        negative_prompt=new.negative_prompt,
        model=new.model,
        scheduler=new.scheduler,
        seed=seed,
        steps=new.steps,
        guidance=new.guidance,
        width=new.width,
        height=new.height,
        n_images=new.n_images,
        strength=new.strength,
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
    session.commit()
    return generation


# ---------------------------------------------------------------------------------------------
# The fair order and claiming


def _ranked_queue(warm_models: Sequence[str] = ()) -> Subquery:
    """Every queued job with the keys of the fair order (see ``_fair_order``)."""
    queued = aliased(Generation, name="queued")
    history = aliased(Generation, name="history")
    # One turn per user: a user's jobs are numbered 1, 2, 3... and turn 1 of every user comes
    # before anyone's turn 2, so a user with a hundred jobs cannot starve a user with one.
    turn = func.row_number().over(
        partition_by=queued.user_id, order_by=(queued.priority.desc(), queued.created_at, queued.id)
    )
    # Within a turn, the user served longest ago goes first. Without this a single worker that
    # finishes each job before claiming the next would serve the oldest user's whole backlog
    # first, since after every claim that user's next job is in turn 1 again.
    last_served = select(func.max(history.claimed_at)).where(history.user_id == queued.user_id).scalar_subquery()
    warm: ColumnElement[int] = case((queued.model.in_(list(warm_models)), 0), else_=1) if warm_models else literal(0)
    return (
        select(
            queued.id.label("id"),
            turn.label("turn"),
            queued.priority.label("priority"),
            last_served.label("last_served"),
            warm.label("cold"),
            queued.created_at.label("created_at"),
        )
        .where(queued.status == Status.QUEUED)
        .subquery("ranked")
    )


def _fair_order(ranked: Subquery) -> tuple[ColumnElement[Any], ...]:
    # Turn, then priority, then the least recently served user, then a model the worker has
    # warm, then age. Warm models only break ties, so keeping a model loaded never costs
    # another user their turn.
    return (
        ranked.c.turn,
        ranked.c.priority.desc(),
        ranked.c.last_served.asc().nulls_first(),
        ranked.c.cold,
        ranked.c.created_at,
        ranked.c.id,
    )


def _next_job(session: Session, warm_models: Sequence[str]) -> Select[Any]:
    ranked = _ranked_queue(warm_models)
    candidate = aliased(Generation, name="candidate")
    stmt = (
        select(candidate.id)
        .join(ranked, ranked.c.id == candidate.id)
        .where(candidate.status == Status.QUEUED)
        .order_by(*_fair_order(ranked))
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        # PostgreSQL refuses FOR UPDATE in a query with window functions, so the ranking lives
        # in a subquery and only the outer candidate row is locked. SKIP LOCKED makes workers
        # racing for the same head of the queue take the next job instead of queueing up.
        stmt = stmt.with_for_update(skip_locked=True, of=candidate)
    return stmt


def claim(session: Session, *, worker: str, warm_models: Sequence[str] = ()) -> Generation | None:
    """Atomically take the next job in the fair order for ``worker``; None when the queue is empty.

    One statement picks and marks the job, so two workers never run the same job:
    - PostgreSQL: the subselect locks its row (FOR UPDATE SKIP LOCKED); a second worker skips it,
      and a row another worker claimed after our snapshot is re-checked against
      ``status = 'queued'`` when locked, fails it and is passed over for the next one.
    - SQLite: a writing statement takes the database's write lock before it reads, so the
      subselect and the update see no other writer in between (others wait on busy_timeout).
    The outer ``status = 'queued'`` is the last guard: if anything slipped through, the update
    touches no row and this worker simply gets nothing this time (it polls again).
    The ranking is computed from the statement's snapshot; a job enqueued at the same instant
    may be ordered as if it were not there yet, which only shifts fairness by one claim.
    """
    now = utcnow()
    stmt = (
        update(Generation)
        .where(Generation.id == _next_job(session, warm_models).scalar_subquery(), Generation.status == Status.QUEUED)
        .values(
            status=Status.RUNNING,
            worker=worker,
            claimed_at=now,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            error=None,
            attempts=Generation.attempts + 1,
        )
        .returning(Generation.id)
        .execution_options(synchronize_session=False)
    )
    generation_id = session.execute(stmt).scalar_one_or_none()
    session.commit()
    if generation_id is None:
        return None
    return session.get(Generation, generation_id, populate_existing=True)


def queue_position(session: Session, generation: Generation) -> int | None:
    """How many queued jobs a worker would claim before this one (0 = next); None if not queued.

    Computed for a worker with no model warm and from the queue as it is now; new arrivals
    from other users can still take a turn ahead of it.
    """
    ranked = _ranked_queue()
    position = func.row_number().over(order_by=_fair_order(ranked)) - 1
    ordered = select(ranked.c.id, position.label("position")).subquery("ordered")
    return session.scalar(select(ordered.c.position).where(ordered.c.id == generation.id))


# ---------------------------------------------------------------------------------------------
# A running job: heartbeat, completion, failure


def _running_under(generation_id: int, worker: str) -> tuple[ColumnElement[bool], ...]:
    return (Generation.id == generation_id, Generation.status == Status.RUNNING, Generation.worker == worker)


def heartbeat(session: Session, *, generation_id: int, worker: str) -> bool:
    """Refresh the job's heartbeat; False means it was cancelled or requeued: stop working on it."""
    stmt = (
        update(Generation)
        .where(*_running_under(generation_id, worker))
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    alive = session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
    session.commit()
    return alive


def complete(session: Session, *, generation_id: int, worker: str, outputs: Sequence[OutputImage]) -> bool:
    """Record the outputs and mark the job succeeded, if it is still ours; False writes nothing.

    The guarded status update comes first in the transaction: on PostgreSQL it row-locks the
    job, on SQLite it takes the write lock, so a concurrent cancel or requeue either happened
    before (we see 0 rows and write nothing) or waits and then finds the job final.
    A rerun deletes the job's earlier outputs, so running a job twice leaves one set of images.
    """
    now = utcnow()
    stmt = (
        update(Generation)
        .where(*_running_under(generation_id, worker))
        .values(status=Status.SUCCEEDED, finished_at=now, heartbeat_at=now, error=None)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return False
    user_id = session.scalar(select(Generation.user_id).where(Generation.id == generation_id))
    session.execute(
        delete(Image)
        .where(Image.generation_id == generation_id, Image.kind == ImageKind.OUTPUT)
        .execution_options(synchronize_session=False)
    )
    session.add_all(
        Image(
            sha256=output.sha256,
            width=output.width,
            height=output.height,
            format=output.format,
            kind=ImageKind.OUTPUT,
            generation_id=generation_id,
            index=output.index,
            user_id=user_id,
            created_at=now,
        )
        for output in outputs
    )
    session.commit()
    generation = session.get(Generation, generation_id, populate_existing=True)
    if generation is not None:
        session.refresh(generation, ["images"])
    return True


def fail(session: Session, *, generation_id: int, worker: str, error: str) -> None:
    """Mark the job failed with a message a person can act on, if it is still ours."""
    stmt = (
        update(Generation)
        .where(*_running_under(generation_id, worker))
        .values(status=Status.FAILED, finished_at=utcnow(), error=error)
        .execution_options(synchronize_session=False)
    )
    session.execute(stmt)
    session.commit()


# ---------------------------------------------------------------------------------------------
# Cancelling and requeueing


def cancel(session: Session, *, generation_id: int, user: User) -> Generation:
    """Cancel a queued or running job. The worker notices on its next heartbeat or step check."""
    generation = get_visible(session, generation_id=generation_id, user=user)
    if generation.status.is_final:
        raise Conflict(f"generation {generation_id} is already {generation.status.value}")
    # Guarded on the status, so a job that finished between our read and this write stays
    # finished (and complete() of a worker racing us sees 'cancelled' and writes nothing).
    stmt = (
        update(Generation)
        .where(Generation.id == generation_id, Generation.status.in_(ACTIVE))
        .values(status=Status.CANCELLED, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    changed = session.execute(stmt).rowcount  # type: ignore[attr-defined]
    session.commit()
    session.refresh(generation)
    if changed != 1:
        raise Conflict(f"generation {generation_id} is already {generation.status.value}")
    return generation


def requeue_stale(session: Session, *, stale_after: timedelta, max_attempts: int) -> int:
    """Return jobs whose worker stopped heart-beating to the queue, or fail them after the bound.

    Both updates re-check ``status = 'running'`` and the stale heartbeat, so a worker that
    completes or beats in between keeps its job. A worker that was merely slow finds its job
    requeued: its next heartbeat or complete() is refused and it stops.
    """
    cutoff = utcnow() - stale_after
    stale = (
        Generation.status == Status.RUNNING,
        or_(Generation.heartbeat_at.is_(None), Generation.heartbeat_at < cutoff),
    )
    seconds = int(stale_after.total_seconds())
    failed = session.execute(
        update(Generation)
        .where(*stale, Generation.attempts >= max_attempts)
        .values(
            status=Status.FAILED,
            finished_at=utcnow(),
            error=f"the worker stopped responding (no heartbeat for {seconds} s) on each of "
            f"{max_attempts} attempts; giving up",
        )
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    requeued = session.execute(
        update(Generation)
        .where(*stale, Generation.attempts < max_attempts)
        .values(status=Status.QUEUED, worker=None, heartbeat_at=None, started_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    return int(failed) + int(requeued)


def requeue_interrupted(session: Session, *, worker_prefix: str) -> int:
    """On start-up: jobs that were running in this pool's workers go back to the queue."""
    requeued = session.execute(
        update(Generation)
        .where(Generation.status == Status.RUNNING, Generation.worker.startswith(worker_prefix, autoescape=True))
        .values(status=Status.QUEUED, worker=None, heartbeat_at=None, started_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    return int(requeued)
