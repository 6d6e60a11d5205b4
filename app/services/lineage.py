"""Lineage: the tree of a generation's ancestors and descendants, and what changed on each edge."""

from __future__ import annotations

import difflib
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Generation, User
from app.params import Action, Parameters, control_text, lora_text, region_text
from app.services import generations
from app.services.errors import NotFound
from app.services.steps import action_of

MAX_NODES = 200
# An edge names every recorded parameter that changed, except the prompt (diffed word by word);
# width and height read as one size.
_SIZE = "size"
_LORAS = "loras"  # from JobParams: every LoRA as <lora:name:weight>, so a weight change shows
_CONTROL = "control"  # from JobParams: each ControlNet guide as text (kind, model, weight, span, image)
_REGIONS = "regions"  # from JobParams: each region as text ("a red boat" in box 0,0,0.5,1 ×1.5)
PARAMETER_LABELS: dict[str, str] = {
    **{name: Parameters.label(name) for name in Parameters.names() if name not in ("prompt", "width", "height")},
    _SIZE: "size",
    _LORAS: "LoRAs",
    _CONTROL: "ControlNet",
    _REGIONS: "regions",
}
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class PromptDiff:
    """A word-level diff: ``segments`` reads as the new prompt with removed words shown in place."""

    added: list[str]
    removed: list[str]
    segments: list[tuple[str, str]]  # (op, text) with op in equal|insert|delete

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "segments": [{"op": op, "text": text} for op, text in self.segments],
        }


@dataclass(frozen=True)
class ParameterChange:
    name: str
    before: Any
    after: Any

    @property
    def label(self) -> str:
        return PARAMETER_LABELS.get(self.name, self.name)

    def describe(self) -> str:
        if self.name == "negative_prompt":
            if not self.before:
                return f'negative prompt added: "{self.after}"'
            if not self.after:
                return "negative prompt removed"
            return f'negative prompt "{self.before}" → "{self.after}"'
        if self.name == _REGIONS:
            return _regions_change(self.before, self.after)
        return f"{self.label} {_show(self.before)} → {_show(self.after)}"

    def as_dict(self) -> dict[str, Any]:
        # Regions compare as lists of their texts; an answer reads them as one text.
        before, after = ("; ".join(value) if isinstance(value, list) else value for value in (self.before, self.after))
        return {"name": self.name, "label": self.label, "before": before, "after": after}


@dataclass(frozen=True)
class Edge:
    """What made a child from its parent: the kind of step, the prompt diff, changed parameters."""

    action: str
    prompt_diff: PromptDiff
    changes: list[ParameterChange]
    notes: list[str]

    @property
    def summary(self) -> str:
        """One line: ``refine: +"golden" +"hour" −"noon"; steps 20 → 30``."""
        parts = [*self.notes]
        words = [f'+"{word}"' for word in self.prompt_diff.added] + [f'−"{word}"' for word in self.prompt_diff.removed]
        if words:
            parts.append(" ".join(words))
        parts.extend(change.describe() for change in self.changes)
        if not parts:
            parts.append("same parameters")
        return f"{self.action}: " + "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "summary": self.summary,
            "notes": self.notes,
            "prompt_diff": self.prompt_diff.as_dict(),
            "changes": [change.as_dict() for change in self.changes],
        }


@dataclass
class LineageNode:
    generation: Generation
    edge: Edge | None
    children: list[LineageNode] = field(default_factory=list)


@dataclass
class Lineage:
    """The tree from the oldest visible ancestor down; ``focus_id`` is the generation asked about."""

    root: LineageNode
    focus_id: int
    ancestor_ids: list[int]
    node_count: int
    truncated: bool
    attribution: dict[str, Any] | None = None


def _regions_change(before: list[str], after: list[str]) -> str:
    """Regions added, removed, and changed (the same prompt placed or weighed anew), in one phrase."""
    added, removed = [text for text in after if text not in before], [text for text in before if text not in after]
    parts = []
    for old in list(removed):
        # The place and weight follow the last " in " (a prompt may hold one; a place never does).
        prompt, _, old_place = old.rpartition(" in ")
        new = next((text for text in added if text.rpartition(" in ")[0] == prompt), None)
        if new is not None:
            parts.append(f"region {prompt}: {old_place} → {new.rpartition(' in ')[2]}")
            added.remove(new)
            removed.remove(old)
    parts[:0] = [f"region added: {text}" for text in added]
    parts.extend(f"region removed: {text}" for text in removed)
    return "; ".join(parts)


