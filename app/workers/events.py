"""Progress bus: what workers say about a running generation, for the event streams to relay.

Each generation has an ordered list of events; an event's id is its index in that list, so a
client that reconnects with ``Last-Event-ID`` resumes exactly where it dropped. Embedded mode
keeps the lists in memory; scaled mode keeps them in Redis lists, shared by every process.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Event:
    id: int
    name: str  # "progress" or "status"
    data: dict[str, Any]


class EventBus(Protocol):
    def publish(self, generation_id: int, name: str, data: dict[str, Any]) -> None: ...

    def read(self, generation_id: int, after: int = -1) -> list[Event]:
        """Events with an id greater than ``after``, oldest first, without waiting."""
        ...


class MemoryEventBus:
    """In-process bus for the embedded pool: worker threads publish, the web loop reads."""

    def __init__(self, max_generations: int = 1000) -> None:
        self._events: OrderedDict[int, list[Event]] = OrderedDict()
        self._max_generations = max_generations
        # Worker threads append while request handlers read: one lock guards the dict and lists.
        self._lock = threading.Lock()

    def publish(self, generation_id: int, name: str, data: dict[str, Any]) -> None:
        with self._lock:
            events = self._events.setdefault(generation_id, [])
            self._events.move_to_end(generation_id)
            events.append(Event(len(events), name, data))
            while len(self._events) > self._max_generations:
                self._events.popitem(last=False)

    def read(self, generation_id: int, after: int = -1) -> list[Event]:
        with self._lock:
            return list(self._events.get(generation_id, [])[after + 1 :])


class RedisEventBus:
    """Bus shared by web processes and Celery workers through Redis lists."""

    def __init__(self, url: str, ttl_seconds: int = 3600) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._ttl = ttl_seconds

    @staticmethod
    def _key(generation_id: int) -> str:
        return f"studio:events:{generation_id}"

    def publish(self, generation_id: int, name: str, data: dict[str, Any]) -> None:
        key = self._key(generation_id)
        pipe = self._redis.pipeline()
        pipe.rpush(key, json.dumps({"name": name, "data": data}))
        pipe.expire(key, self._ttl)
        pipe.execute()

    def read(self, generation_id: int, after: int = -1) -> list[Event]:
        raw = self._redis.lrange(self._key(generation_id), after + 1, -1)
        events = []
        for offset, item in enumerate(raw):
            payload = json.loads(item)
            events.append(Event(after + 1 + offset, payload["name"], payload["data"]))
        return events
