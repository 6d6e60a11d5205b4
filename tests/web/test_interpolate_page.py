"""A generation page's Interpolate form, and a walk's page with its animation above the strip of frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.db.models import Generation, Image, ImageKind, Status
from app.services import users

MakeGeneration = Callable[..., Generation]


def add(app: FastAPI, make_generation: MakeGeneration, *, frames: int = 1, **overrides: Any) -> int:
    """A finished generation of the local artist with ``frames`` output rows."""
    with app.state.session_factory() as session:
        owner = users.ensure_local_user(session)
        overrides.setdefault("status", Status.SUCCEEDED)
        generation = make_generation(session, owner, n_images=frames, **overrides)
        for index in range(frames):
            session.add(
                Image(
                    sha256=f"{generation.id:032x}{index:032x}",
                    width=64,
                    height=64,
                    format="png",
                    kind=ImageKind.OUTPUT,
                    generation_id=generation.id,
                    index=index,
                    user_id=owner.id,
                )
            )
        session.commit()
        return generation.id


def test_the_page_offers_an_interpolate_form(client: TestClient, app: FastAPI, make_generation: MakeGeneration) -> None:
    generation_id = add(app, make_generation)

    html = client.get(f"/generations/{generation_id}").text

    assert f'action="/partials/generations/{generation_id}/interpolate"' in html
    assert 'name="to_id"' in html
    assert 'name="frames" type="number" min="3" max="16" value="8"' in html


def test_the_form_queues_a_walk_and_opens_its_page(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    a = add(app, make_generation, prompt="a red barn", seed=3)
    b = add(app, make_generation, prompt="a green sea", seed=11)

    response = client.post(
        f"/partials/generations/{a}/interpolate",
        data={"csrf_token": csrf, "to_id": str(b), "frames": "6"},
        follow_redirects=False,
    )

    assert response.status_code == 303
    walk_id = int(response.headers["location"].rsplit("/", 1)[1])
    with app.state.session_factory() as session:
        walk = session.get(Generation, walk_id)
        assert walk is not None
        assert (walk.status, walk.n_images, walk.parent_id) == (Status.QUEUED, 6, a)
        assert walk.params.interpolate is not None and walk.params.interpolate.to == b
    assert client.get(f"/generations/{walk_id}").status_code == 200


def test_the_form_explains_a_size_mismatch(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    a = add(app, make_generation)
    b = add(app, make_generation, width=96)

    response = client.post(
        f"/partials/generations/{a}/interpolate", data={"csrf_token": csrf, "to_id": str(b)}, follow_redirects=False
    )

    assert response.status_code == 200  # the page again, answered in place
    assert "interpolation needs both the same size" in response.text
    assert 'id="interpolate-error"' in response.text


def test_the_form_refuses_a_missing_number_and_a_stale_token(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    a = add(app, make_generation)

    blank = client.post(f"/partials/generations/{a}/interpolate", data={"csrf_token": csrf, "to_id": ""})
    stale = client.post(f"/partials/generations/{a}/interpolate", data={"csrf_token": "stale", "to_id": str(a)})

    # A typo is answered in place; a stale form is refused as such.
    assert (blank.status_code, stale.status_code) == (200, 422)
    assert "must be a whole number" in blank.text
    assert "this form has expired" in stale.text


def test_a_walks_page_shows_the_animation_above_its_frames(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    a, b = add(app, make_generation), add(app, make_generation, seed=9)
    walk = {"from": a, "to": b, "frames": 4, "prompt_b": "a sea", "negative_prompt_b": "", "seed_b": 9}
    walk_id = add(app, make_generation, frames=4, parent_id=a, params={"action": "interpolate", "interpolate": walk})

    html = client.get(f"/generations/{walk_id}").text

    assert f'<img src="/api/generations/{walk_id}/animation.webp"' in html
    assert "4 frames from" in html
    assert 'class="gallery count-4 frame-strip"' in html
    assert html.index("animation.webp") < html.index("frame-strip")


def test_an_ordinary_page_has_no_animation(client: TestClient, app: FastAPI, make_generation: MakeGeneration) -> None:
    generation_id = add(app, make_generation, frames=2)

    html = client.get(f"/generations/{generation_id}").text

    assert "animation.webp" not in html
    assert "frame-strip" not in html
