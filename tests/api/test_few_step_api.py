"""Few-step schedulers through the API: an lcm or tcd job paints at 1-4 steps, guidance off, and is recorded."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.services.metadata import PARAMETERS_KEY, parse_a1111, read_png_parameters, sampler_to_scheduler

Paint = Callable[..., dict[str, Any]]


@pytest.mark.parametrize(
    ("scheduler", "sampler", "steps", "guidance"), [("lcm", "LCM", 4, 1.0), ("tcd", "TCD", 1, 0.0)]
)
def test_a_few_step_job_paints_and_records_its_scheduler(
    client: TestClient, paint_job: Paint, scheduler: str, sampler: str, steps: int, guidance: float
) -> None:
    done = paint_job(client, scheduler=scheduler, steps=steps, guidance=guidance)

    assert done["status"] == "succeeded", done
    assert (done["scheduler"], done["steps"], done["guidance"]) == (scheduler, steps, guidance)
    png = client.get(f"/api/images/{done['images'][0]['id']}").content
    assert read_png_parameters(png)["scheduler"] == scheduler
    infotext = parse_a1111(Image.open(io.BytesIO(png)).text[PARAMETERS_KEY])  # type: ignore[attr-defined]
    assert (infotext["sampler"], infotext["steps"]) == (sampler, steps)
    # Another tool's infotext naming the sampler reads back as our scheduler.
    assert sampler_to_scheduler(sampler) == scheduler


def test_an_unknown_scheduler_is_refused_naming_the_few_step_ones(idle_client: TestClient) -> None:
    response = idle_client.post("/api/generate/prompt", json={"prompt": "a red barn", "scheduler": "lcm-turbo"})

    assert response.status_code == 422
    assert "'lcm'" in response.text and "'tcd'" in response.text
