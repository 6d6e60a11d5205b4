"""Generations API: prompt jobs end to end, their images, events, validation, listing, cancel."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.services.metadata import PARAMETERS_KEY, STUDIO_KEY, read_png_parameters
from tests.api.conftest import enqueue

Paint = Callable[..., dict[str, Any]]
Wait = Callable[..., dict[str, Any]]


def _sse(text: str) -> list[dict[str, Any]]:
    """Parses a server-sent event stream into [{event, id, data}]."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            events.append(fields)
    return events


# --- a prompt job end to end ------------------------------------------------------------------


def test_prompt_job_is_accepted_then_succeeds_with_its_images(client: TestClient, wait_final: Wait) -> None:
    response = client.post(
        "/api/generate/prompt",
        json={"prompt": "a red barn", "seed": 42, "steps": 2, "width": 64, "height": 64, "n_images": 2},
    )

    assert response.status_code == 202
    accepted = response.json()
    assert set(accepted) == {"id", "status", "url", "events_url", "notes"}
    assert accepted["notes"] == []
    assert accepted["status"] == "queued"
    assert accepted["url"] == f"/api/generations/{accepted['id']}"
    assert accepted["events_url"] == f"/api/generations/{accepted['id']}/events"

    done = wait_final(client, accepted["id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["seed"] == 42
    assert done["model"] == "tiny"
    assert [(image["width"], image["height"]) for image in done["images"]] == [(64, 64), (64, 64)]
    assert done["error"] is None
    assert done["finished_at"] is not None
    # Datetimes say they are UTC, as the preference export does.
    for name in ("created_at", "started_at", "finished_at"):
        assert done[name].endswith("Z"), done[name]
        assert datetime.fromisoformat(done[name]).utcoffset() == timedelta(0)


def test_image_is_a_png_carrying_its_prompt_and_seed(client: TestClient, paint_job: Paint) -> None:
    done = paint_job(client, prompt="a lighthouse at dusk", seed=9001)

    response = client.get(done["images"][0]["url"])

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "PNG"
        assert image.size == (64, 64)
        chunks = dict(image.text)  # type: ignore[attr-defined]
    assert "a lighthouse at dusk" in chunks[PARAMETERS_KEY]
    assert "Seed: 9001" in chunks[PARAMETERS_KEY]
    studio = json.loads(chunks[STUDIO_KEY])
    assert studio["prompt"] == "a lighthouse at dusk"
    assert studio["seed"] == 9001
    assert read_png_parameters(response.content)["seed"] == 9001


def test_same_seed_twice_paints_the_same_pixels(client: TestClient, paint_job: Paint) -> None:
    first = paint_job(client, seed=77)
    second = paint_job(client, seed=77)

    pictures = []
    for done in (first, second):
        with Image.open(io.BytesIO(client.get(done["images"][0]["url"]).content)) as image:
            pictures.append(np.asarray(image.convert("RGB")))
    assert np.array_equal(pictures[0], pictures[1])


def test_thumbnail_is_webp(client: TestClient, paint_job: Paint) -> None:
    done = paint_job(client)

    response = client.get(done["images"][0]["thumb_url"])

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(response.content)) as thumb:
        assert thumb.format == "WEBP"


def test_a_seed_is_recorded_when_none_is_given(client: TestClient, paint_job: Paint) -> None:
    done = paint_job(client)

    assert isinstance(done["seed"], int)
    assert 0 <= done["seed"] < 2**32


# --- events -----------------------------------------------------------------------------------


def test_event_stream_reports_increasing_progress_then_the_final_status(client: TestClient, paint_job: Paint) -> None:
    done = paint_job(client, steps=3)

    response = client.get(f"/api/generations/{done['id']}/events")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _sse(response.text)
    progress = [event["data"] for event in events if event["event"] == "progress"]
    assert [item["step"] for item in progress] == [1, 2, 3]
    assert {item["total"] for item in progress} == {3}
    assert events[-1]["event"] == "status"
    assert events[-1]["data"] == {"status": "succeeded"}
    ids = [int(event["id"]) for event in events]
    assert ids == sorted(ids)


def test_reconnecting_with_last_event_id_yields_only_later_events(client: TestClient, paint_job: Paint) -> None:
    done = paint_job(client, steps=3)
    everything = _sse(client.get(f"/api/generations/{done['id']}/events").text)
    resume_after = int(everything[1]["id"])

    response = client.get(f"/api/generations/{done['id']}/events", headers={"Last-Event-ID": str(resume_after)})

    resumed = _sse(response.text)
    assert [int(event["id"]) for event in resumed] == [
        int(event["id"]) for event in everything if int(event["id"]) > resume_after
    ]
    assert resumed[-1]["data"] == {"status": "succeeded"}


def test_events_of_a_job_that_is_already_final_end_with_its_status(
    idle_client: TestClient,
) -> None:
    accepted = idle_client.post("/api/generate/prompt", json={"prompt": "a cat", "steps": 2}).json()
    idle_client.post(f"/api/generations/{accepted['id']}/cancel")

    events = _sse(idle_client.get(f"/api/generations/{accepted['id']}/events").text)

    assert events[-1]["event"] == "status"
    assert events[-1]["data"] == {"status": "cancelled"}


# --- validation -------------------------------------------------------------------------------

BAD_REQUESTS = [
    # 1000 is a multiple of 8 and inside the bounds, so it is a valid width; 1004 is not.
    pytest.param('{"prompt": "x", "width": 1004}', "width", id="width-1004"),
    pytest.param('{"prompt": "x", "width": 4096}', "width", id="width-4096"),
    pytest.param('{"prompt": "x", "height": 63}', "height", id="height-63"),
    pytest.param('{"prompt": "x", "steps": 0}', "steps", id="steps-0"),
    pytest.param('{"prompt": "x", "steps": 151}', "steps", id="steps-151"),
    pytest.param('{"prompt": "x", "guidance": NaN}', "guidance", id="guidance-nan"),
    pytest.param('{"prompt": "x", "guidance": 1e999}', "guidance", id="guidance-infinite"),
    pytest.param('{"prompt": ""}', "prompt", id="empty-prompt"),
    pytest.param('{"prompt": "   "}', "prompt", id="blank-prompt"),
    pytest.param(json.dumps({"prompt": "x" * 2001}), "prompt", id="prompt-2001-chars"),
    pytest.param('{"prompt": "x", "n_images": 9}', "n_images", id="n-images-9"),
    pytest.param('{"prompt": "x", "model": "no-such-model"}', "model", id="unknown-model"),
    pytest.param('{"prompt": "x", "model": "../tiny"}', "model", id="path-like-model"),
    pytest.param('{"prompt": "x", "scheduler": "lms"}', "scheduler", id="unknown-scheduler"),
    pytest.param('{"prompt": "x", "colour": "red"}', "colour", id="extra-field"),
    pytest.param('{"prompt": "x", "seed": -1}', "seed", id="negative-seed"),
    pytest.param('{"prompt": "x"', "", id="malformed-json"),
]


@pytest.mark.parametrize(("raw", "field"), BAD_REQUESTS)
def test_bad_prompt_requests_answer_422_naming_the_field(idle_client: TestClient, raw: str, field: str) -> None:
    response = idle_client.post(
        "/api/generate/prompt", content=raw.encode(), headers={"content-type": "application/json"}
    )

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    assert field in detail
    assert "Traceback" not in detail
    assert idle_client.get("/healthz").status_code == 200
    assert idle_client.get("/api/generations").json()["items"] == []


def test_width_error_says_what_is_allowed(idle_client: TestClient) -> None:
    response = idle_client.post("/api/generate/prompt", json={"prompt": "x", "width": 1004})

    assert response.json()["detail"] == "width must be a multiple of 8 between 64 and 2048 (got 1004)"


def test_unknown_model_error_lists_the_available_models(idle_client: TestClient) -> None:
    response = idle_client.post("/api/generate/prompt", json={"prompt": "x", "model": "pickled"})

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "pickle" in detail
    assert "tiny" in detail


# --- listing, reading, cancelling -------------------------------------------------------------


def test_list_is_newest_first_with_a_search_and_a_cursor(idle_client: TestClient) -> None:
    ids = [enqueue(idle_client, prompt) for prompt in ("a red barn", "a blue sea", "a red fox", "a RED kite")]

    everything = idle_client.get("/api/generations").json()
    assert [item["id"] for item in everything["items"]] == ids[::-1]
    assert everything["next_cursor"] is None

    red = idle_client.get("/api/generations", params={"q": "red"}).json()
    assert [item["prompt"] for item in red["items"]] == ["a RED kite", "a red fox", "a red barn"]

    first_page = idle_client.get("/api/generations", params={"limit": 2}).json()
    assert [item["id"] for item in first_page["items"]] == [ids[3], ids[2]]
    second_page = idle_client.get("/api/generations", params={"limit": 2, "cursor": first_page["next_cursor"]}).json()
    assert [item["id"] for item in second_page["items"]] == [ids[1], ids[0]]
    assert second_page["next_cursor"] is None


def test_a_queued_job_reports_its_place_in_the_queue(idle_client: TestClient) -> None:
    first, second = enqueue(idle_client, "one"), enqueue(idle_client, "two")

    assert idle_client.get(f"/api/generations/{first}").json()["queue_position"] == 0
    assert idle_client.get(f"/api/generations/{second}").json()["queue_position"] == 1


def test_cancel_a_queued_job_then_cancelling_again_conflicts(idle_client: TestClient) -> None:
    generation_id = enqueue(idle_client, "a cat")

    cancelled = idle_client.post(f"/api/generations/{generation_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert idle_client.get(f"/api/generations/{generation_id}").json()["status"] == "cancelled"

    again = idle_client.post(f"/api/generations/{generation_id}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/generations/999999"),
        ("POST", "/api/generations/999999/cancel"),
        ("GET", "/api/generations/999999/events"),
        ("GET", "/api/images/999999"),
        ("GET", "/api/images/999999/thumb"),
    ],
)
def test_unknown_ids_answer_404(idle_client: TestClient, method: str, path: str) -> None:
    response = idle_client.request(method, path)

    assert response.status_code == 404
    assert "not found" in response.json()["detail"]
