"""Regional prompts through the API: recorded on the row, painted, and bad regions refused with 422."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

Paint = Callable[..., dict[str, Any]]
LEFT = {"prompt": "a red boat", "box": [0, 0, 0.5, 1], "weight": 1.5}


def test_regions_are_painted_and_recorded(client: TestClient, paint_job: Paint) -> None:
    generation = paint_job(client, regions=[LEFT, {"prompt": "a yellow sun", "box": [0.5, 0, 1, 1]}])
    assert generation["status"] == "succeeded", generation
    assert generation["regions"] == [
        {"prompt": "a red boat", "box": [0.0, 0.0, 0.5, 1.0], "weight": 1.5},
        {"prompt": "a yellow sun", "box": [0.5, 0.0, 1.0, 1.0], "weight": 1.0},
    ]


@pytest.mark.parametrize(
    ("regions", "says"),
    [
        ([{"prompt": "a red boat", "box": [0.5, 0, 0.5, 1]}], "0 <= x0 < x1 <= 1"),
        ([{"prompt": "a red boat", "box": [0, 0.6, 1, 0.2]}], "0 <= y0 < y1 <= 1"),
        ([{"prompt": "a red boat", "box": [-0.1, 0, 1, 1]}], "0 <= x0"),
        ([{"prompt": "a red boat", "box": [0, 0, 1.5, 1]}], "x1 <= 1"),
        ([{"prompt": "a red boat", "box": [0, 0, 1]}], "box"),
        ([{"prompt": "a red boat", "box": [0, 0, 1, "x"]}], "valid number"),
        ([{"prompt": "", "box": [0, 0, 1, 1]}], "at least 1 character"),
        ([{"box": [0, 0, 1, 1]}], "Field required"),
        ([{"prompt": "a red boat", "box": [0, 0, 1, 1], "weight": 0}], "greater than 0"),
        ([{"prompt": "a red boat", "box": [0, 0, 1, 1], "weight": 5}], "less than or equal to 4"),
        ([{"prompt": "a red boat", "box": [0, 0, 1, 1], "mask_id": 3}], "Extra inputs"),
        ([LEFT] * 5, "at most 4"),
        ("left", "valid list"),
    ],
)
def test_bad_regions_are_refused_with_422(idle_client: TestClient, regions: Any, says: str) -> None:
    response = idle_client.post("/api/generate/prompt", json={"prompt": "a harbour", "steps": 2, "regions": regions})
    assert response.status_code == 422, response.text
    assert says in response.text


def test_a_nan_box_is_refused(idle_client: TestClient) -> None:
    response = idle_client.post(
        "/api/generate/prompt",
        content=b'{"prompt": "a harbour", "regions": [{"prompt": "a boat", "box": [0, 0, NaN, 1]}]}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_regions_are_refused_on_inpaint_jobs(idle_client: TestClient) -> None:
    response = idle_client.post(
        "/api/generate/inpaint",
        json={"prompt": "a harbour", "image_id": 1, "outpaint": {"right": 16}, "regions": [LEFT]},
    )
    assert response.status_code == 422
    assert "prompt jobs only" in response.text
