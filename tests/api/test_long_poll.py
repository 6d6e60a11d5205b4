"""``GET /api/generations/{id}?wait=N``: a request that answers when its job ends (a long poll).

The bounds on how long an answer took are generous (a tenth or less of the wait asked for): they
tell an answer woken by the job's end from one that ran out its wait, not how fast the server is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import NamedTuple

import pytest
from fastapi.testclient import TestClient

from app.db.base import utcnow
from app.db.models import Generation, Status
from app.http import waiting
from app.workers.events import RedisEventBus
from tests.api.conftest import enqueue, set_status
from tests.conftest import create_test_generation, create_test_user

LONG_WAIT = 30.0
# What the tests that expect no hold make the hold bound: a held answer would take this long at least.
HELD_FOR = 5.0
WOKEN_WITHIN = 10.0


@contextmanager
def _meanwhile(action: Callable[[], None], after: float = 0.3) -> Iterator[None]:
    """Runs ``action`` on another thread ``after`` seconds in, while the block waits on a request."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as error:  # re-raised in the test's thread
            failures.append(error)

    timer = threading.Timer(after, run)
    timer.start()
    try:
        yield
    finally:
        timer.join()
    if failures:
        raise failures[0]


class Answer(NamedTuple):
    body: dict[str, object]
    took: float  # seconds from the request to its answer
    at: float  # time.monotonic() when the answer came


def _long_poll(client: TestClient, generation_id: int, wait: float = LONG_WAIT) -> Answer:
    started = time.monotonic()
    response = client.get(f"/api/generations/{generation_id}", params={"wait": wait})
    assert response.status_code == 200, response.text
    answered = time.monotonic()
    return Answer(response.json(), answered - started, answered)


def test_a_long_poll_answers_with_the_job_as_soon_as_its_end_is_published(idle_client: TestClient) -> None:
    generation_id = enqueue(idle_client)
    bus = idle_client.app.state.bus  # type: ignore[attr-defined]
    watched_while_waiting: list[bool] = []
    published_at: list[float] = []

    def finish() -> None:
        # Only the bus hears of it (the row stays queued): nothing else could end the wait.
        watched_while_waiting.append(bus.watched(generation_id))
        published_at.append(time.monotonic())
        bus.publish(generation_id, "status", {"status": "succeeded"})

    with _meanwhile(finish):
        body, took, answered_at = _long_poll(idle_client, generation_id)

    assert body["status"] == "queued"  # the row as it is: the answer is read after the wait
    assert answered_at > published_at[0], "answered before the job's end was published: it did not wait"
    assert took < WOKEN_WITHIN, f"answered after {took:.1f} s of a {LONG_WAIT} s wait: the end did not wake it"
    # A waiting client asks for no previews (a stream does): the worker paints none for it.
    assert watched_while_waiting == [False]


def test_a_job_ended_in_the_database_but_forgotten_by_the_bus_still_ends_the_wait(idle_client: TestClient) -> None:
    generation_id = enqueue(idle_client)

    with _meanwhile(lambda: set_status(idle_client, generation_id, Status.FAILED)):
        body, took, _ = _long_poll(idle_client, generation_id)

    assert body["status"] == "failed"
    assert took < WOKEN_WITHIN


def test_a_cancel_from_another_request_ends_the_wait(idle_client: TestClient) -> None:
    generation_id = enqueue(idle_client)

    def cancel() -> None:
        assert idle_client.post(f"/api/generations/{generation_id}/cancel").status_code == 200

    with _meanwhile(cancel):
        body, took, _ = _long_poll(idle_client, generation_id)

    assert body["status"] == "cancelled"
    assert took < WOKEN_WITHIN


def test_a_job_that_does_not_end_is_answered_as_it_is_when_the_wait_runs_out(idle_client: TestClient) -> None:
    generation_id = enqueue(idle_client)

    body, took, _ = _long_poll(idle_client, generation_id, wait=0.3)

    assert body["status"] == "queued"
    assert body["queue_position"] == 0
    assert took >= 0.3
    assert not idle_client.app.state.bus.watched(generation_id)  # type: ignore[attr-defined]


