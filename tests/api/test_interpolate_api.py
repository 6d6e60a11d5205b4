"""Interpolation API: a walk between two generations runs as a job of N frames with an animated WebP."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from app.db.models import Generation, Mode, Status
from app.services import tokens, users
from tests.conftest import create_test_generation, create_test_user
from tests.tiny_pipeline import TINY, TINY_INPAINT

Paint = Callable[..., dict[str, Any]]
WaitFinal = Callable[..., dict[str, Any]]


def _pixels(client: TestClient, image: dict[str, Any]) -> np.ndarray:
    response = client.get(image["url"])
    assert response.status_code == 200
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.int16)


def _row(client: TestClient, *, owner: str | None = None, **overrides: Any) -> int:
    """A generation row written directly (no job runs): the local artist's unless ``owner`` names a user."""
    app: Any = client.app
    with app.state.session_factory() as session:
        user = users.ensure_local_user(session)
        if owner:
            user = users.get_by_username(session, owner) or create_test_user(session, owner)
        overrides.setdefault("model", TINY)
        overrides.setdefault("status", Status.SUCCEEDED)
        generation = create_test_generation(session, user, **overrides)
        return generation.id


def _as_artist(client: TestClient, username: str) -> dict[str, str]:
    """Headers that act as a new artist (not an admin, unlike the local artist) through an API token."""
    app: Any = client.app
    with app.state.session_factory() as session:
        _, clear = tokens.issue(session, owner=create_test_user(session, username), name="tests")
    return {"Authorization": f"Bearer {clear}"}


def test_a_walk_is_accepted_and_paints_n_frames_from_a_to_b(
    client: TestClient, paint_job: Paint, wait_final: WaitFinal
) -> None:
    a = paint_job(client, prompt="a red barn under a blue sky", seed=7)
    b = paint_job(client, prompt="a green sea at night", seed=99)
    assert a["status"] == b["status"] == "succeeded"

    response = client.post(f"/api/generations/{a['id']}/interpolate", json={"to_id": b["id"], "frames": 4})

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert accepted["url"] == f"/api/generations/{accepted['id']}"
    walk = wait_final(client, accepted["id"])
    assert walk["status"] == "succeeded", walk["error"]
    assert walk["parent_id"] == a["id"]
    assert (walk["mode"], walk["n_images"], walk["seed"], walk["prompt"]) == ("txt2img", 4, 7, a["prompt"])
    frames = walk["images"]
    assert len(frames) == 4
    assert np.abs(_pixels(client, frames[0]) - _pixels(client, a["images"][0])).max() <= 2
    assert np.abs(_pixels(client, frames[-1]) - _pixels(client, b["images"][0])).max() <= 2

    animation = client.get(f"/api/generations/{walk['id']}/animation.webp")
    assert animation.status_code == 200
    assert animation.headers["content-type"] == "image/webp"
    picture = Image.open(io.BytesIO(animation.content))
    assert picture.format == "WEBP"
    assert picture.is_animated
    assert picture.n_frames == 4
    assert picture.size == (64, 64)
    assert picture.info.get("loop") == 0

    lineage = client.get(f"/api/generations/{a['id']}/lineage").json()
    edge = next(child for child in lineage["root"]["children"] if child["id"] == walk["id"])
    assert edge["action"] == "interpolate"


def test_frames_default_to_eight_and_are_bounded(idle_client: TestClient) -> None:
    a, b = _row(idle_client), _row(idle_client, seed=5)

    default = idle_client.post(f"/api/generations/{a}/interpolate", json={"to_id": b})
    too_few = idle_client.post(f"/api/generations/{a}/interpolate", json={"to_id": b, "frames": 2})
    too_many = idle_client.post(f"/api/generations/{a}/interpolate", json={"to_id": b, "frames": 17})

    assert default.status_code == 202
    assert idle_client.get(default.json()["url"]).json()["n_images"] == 8
    assert too_few.status_code == too_many.status_code == 422


