"""The painting page's word strip: a button per word with its heat map, the words that barely landed
marked, and one-click refines (weight them up, move them earlier) recorded as refine steps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.db.models import Generation
from app.db.models import Image as ImageRow
from app.services import attention
from tests.web.test_lineage_pages import add

MakeGeneration = Callable[..., Generation]


def _with_maps(app: FastAPI, make_generation: MakeGeneration) -> tuple[int, int]:
    """A painting of 'a red qzxv boat' whose boat landed in the left column and whose qzxv landed nowhere."""
    generation_id = add(app, make_generation, prompt="a red qzxv boat", seed=7)
    with app.state.session_factory() as session:
        image = session.query(ImageRow).filter_by(generation_id=generation_id).one()
        image_id, sha256 = image.id, image.sha256
    maps = np.full((4, 4, 4), 0.05, dtype=np.float32)
    maps[1, 1:3, 0:2] = 0.12  # red
    maps[2] = 0.15  # qzxv: everywhere alike
    maps[3, :, 0] = 0.2  # boat: the left column
    spans = [(0, 1), (2, 5), (6, 10), (11, 15)]
    attention.save(
        app.state.store, sha256, text="a red qzxv boat", words=["a", "red", "qzxv", "boat"], spans=spans, maps=maps
    )
    return generation_id, image_id


def test_the_page_loads_the_strip_of_words_with_a_map_each(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    generation_id, image_id = _with_maps(app, make_generation)

    page = client.get(f"/generations/{generation_id}")
    strip = client.get(f"/partials/images/{image_id}/attention")

    assert f'hx-get="/partials/images/{image_id}/attention"' in page.text
    assert "Where each word landed" in page.text
    assert strip.status_code == 200
    assert 'role="group" aria-label="Words of the prompt"' in strip.text
    for index, word in enumerate(["a", "red", "qzxv", "boat"]):
        assert f'data-word-map="/api/images/{image_id}/attention/{index}.png" data-word="{word}"' in strip.text
    assert strip.text.count('aria-pressed="false"') == 4
    assert "data-attention-overlay" in strip.text


def test_words_that_barely_landed_are_marked_with_one_click_refines(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    _generation_id, image_id = _with_maps(app, make_generation)

    strip = client.get(f"/partials/images/{image_id}/attention").text

    assert strip.count("word-chip word-weak") == 2  # the button and the hint's list: qzxv alone
    assert 'qzxv<span class="visually-hidden"> (barely landed)</span>' in strip
    assert "These words barely landed:" in strip
    assert f'action="/partials/images/{image_id}/attention/refine"' in strip
    assert 'name="how" value="weight"' in strip and "(qzxv:1.3)" in strip
    assert 'name="how" value="earlier"' in strip and "Move them to the front" in strip


def test_the_refine_buttons_paint_a_refine_step_with_the_weak_word_helped(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    generation_id, image_id = _with_maps(app, make_generation)

    for how, prompt in (("weight", "a red (qzxv:1.3) boat"), ("earlier", "qzxv, a red boat")):
        response = client.post(
            f"/partials/images/{image_id}/attention/refine",
            data={"csrf_token": csrf, "how": how},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        new_id = int(response.headers["location"].rsplit("/", 1)[1])
        with app.state.session_factory() as session:
            refined = session.get(Generation, new_id)
            assert refined is not None
            assert (refined.prompt, refined.parent_id, refined.seed) == (prompt, generation_id, 7)
            assert refined.params.action == "refine"


def test_a_refine_without_a_csrf_token_or_with_an_unknown_kind_is_refused(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    _generation_id, image_id = _with_maps(app, make_generation)

    no_token = client.post(f"/partials/images/{image_id}/attention/refine", data={"how": "weight"})
    unknown = client.post(f"/partials/images/{image_id}/attention/refine", data={"csrf_token": csrf, "how": "louder"})

    # A form whose token is missing is answered as an expired form (422), like every HTML form's.
    assert no_token.status_code == 422
    assert unknown.status_code == 422
    with app.state.session_factory() as session:
        assert session.query(Generation).count() == 1


def test_a_painting_without_maps_says_why_and_an_unknown_image_is_not_found(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    generation_id = add(app, make_generation, prompt="a harbour")
    with app.state.session_factory() as session:
        image_id = session.query(ImageRow).filter_by(generation_id=generation_id).one().id

    strip = client.get(f"/partials/images/{image_id}/attention")

    assert strip.status_code == 200
    assert "no attention maps were recorded for this painting" in strip.text
    assert "word-chip" not in strip.text
    assert client.get("/partials/images/999999/attention").status_code == 404
