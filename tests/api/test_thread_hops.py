"""The requests a script sends most (a job's JSON and event stream, its pictures) cost one worker-thread hop each.

A hop is a thread woken on a core and the event loop woken after it. Beside a painting job on two
cores each one costs the painting more than the query it carries, so who asks, the read and the
end of the request's transaction all happen in the route's one hop (``app.deps.Caller``), and on
SQLite the session closes on the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from app.db.models import Status
from tests.api.conftest import enqueue, set_status
from tests.http.test_submit import upload


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the functions the app ran in worker threads (Starlette's and FastAPI's hops)."""
    names: list[str] = []
    original = anyio.to_thread.run_sync

    async def counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        names.append(getattr(func, "__qualname__", repr(func)))
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    yield names


def _hops_of(client: TestClient, hops: list[str], method: str, path: str, **kwargs: Any) -> tuple[int, list[str]]:
    hops.clear()
    response = client.request(method, path, **kwargs)
    return response.status_code, list(hops)


@pytest.fixture
def client(idle_client: TestClient) -> TestClient:
    # The local artist exists before any request is counted (the first request creates it).
    assert idle_client.get("/api/generations").status_code == 200
    return idle_client


@pytest.mark.parametrize(
    ("status", "ask", "expected"),
    [
        (Status.RUNNING, "", 1),
        (Status.FAILED, "?wait=30", 1),
        # The route's own hop; the stream then asks the database once whether the job ended (it has).
        (Status.SUCCEEDED, "/events", 2),
    ],
    ids=["json", "json-with-a-wait", "event-stream"],
)
def test_a_jobs_json_or_stream_opens_in_one_hop(
    client: TestClient, hops: list[str], status: Status, ask: str, expected: int
) -> None:
    generation_id = enqueue(client)
    set_status(client, generation_id, status)

    answer, names = _hops_of(client, hops, "GET", f"/api/generations/{generation_id}{ask}")

    assert answer == 200
    assert len(names) == expected, names
    assert all("final_status" in name for name in names[1:]), names


def test_a_job_nobody_may_see_costs_one_hop(client: TestClient, hops: list[str]) -> None:
    status, names = _hops_of(client, hops, "GET", "/api/generations/987654")

    assert status == 404
    assert len(names) == 1, names


@pytest.mark.parametrize("suffix", ["", "/thumb"])
def test_a_picture_costs_one_hop(client: TestClient, hops: list[str], suffix: str) -> None:
    image_id = upload(client)

    status, names = _hops_of(client, hops, "GET", f"/api/images/{image_id}{suffix}")

    assert status == 200
    assert len(names) == 1, names


def test_a_change_decides_who_asks_once(client: TestClient) -> None:
    """The CSRF check and the route share one decision: the acting user is read once."""
    generation_id = enqueue(client)
    engine: Engine = client.app.state.db_engine  # type: ignore[attr-defined]
    user_reads: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM users" in statement:
            user_reads.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.post(f"/api/generations/{generation_id}/cancel")
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert len(user_reads) == 1, user_reads


def test_a_prompt_is_submitted_in_two_hops(client: TestClient, hops: list[str]) -> None:
    """Who asks (for the CSRF check), then the job enqueued and dispatched; the answer is checked on the loop."""
    status, names = _hops_of(client, hops, "POST", "/api/generate/prompt", json={"prompt": "a lighthouse", "steps": 2})

    assert status == 202
    assert len(names) == 2, names
