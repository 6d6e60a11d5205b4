"""Exploration: new generations made from one: variations, seed grids and prompt matrices.

A grid is a batch: one request makes N generations that share ``JobParams.batch`` (a random
id), each with its place (``batch_index``) and what its cell stands for (``batch_label``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import replace
from typing import Any

from sqlalchemy import JSON, select, type_coerce
from sqlalchemy.orm import Session, selectinload

from app.db.models import Generation, Role, User
from app.params import MAX_SEED, Action, Parameters
from app.services import generations
from app.services.errors import InvalidInput
from app.services.generations import NewGeneration

MAX_CELLS = 16
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{8,32}$")


def as_new(generation: Generation) -> NewGeneration:
    """Every parameter of ``generation`` as a request for a new one (inputs included)."""
    return NewGeneration(
        mode=generation.mode,
        **Parameters.of(generation).model_dump(),
        params=generation.params.without_step(),
        source_image_id=generation.source_image_id,
        mask_image_id=generation.mask_image_id,
        style_image_ids=list(generation.style_image_ids or []),
    )


def _fresh_seed(avoid: int) -> int:
    seed = secrets.randbelow(MAX_SEED + 1)
    return seed if seed != avoid else (seed + 1) % (MAX_SEED + 1)


def vary(session: Session, *, owner: User, generation_id: int, seed: int | None = None) -> Generation:
    """A variation: the same parameters with a new seed, recorded as a ``vary`` step of the original."""
    original = generations.get_visible(session, generation_id=generation_id, user=owner)
    new = as_new(original)
    new.seed = seed if seed is not None else _fresh_seed(original.seed)
    new.parent_id = original.id
    new.params = new.params.model_copy(update={"action": Action.VARY})
    return generations.enqueue(session, owner=owner, new=new)


def _enqueue_batch(
    session: Session, *, owner: User, kind: str, cells: list[tuple[str, NewGeneration]]
) -> tuple[str, list[Generation]]:
    if not 2 <= len(cells) <= MAX_CELLS:
        raise InvalidInput(f"a grid has between 2 and {MAX_CELLS} cells (got {len(cells)})")
    # The whole grid against the quota first, so a refusal names what the grid asks for.
    generations.check_quota(session, owner=owner, adding=sum(new.n_images for _, new in cells))
    batch = secrets.token_urlsafe(9)
    made = []
    for index, (label, new) in enumerate(cells):
        params = new.params.model_copy(
            update={"batch": batch, "batch_kind": kind, "batch_index": index, "batch_label": label}
        )
        made.append(generations.enqueue(session, owner=owner, new=replace(new, params=params), commit=False))
    session.commit()
    return batch, made


def seed_grid(
    session: Session, *, owner: User, base: NewGeneration, count: int, first_seed: int | None = None
) -> tuple[str, list[Generation]]:
    """One prompt, ``count`` consecutive seeds (from ``first_seed`` or the base seed, else random)."""
    start = first_seed if first_seed is not None else base.seed
    if start is None:
        start = secrets.randbelow(MAX_SEED + 1 - MAX_CELLS)
    start = min(start, MAX_SEED + 1 - count)
    cells = [(f"seed {start + i}", replace(base, seed=start + i)) for i in range(count)]
    return _enqueue_batch(session, owner=owner, kind="seeds", cells=cells)


def seed_grid_from(session: Session, *, owner: User, generation_id: int, count: int) -> tuple[str, list[Generation]]:
    """A seed grid of a generation: its parameters on the ``count`` seeds after its own, as vary steps of it."""
    original = generations.get_visible(session, generation_id=generation_id, user=owner)
    base = replace(as_new(original), parent_id=original.id)
    base.params = base.params.model_copy(update={"action": Action.VARY})
    first_seed = (original.seed + 1) % (MAX_SEED + 1)
    return seed_grid(session, owner=owner, base=base, count=count, first_seed=first_seed)


def prompt_matrix_from(
    session: Session, *, owner: User, generation_id: int, replace_text: str, alternatives: list[str]
) -> tuple[str, list[Generation]]:
    """A prompt matrix of a generation: its parameters with ``replace_text`` swapped, as steps of it."""
    original = generations.get_visible(session, generation_id=generation_id, user=owner)
    base = replace(as_new(original), parent_id=original.id)
    return prompt_matrix(
        session, owner=owner, base=base, replace_text=replace_text, alternatives=alternatives[: MAX_CELLS - 1]
    )


def prompt_matrix(
    session: Session, *, owner: User, base: NewGeneration, replace_text: str, alternatives: list[str]
) -> tuple[str, list[Generation]]:
    """The base prompt once per alternative, ``replace_text`` swapped for it; one seed for all cells."""
    if not replace_text or replace_text not in base.prompt:
        raise InvalidInput(f'"{replace_text}" does not occur in the prompt; pick a word or phrase from it')
    options = [option.strip() for option in alternatives if option.strip()]
    seed = base.seed if base.seed is not None else secrets.randbelow(MAX_SEED + 1)
    cells = [(replace_text, replace(base, seed=seed))]
    cells += [
        (option, replace(base, seed=seed, prompt=base.prompt.replace(replace_text, option))) for option in options
    ]
    return _enqueue_batch(session, owner=owner, kind="matrix", cells=cells)


def batch_cells(session: Session, *, batch: str, user: User) -> list[Generation]:
    """The user's generations of one batch, in grid order; empty when there are none to show."""
    if not _BATCH_ID.match(batch):
        return []
    # type_coerce: index the stored JSON itself, not the JobParams the column reads it into.
    in_batch = type_coerce(Generation.params, JSON)["batch"].as_string() == batch
    stmt = select(Generation).where(in_batch).options(selectinload(Generation.images)).order_by(Generation.id)
    if user.role != Role.ADMIN:
        # Only the user's own cells can be shown: their (user_id, id) index spares reading every
        # generation's JSON, and the page's images come in one more statement.
        stmt = stmt.where(Generation.user_id == user.id)
    rows = session.scalars(stmt).all()
    visible = [row for row in rows if row.user_id == user.id or user.role == Role.ADMIN]
    return sorted(visible, key=lambda row: row.params.batch_index or 0)


def batch_info(generation: Generation) -> dict[str, Any] | None:
    params = generation.params
    if params.batch is None:
        return None
    return {"id": params.batch, "kind": params.batch_kind, "index": params.batch_index, "label": params.batch_label}