def test_a_walk_between_different_sizes_is_refused_with_both_sizes(idle_client: TestClient) -> None:
    a, b = _row(idle_client), _row(idle_client, width=64, height=96)

    response = idle_client.post(f"/api/generations/{a}/interpolate", json={"to_id": b})

    assert response.status_code == 422
    assert response.json()["detail"] == (f"#{a} is 64x64 and #{b} is 64x96; interpolation needs both the same size")


def test_a_walk_between_different_models_is_refused_with_both_models(idle_client: TestClient) -> None:
    a, b = _row(idle_client), _row(idle_client, model=TINY_INPAINT)

    response = idle_client.post(f"/api/generations/{a}/interpolate", json={"to_id": b})

    assert response.status_code == 422
    assert "same model" in response.json()["detail"]
    assert TINY_INPAINT in response.json()["detail"]


def test_a_walk_to_itself_or_from_an_inpainting_is_refused(idle_client: TestClient) -> None:
    a, inpainted = _row(idle_client), _row(idle_client, mode=Mode.INPAINT)

    itself = idle_client.post(f"/api/generations/{a}/interpolate", json={"to_id": a})
    from_inpaint = idle_client.post(f"/api/generations/{inpainted}/interpolate", json={"to_id": a})

    assert itself.status_code == from_inpaint.status_code == 422
    assert "interpolation walks between prompt-only paintings" in from_inpaint.json()["detail"]


def test_generations_the_caller_cannot_see_answer_404(idle_client: TestClient) -> None:
    alice = _as_artist(idle_client, "alice")
    mine, other = _row(idle_client, owner="alice"), _row(idle_client, owner="alice", seed=5)
    theirs = _row(idle_client, owner="bob")

    def walk(from_id: int, to_id: int) -> int:
        url = f"/api/generations/{from_id}/interpolate"
        return idle_client.post(url, json={"to_id": to_id}, headers=alice).status_code

    assert walk(mine, theirs) == 404
    assert walk(theirs, mine) == 404
    assert walk(mine, 99999) == 404
    assert walk(99999, mine) == 404
    assert walk(mine, other) == 202


def test_the_animation_is_404_for_invisible_unfinished_or_ordinary_generations(idle_client: TestClient) -> None:
    alice = _as_artist(idle_client, "alice")
    walk = {"from": 1, "to": 2, "frames": 3, "prompt_b": "a sea", "negative_prompt_b": "", "seed_b": 2}
    params = {"action": "interpolate", "interpolate": walk}
    theirs = _row(idle_client, owner="bob", params=params)
    queued = _row(idle_client, owner="alice", status=Status.QUEUED, params=params)
    ordinary = _row(idle_client, owner="alice")

    for generation_id in (theirs, queued, ordinary, 99999):
        response = idle_client.get(f"/api/generations/{generation_id}/animation.webp", headers=alice)
        assert response.status_code == 404, generation_id
        assert "detail" in response.json()


def test_the_walk_row_records_where_it_goes(idle_client: TestClient) -> None:
    a = _row(idle_client, prompt="a red barn", seed=3, steps=2, guidance=4.0, scheduler="euler")
    b = _row(idle_client, prompt="a green sea", negative_prompt="fog", seed=11)

    accepted = idle_client.post(f"/api/generations/{a}/interpolate", json={"to_id": b, "frames": 5}).json()

    app: Any = idle_client.app
    with app.state.session_factory() as session:
        walk = session.get(Generation, accepted["id"])
        assert walk is not None
        assert (walk.prompt, walk.seed, walk.steps, walk.guidance, walk.scheduler) == ("a red barn", 3, 2, 4.0, "euler")
        assert walk.n_images == 5 and walk.parent_id == a
        assert walk.params.action == "interpolate"
        # Stored under the keys rows have always had ("from", not the model's "start").
        assert walk.params.stored()["interpolate"] == {
            "from": a,
            "to": b,
            "frames": 5,
            "prompt_b": "a green sea",
            "negative_prompt_b": "fog",
            "seed_b": 11,
        }
