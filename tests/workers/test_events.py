"""Event buses: ordered, consecutive ids per generation, reading after an id, and nothing after a
final status."""

from __future__ import annotations

import threading
import uuid

import pytest

from app.workers.events import Event, MemoryEventBus, RedisEventBus


def test_ids_are_consecutive_from_zero_per_generation() -> None:
    bus = MemoryEventBus()
    for step in (1, 2, 3):
        bus.publish(1, "progress", {"step": step, "total": 3})
    bus.publish(2, "status", {"status": "running"})

    assert [event.id for event in bus.read(1)] == [0, 1, 2]
    assert bus.read(2) == [Event(0, "status", {"status": "running"})]


def test_read_after_an_id_returns_only_later_events_oldest_first() -> None:
    bus = MemoryEventBus()
    for step in range(1, 6):
        bus.publish(7, "progress", {"step": step})

    assert [event.data["step"] for event in bus.read(7, after=2)] == [4, 5]
    assert [event.id for event in bus.read(7, after=-1)] == [0, 1, 2, 3, 4]
    assert bus.read(7, after=4) == []
    assert bus.read(7, after=100) == []


def test_reading_an_unknown_generation_is_empty() -> None:
    assert MemoryEventBus().read(12345) == []


def test_the_oldest_generations_are_forgotten_past_the_bound() -> None:
    bus = MemoryEventBus(max_generations=2)
    for generation_id in (1, 2, 3):
        bus.publish(generation_id, "status", {"status": "queued"})

    assert bus.read(1) == []
    assert [len(bus.read(generation_id)) for generation_id in (2, 3)] == [1, 1]


def test_concurrent_publishers_never_reuse_an_id() -> None:
    bus = MemoryEventBus()

    def publish_many() -> None:
        for step in range(200):
            bus.publish(1, "progress", {"step": step})

    threads = [threading.Thread(target=publish_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [event.id for event in bus.read(1)] == list(range(800))


def test_nothing_is_published_after_a_final_status() -> None:
    bus = MemoryEventBus()
    bus.publish(3, "progress", {"step": 1, "total": 4})
    assert not bus.ended(3)
    bus.publish(3, "status", {"status": "cancelled"})
    # A worker's last step and its own report of the cancel arrive after the route's.
    bus.publish(3, "progress", {"step": 2, "total": 4})
    bus.publish(3, "status", {"status": "cancelled"})

    assert bus.ended(3)
    assert [(event.name, event.data) for event in bus.read(3)] == [
        ("progress", {"step": 1, "total": 4}),
        ("status", {"status": "cancelled"}),
    ]


def test_a_requeued_status_does_not_end_the_stream() -> None:
    bus = MemoryEventBus()
    bus.publish(4, "status", {"status": "running"})
    bus.publish(4, "status", {"status": "queued"})
    bus.publish(4, "status", {"status": "succeeded"})

    assert [event.data["status"] for event in bus.read(4)] == ["running", "queued", "succeeded"]


def test_the_redis_bus_ends_a_stream_once_for_every_process() -> None:
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url).ping()
    except redis.RedisError as error:
        pytest.skip(f"no Redis at {url}: {error}")
    prefix = f"test-{uuid.uuid4().hex}"
    web, worker = RedisEventBus(url, ttl_seconds=60, prefix=prefix), RedisEventBus(url, ttl_seconds=60, prefix=prefix)
    worker.publish(5, "progress", {"step": 1, "total": 2})
    web.publish(5, "status", {"status": "cancelled"})
    worker.publish(5, "progress", {"step": 2, "total": 2})
    worker.publish(5, "status", {"status": "cancelled"})

    assert worker.ended(5)
    assert [(event.id, event.name) for event in web.read(5)] == [(0, "progress"), (1, "status")]
    # Another studio on the same Redis (another prefix) sees nothing of it.
    assert RedisEventBus(url, prefix=f"{prefix}-other").read(5) == []