def _show(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _words(text: str) -> list[str]:
    return _WORD.findall(text or "")


def prompt_diff(before: str, after: str) -> PromptDiff:
    """Which words were added and removed between two prompts (difflib on whitespace-split words)."""
    old, new = _words(before), _words(after)
    added: list[str] = []
    removed: list[str] = []
    segments: list[tuple[str, str]] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            segments.append(("equal", " ".join(old[i1:i2])))
            continue
        if op in ("delete", "replace"):
            removed.extend(old[i1:i2])
            segments.append(("delete", " ".join(old[i1:i2])))
        if op in ("insert", "replace"):
            added.extend(new[j1:j2])
            segments.append(("insert", " ".join(new[j1:j2])))
    return PromptDiff(added=added, removed=removed, segments=segments)


def parameter_values(generation: Generation) -> dict[str, Any]:
    """The parameters an edge compares, by name (size as ``WxH``)."""
    values = Parameters.of(generation).model_dump(exclude={"prompt", "width", "height"})
    values[_SIZE] = f"{generation.width}×{generation.height}"
    values[_LORAS] = lora_text(generation.params.loras)
    values[_CONTROL] = control_text(generation.params.control)
    values[_REGIONS] = [region_text(region) for region in generation.params.regions or []]
    return values


def parameter_changes(parent: Generation, child: Generation) -> list[ParameterChange]:
    before, after = parameter_values(parent), parameter_values(child)
    changed = [name for name in PARAMETER_LABELS if before[name] != after[name]]
    return [ParameterChange(name, before[name], after[name]) for name in changed]


def _notes(action: Action, parent: Generation, child: Generation) -> list[str]:
    if action == Action.INPAINT:
        return ["inpainted" + (f" (mask image #{child.mask_image_id})" if child.mask_image_id else "")]
    if action == Action.STYLE:
        sources = ", ".join(f"image #{image_id}" for image_id in child.style_image_ids or [])
        return [f"style from {sources}" if sources else f"style from #{parent.id}"]
    if action == Action.REMIX:
        origin = child.params.remix_of
        who = (origin.username if origin else None) or "another artist"
        return [f"remix of {who}'s #{origin.generation_id if origin else parent.id}"]
    if action == Action.VARY:
        return ["new seed"]
    if action == Action.UPSCALE:
        scale = child.params.upscale_scale
        by = f" with {child.params.upscaler}" if child.params.upscaler else ""
        return [f"upscaled x{scale:g}{by} from image #{child.source_image_id}" if scale else "upscaled" + by]
    if action == Action.INTERPOLATE:
        walk = child.params.interpolate
        frames = walk.frames if walk else child.n_images
        return [f"interpolated to #{walk.to if walk else '?'} in {frames} frames"]
    return []


def describe_edge(parent: Generation, child: Generation) -> Edge:
    """What changed from ``parent`` to ``child``: kind of step, prompt words, parameters."""
    action = action_of(child) or Action.REFINE
    return Edge(
        action=action.value,
        prompt_diff=prompt_diff(parent.prompt, child.prompt),
        changes=parameter_changes(parent, child),
        notes=_notes(action, parent, child),
    )


def _visible(session: Session, user: User, generation: Generation) -> bool:
    # Through get_visible, so the lineage follows whatever the generations service lets a user see.
    try:
        generations.get_visible(session, generation_id=generation.id, user=user)
    except NotFound:
        return False
    return True


def build_lineage(session: Session, *, generation_id: int, user: User, max_nodes: int = MAX_NODES) -> Lineage:
    """The tree around a generation: its ancestors up to the oldest one ``user`` may see, then every
    visible descendant of that root (so sibling branches show too), at most ``max_nodes`` nodes.

    A parent the user may not see (a remix of someone else's work) ends the chain; the remix's
    attribution is kept in ``Lineage.attribution``.
    """
    focus = generations.get_visible(session, generation_id=generation_id, user=user)

    # 1. Walk up: parent_id links, stopping at the first invisible parent or at a cycle.
    chain = [focus]
    seen = {focus.id}
    attribution = focus.params.remix_of
    current = focus
    while current.parent_id is not None and current.parent_id not in seen:
        parent = session.get(Generation, current.parent_id)
        if parent is None or not _visible(session, user, parent):
            attribution = attribution or current.params.remix_of
            break
        chain.append(parent)
        seen.add(parent.id)
        current = parent
    root = chain[-1]

    # 2. Walk down from the root, one generation level per query.
    root_node = LineageNode(root, None)
    nodes = {root.id: root_node}
    frontier = [root.id]
    truncated = False
    while frontier and not truncated:
        children = session.scalars(
            select(Generation).where(Generation.parent_id.in_(frontier)).order_by(Generation.id)
        ).all()
        frontier = []
        for child in children:
            if child.id in nodes or not _visible(session, user, child):
                continue
            if len(nodes) >= max_nodes:
                truncated = True
                break
            parent_node = nodes[child.parent_id]  # type: ignore[index]
            node = LineageNode(child, describe_edge(parent_node.generation, child))
            parent_node.children.append(node)
            nodes[child.id] = node
            frontier.append(child.id)
    # A focus beyond the bound is still shown: its chain is what the page is about.
    if focus.id not in nodes:
        _attach_chain(nodes, list(reversed(chain)))
    return Lineage(
        root=root_node,
        focus_id=focus.id,
        ancestor_ids=[generation.id for generation in chain[1:]],
        node_count=len(nodes),
        truncated=truncated,
        attribution=attribution.model_dump() if attribution is not None else None,
    )


def _attach_chain(nodes: dict[int, LineageNode], chain: list[Generation]) -> None:
    for parent, child in zip(chain, chain[1:], strict=False):
        if child.id not in nodes:
            node = LineageNode(child, describe_edge(parent, child))
            nodes[parent.id].children.append(node)
            nodes[child.id] = node


def walk(node: LineageNode) -> list[LineageNode]:
    """Every node of the tree, depth first (parents before children)."""
    out: list[LineageNode] = []
    stack: deque[LineageNode] = deque([node])
    while stack:
        current = stack.popleft()
        out.append(current)
        stack.extendleft(reversed(current.children))
    return out
