"""Feedback: ratings, likes and comments in place, A/B picks, the JSON Lines export (API and CLI),
and history and galleries sorted and filtered by rating."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app import cli
from app.config import Settings, get_settings
from app.db.models import Feedback, User
from tests.social.conftest import Cast, Output


def test_feedback_is_one_row_per_user_and_image_updated_in_place(
    session: Session, cast: Cast, browser: Callable[[User], TestClient], make_output: Callable[..., Output]
) -> None:
    alice = browser(cast.alice)
    image_id = make_output(cast.alice).image.id
    first = alice.post(f"/api/images/{image_id}/feedback", json={"rating": 4})
    assert first.status_code == 200 and first.json()["rating"] == 4
    alice.post(f"/api/images/{image_id}/feedback", json={"liked": True})
    last = alice.post(f"/api/images/{image_id}/feedback", json={"comment": "lovely light"}).json()
    assert (last["rating"], last["liked"], last["comment"]) == (4, True, "lovely light")
    assert last["average_rating"] == 4 and last["likes"] == 1
    assert alice.post(f"/api/images/{image_id}/feedback", json={"rating": 6}).status_code == 422
    assert session.scalar(select(func.count()).select_from(Feedback)) == 1
    cleared = alice.post(f"/api/images/{image_id}/feedback", json={"rating": 0}).json()
    assert cleared["rating"] is None and cleared["liked"] is True


def test_a_preference_needs_two_images_of_one_prompt_or_lineage(
    cast: Cast, browser: Callable[[User], TestClient], make_output: Callable[..., Output]
) -> None:
    alice = browser(cast.alice)
    batch = make_output(cast.alice, n=2)
    refined = make_output(cast.alice, prompt="a red barn at dusk", parent_id=batch.generation.id)
    unrelated = make_output(cast.alice, prompt="a cat on a sofa")
    a, b = batch.images
    assert alice.post("/api/preferences", json={"winner_image_id": a.id, "loser_image_id": b.id}).status_code == 201
    lineage = {"winner_image_id": refined.image.id, "loser_image_id": a.id}
    assert alice.post("/api/preferences", json=lineage).status_code == 201
    refused = alice.post("/api/preferences", json={"winner_image_id": a.id, "loser_image_id": unrelated.image.id})
    assert refused.status_code == 422 and "same prompt" in refused.json()["detail"]
    assert alice.post("/api/preferences", json={"winner_image_id": a.id, "loser_image_id": a.id}).status_code == 422
    bob = browser(cast.bob)
    assert bob.post("/api/preferences", json={"winner_image_id": a.id, "loser_image_id": b.id}).status_code == 404


def test_feedback_and_picks_round_trip_into_the_jsonl_export(
    cast: Cast, browser: Callable[[User], TestClient], make_output: Callable[..., Output]
) -> None:
    alice, bob = browser(cast.alice), browser(cast.bob)
    batch = make_output(cast.alice, n=2, negative_prompt="blurry", seed=77)
    a, b = batch.images
    alice.post(f"/api/images/{b.id}/feedback", json={"rating": 5, "liked": True})
    alice.post("/api/preferences", json={"winner_image_id": b.id, "loser_image_id": a.id})
    theirs = make_output(cast.bob, n=2)
    bob.post("/api/preferences", json={"winner_image_id": theirs.images[0].id, "loser_image_id": theirs.images[1].id})

    answer = alice.get("/api/preferences/export")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/jsonl")
    rows = [json.loads(line) for line in answer.text.splitlines()]
    assert len(rows) == 1, "an artist exports their own picks"
    row = rows[0]
    assert row["prompt"] == "a red barn under a blue sky" and row["negative_prompt"] == "blurry"
    assert row["chosen"] == f"/api/images/{b.id}" and row["rejected"] == f"/api/images/{a.id}"
    assert row["parameters"]["chosen"]["seed"] == 77 and row["parameters"]["chosen"]["model"] == "studio-tiny"
    everyone = browser(cast.admin).get("/api/preferences/export?all=true").text.splitlines()
    assert len(everyone) == 2


def test_cli_exports_everyones_preferences_with_file_paths(
    settings: Settings,
    cast: Cast,
    browser: Callable[[User], TestClient],
    make_output: Callable[..., Output],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batch = make_output(cast.alice, n=2)
    a, b = batch.images
    browser(cast.alice).post("/api/preferences", json={"winner_image_id": a.id, "loser_image_id": b.id})
    out = tmp_path / "prefs.jsonl"
    get_settings.cache_clear()
    monkeypatch.setenv("STUDIO_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("STUDIO_DATABASE_URL", settings.sqlalchemy_url)
    try:
        result = CliRunner().invoke(cli.app, ["export", "preferences", "--out", str(out)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text().splitlines()[0])
    assert Path(row["chosen"]).is_file() and row["chosen"].endswith(f"{a.sha256}.png")
    assert Path(row["rejected"]).is_file()


def test_history_filters_and_sorts_by_my_rating(
    cast: Cast, browser: Callable[[User], TestClient], make_output: Callable[..., Output]
) -> None:
    alice = browser(cast.alice)
    low = make_output(cast.alice, prompt="a low rated barn")
    high = make_output(cast.alice, prompt="a high rated barn")
    make_output(cast.alice, prompt="an unrated barn")
    alice.post(f"/api/images/{low.image.id}/feedback", json={"rating": 2})
    alice.post(f"/api/images/{high.image.id}/feedback", json={"rating": 5})
    best = alice.get("/history?min_rating=4").text
    assert "a high rated barn" in best and "a low rated barn" not in best and "unrated" not in best
    ordered = alice.get("/history?sort=rating").text
    assert ordered.index("a high rated barn") < ordered.index("a low rated barn") < ordered.index("an unrated barn")


def test_gallery_items_sort_and_filter_by_my_rating(
    cast: Cast, browser: Callable[[User], TestClient], make_output: Callable[..., Output]
) -> None:
    alice = browser(cast.alice)
    a, b, c = make_output(cast.alice, n=3).images
    gallery = alice.post("/api/galleries", json={"title": "Rated"}).json()["id"]
    for image in (a, b, c):
        alice.post(f"/api/galleries/{gallery}/items", json={"image_id": image.id})
    alice.post(f"/api/images/{b.id}/feedback", json={"rating": 5})
    alice.post(f"/api/images/{c.id}/feedback", json={"rating": 3})
    by_rating = alice.get(f"/api/galleries/{gallery}?sort=rating").json()["items"]
    assert [item["image_id"] for item in by_rating] == [b.id, c.id, a.id]
    top = alice.get(f"/api/galleries/{gallery}?min_rating=4").json()["items"]
    assert [item["image_id"] for item in top] == [b.id]
