"""Batches: a claimed job and the queued jobs that can share its pipeline call, claimed and painted together.

Used by the embedded pool and the Celery worker in place of ``jobs.execute``: after claiming a
job, a worker claims its companions in fair order (``services.batching.claim_companions``, up to
``batch_bound`` images) and paints them all in one call (``engine.batching.run_batch``); a job
with no companion runs exactly as ``jobs.execute`` runs it.

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

from app.db.models import Generation, Status
from app.engine.batching import groups, run_batch
from app.engine.runner import Cancelled, GenerationResult, GenerationSpec, run
from app.services.batching import claim_companions
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
    context: JobContext, job_id: int, *, worker: str, device: str, stop: threading.Event | None = None
) -> dict[int, Status | None]:
    """Runs a job this worker claimed, with the queued jobs that can share its call. Never raises.

    Returns each job's status as recorded (None where the database could not say).
    """
    companions = _claim_companions(context, job_id, worker=worker, device=device)
    if not companions:
        return {job_id: execute(context, job_id, worker=worker, device=device, stop=stop)}
    return execute_batch(context, [job_id, *companions], worker=worker, device=device, stop=stop)


def _claim_companions(context: JobContext, job_id: int, *, worker: str, device: str) -> list[int]:
    if context.max_batch == 1:
        return []
    try:
        with context.session_factory() as session:
            head = session.get(Generation, job_id)
            if head is None:
                return []
            bound = batch_bound(context.max_batch, device, width=head.width, height=head.height)
            if bound <= head.n_images:
                return []
            warm = context.registry.warm_models(device)
            companions = claim_companions(session, head=head, worker=worker, images=bound, warm_models=warm)
            return [companion.id for companion in companions]
    except Exception:
        # Whatever was claimed before the error runs nowhere: its heartbeat goes stale and the
        # sweeper requeues it. The head still runs.
        logger.exception("claiming the companions of generation %s failed; painting it alone", job_id)
        return []


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
) -> dict[int, Status | None]:
    """Paints jobs this worker claimed, those that share a call in one call, and records each. Never raises."""
    bus = context.bus
    stopping: Callable[[], bool] = stop.is_set if stop is not None else lambda: False
    outcomes: dict[int, Status | None] = {}
    members: list[_Member] = []
    for job_id in job_ids:
        bus.publish(job_id, "status", {"status": Status.RUNNING.value})
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

    with Heartbeats(context, [member.id for member in members], worker) as beats:
        for group in groups([member.spec for member in members]):
            painted = [members[index] for index in group]
            outcomes.update(_paint(context, painted, beats, worker=worker, device=device, stopping=stopping))

    for job_id in job_ids:
        status = outcomes.get(job_id)
        if status is not None:
            bus.publish(job_id, "status", {"status": status.value})
    return outcomes


def _paint(
    context: JobContext,
    members: list[_Member],
    beats: Heartbeats,
    *,
    worker: str,
    device: str,
    stopping: Callable[[], bool],
) -> dict[int, Status | None]:
    """Paints ``members`` in one call (alone when there is one) and records each one's outcome."""
    bus = context.bus

    def taken(member: _Member) -> bool:
        # Cancelled: the route's final status on the bus, or the heartbeat finding the row gone.
        return beats.lost(member.id) or bus.ended(member.id)

    def stops(member: _Member) -> Callable[[], bool]:
        return lambda: taken(member) or stopping()

    callbacks = [
        _progress_publisher(bus, member.id, stops(member), preview_seconds=context.preview_seconds)
        for member in members
    ]
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


def _keep(context: JobContext, member: _Member, result: GenerationResult, *, worker: str) -> Status | None:
    """Stores a member's outputs and completes its row, as ``jobs.execute`` does for a job alone."""
    try:
        return keep_outputs(context, member.generation, result, worker=worker)
    except Exception as error:
        logger.exception("generation %s failed", member.id)
        return fail_job(context, member.id, worker=worker, error=error)
