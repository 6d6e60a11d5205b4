"""Dynamic batching on the queue: which queued jobs may share a claimed job's pipeline call, claimed in fair order.

The fairness rule: a worker that claimed a job (the head of the fair order) goes on claiming the
job that ``queue.claim`` would give it next, one at a time, for as long as that job can share the
head's call and fits in the batch; it stops at the first that cannot. A batch is therefore
exactly the jobs one worker would have claimed one after another, in that order, and everything
it leaves queued was ordered behind them all: no job ever waits behind a job that the fair order
put after it, whoever owns either. Each companion's claim is a claim like any other (it sets
``claimed_at``), so the turns and the least-recently-served order move exactly as they would
have with one claim per job.

A batch may also take jobs that arrive while its call paints its first steps
(``workers.batches``): the same claim of the job the fair order gives the worker next, at that
moment, stopping at the first that cannot join; ``joined`` counts the images already taken.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from sqlalchemy.orm import Session

from app.db.models import Generation, Mode
from app.services import queue

# Job parameters that only describe where a job came from or how the studio files it: jobs that
# differ in them still paint with the same call. Any other parameter (regions, a style, a mask's
# blur, an interpolation, an upscale, whatever is added later) keeps a job out of batches.
_FILING_PARAMS = {"action", "remix_of", "loras", "batch", "batch_kind", "batch_index", "batch_label"}


def batch_key(generation: Generation) -> tuple[Hashable, ...] | None:
    """What a job's pipeline call is made of besides prompts, seeds and sources; None: it runs alone.

    Two jobs with equal keys can be painted in one call: same model, mode, size, steps,
    scheduler, guidance, LoRAs (and strength, for image-to-image); prompts, negative prompts,
    seeds, image counts and source images may differ.
    """
    if generation.mode != Mode.TXT2IMG or generation.mask_image_id is not None or generation.style_image_ids:
        return None
    extras = generation.params.model_dump(exclude=_FILING_PARAMS, exclude_none=True)
    if any(value not in ([], {}) for value in extras.values()):
        return None
    repaints = generation.source_image_id is not None
    return (
        generation.model,
        "img2img" if repaints else "txt2img",
        generation.width,
        generation.height,
        generation.steps,
        generation.scheduler,
        generation.guidance,
        generation.strength if repaints else None,
        tuple((lora.name, lora.weight) for lora in generation.params.loras or []),
        # An empty negative prompt and a given one are different calls on some families.
        bool(generation.negative_prompt),
    )


def claim_companions(
    session: Session,
    *,
    head: Generation,
    worker: str,
    images: int,
    warm_models: Sequence[str] = (),
    joined: int = 0,
) -> list[Generation]:
    """After claiming ``head``: the queued jobs that can share its call, claimed in fair order.

    ``images`` bounds the images of the whole batch, the head's included; ``joined`` counts the
    images of companions claimed before (a batch that takes jobs arriving while it paints).
    Stops at the first job of the fair order that cannot join (another call, or too many images
    to fit), so a batch never takes a job ahead of one the fair order runs first (see the
    module's docstring).
    """
    key = batch_key(head)
    if key is None:
        return []
    companions: list[Generation] = []
    room = images - head.n_images - joined
    while room > 0:

        def joins(job: Generation, room: int = room) -> bool:
            return job.n_images <= room and batch_key(job) == key

        job = queue.claim_next_if(session, worker=worker, accept=joins, warm_models=warm_models)
        if job is None:
            break
        companions.append(job)
        room -= job.n_images
    return companions
