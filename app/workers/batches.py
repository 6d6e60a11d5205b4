"""Batches: a claimed job and the queued jobs that can share its pipeline call, claimed and painted together.

Used by the embedded pool and the Celery worker in place of ``jobs.execute``: after claiming a
job, a worker claims its companions in fair order (``services.batching.claim_companions``, up to
``batch_bound`` images) and paints them all in one call (``engine.batching.run_batch``); a job
with no companion runs exactly as ``jobs.execute`` runs it.

A batch also takes jobs that arrive while its call paints its first steps (in a burst of
submissions, the idle worker claims the first job the instant it arrives, before the others are
there). Where the pool says something was enqueued since the last look (``arrivals``; the Celery
worker has no such signal and does not look), the step end claims companions again, in fair
order and within the bound; if it got any, the call stops and starts again from step 0 with
them, so every image is still painted from its own seeds. Only a call's first steps look
(``join_window``); while a burst is still arriving the claim waits a step for the rest of it; at
most ``JOIN_RESTARTS`` restarts throwing away at most half the steps (``join_budget``), so a
trickle of arrivals cannot hold the first jobs back. A step end with nothing enqueued since the
last look asks the database nothing.

Each member of a batch stays a job of its own:
- events: its own ``running``, progress (its own step, its own preview) and final status;
- heartbeat: one thread beats every member's row; a member whose row is no longer ours (cancelled,
  requeued by a sweeper) is marked lost;
- cancel: a cancelled member leaves the batch at the next step end (the engine stops hearing it
  and returns nothing for it) while the call goes on for the others; its row is the cancel's;
- outcome: each member's outputs are stored and its row completed on its own (``queue.complete``
  is guarded per row); an engine error in a shared call paints each member again alone, so one
  bad job fails only itself. A shutdown stops the call and hands every member back to the queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.db.models import Generation, Status
from app.engine.batching import call_key, groups, run_batch
from app.engine.runner import Cancelled, GenerationResult, GenerationSpec, StepCallback, StepProgress, run
from app.services.batching import batch_key, claim_companions
from app.workers.jobs import (
    Heartbeats,
    JobContext,
    _current_status,
    _progress_publisher,
    execute,
    fail_job,
    keep_outputs,
    release_job,
)
from app.workers.specs import spec_for

logger = logging.getLogger(__name__)

# STUDIO_MAX_BATCH=0 on the CPU: past about 8 images a batch paints no faster per image.
CPU_BATCH = 8
# On CUDA the bound follows free memory: what one image takes while it is painted, per pixel
# (activations with guidance's doubled batch; SDXL at 1024 px takes about 1.5 GB an image in
# half precision), a share of free memory kept back, and a ceiling.
GPU_BYTES_PER_PIXEL = 2048
GPU_FREE_SHARE = 0.8
GPU_BATCH_CEILING = 16

# Jobs that arrive while a call paints join it only at the end of one of its first steps: a
# quarter of them, at least the first, never the last. A restart throws those steps away for the
# jobs already in the call, which costs less than the joiners' own call would (on the CPU an image
# alone costs about twice its share of a batch of 8). A burst of submissions arrives over several
# steps, and each restart costs the call's set-up and its steps again: while jobs are still
# arriving (the count moved during the step that just ended), the claim waits for the next step
# end, up to the last one a restart may use, so one restart takes the burst rather than one per
# step. The steps thrown away by all of a call's restarts together stay within half of its steps
# (JOIN_THROWN), in at most JOIN_RESTARTS restarts, so a trickle of arrivals cannot hold the first
# job back.
JOIN_WINDOW = 0.25
JOIN_THROWN = 0.5
JOIN_RESTARTS = 3


def join_window(total: int) -> int:
    """The step ends (1 to this) of a ``total``-step call at which arriving jobs may join it."""
    return max(1, int(total * JOIN_WINDOW))


def join_budget(total: int) -> int:
    """The steps all the restarts of a ``total``-step call may throw away together."""
    return max(1, int(total * JOIN_THROWN))


def memory_bound(free_bytes: int, *, width: int, height: int) -> int:
    """Images of ``width`` x ``height`` that fit in ``free_bytes`` of GPU memory (1 to the ceiling)."""
    per_image = max(1, width * height * GPU_BYTES_PER_PIXEL)
    return max(1, min(GPU_BATCH_CEILING, int(free_bytes * GPU_FREE_SHARE) // per_image))


def batch_bound(max_batch: int, device: str, *, width: int, height: int) -> int:
    """How many images one call may paint on ``device``: ``max_batch``, or per device when it is 0."""
    if max_batch > 0:
        return max_batch
    if not device.startswith("cuda"):
        return CPU_BATCH
    import torch

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return memory_bound(int(free), width=width, height=height)


def execute_claimed(
    context: JobContext,
    job_id: int,
    *,
    worker: str,
    device: str,
    stop: threading.Event | None = None,
    arrivals: Callable[[], int] | None = None,
) -> dict[int, Status | None]:
    """Runs a job this worker claimed, with the queued jobs that can share its call. Never raises.

    ``arrivals`` counts the jobs enqueued so far (the embedded pool's ``enqueued``): given, jobs
    that arrive while the call paints its first steps may join it. Returns each job's status as
    recorded (None where the database could not say).
    """
    # Read before the companions are claimed: a job enqueued during that claim is looked for again.
    seen = arrivals() if arrivals is not None else 0
    claims, companions = _Claims.first(context, job_id, worker=worker, device=device)
    joining = None
    if claims is not None and arrivals is not None and claims.room > 0:
        joining = _Joining(claims, arrivals, seen=seen)
    if not companions and joining is None:
        return {job_id: execute(context, job_id, worker=worker, device=device, stop=stop)}
    return execute_batch(context, [job_id, *companions], worker=worker, device=device, stop=stop, joining=joining)


class _Claims:
    """Claims a head's companions, in fair order, within the batch's bound; again as jobs arrive."""

    def __init__(self, context: JobContext, head_id: int, *, worker: str, device: str, bound: int, images: int) -> None:
        self.context = context
        self.head_id = head_id
        self.worker = worker
        self.device = device
        self.bound = bound
        self.images = images  # of every job claimed into the batch so far, the head's included

    @classmethod
    def first(cls, context: JobContext, head_id: int, *, worker: str, device: str) -> tuple[_Claims | None, list[int]]:
        """The head's claims (None when nothing can share its call) and the companions claimed now.

        One session reads the head and claims, as a worker did before jobs could join a call.
        """
        if context.max_batch == 1:
            return None, []
        try:
            with context.session_factory() as session:
                head = session.get(Generation, head_id)
                if head is None or batch_key(head) is None:
                    return None, []
                bound = batch_bound(context.max_batch, device, width=head.width, height=head.height)
                if bound <= head.n_images:
                    return None, []
                claims = cls(context, head_id, worker=worker, device=device, bound=bound, images=head.n_images)
                return claims, claims._claim(session, head)
        except Exception:
            # Whatever was claimed before the error runs nowhere: its heartbeat goes stale and the
            # sweeper requeues it. The head still runs, alone.
            logger.exception("claiming the companions of generation %s failed; painting it alone", head_id)
            return None, []

    @property
    def room(self) -> int:
        return self.bound - self.images

    def claim(self) -> list[int]:
        """The companions claimed now (none when there is no room or none can join). Never raises."""
        if self.room <= 0:
            return []
        try:
            with self.context.session_factory() as session:
                head = session.get(Generation, self.head_id)
                return self._claim(session, head) if head is not None else []
        except Exception:
            logger.exception("claiming the companions of generation %s failed", self.head_id)
            return []

    def _claim(self, session: Session, head: Generation) -> list[int]:
        companions = claim_companions(
            session,
            head=head,
            worker=self.worker,
            images=self.bound,
            warm_models=self.context.registry.warm_models(self.device),
            joined=self.images - head.n_images,
        )
        self.images += sum(companion.n_images for companion in companions)
        return [companion.id for companion in companions]


class _Joining:
    """Jobs that join a call while it paints its first steps (see the module's docstring).

    Asked at every step end of the head's call, on the painting thread: past the window it only
    compares the step with it; within it, it asks the database only once ``arrivals`` moved.
    """

    def __init__(self, claims: _Claims, arrivals: Callable[[], int], *, seen: int) -> None:
        self.claims = claims
        self._arrivals = arrivals
        self._seen = seen  # the count when the database was last asked
        self._last = seen  # the count at the last step end
        self._step = 0  # the step end last looked at: each member's callback hears every step
        self.restarts = 0
        self.thrown = 0  # steps thrown away by the restarts so far
        self._joined: list[int] = []

    @property
    def head_id(self) -> int:
        return self.claims.head_id

    def begin(self) -> None:
        """A call starts (again): its steps count from 1."""
        self._step = 0

    def step_end(self, progress: StepProgress) -> bool:
        """True when jobs were claimed to join: the call must stop and start again with them."""
        done, total = progress.step, progress.total
        if done == self._step:
            return False
        self._step = done
        # The last step end at which a restart may still come: in the window, before the last
        # step, within what the restarts may throw away.
        last = min(join_window(total), total - 1, join_budget(total) - self.thrown)
        if done > last or self.restarts >= JOIN_RESTARTS:
            return False
        # The pool counts an enqueue after its row commits, so a job counted after ``_seen`` was
        # read is either seen by the claim below or counted again for the next look.
        arrived = self._arrivals()
        moved, self._last = arrived != self._last, arrived
        if arrived == self._seen or (moved and done < last):
            return False  # nothing new; or a burst still arriving: the next step end takes more of it
        self._seen = arrived
        joined = self.claims.claim()
        if not joined:
            return False
        self._joined.extend(joined)
        self.restarts += 1
        self.thrown += done
        return True

    def take(self) -> list[int]:
        """The jobs claimed to join since the last take; the batch owns them from now."""
        joined, self._joined = self._joined, []
        return joined


@dataclass
class _Member:
    id: int
    generation: Generation  # detached, for the PNGs' parameters and provenance
    spec: GenerationSpec


def execute_batch(
    context: JobContext,
    job_ids: Sequence[int],
    *,
    worker: str,
    device: str,
    stop: threading.Event | None = None,
    joining: _Joining | None = None,
) -> dict[int, Status | None]:
    """Paints jobs this worker claimed, those that share a call in one call, and records each. Never raises.

    With ``joining``, jobs that arrive while the head's call paints its first steps join it.
    """
    bus = context.bus
    stopping: Callable[[], bool] = stop.is_set if stop is not None else lambda: False
    outcomes: dict[int, Status | None] = {}
    every = list(job_ids)
    members = _members(context, job_ids, worker=worker, outcomes=outcomes)
    head_joinable = bool(members) and members[0].id == job_ids[0] and call_key(members[0].spec) is not None
    if not head_joinable:
        joining = None  # the head paints alone (weighted prompts) or not at all: nothing can join its call

    with Heartbeats(context, [member.id for member in members], worker) as beats:
        pending = _grouped(members)
        while pending:
            painted = pending.pop(0)
            looking = joining if joining is not None and painted[0].id == joining.head_id else None
            outcomes.update(
                _paint(context, painted, beats, worker=worker, device=device, stopping=stopping, joining=looking)
            )
            # Members without an outcome were stopped for jobs that joined: painted again with them.
            again = [member for member in painted if member.id not in outcomes]
            joined = looking.take() if looking is not None else []
            every.extend(joined)
            if joined and stopping():
                for job_id in joined:
                    release_job(context, job_id, worker=worker)
                    outcomes[job_id] = _current_status(context, job_id)
            elif joined:
                arrived = _members(context, joined, worker=worker, outcomes=outcomes)
                beats.add([member.id for member in arrived])
                key = call_key(painted[0].spec)
                again += [member for member in arrived if call_key(member.spec) == key]
                # A joiner the engine paints in another call (weighted prompts) comes after.
                pending += _grouped([member for member in arrived if call_key(member.spec) != key])
            if again:
                pending.insert(0, again)

    for job_id in every:
        status = outcomes.get(job_id)
        if status is not None:
            bus.publish(job_id, "status", {"status": status.value})
    return outcomes


def _members(
    context: JobContext, job_ids: Sequence[int], *, worker: str, outcomes: dict[int, Status | None]
) -> list[_Member]:
    """The claimed jobs, each told it runs; one that cannot be read fails alone (into ``outcomes``)."""
    members: list[_Member] = []
    for job_id in job_ids:
        context.bus.publish(job_id, "status", {"status": Status.RUNNING.value})
        try:
            with context.session_factory() as session:
                generation = session.get(Generation, job_id)
                if generation is None:
                    outcomes[job_id] = Status.FAILED
                    continue
                spec = spec_for(generation, session, context.store)
                session.expunge(generation)
            members.append(_Member(id=job_id, generation=generation, spec=spec))
        except Exception as error:
            logger.exception("generation %s failed", job_id)
            outcomes[job_id] = fail_job(context, job_id, worker=worker, error=error)
    return members


def _grouped(members: list[_Member]) -> list[list[_Member]]:
    return [[members[index] for index in group] for group in groups([member.spec for member in members])]


def _paint(
    context: JobContext,
    members: list[_Member],
    beats: Heartbeats,
    *,
    worker: str,
    device: str,
    stopping: Callable[[], bool],
    joining: _Joining | None = None,
) -> dict[int, Status | None]:
    """Paints ``members`` in one call (alone when there is one) and records each one's outcome.

    With ``joining``, a step end that claims arriving jobs stops the call: the members not
    cancelled meanwhile get no outcome, to be painted again with them (``joining.take()``).
    """
    bus = context.bus
    restart = False

    def taken(member: _Member) -> bool:
        # Cancelled: the route's final status on the bus, or the heartbeat finding the row gone.
        return beats.lost(member.id) or bus.ended(member.id)

    def stops(member: _Member) -> Callable[[], bool]:
        return lambda: taken(member) or stopping()

    callbacks = [
        _progress_publisher(bus, member.id, stops(member), preview_seconds=context.preview_seconds)
        for member in members
    ]
    if joining is not None:
        joining.begin()

        def joins(progress: StepProgress) -> bool:
            nonlocal restart
            restart = restart or joining.step_end(progress)
            return restart

        # Looked at before any member hears the step, so after a restart every one starts again at 1.
        callbacks = [_looking(joins, callback) for callback in callbacks]
    results: list[GenerationResult | None]
    try:
        if stopping():
            raise Cancelled()
        if len(members) == 1:
            results = [run(context.registry, members[0].spec, device=device, on_step=callbacks[0])]
        else:
            results = run_batch(context.registry, [member.spec for member in members], device=device, on_step=callbacks)
    except Cancelled:
        if stopping():
            # Stopped by shutdown, not by the artists or a sweeper: hand every job back.
            for member in members:
                release_job(context, member.id, worker=worker)
        elif restart:
            # Stopped for jobs that joined: a member cancelled meanwhile leaves now, the rest start again.
            left = {}
            for member in members:
                if taken(member):
                    left[member.id] = _current_status(context, member.id)
                    beats.finished(member.id)
            return left
        return {member.id: _current_status(context, member.id) for member in members}
    except Exception as error:
        if len(members) > 1:
            # One bad job must not fail the others: each is painted again, alone.
            logger.exception("the batch of generations %s failed; painting each alone", [m.id for m in members])
            outcomes: dict[int, Status | None] = {}
            for member in members:
                outcomes.update(_paint(context, [member], beats, worker=worker, device=device, stopping=stopping))
            return outcomes
        logger.exception("generation %s failed", members[0].id)
        return {members[0].id: fail_job(context, members[0].id, worker=worker, error=error)}

    outcomes = {}
    for member, result in zip(members, results, strict=True):
        if result is None or taken(member):
            # Left the batch (cancelled), or cancelled as the last step ended: not ours to record.
            outcomes[member.id] = _current_status(context, member.id)
        else:
            outcomes[member.id] = _keep(context, member, result, worker=worker)
        beats.finished(member.id)
    return outcomes


def _looking(joins: Callable[[StepProgress], bool], callback: StepCallback) -> StepCallback:
    """``callback``, stopping first when ``joins`` says jobs joined the call."""

    def on_step(progress: StepProgress) -> bool:
        return not joins(progress) and bool(callback(progress))

    return on_step


def _keep(context: JobContext, member: _Member, result: GenerationResult, *, worker: str) -> Status | None:
    """Stores a member's outputs and completes its row, as ``jobs.execute`` does for a job alone."""
    try:
        return keep_outputs(context, member.generation, result, worker=worker)
    except Exception as error:
        logger.exception("generation %s failed", member.id)
        return fail_job(context, member.id, worker=worker, error=error)
