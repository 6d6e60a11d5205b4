"""Lineage API: a generation's tree of steps, variations of it, and seed or prompt grids."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.generations import accepted
from app.db.models import Mode
from app.deps import CatalogDep, CurrentUser, SessionDep, SettingsDep, SubmitDep
from app.params import RowId
from app.schemas import (
    BatchAccepted,
    EdgeOut,
    GenerationAccepted,
    LineageNodeOut,
    LineageOut,
    PromptMatrixRequest,
    SeedGridRequest,
    VaryRequest,
)
from app.services import explore, lineage
from app.services.compose import new_generation
from app.services.steps import action_of

router = APIRouter(tags=["lineage"])


def node_out(node: lineage.LineageNode, focus_id: int) -> LineageNodeOut:
    generation = node.generation
    first = generation.images[0] if generation.images else None
    action = action_of(generation)
    return LineageNodeOut(
        id=generation.id,
        url=f"/api/generations/{generation.id}",
        page_url=f"/generations/{generation.id}",
        prompt=generation.prompt,
        status=generation.status.value,
        mode=generation.mode.value,
        action=action.value if action else None,
        thumb_url=f"/api/images/{first.id}/thumb" if first else None,
        is_focus=generation.id == focus_id,
        edge=EdgeOut.model_validate(node.edge.as_dict()) if node.edge else None,
        children=[node_out(child, focus_id) for child in node.children],
    )


@router.get("/generations/{generation_id}/lineage", response_model=LineageOut)
def get_lineage(generation_id: RowId, session: SessionDep, user: CurrentUser) -> LineageOut:
    """The tree from the oldest visible ancestor down, each edge saying what changed."""
    tree = lineage.build_lineage(session, generation_id=generation_id, user=user)
    return LineageOut(
        focus_id=tree.focus_id,
        root_id=tree.root.generation.id,
        ancestor_ids=tree.ancestor_ids,
        node_count=tree.node_count,
        truncated=tree.truncated,
        attribution=tree.attribution,
        root=node_out(tree.root, tree.focus_id),
    )


@router.post("/generations/{generation_id}/vary", status_code=202, response_model=GenerationAccepted)
def vary_generation(
    generation_id: RowId, user: CurrentUser, submit: SubmitDep, body: VaryRequest | None = None
) -> GenerationAccepted:
    """The same parameters with a new seed (random unless given), recorded as a ``vary`` step."""
    generation = submit.through(explore.vary, owner=user, generation_id=generation_id, seed=body.seed if body else None)
    return accepted(generation)


@router.post("/generate/seeds", status_code=202, response_model=BatchAccepted)
def generate_seed_grid(
    body: SeedGridRequest, user: CurrentUser, catalog: CatalogDep, settings: SettingsDep, submit: SubmitDep
) -> BatchAccepted:
    base = new_generation(body, mode=Mode.TXT2IMG, catalog=catalog, default_model=settings.default_model)
    batch, cells = submit.through(explore.seed_grid, owner=user, base=base, count=body.count)
    return BatchAccepted(batch=batch, ids=[cell.id for cell in cells], url=f"/batches/{batch}")


@router.post("/generate/matrix", status_code=202, response_model=BatchAccepted)
def generate_prompt_matrix(
    body: PromptMatrixRequest, user: CurrentUser, catalog: CatalogDep, settings: SettingsDep, submit: SubmitDep
) -> BatchAccepted:
    base = new_generation(body, mode=Mode.TXT2IMG, catalog=catalog, default_model=settings.default_model)
    batch, cells = submit.through(
        explore.prompt_matrix, owner=user, base=base, replace_text=body.replace, alternatives=body.alternatives
    )
    return BatchAccepted(batch=batch, ids=[cell.id for cell in cells], url=f"/batches/{batch}")
