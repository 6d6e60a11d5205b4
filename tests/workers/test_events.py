"""Memory event bus: ordered, consecutive ids per generation, and reading after an id."""

from __future__ import annotations

import threading

from app.workers.events import Event, MemoryEventBus


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
