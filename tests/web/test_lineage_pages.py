"""The lineage, compare and grid pages, and the Vary and explorer forms of a generation's page."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db.models import Generation, Image, ImageKind, Status, User
from app.services import users
from tests.conftest import create_test_user

MakeGeneration = Callable[..., Generation]


def local_artist(app: FastAPI) -> User:
    with app.state.session_factory() as session:
        user = users.ensure_local_user(session)
        session.expunge(user)
        return user


def add(app: FastAPI, make_generation: MakeGeneration, owner: User | None = None, **overrides: Any) -> int:
    """A finished generation of the local artist (or ``owner``) with one output image row."""
    with app.state.session_factory() as session:
        owner = owner or users.ensure_local_user(session)
        overrides.setdefault("status", Status.SUCCEEDED)
        generation = make_generation(session, owner, **overrides)
        session.add(
            Image(
                sha256=f"{generation.id:064x}",
                width=64,
                height=64,
                format="png",
                kind=ImageKind.OUTPUT,
                generation_id=generation.id,
                index=0,
                user_id=owner.id,
            )
        )
        session.commit()
        return generation.id


def node_ids(html: str) -> list[int]:
    return [int(value) for value in re.findall(r'class="lineage-node[^"]*" data-generation-id="(\d+)"', html)]


def test_lineage_page_shows_the_tree_with_thumbnails_and_labelled_edges(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    root = add(app, make_generation, prompt="a red barn under a blue sky")
    refined = add(
        app, make_generation, prompt="a red barn under a stormy sky", parent_id=root, params={"action": "refine"}
    )
    again = add(
        app,
        make_generation,
        prompt="a red barn under a stormy sky",
        parent_id=refined,
        steps=8,
        params={"action": "refine"},
    )
    varied = add(
        app, make_generation, prompt="a red barn under a blue sky", parent_id=root, seed=77, params={"action": "vary"}
    )

    page = client.get(f"/generations/{again}/lineage")
    assert page.status_code == 200
    html = page.text
    assert node_ids(html) == [root, refined, again, varied]
    assert f'class="lineage-node is-focus" data-generation-id="{again}"' in html
    assert '<ins class="diff-add">+stormy</ins>' in html
    assert '<del class="diff-del">−blue</del>' in html
    assert "steps 2 → 8" in html
    assert "seed 1234 → 77" in html
    assert 'class="edge-action">vary<' in html
    assert "lineage-children is-branching" in html
    assert html.count("/thumb") == 4
    assert f'href="/generations/{varied}"' in html


def test_generation_page_links_to_its_lineage_vary_compare_and_explorer(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    root = add(app, make_generation)
    child = add(app, make_generation, parent_id=root)
    html = client.get(f"/generations/{child}").text
    assert f'href="/generations/{child}/lineage"' in html
    assert f'action="/partials/generations/{child}/vary"' in html
    assert f'href="/compare?ids={root},{child}"' in html
    assert f'action="/partials/generations/{child}/grid"' in html


def test_lineage_and_compare_of_someone_elses_generations_are_not_found(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, sign_in: Callable[[User], None]
) -> None:
    theirs = add(app, make_generation)  # the local artist's
    with app.state.session_factory() as session:
        bob = create_test_user(session)
        session.expunge(bob)
    mine = add(app, make_generation, owner=bob)
    sign_in(bob)
    assert client.get(f"/generations/{theirs}/lineage").status_code == 404
    assert client.get(f"/compare?ids={theirs},{mine}").status_code == 404
    assert client.get(f"/generations/{mine}/lineage").status_code == 200


def test_compare_highlights_differences_and_offers_a_preference_per_column(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    first = add(app, make_generation, prompt="a red barn", steps=20)
    second = add(app, make_generation, prompt="a red barn at dusk", steps=30, parent_id=first)
    third = add(app, make_generation, prompt="a red barn", steps=20, seed=5, parent_id=first)
    page = client.get(f"/compare?ids={first},{second},{third}")
    assert page.status_code == 200
    html = page.text
    rows = {label: kind for kind, label in re.findall(r'<tr class="(differs|)">\s*<th scope="row">([^<]+)</th>', html)}
    assert rows["Steps"] == "differs"
    assert rows["Seed"] == "differs"
    assert rows["Model"] == ""
    assert rows["Prompt"] == "differs"
    assert '<ins class="diff-add">at dusk</ins>' in html
    with app.state.session_factory() as session:
        image_ids = [session.scalar(select(Image.id).where(Image.generation_id == g)) for g in (first, second, third)]
    assert html.count("This one is better") == 3
    assert f'data-prefer="{image_ids[0]}"\n                      data-losers="{image_ids[1]},{image_ids[2]}"' in html
    assert "/static/js/compare.js" in html


def test_compare_accepts_repeated_ids_and_refuses_the_wrong_number(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    ids = [add(app, make_generation) for _ in range(5)]
    assert client.get(f"/compare?ids={ids[0]}&ids={ids[1]}").status_code == 200
    assert client.get(f"/compare?ids={ids[0]}").status_code == 404
    assert client.get("/compare?ids=" + ",".join(map(str, ids))).status_code == 404
    assert client.get("/compare?ids=1,x").status_code == 404
    assert client.get("/compare").status_code == 404


def test_vary_button_paints_a_new_seed_recorded_as_a_vary_step(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    original = add(app, make_generation, prompt="a lighthouse", seed=10)
    refused = client.post(f"/partials/generations/{original}/vary", data={}, follow_redirects=False)
    assert refused.status_code == 422 and "this form has expired" in refused.text
    response = client.post(f"/partials/generations/{original}/vary", data={"csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    new_id = int(response.headers["location"].rsplit("/", 1)[1])
    with app.state.session_factory() as session:
        variation = session.get(Generation, new_id)
        assert variation is not None
        assert (variation.parent_id, variation.params.action, variation.prompt) == (original, "vary", "a lighthouse")
        assert variation.seed != 10


def test_seed_grid_form_opens_a_grid_page_of_its_cells(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    original = add(app, make_generation, prompt="a lighthouse", seed=10)
    response = client.post(
        f"/partials/generations/{original}/grid",
        data={"csrf_token": csrf, "kind": "seeds", "count": "3"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    grid = client.get(response.headers["location"])
    assert grid.status_code == 200
    for seed in (11, 12, 13):
        assert f'<p class="batch-label">seed {seed}</p>' in grid.text
    assert grid.text.count('class="batch-cell"') == 3
    lineage = client.get(f"/generations/{original}/lineage").text
    assert len(node_ids(lineage)) == 4


def test_prompt_matrix_form_swaps_the_phrase_and_explains_a_bad_one(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    original = add(app, make_generation, prompt="a lighthouse at dusk")
    fields = {"csrf_token": csrf, "kind": "matrix", "replace": "lighthouse", "alternatives": "castle, windmill"}
    response = client.post(f"/partials/generations/{original}/grid", data=fields, follow_redirects=False)
    assert response.status_code == 303
    grid = client.get(response.headers["location"]).text
    assert "a castle at dusk" in grid and "a windmill at dusk" in grid
    bad = client.post(f"/partials/generations/{original}/grid", data={**fields, "replace": "barn"})
    assert bad.status_code == 200  # the page again, the matrix form as typed
    assert "does not occur in the prompt" in bad.text
    assert 'value="barn"' in bad.text and 'id="matrix-error"' in bad.text


def test_an_unknown_grid_is_not_found(client: TestClient) -> None:
    assert client.get("/batches/nothing-here-123").status_code == 404


def test_refining_from_the_studio_form_records_a_refine_step(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    parent = add(app, make_generation)
    fields = {"csrf_token": csrf, "prompt": "a red barn at night", "steps": "2", "parent_id": str(parent)}
    response = client.post("/partials/generate", data=fields, follow_redirects=False)
    assert response.status_code == 303
    with app.state.session_factory() as session:
        child = session.scalars(select(Generation).where(Generation.parent_id == parent)).one()
        assert child.params.action == "refine"


def test_the_studio_offers_to_load_parameters_from_a_png(client: TestClient) -> None:
    html = client.get("/").text
    assert 'data-png-drop data-form="studio-form"' in html
    assert '<input id="png-file" type="file" accept="image/png">' in html
    assert "/static/js/reuse.js" in html
    assert "/static/css/lineage.css" in html


def test_a_queued_card_shows_its_place_and_an_estimate(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    from datetime import datetime, timedelta

    start = datetime(2026, 1, 1)
    add(app, make_generation, started_at=start, finished_at=start + timedelta(seconds=5))
    with app.state.session_factory() as session:
        artist = users.ensure_local_user(session)
        make_generation(session, artist)
        queued = make_generation(session, artist)
        queued_id = queued.id
    card = client.get(f"/partials/generations/{queued_id}/card", headers={"HX-Request": "true"}).text
    assert "1 ahead" in card
    assert '<span class="queue-estimate">done in about 10 s</span>' in card
    assert client.get(f"/api/generations/{queued_id}").json()["estimated_wait_s"] == 10


def test_generation_page_names_the_kind_of_step_it_came_from(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    root = add(app, make_generation)
    varied = add(app, make_generation, parent_id=root, seed=9, params={"action": "vary"})
    html = client.get(f"/generations/{varied}").text
    assert f'vary of <a href="/generations/{root}">#{root}</a>' in html
