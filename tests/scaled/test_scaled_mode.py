"""Scaled mode proven with real processes: two ``studio serve`` started at once on a fresh
database, ``studio worker`` processes killed with SIGKILL mid-job again and again, and a cancel
sent through one web process for a job a worker runs for the other; on RabbitMQ and on Redis.

Every job must end ``succeeded`` with exactly its ``n_images`` images on disk: none lost, none
run into extra images, none stranded. The bounds below are generous ceilings on waiting, not
timing checks: the short stale window (STUDIO_STALE_AFTER_SECONDS=6 in ``scaled_env``) is what
brings a killed worker's job back within seconds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from app.db.models import Generation, Image, ImageKind, Status
from tests.scaled.conftest import RABBITMQ_URL, REDIS_URL, Studio
from tests.tiny_pipeline import TINY

pytestmark = pytest.mark.slow

FINAL = {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}
WORKER_PID = re.compile(r"^celery@[^:]*:(\d+):")


def submit(url: str, *, steps: int, n_images: int, seed: int) -> int:
    response = httpx.post(
        f"{url}/api/generate/prompt",
        json={
            "prompt": "a red barn under a blue sky",
            "model": TINY,
            "steps": steps,
            "n_images": n_images,
            "seed": seed,
            "width": 64,
            "height": 64,
        },
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def rows(database_url: str) -> list[Generation]:
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            found = list(session.scalars(select(Generation).order_by(Generation.id)))
            for generation in found:
                session.refresh(generation, ["images"])
            session.expunge_all()
            return found
    finally:
        engine.dispose()


def referenced_hashes(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            return set(session.scalars(select(Image.sha256)))
    finally:
        engine.dispose()


def stored_hashes(data_dir: Path) -> set[str]:
    return {path.stem for path in (data_dir / "images").glob("??/??/*.png")}


def wait_until(predicate: Any, *, within: float, what: str, studio: Studio, every: float = 0.2) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"{what} did not happen within {within:.0f} s\n{studio.log_tail()}")


def running_under_live_worker(database_url: str, studio: Studio) -> int | None:
    """The pid of a live worker process that is painting a job right now, if any."""
    live = {process.pid for process in studio.workers if process.poll() is None}
    for generation in rows(database_url):
        if generation.status == Status.RUNNING and generation.worker:
            match = WORKER_PID.match(generation.worker)
            if match and int(match.group(1)) in live:
                return int(match.group(1))
    return None


@pytest.mark.parametrize(
    ("broker_url", "kills"),
    [pytest.param(RABBITMQ_URL, 3, id="rabbitmq"), pytest.param(REDIS_URL.replace("/0", "/1"), 2, id="redis")],
)
def test_workers_killed_mid_job_lose_nothing_and_paint_nothing_twice(
    make_studio: Any, fresh_database: str, broker_url: str, kills: int
) -> None:
    studio: Studio = make_studio(broker_url)
    # Two web processes at once on a fresh database: both migrate, neither crashes.
    web = [studio.start_web(), studio.start_web()]
    for _ in range(2):
        studio.start_worker()
    for url in web:
        studio.wait_web(url)
    jobs = [submit(web[index % 2], steps=6, n_images=2, seed=index) for index in range(6)]

    victims: list[int] = []

    def someone_is_painting() -> bool:
        pid = running_under_live_worker(fresh_database, studio)
        if pid is not None:
            victims.append(pid)
        elif all(generation.status in FINAL for generation in rows(fresh_database)):
            # A fast machine finished everything before the next kill: give it more to do.
            jobs.append(submit(web[len(jobs) % 2], steps=6, n_images=2, seed=len(jobs)))
        return pid is not None

    while len(victims) < kills:
        wait_until(someone_is_painting, within=300, what="a worker painting a job", studio=studio, every=0.05)
        os.kill(victims[-1], signal.SIGKILL)
        studio.start_worker()  # what a supervisor (systemd, compose's restart policy) would do

    def all_final() -> bool:
        return all(generation.status in FINAL for generation in rows(fresh_database))

    wait_until(all_final, within=600, what="every job ending", studio=studio)
    ended = rows(fresh_database)
    assert [generation.id for generation in ended] == jobs
    assert [(generation.id, generation.status, generation.error) for generation in ended] == [
        (job, Status.SUCCEEDED, None) for job in jobs
    ]
    for generation in ended:
        outputs = sorted(image.index for image in generation.images if image.kind == ImageKind.OUTPUT)
        assert outputs == [0, 1], f"generation {generation.id} has outputs {outputs}"
    # A kill costs the job it interrupts an attempt, which the sweeper gives back to the queue (a
    # job may also finish between the look at its row and the kill, so not every kill counts).
    assert sum(generation.attempts for generation in ended) > len(jobs)
    data_dir = Path(studio.env["STUDIO_DATA_DIR"])
    assert referenced_hashes(fresh_database) <= stored_hashes(data_dir)


def read_events(url: str, generation_id: int, into: list[dict[str, Any]]) -> None:
    with httpx.stream("GET", f"{url}/api/generations/{generation_id}/events", timeout=300) as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and name is not None:
                into.append({"event": name, "data": json.loads(line.split(":", 1)[1])})
                name = None


def test_a_cancel_through_one_web_process_stops_the_job_a_worker_runs_for_the_other(
    make_studio: Any, fresh_database: str
) -> None:
    studio: Studio = make_studio(RABBITMQ_URL)
    web_a, web_b = studio.start_web(), studio.start_web()
    studio.start_worker()
    studio.wait_web(web_a)
    studio.wait_web(web_b)
    long_job = submit(web_a, steps=150, n_images=2, seed=7)
    events: list[dict[str, Any]] = []
    listener = threading.Thread(target=read_events, args=(web_a, long_job, events), daemon=True)
    listener.start()

    wait_until(
        lambda: any(event["event"] == "progress" for event in events),
        within=300,
        what="the job reporting progress",
        studio=studio,
    )
    response = httpx.post(f"{web_b}/api/generations/{long_job}/cancel", timeout=30)
    assert response.status_code == 200, response.text
    listener.join(timeout=120)

    assert not listener.is_alive(), "the event stream did not end after the cancel"
    statuses = [event["data"]["status"] for event in events if event["event"] == "status"]
    assert statuses.count("cancelled") == 1
    assert events[-1] == {"event": "status", "data": {"status": "cancelled"}}

    # What every process reads (the stream above stops at the first final status): the job's
    # events in Redis end with the one "cancelled", whatever the worker did after it.
    import redis

    key = f"{studio.env['STUDIO_REDIS_PREFIX']}:events:{long_job}"
    stored = [json.loads(item) for item in redis.Redis.from_url(REDIS_URL).lrange(key, 0, -1)]
    assert [event["data"].get("status") for event in stored].count("cancelled") == 1
    assert stored[-1] == {"name": "status", "data": {"status": "cancelled"}}
    (cancelled,) = rows(fresh_database)
    assert cancelled.status == Status.CANCELLED
    assert cancelled.images == []
    # The worker stops at its next step and keeps nothing: a job after it runs on the same worker.
    follow_up = submit(web_b, steps=2, n_images=1, seed=8)
    wait_until(lambda: rows(fresh_database)[-1].status in FINAL, within=300, what="the next job ending", studio=studio)
    done = rows(fresh_database)
    assert done[-1].id == follow_up and done[-1].status == Status.SUCCEEDED
    data_dir = Path(studio.env["STUDIO_DATA_DIR"])
    assert stored_hashes(data_dir) == referenced_hashes(fresh_database)


def test_a_web_process_restarted_with_a_hundred_jobs_queued_loses_none(make_studio: Any, fresh_database: str) -> None:
    studio: Studio = make_studio(RABBITMQ_URL)
    first = studio.start_web()
    studio.wait_web(first)
    # No worker yet: every job waits in the queue (and its message in the broker) while the web
    # process that took it goes away.
    jobs = [submit(first, steps=1, n_images=1, seed=index) for index in range(100)]
    process, _ = studio.web[0]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) is not None
    assert {generation.status for generation in rows(fresh_database)} == {Status.QUEUED}

    second = studio.start_web()
    studio.wait_web(second)
    for _ in range(2):
        studio.start_worker()

    def all_final() -> bool:
        return all(generation.status in FINAL for generation in rows(fresh_database))

    wait_until(all_final, within=900, what="every queued job ending", studio=studio, every=1.0)
    ended = rows(fresh_database)
    assert [generation.id for generation in ended] == jobs
    assert {(generation.status, generation.error) for generation in ended} == {(Status.SUCCEEDED, None)}
    assert all(len(generation.images) == 1 for generation in ended)
    # The restarted web process still answers for the jobs the first one took.
    answer = httpx.get(f"{second}/api/generations/{jobs[0]}", timeout=30).json()
    assert answer["status"] == "succeeded" and len(answer["images"]) == 1
