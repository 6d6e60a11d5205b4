"""Tests for app.services.lineage (tree and edges), app.services.steps and app.services.explore."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.orm import Session

from app.db.models import Generation, Mode, User
from app.params import Action, JobParams, RemixOrigin
from app.services import explore, generations, lineage
from app.services.errors import InvalidInput, NotFound
from app.services.generations import NewGeneration
from app.services.steps import action_of

MakeGeneration = Callable[..., Generation]


def request(**overrides: object) -> NewGeneration:
    values: dict[str, object] = {
        "mode": Mode.TXT2IMG,
        "prompt": "a red barn under a blue sky",
        "model": "studio-tiny",
        "scheduler": "ddim",
        "seed": 1234,
        "steps": 20,
        "guidance": 7.0,
        "width": 64,
        "height": 64,
    }
    values.update(overrides)
    return NewGeneration(**values)  # type: ignore[arg-type]


def node_ids(node: lineage.LineageNode) -> list[int]:
    return [item.generation.id for item in lineage.walk(node)]


# --- prompt diffs -------------------------------------------------------------------------------


def test_prompt_diff_names_the_words_added_and_removed_in_a_real_sentence() -> None:
    diff = lineage.prompt_diff(
        "a lighthouse on a cliff at noon, oil on canvas",
        "a lighthouse on a rocky cliff at dusk, oil on canvas, dramatic clouds",
    )
    assert diff.added == ["rocky", "dusk,", "canvas,", "dramatic", "clouds"]
    assert diff.removed == ["noon,", "canvas"]
    assert diff.changed


def test_prompt_diff_segments_rebuild_both_prompts() -> None:
    before = "portrait of an old fisherman, charcoal sketch, soft light"
    after = "portrait of a young fisherman, watercolor, soft light"
    diff = lineage.prompt_diff(before, after)
    old = " ".join(text for op, text in diff.segments if op != "insert")
    new = " ".join(text for op, text in diff.segments if op != "delete")
    assert old == before
    assert new == after
    assert ("delete", "an old") in diff.segments
    assert ("insert", "a young") in diff.segments


def test_identical_prompts_differ_in_nothing_even_with_extra_spaces() -> None:
    diff = lineage.prompt_diff("a red  barn", "a red barn ")
    assert not diff.changed
    assert diff.segments == [("equal", "a red barn")]


# --- edges --------------------------------------------------------------------------------------


def test_refine_edge_names_changed_words_and_parameters(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    parent = make_generation(session, alice, prompt="a red barn under a blue sky", steps=20, guidance=7.0)
    child = generations.enqueue(
        session,
        owner=alice,
        new=request(prompt="a red barn under a stormy sky", steps=30, guidance=7.5, seed=1234, parent_id=parent.id),
    )
    edge = lineage.describe_edge(parent, child)
    assert edge.action == "refine"
    assert edge.prompt_diff.added == ["stormy"]
    assert edge.prompt_diff.removed == ["blue"]
    assert {change.name: (change.before, change.after) for change in edge.changes} == {
        "steps": (20, 30),
        "guidance": (7.0, 7.5),
    }
    assert 'refine: +"stormy" −"blue"' in edge.summary
    assert "steps 20 → 30" in edge.summary
    assert "guidance 7 → 7.5" in edge.summary


def test_edge_names_a_new_negative_prompt_size_and_model(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    parent = make_generation(session, alice)
    child = make_generation(
        session,
        alice,
        parent_id=parent.id,
        negative_prompt="blurry, text",
        width=128,
        model="sd15",
        params={"action": "refine"},
    )
    summary = lineage.describe_edge(parent, child).summary
    assert 'negative prompt added: "blurry, text"' in summary
    assert "size 64×64 → 128×64" in summary
    assert "model studio-tiny → sd15" in summary


def test_edge_names_regions_moved_by_mask_and_weight_even_with_in_in_their_prompt(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    boat = {"prompt": "a boat in the harbour", "box": [0, 0, 0.5, 1]}
    parent = make_generation(session, alice, params={"regions": [boat]})
    child = make_generation(
        session,
        alice,
        parent_id=parent.id,
        params={"action": "refine", "regions": [{"prompt": "a boat in the harbour", "mask_id": 4, "weight": 0.5}]},
    )
    assert lineage.describe_edge(parent, child).summary == (
        'refine: region "a boat in the harbour": box 0,0,0.5,1 → mask #4 ×0.5'
    )
    same = make_generation(session, alice, parent_id=child.id, params={"action": "refine", "regions": [boat]})
    unchanged = make_generation(session, alice, parent_id=same.id, params={"action": "refine", "regions": [boat]})
    assert lineage.describe_edge(same, unchanged).summary == "refine: same parameters"


def test_inpaint_and_style_edges_say_so(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    parent = make_generation(session, alice)
    inpainted = make_generation(session, alice, parent_id=parent.id, mode=Mode.INPAINT)
    styled = make_generation(session, alice, parent_id=parent.id, mode=Mode.STYLE, style_image_ids=[])
    assert lineage.describe_edge(parent, inpainted).summary.startswith("inpaint: inpainted")
    assert lineage.describe_edge(parent, styled).summary == f"style: style from #{parent.id}"


def test_an_unchanged_refine_says_same_parameters(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    parent = make_generation(session, alice)
    child = make_generation(session, alice, parent_id=parent.id)
    assert lineage.describe_edge(parent, child).summary == "refine: same parameters"


# --- recording the kind of step -----------------------------------------------------------------


def test_enqueue_with_a_parent_records_a_refine_and_without_one_records_nothing(
    session: Session, make_user: Callable[..., User]
) -> None:
    alice = make_user(session)
    first = generations.enqueue(session, owner=alice, new=request())
    second = generations.enqueue(session, owner=alice, new=request(parent_id=first.id))
    inpaint = generations.enqueue(session, owner=alice, new=request(parent_id=first.id, mode=Mode.INPAINT))
    assert first.params.action is None and action_of(first) is None
    assert second.params.action == "refine"
    assert inpaint.params.action == "inpaint"


def test_vary_keeps_every_parameter_but_the_seed(session: Session, make_user: Callable[..., User]) -> None:
    alice = make_user(session)
    original = generations.enqueue(session, owner=alice, new=request(negative_prompt="text", steps=12))
    variation = explore.vary(session, owner=alice, generation_id=original.id)
    assert variation.parent_id == original.id
    assert variation.params.action == "vary"
    assert variation.seed != original.seed
    assert (variation.prompt, variation.negative_prompt, variation.steps) == (original.prompt, "text", 12)
    edge = lineage.describe_edge(original, variation)
    assert edge.summary == f"vary: new seed; seed {original.seed} → {variation.seed}"


def test_vary_of_someone_elses_generation_is_not_found(session: Session, make_user: Callable[..., User]) -> None:
    alice, bob = make_user(session), make_user(session)
    original = generations.enqueue(session, owner=alice, new=request())
    with pytest.raises(NotFound):
        explore.vary(session, owner=bob, generation_id=original.id)


def test_a_remix_keeps_the_attribution_to_the_original(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    from app.services import steps

    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    original = make_generation(session, alice)
    params = steps.step_params(JobParams(), parent=original, owner=bob, mode=Mode.TXT2IMG)
    assert params.action == Action.REMIX
    assert params.remix_of == RemixOrigin(generation_id=original.id, user_id=alice.id, username="alice")
    remix = make_generation(session, bob, parent_id=original.id, params=params, prompt="a red barn at night")
    summary = lineage.describe_edge(original, remix).summary
    assert summary.startswith(f"remix: remix of alice's #{original.id}")
    # Bob cannot see Alice's original: his lineage starts at his remix and keeps the attribution.
    tree = lineage.build_lineage(session, generation_id=remix.id, user=bob)
    assert tree.root.generation.id == remix.id
    assert tree.attribution == {"generation_id": original.id, "user_id": alice.id, "username": "alice"}


# --- the tree -----------------------------------------------------------------------------------


def test_lineage_of_a_grandchild_shows_root_chain_and_sibling_branches(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session), make_user(session)
    root = make_generation(session, alice, prompt="a barn")
    child = make_generation(session, alice, parent_id=root.id, prompt="a red barn")
    grandchild = make_generation(session, alice, parent_id=child.id, prompt="a red barn at dusk")
    sibling = make_generation(session, alice, parent_id=root.id, prompt="a barn", seed=99, params={"action": "vary"})
    make_generation(session, bob, parent_id=child.id)  # someone else's child stays out of Alice's tree
    unrelated = make_generation(session, alice)

    tree = lineage.build_lineage(session, generation_id=grandchild.id, user=alice)
    assert tree.focus_id == grandchild.id
    assert tree.root.generation.id == root.id
    assert tree.ancestor_ids == [child.id, root.id]
    assert node_ids(tree.root) == [root.id, child.id, grandchild.id, sibling.id]
    assert unrelated.id not in node_ids(tree.root)
    assert tree.node_count == 4
    branches = tree.root.children
    assert [node.edge.action for node in branches if node.edge] == ["refine", "vary"]
    assert branches[0].children[0].edge is not None
    assert branches[0].children[0].edge.prompt_diff.added == ["at", "dusk"]


def test_lineage_of_someone_elses_generation_is_not_found(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session), make_user(session)
    generation = make_generation(session, alice)
    with pytest.raises(NotFound):
        lineage.build_lineage(session, generation_id=generation.id, user=bob)


def test_lineage_is_bounded_but_keeps_the_focus(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    root = make_generation(session, alice)
    for _ in range(5):
        make_generation(session, alice, parent_id=root.id)
    late = make_generation(session, alice, parent_id=root.id)
    tree = lineage.build_lineage(session, generation_id=late.id, user=alice, max_nodes=3)
    assert tree.truncated
    assert late.id in node_ids(tree.root)


def test_a_parent_cycle_does_not_loop_forever(
    session: Session, make_user: Callable[..., User], make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    first = make_generation(session, alice)
    second = make_generation(session, alice, parent_id=first.id)
    first.parent_id = second.id
    session.commit()
    tree = lineage.build_lineage(session, generation_id=second.id, user=alice)
    assert sorted(node_ids(tree.root)) == [first.id, second.id]


# --- grids --------------------------------------------------------------------------------------


def test_seed_grid_makes_one_batch_of_consecutive_seeds(session: Session, make_user: Callable[..., User]) -> None:
    alice = make_user(session)
    batch, cells = explore.seed_grid(session, owner=alice, base=request(seed=10), count=4)
    assert [cell.seed for cell in cells] == [10, 11, 12, 13]
    assert {cell.prompt for cell in cells} == {"a red barn under a blue sky"}
    assert [cell.params.batch_label for cell in cells] == ["seed 10", "seed 11", "seed 12", "seed 13"]
    assert [cell.id for cell in explore.batch_cells(session, batch=batch, user=alice)] == [c.id for c in cells]


def test_prompt_matrix_swaps_the_phrase_once_per_alternative_with_one_seed(
    session: Session, make_user: Callable[..., User]
) -> None:
    alice, bob = make_user(session), make_user(session)
    batch, cells = explore.prompt_matrix(
        session, owner=alice, base=request(seed=5), replace_text="red barn", alternatives=["lighthouse", " ", "castle"]
    )
    assert [cell.prompt for cell in cells] == [
        "a red barn under a blue sky",
        "a lighthouse under a blue sky",
        "a castle under a blue sky",
    ]
    assert {cell.seed for cell in cells} == {5}
    assert explore.batch_info(cells[1]) == {"id": batch, "kind": "matrix", "index": 1, "label": "lighthouse"}
    assert explore.batch_cells(session, batch=batch, user=bob) == []


def test_prompt_matrix_refuses_a_phrase_not_in_the_prompt(session: Session, make_user: Callable[..., User]) -> None:
    alice = make_user(session)
    with pytest.raises(InvalidInput, match="does not occur in the prompt"):
        explore.prompt_matrix(session, owner=alice, base=request(), replace_text="castle", alternatives=["tower"])


def test_a_grid_of_one_cell_is_refused(session: Session, make_user: Callable[..., User]) -> None:
    alice = make_user(session)
    with pytest.raises(InvalidInput, match="between 2 and 16"):
        explore.seed_grid(session, owner=alice, base=request(), count=1)