def test_a_waiting_request_holds_no_database_connection(idle_client: TestClient) -> None:
    generation_id = enqueue(idle_client)
    engine = idle_client.app.state.db_engine  # type: ignore[attr-defined]
    held_while_waiting: list[int] = []

    def finish() -> None:
        held_while_waiting.append(engine.pool.checkedout())
        set_status(idle_client, generation_id, Status.SUCCEEDED)

    with _meanwhile(finish):
        body, _, _ = _long_poll(idle_client, generation_id)

    assert body["status"] == "succeeded"
    assert held_while_waiting == [0]


def test_an_ended_job_is_answered_at_once(idle_client: TestClient) -> None:
    generation_id = enqueue(idle_client)
    set_status(idle_client, generation_id, Status.SUCCEEDED)

    body, took, _ = _long_poll(idle_client, generation_id)

    assert body["status"] == "succeeded"
    assert took < WOKEN_WITHIN


def test_a_job_the_caller_cannot_see_answers_404_without_waiting(idle_client: TestClient) -> None:
    started = time.monotonic()
    response = idle_client.get("/api/generations/999999", params={"wait": LONG_WAIT})

    assert response.status_code == 404
    assert time.monotonic() - started < WOKEN_WITHIN


@pytest.mark.parametrize("wait", ["-1", "61", "soon", "nan"])
def test_a_wait_out_of_bounds_answers_422(idle_client: TestClient, wait: str) -> None:
    generation_id = enqueue(idle_client)

    response = idle_client.get(f"/api/generations/{generation_id}", params={"wait": wait})

    assert response.status_code == 422, response.text
    assert "wait" in response.text


def test_a_painted_job_is_heard_through_one_long_poll(client: TestClient) -> None:
    response = client.post(
        "/api/generate/prompt", json={"prompt": "a red barn", "seed": 5, "steps": 2, "width": 64, "height": 64}
    )
    generation_id = response.json()["id"]

    body, _, _ = _long_poll(client, generation_id, wait=60)

    assert body["status"] == "succeeded", body["error"]
    images = body["images"]
    assert isinstance(images, list) and len(images) == 1
    assert client.get(images[0]["url"]).headers["content-type"] == "image/png"


def test_the_redis_bus_ends_a_wait_by_being_asked(make_client: Callable[..., TestClient], redis_url: str) -> None:
    """Scaled mode's bus wakes nobody: the waiting request asks it, as the event streams do."""
    client = make_client(start_workers=False)
    bus = RedisEventBus(redis_url, ttl_seconds=60, prefix=f"test-long-poll-{time.monotonic_ns()}")
    client.app.state.bus = bus  # type: ignore[attr-defined]
    generation_id = enqueue(client)

    published_at: list[float] = []

    def finish() -> None:
        published_at.append(time.monotonic())
        bus.publish(generation_id, "status", {"status": "succeeded"})

    with _meanwhile(finish):
        body, took, answered_at = _long_poll(client, generation_id)

    assert body["status"] == "queued"  # only the bus heard of the end
    assert answered_at > published_at[0]
    assert took < WOKEN_WITHIN


# -- a plain poll of a job due to end within NEAR_END_SECONDS ----------------------------------------


def _running(client: TestClient, generation_id: int, *, started_seconds_ago: float) -> None:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        generation = session.get(Generation, generation_id)
        assert generation is not None
        generation.status = Status.RUNNING
        generation.started_at = utcnow() - timedelta(seconds=started_seconds_ago)
        session.commit()


def _plain_poll(client: TestClient, generation_id: int) -> Answer:
    started = time.monotonic()
    response = client.get(f"/api/generations/{generation_id}")
    assert response.status_code == 200, response.text
    answered = time.monotonic()
    return Answer(response.json(), answered - started, answered)


def test_a_plain_poll_of_a_job_about_to_end_is_answered_at_its_end(idle_client: TestClient) -> None:
    generation_id = enqueue(idle_client)
    _running(idle_client, generation_id, started_seconds_ago=0.8)
    bus = idle_client.app.state.bus  # type: ignore[attr-defined]
    bus.publish(generation_id, "progress", {"step": 8, "total": 8})  # only the picture left: ~0.1 s

    def finish() -> None:
        set_status(idle_client, generation_id, Status.SUCCEEDED)
        bus.publish(generation_id, "status", {"status": "succeeded"})

    with _meanwhile(finish, after=0.05):
        body, took, _ = _plain_poll(idle_client, generation_id)

    assert body["status"] == "succeeded"  # read again after the end, not the running row it first read
    assert took < waiting.NEAR_END_SECONDS + 2.0


