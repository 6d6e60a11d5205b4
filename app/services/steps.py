"""Steps: what kind of step made a generation from its parent (refine, vary, remix, inpaint, style,
interpolate).

The kind is stored as ``JobParams.action`` next to ``parent_id``. It is descriptive: nothing in
the engine reads it, so no column (and no migration) is needed, and a generation written before
it existed still reads as a step through ``action_of``.
"""

from __future__ import annotations

from app.db.models import Generation, Mode, User
from app.params import Action, JobParams, RemixOrigin

__all__ = ["Action"]


def infer_action(*, parent: Generation, owner: User, mode: Mode) -> Action:
    """The kind of a new step when the caller did not name one: from whose parent and which mode."""
    if parent.user_id != owner.id:
        return Action.REMIX
    if mode == Mode.INPAINT:
        return Action.INPAINT
    if mode == Mode.STYLE:
        return Action.STYLE
    return Action.REFINE


def step_params(params: JobParams, *, parent: Generation, owner: User, mode: Mode) -> JobParams:
    """``params`` with the step's kind recorded, and for a remix the attribution to the original."""
    action = params.action or infer_action(parent=parent, owner=owner, mode=mode)
    remix_of = params.remix_of
    if action == Action.REMIX and remix_of is None:
        remix_of = RemixOrigin(
            generation_id=parent.id,
            user_id=parent.user_id,
            username=parent.user.username if parent.user is not None else None,
        )
    return params.model_copy(update={"action": action, "remix_of": remix_of})


def action_of(generation: Generation) -> Action | None:
    """The recorded kind of step, inferred for older rows; None for a generation with no parent."""
    if generation.parent_id is None and generation.params.remix_of is None:
        return None
    if generation.params.action is not None:
        return generation.params.action
    if generation.mode == Mode.INPAINT:
        return Action.INPAINT
    if generation.mode == Mode.STYLE:
        return Action.STYLE
    return Action.REFINE
