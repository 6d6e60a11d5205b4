"""The job queue: claim in fair order, heartbeat, complete, fail, cancel and requeue.

The Generation row is the queue; every transition here is one guarded statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, case, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session, aliased

from app.db.base import utcnow
from app.db.models import Generation, Image, ImageKind, Status, User
from app.services.errors import Conflict
from app.services.generations import get_visible

ACTIVE = (Status.QUEUED, Status.RUNNING)


@dataclass
class OutputImage:
    """An output already written to the image store (files first, rows second)."""

    sha256: str
    width: int
    height: int
    index: int
    format: str = "png"


def final_status(session: Session, *, generation_id: int) -> Status | None:
    """The job's status if it has ended, else None; a vanished row reads as failed."""
    status = session.scalar(select(Generation.status).where(Generation.id == generation_id))
    if status is None:
        return Status.FAILED
    return status if status.is_final else None


def is_cancelled(session: Session, *, generation_id: int) -> bool:
    status = session.scalar(select(Generation.status).where(Generation.id == generation_id))
    # A row that vanished (its owner was deleted) is as good as cancelled: stop working on it.
    return status is None or status == Status.CANCELLED


# ---------------------------------------------------------------------------------------------
# The fair order and claiming

# Aliased once: aliasing the table builds a proxy of each of its columns, which took longer
# than running the whole ranking query on a 10,000-row table.
_QUEUED = aliased(Generation, name="queued")
_HISTORY = aliased(Generation, name="history")
_CANDIDATE = aliased(Generation, name="candidate")


def _ranked_queue(warm_models: Sequence[str] = ()) -> Subquery:
    """Every queued job with the keys of the fair order (see ``_fair_order``)."""
    queued, history = _QUEUED, _HISTORY
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
    candidate = _CANDIDATE
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
    if not _anything_queued(session):
        return None
    stmt = (
        update(Generation)
        .where(Generation.id == _next_job(session, warm_models).scalar_subquery(), Generation.status == Status.QUEUED)
        .values(**_claimed_by(worker))
        .returning(Generation.id)
        .execution_options(synchronize_session=False)
    )
    generation_id = session.execute(stmt).scalar_one_or_none()
    session.commit()
    if generation_id is None:
        return None
    return session.get(Generation, generation_id, populate_existing=True)


def _anything_queued(session: Session) -> bool:
    """Whether any job is queued, read from an index; the transaction ends when none is.

    A worker asks after every job, at every poll and for companions before every call, mostly of
    an empty queue: the claim itself ranks the queue and takes the database's write lock (3.6-4.5
    ms on SQLite here, against 0.6 ms for this read), and the worker asking right after a job
    competes with the web side still answering for that job. A job enqueued after this read wakes
    the worker again (the pool clears its wake-up before it claims), so none waits for a poll.
    """
    if session.scalar(select(Generation.id).where(Generation.status == Status.QUEUED).limit(1)) is not None:
        return True
    session.rollback()
    return False


def _claimed_by(worker: str) -> dict[str, Any]:
    """What a claim writes: the job runs under ``worker`` from now, on one more attempt."""
    now = utcnow()
    return {
        "status": Status.RUNNING,
        "worker": worker,
        "claimed_at": now,
        "started_at": now,
        "heartbeat_at": now,
        "finished_at": None,
        "error": None,
        "attempts": Generation.attempts + 1,
    }


# A claim that lost the job to another worker between reading and claiming it reads the next again.
CLAIM_RACE_RETRIES = 3


def claim_next_if(
    session: Session, *, worker: str, accept: Callable[[Generation], bool], warm_models: Sequence[str] = ()
) -> Generation | None:
    """Claims the next job in the fair order only if ``accept`` takes it; None when it doesn't or none waits.

    Dynamic batching's claim (``app.services.batching``): the job ``claim`` would give this worker
    next, or nothing. A job ``accept`` refuses stays queued, and so does every job behind it, so
    nothing is ever claimed out of the fair order.

    The next job is read first, then claimed by one guarded UPDATE (``status = 'queued'``), so two
    workers never both claim it:
    - PostgreSQL: the read locks the row (FOR UPDATE SKIP LOCKED) until the commit, so nobody
      claims it in between; a worker racing us skips it and reads the job after it.
    - SQLite: the read takes no lock (the driver begins the transaction at the UPDATE), so another
      worker may claim the job in between; then the UPDATE touches no row and the next job in the
      fair order is read again, a few times at most.
    """
    if not _anything_queued(session):
        return None
    for _ in range(CLAIM_RACE_RETRIES):
        candidate_id = session.scalar(_next_job(session, warm_models))
        candidate = session.get(Generation, candidate_id, populate_existing=True) if candidate_id else None
        if candidate is None:
            session.rollback()
            return None
        if candidate.status != Status.QUEUED:  # SQLite: claimed since we read the order
            session.rollback()
            continue
        if not accept(candidate):
            session.rollback()
            return None
        stmt = (
            update(Generation)
            .where(Generation.id == candidate.id, Generation.status == Status.QUEUED)
            .values(**_claimed_by(worker))
            .returning(Generation.id)
            .execution_options(synchronize_session=False)
        )
        claimed = session.execute(stmt).scalar_one_or_none()
        session.commit()
        if claimed is not None:
            return session.get(Generation, claimed, populate_existing=True)
    return None


