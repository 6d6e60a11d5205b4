"""Event streams on a real server: open streams hold no database connection, and still end with the job.

The server is uvicorn on a loopback port with a small connection pool (5, no overflow), so a
stream that kept its request's connection would starve every other route after five watchers.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Generation, Status
from app.services import users
from tests.conftest import create_test_generation, is_sqlite
from tests.live_server import free_port, running_studio

STREAMS = 40
SMALL_POOL = {"db_pool_size": 5, "db_max_overflow": 0}
# Generous: a starved pool makes a request wait for pool_timeout (30 s); a healthy one answers at once.
TIMEOUT = httpx.Timeout(10.0)


def _sse(text: str) -> list[dict[str, Any]]:
    """A server-sent event stream as [{event, id?, data}]."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            events.append(fields)
    return events


def _live_settings(api_settings: Settings, **overrides: Any) -> Settings:
    return api_settings.model_copy(update={"host": "127.0.0.1", "port": free_port(), **SMALL_POOL, **overrides})


@pytest.fixture
def postgres_url(db_url: str) -> str:
    if is_sqlite(db_url):
        pytest.skip(
            "needs PostgreSQL (STUDIO_DATABASE_URL=postgresql+psycopg://...): SQLite has no connection pool to exhaust"
        )
    return db_url


@pytest.mark.postgres
def test_forty_open_streams_leave_the_pool_to_other_routes(
    postgres_url: str, api_settings: Settings, session: Session
) -> None:
    owner = users.ensure_local_user(session)
    session.commit()
    watched = [create_test_generation(session, owner, prompt=f"a watched harbour {n}") for n in range(STREAMS)]
    settings = _live_settings(api_settings, start_workers=False)  # no workers: every job stays queued

    with (
        running_studio(settings) as url,
        httpx.Client(base_url=url, timeout=TIMEOUT, limits=httpx.Limits(max_connections=STREAMS + 10)) as http,
        ExitStack() as open_streams,
    ):
        streams = []
        for number, generation in enumerate(watched):
            try:
                stream = open_streams.enter_context(http.stream("GET", f"/api/generations/{generation.id}/events"))
            except httpx.TimeoutException:
                pytest.fail(f"event stream {number + 1} of {STREAMS} got no answer: the pool is held by open streams")
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            streams.append(stream)

        # Every stream is open and waiting; the rest of the studio still answers.
        listing = http.get("/api/generations", params={"limit": 200})
        assert listing.status_code == 200, listing.text
        assert {item["id"] for item in listing.json()["items"]} == {generation.id for generation in watched}
        assert http.get(f"/api/generations/{watched[0].id}").json()["status"] == "queued"
        assert http.get("/healthz").status_code == 200
        assert http.get("/history").status_code == 200

        # A job that ends while its stream waits closes that stream with the final status.
        finished = session.get(Generation, watched[0].id)
        assert finished is not None
        finished.status = Status.SUCCEEDED
        session.commit()
        events = _sse(streams[0].read().decode())
        assert events[-1]["event"] == "status"
        assert events[-1]["data"] == {"status": "succeeded"}

        # The other 39 are still open, and the server still answers beside them.
        assert all(not stream.is_closed for stream in streams[1:])
        assert http.get("/api/generations", params={"limit": 1}).status_code == 200


def test_a_stream_opened_while_the_job_runs_ends_with_its_final_status(api_settings: Settings) -> None:
    settings = _live_settings(api_settings, start_workers=True)

    with running_studio(settings) as url, httpx.Client(base_url=url, timeout=TIMEOUT) as http:
        request = {"prompt": "a red barn", "steps": 6, "width": 64, "height": 64, "scheduler": "ddim", "seed": 3}
        accepted = http.post("/api/generate/prompt", json=request)
        assert accepted.status_code == 202, accepted.text
        body = accepted.json()

        # The stream closes by itself after the final status; reading it whole waits for that (the
        # worker loads the model first, hence the longer timeout).
        events = _sse(http.get(body["events_url"], timeout=60).text)

        assert events[-1]["event"] == "status"
        assert events[-1]["data"] == {"status": "succeeded"}
        steps = [event["data"]["step"] for event in events if event["event"] == "progress"]
        assert steps == list(range(1, 7))
        generation = http.get(body["url"]).json()
        assert generation["status"] == "succeeded"


def test_a_stream_watches_its_job_while_it_is_open_and_relays_what_the_bus_publishes(
    idle_client: TestClient,
) -> None:
    accepted = idle_client.post("/api/generate/prompt", json={"prompt": "a watched lighthouse", "steps": 2}).json()
    job_id = accepted["id"]
    bus = idle_client.app.state.bus  # type: ignore[attr-defined]
    assert not bus.watched(job_id)

    with idle_client.stream("GET", accepted["events_url"]) as stream:
        for _ in range(1000):  # a generous bound on the stream starting to watch
            if bus.watched(job_id):
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the open stream never watched its job")
        # The job is still queued in the database: only the bus can end this stream.
        bus.publish(job_id, "progress", {"step": 1, "total": 2})
        bus.publish(job_id, "status", {"status": "succeeded"})
        events = _sse("\n".join(stream.iter_lines()) + "\n\n")

    assert [(event["event"], event["data"]) for event in events] == [
        ("progress", {"step": 1, "total": 2}),
        ("status", {"status": "succeeded"}),
    ]
    for _ in range(1000):  # the closed stream stops watching (off the event loop, so not at once)
        if not bus.watched(job_id):
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the closed stream still watches its job")
