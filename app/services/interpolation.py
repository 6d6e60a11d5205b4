"""Interpolations: a walk from one generation to another as a job, and its frames as an animated WebP.

A walk is an ordinary txt2img generation: the start's parameters, ``n_images`` frames, ``parent_id``
the start, and ``JobParams.interpolate`` naming the end (its id, prompt, negative prompt and seed),
so the frames are its output images and the lineage shows it as an ``interpolate`` step.
"""

from __future__ import annotations

import io

from sqlalchemy.orm import Session

from app.db.models import Generation, ImageKind, Mode, User
from app.params import Action, InterpolationWalk, JobParams, Parameters
from app.services import generations
from app.services.errors import InvalidInput, NotFound
from app.services.generations import NewGeneration
from app.services.images import load_pil
from app.services.storage import ImageStore

MIN_FRAMES, MAX_FRAMES, DEFAULT_FRAMES = 3, 16, 8
FRAME_MILLISECONDS = 120


def _check_walkable(generation: Generation) -> None:
    if generation.mode != Mode.TXT2IMG or generation.source_image_id is not None:
        kind = "image-to-image" if generation.mode == Mode.TXT2IMG else generation.mode.value
        raise InvalidInput(f"#{generation.id} is an {kind} painting; interpolation walks between prompt-only paintings")


def enqueue_walk(
    session: Session, *, owner: User, from_id: int, to_id: int, frames: int = DEFAULT_FRAMES
) -> Generation:
    """Queue ``frames`` frames from generation ``from_id`` to ``to_id``; both must be visible to ``owner``.

    The walk paints with the start's steps, guidance and scheduler; the two must share model and
    size, since the noise of one size cannot be walked to the noise of another.
    """
    start = generations.get_visible(session, generation_id=from_id, user=owner)
    end = generations.get_visible(session, generation_id=to_id, user=owner)
    if not MIN_FRAMES <= frames <= MAX_FRAMES:
        raise InvalidInput(f"frames must be between {MIN_FRAMES} and {MAX_FRAMES} (got {frames})")
    if start.id == end.id:
        raise InvalidInput(f"pick another generation to interpolate to: #{end.id} is the one you start from")
    _check_walkable(start)
    _check_walkable(end)
    if start.model != end.model:
        raise InvalidInput(
            f"#{start.id} was painted with {start.model} and #{end.id} with {end.model}; "
            "interpolation needs both on the same model"
        )
    if (start.width, start.height) != (end.width, end.height):
        raise InvalidInput(
            f"#{start.id} is {start.width}x{start.height} and #{end.id} is {end.width}x{end.height}; "
            "interpolation needs both the same size"
        )
    walk = InterpolationWalk(
        start=start.id,
        to=end.id,
        frames=frames,
        prompt_b=end.prompt,
        negative_prompt_b=end.negative_prompt,
        seed_b=end.seed,
    )
    new = NewGeneration(
        mode=Mode.TXT2IMG,
        **(Parameters.of(start).model_dump() | {"n_images": frames, "strength": None}),
        params=JobParams(action=Action.INTERPOLATE, interpolate=walk),
        parent_id=start.id,
    )
    return generations.enqueue(session, owner=owner, new=new)


def walk_of(generation: Generation) -> InterpolationWalk | None:
    """The walk a generation paints (from, to, frames, the end's prompt and seed), or None."""
    return generation.params.interpolate


def animation_webp(store: ImageStore, generation: Generation) -> bytes:
    """The walk's frames, in order, as a looping animated WebP.

    WebP merges identical consecutive frames into one longer frame, so a walk between two
    identical paintings may hold fewer frames than it painted.
    """
    if walk_of(generation) is None:
        raise NotFound(f"generation {generation.id} is not an interpolation")
    rows = sorted((image for image in generation.images if image.kind == ImageKind.OUTPUT), key=lambda row: row.index)
    if not rows:
        raise NotFound(f"generation {generation.id} has no frames yet")
    frames = [load_pil(store, row).convert("RGB") for row in rows]
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        format="WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=FRAME_MILLISECONDS,
        loop=0,
        quality=90,
    )
    return buffer.getvalue()