def test_a_plain_poll_is_held_no_longer_than_the_bound_when_the_end_does_not_come(idle_client: TestClient) -> None:
    generation_id = enqueue(idle_client)
    _running(idle_client, generation_id, started_seconds_ago=0.8)
    idle_client.app.state.bus.publish(generation_id, "progress", {"step": 8, "total": 8})  # type: ignore[attr-defined]

    body, took, _ = _plain_poll(idle_client, generation_id)

    assert body["status"] == "running"
    assert took >= waiting.NEAR_END_SECONDS


@pytest.mark.parametrize("progress", [None, {"step": 1, "total": 8}])
def test_a_plain_poll_of_a_job_far_from_its_end_is_answered_at_once(
    idle_client: TestClient, progress: dict[str, int] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiting, "NEAR_END_SECONDS", HELD_FOR)
    generation_id = enqueue(idle_client)
    _running(idle_client, generation_id, started_seconds_ago=2.0)  # a step took 2 s: 16 s left
    if progress is not None:
        idle_client.app.state.bus.publish(generation_id, "progress", progress)  # type: ignore[attr-defined]

    body, took, _ = _plain_poll(idle_client, generation_id)

    assert body["status"] == "running"
    assert took < HELD_FOR, f"held {took:.2f} s though the job is far from its end"


def _ran_before(client: TestClient, model: str, *, seconds: float) -> None:
    """A job of ``model`` that ran ``seconds``: the pace the estimates go by."""
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        started = utcnow() - timedelta(minutes=1)
        create_test_generation(
            session,
            create_test_user(session),
            model=model,
            status=Status.SUCCEEDED,
            started_at=started,
            finished_at=started + timedelta(seconds=seconds),
        )


def _model_of(client: TestClient, generation_id: int) -> str:
    return str(client.get(f"/api/generations/{generation_id}").json()["model"])


@pytest.mark.parametrize("state", ["queued", "running before its first step"])
def test_a_plain_poll_of_a_job_its_models_pace_says_ends_soon_is_answered_at_its_end(
    idle_client: TestClient, state: str
) -> None:
    generation_id = enqueue(idle_client)
    _ran_before(idle_client, _model_of(idle_client, generation_id), seconds=0.3)
    if state != "queued":
        _running(idle_client, generation_id, started_seconds_ago=0.1)  # no progress on the bus yet

    def finish() -> None:
        set_status(idle_client, generation_id, Status.SUCCEEDED)
        idle_client.app.state.bus.publish(generation_id, "status", {"status": "succeeded"})  # type: ignore[attr-defined]

    with _meanwhile(finish, after=0.05):
        body, took, _ = _plain_poll(idle_client, generation_id)

    assert body["status"] == "succeeded"
    assert took < waiting.NEAR_END_SECONDS + 2.0


def test_a_plain_poll_of_a_queued_job_of_a_slow_model_is_answered_at_once(
    idle_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(waiting, "NEAR_END_SECONDS", HELD_FOR)  # a hold, had there been one, stands out
    generation_id = enqueue(idle_client)
    _ran_before(idle_client, _model_of(idle_client, generation_id), seconds=60.0)

    body, took, _ = _plain_poll(idle_client, generation_id)

    assert body["status"] == "queued"
    assert body["estimated_wait_s"] == pytest.approx(60.0)
    assert took < HELD_FOR, f"held {took:.2f} s for a job a minute from its end"


@pytest.mark.parametrize("state", ["queued", "running"])
def test_a_plain_poll_answers_when_the_bus_does_not(
    idle_client: TestClient, monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    generation_id = enqueue(idle_client)
    _ran_before(idle_client, _model_of(idle_client, generation_id), seconds=0.3)  # due soon: a hold is tried
    if state == "running":
        _running(idle_client, generation_id, started_seconds_ago=0.1)

    def down(*_: object) -> None:
        raise ConnectionError("the bus is down")

    bus = idle_client.app.state.bus  # type: ignore[attr-defined]
    for name in ("read", "on_end", "ended"):
        monkeypatch.setattr(bus, name, down)

    response = idle_client.get(f"/api/generations/{generation_id}")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == state
