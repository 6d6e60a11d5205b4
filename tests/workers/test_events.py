"""Event buses: ordered, consecutive ids per generation, reading after an id, and nothing after a
final status."""

from __future__ import annotations

import threading
import uuid

import pytest

from app.workers import events
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


def test_the_redis_bus_ends_a_stream_once_for_every_process(redis_url: str) -> None:
    url = redis_url
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


def test_a_watched_generation_wakes_its_watcher_on_every_publish_until_unwatched() -> None:
    bus = MemoryEventBus()
    woken: list[int] = []
    assert not bus.watched(9)

    unwatch = bus.watch(9, lambda: woken.append(len(bus.read(9))))
    assert bus.watched(9) and not bus.watched(10)
    bus.publish(9, "progress", {"step": 1, "total": 2})
    bus.publish(10, "progress", {"step": 1, "total": 2})  # another generation wakes no one here
    bus.publish(9, "status", {"status": "succeeded"})

    # Woken after each event was appended, so the watcher reads it.
    assert woken == [1, 2]
    unwatch()
    assert not bus.watched(9)
    bus.publish(9, "progress", {"step": 2, "total": 2})
    assert woken == [1, 2]


def test_progress_wakes_a_stream_at_most_once_per_interval_and_a_status_or_preview_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(events.time, "monotonic", lambda: clock[0])
    bus = MemoryEventBus()
    woken: list[int] = []
    bus.watch(3, lambda: woken.append(len(bus.read(3))))

    for step in (1, 2, 3):  # steps a few milliseconds apart: the first wakes the stream
        bus.publish(3, "progress", {"step": step, "total": 6})
        clock[0] += 0.004
    clock[0] += events.PROGRESS_WAKE_SECONDS
    bus.publish(3, "progress", {"step": 4, "total": 6})  # an interval later: relays 2 to 4 at once
    bus.publish(3, "progress", {"step": 5, "total": 6, "preview": "data:image/webp;base64,"})
    bus.publish(3, "progress", {"step": 6, "total": 6})
    bus.publish(3, "status", {"status": "succeeded"})

    assert woken == [1, 4, 5, 7]
    assert [event.data.get("step") for event in bus.read(3)] == [1, 2, 3, 4, 5, 6, None]


def test_a_generation_stays_watched_while_any_of_its_streams_is_open() -> None:
    bus = MemoryEventBus()
    first, second = bus.watch(4, lambda: None), bus.watch(4, lambda: None)
    first()
    assert bus.watched(4)
    second()
    assert not bus.watched(4)


def test_a_watcher_that_fails_to_wake_does_not_fail_the_publisher() -> None:
    bus = MemoryEventBus()

    def closed_loop() -> None:
        raise RuntimeError("Event loop is closed")

    bus.watch(6, closed_loop)
    woken: list[bool] = []
    bus.watch(6, lambda: woken.append(True))
    bus.publish(6, "status", {"status": "running"})

    assert [event.data for event in bus.read(6)] == [{"status": "running"}]
    assert woken == [True]


def test_the_redis_bus_counts_watchers_across_processes(redis_url: str) -> None:
    url = redis_url
    prefix = f"test-{uuid.uuid4().hex}"
    web, worker = RedisEventBus(url, ttl_seconds=60, prefix=prefix), RedisEventBus(url, ttl_seconds=60, prefix=prefix)
    assert not worker.wakes_watchers
    assert not worker.watched(8)

    unwatch_first, unwatch_second = web.watch(8, lambda: None), web.watch(8, lambda: None)
    assert worker.watched(8) and not worker.watched(9)
    unwatch_first()
    assert worker.watched(8)
    unwatch_second()
    assert not worker.watched(8)


def test_a_client_waiting_for_the_end_is_woken_by_the_final_status_only_and_asks_for_no_previews() -> None:
    bus = MemoryEventBus()
    woken: list[str] = []
    stop = bus.on_end(12, lambda: woken.append(bus.read(12)[-1].data["status"]))
    assert not bus.watched(12)  # a long poll shows no pictures: the worker paints no previews for it

    bus.publish(12, "status", {"status": "running"})
    bus.publish(12, "progress", {"step": 1, "total": 2})
    assert woken == []
    bus.publish(12, "status", {"status": "succeeded"})
    assert woken == ["succeeded"]
    stop()  # already woken and forgotten: stopping is harmless


def test_a_client_that_stopped_waiting_is_not_woken() -> None:
    bus = MemoryEventBus()
    woken: list[int] = []
    first = bus.on_end(13, lambda: woken.append(1))
    bus.on_end(13, lambda: woken.append(2))
    first()
    bus.publish(13, "status", {"status": "cancelled"})
    assert woken == [2]
