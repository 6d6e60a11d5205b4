"""Steps: what kind of step made a generation from its parent (refine, vary, remix, inpaint, style,
interpolate).

The kind is stored in ``Generation.params["action"]`` next to ``parent_id``. It is descriptive:
nothing in the engine reads it, so no column (and no migration) is needed, and a generation
written before it existed still reads as a step through ``action_of``.
"""

from __future__ import annotations

import enum
from typing import Any

from app.db.models import Generation, Mode, User

ACTION_KEY = "action"
REMIX_KEY = "remix_of"


class Action(enum.StrEnum):
    REFINE = "refine"
    VARY = "vary"
    REMIX = "remix"
    INPAINT = "inpaint"
    STYLE = "style"
    INTERPOLATE = "interpolate"


def infer_action(*, parent: Generation, owner: User, mode: Mode) -> Action:
    """The kind of a new step when the caller did not name one: from whose parent and which mode."""
    if parent.user_id != owner.id:
        return Action.REMIX
    if mode == Mode.INPAINT:
        return Action.INPAINT
    if mode == Mode.STYLE:
        return Action.STYLE
    return Action.REFINE


def step_params(params: dict[str, Any], *, parent: Generation, owner: User, mode: Mode) -> dict[str, Any]:
    """``params`` with the step's kind recorded, and for a remix the attribution to the original."""
    recorded = dict(params)
    action = recorded.get(ACTION_KEY)
    if action not in {item.value for item in Action}:
        action = infer_action(parent=parent, owner=owner, mode=mode).value
    recorded[ACTION_KEY] = action
    if action == Action.REMIX and REMIX_KEY not in recorded:
        recorded[REMIX_KEY] = {
            "generation_id": parent.id,
            "user_id": parent.user_id,
            "username": parent.user.username if parent.user is not None else None,
        }
    return recorded


def action_of(generation: Generation) -> Action | None:
    """The recorded kind of step, inferred for older rows; None for a generation with no parent."""
    if generation.parent_id is None and REMIX_KEY not in (generation.params or {}):
        return None
    recorded = (generation.params or {}).get(ACTION_KEY)
    if recorded in {item.value for item in Action}:
        return Action(recorded)
    if generation.mode == Mode.INPAINT:
        return Action.INPAINT
    if generation.mode == Mode.STYLE:
        return Action.STYLE
    return Action.REFINE