def queue_positions(session: Session, generations: Iterable[Generation]) -> dict[int, int]:
    """How many queued jobs a worker would claim before each queued one of ``generations`` (0 = next).

    One statement for a whole page (none when nothing on it is queued); jobs that are not
    queued are left out of the answer. Computed for a worker with no model warm and from the
    queue as it is now; new arrivals from other users can still take a turn ahead of a job.
    """
    ids = {generation.id for generation in generations if generation.status == Status.QUEUED}
    if not ids:
        return {}
    ranked = _ranked_queue()
    position = func.row_number().over(order_by=_fair_order(ranked)) - 1
    ordered = select(ranked.c.id, position.label("position")).subquery("ordered")
    rows = session.execute(select(ordered.c.id, ordered.c.position).where(ordered.c.id.in_(ids)))
    return {generation_id: int(place) for generation_id, place in rows}


def queue_position(session: Session, generation: Generation) -> int | None:
    """How many queued jobs a worker would claim before this one (0 = next); None if not queued."""
    return queue_positions(session, [generation]).get(generation.id)


def count_queued(session: Session, *, created_before: datetime | None = None) -> int:
    """How many jobs are queued (those created before ``created_before``, when given)."""
    stmt = select(func.count()).select_from(Generation).where(Generation.status == Status.QUEUED)
    if created_before is not None:
        stmt = stmt.where(Generation.created_at < created_before)
    return int(session.scalar(stmt) or 0)


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
        .returning(Generation.user_id)
        .execution_options(synchronize_session=False)
    )
    owners = session.execute(stmt).scalars().all()
    if len(owners) != 1:
        session.rollback()
        return False
    user_id = owners[0]
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


def _requeue_or_fail(session: Session, *, where: tuple[ColumnElement[bool], ...], max_attempts: int, error: str) -> int:
    """Running jobs matching ``where`` go back to the queue, or fail with ``error`` once past the bound.

    Both updates carry ``where``, so a job that changes in between (completed, beat, cancelled)
    is touched by neither, and the two touch disjoint rows. Returns how many rows changed.
    """
    failed = session.execute(
        update(Generation)
        .where(*where, Generation.attempts >= max_attempts)
        .values(status=Status.FAILED, finished_at=utcnow(), error=error)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    requeued = session.execute(
        update(Generation)
        .where(*where, Generation.attempts < max_attempts)
        .values(status=Status.QUEUED, worker=None, heartbeat_at=None, started_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    return int(failed) + int(requeued)


def requeue_stale(session: Session, *, stale_after: timedelta, max_attempts: int) -> int:
    """Return jobs whose worker stopped heart-beating to the queue, or fail them after the bound.

    Both updates re-check ``status = 'running'`` and the stale heartbeat, so a worker that
    completes or beats in between keeps its job. A worker that was merely slow finds its job
    requeued: its next heartbeat or complete() is refused and it stops.
    """
    cutoff = utcnow() - stale_after
    seconds = int(stale_after.total_seconds())
    return _requeue_or_fail(
        session,
        where=(
            Generation.status == Status.RUNNING,
            or_(Generation.heartbeat_at.is_(None), Generation.heartbeat_at < cutoff),
        ),
        max_attempts=max_attempts,
        error=f"the worker stopped responding (no heartbeat for {seconds} s) on each of "
        f"{max_attempts} attempts (the most it tries, STUDIO_MAX_ATTEMPTS); giving up",
    )


def requeue_interrupted(session: Session, *, worker_prefix: str, max_attempts: int = 3) -> int:
    """On start-up: jobs that were running in this pool's workers go back to the queue.

    A job interrupted on its last allowed attempt fails instead: a job that crashes the process
    itself would otherwise crash it again at every start. Returns how many rows changed.
    """
    return _requeue_or_fail(
        session,
        where=(Generation.status == Status.RUNNING, Generation.worker.startswith(worker_prefix, autoescape=True)),
        max_attempts=max_attempts,
        error=f"the studio stopped while painting this on each of {max_attempts} attempts "
        "(the most it tries, STUDIO_MAX_ATTEMPTS); giving up, in case the job itself stops it",
    )


def release(session: Session, *, generation_id: int, worker: str) -> bool:
    """Give a job back to the queue that this worker stopped running because it is shutting down.

    Guarded like ``complete``: only a job still running under this worker is released, so a
    cancel that landed first stays cancelled. False when the job was no longer ours. The job did
    nothing wrong, so the attempt its claim counted is given back: restarts never fail a job.
    """
    stmt = (
        update(Generation)
        .where(*_running_under(generation_id, worker))
        .values(
            status=Status.QUEUED,
            worker=None,
            heartbeat_at=None,
            started_at=None,
            attempts=case((Generation.attempts > 0, Generation.attempts - 1), else_=0),
        )
        .execution_options(synchronize_session=False)
    )
    released = session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
    session.commit()
    return released
