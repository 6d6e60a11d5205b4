"""Progress bus: what workers say about a running generation, for the event streams to relay.

Each generation has an ordered list of events; an event's id is its index in that list, so a
client that reconnects with ``Last-Event-ID`` resumes exactly where it dropped. Embedded mode
keeps the lists in memory; scaled mode keeps them in Redis lists, shared by every process.

A final status closes a generation's list: whatever is published after it (a worker's last
progress step racing a cancel, the worker's own "cancelled" after the route's) is dropped, so a
stream ends with exactly one final status. ``ended`` is also how a worker in another process
hears a cancel at its next step, before its heartbeat would notice.

A stream that relays a generation's events ``watch``es it while it is open: the worker paints
previews only for a watched generation, and the in-memory bus wakes the stream as soon as an
event is published (no polling delay between a job's end and its client hearing it). The Redis
bus counts watchers across processes and leaves the streams to poll.

Progress steps wake a stream at most once per ``PROGRESS_WAKE_SECONDS``: a small model's steps
come every few milliseconds, and waking the web loop for each one took the worker's interpreter
lock from it 20 times a job, to show a bar the eye reads a few times a second. A woken stream
relays every event published since, so none is lost; a status (the job's end above all) and a
preview wake it at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# The shortest time between two wake-ups of a generation's streams by its progress (see above).
PROGRESS_WAKE_SECONDS = 0.1


def _is_final(name: str, data: dict[str, Any]) -> bool:
    return name == "status" and data.get("status") in FINAL_STATUSES


@dataclass(frozen=True)
class Event:
    id: int
    name: str  # "progress" or "status"
    data: dict[str, Any]


class EventBus(Protocol):
    def publish(self, generation_id: int, name: str, data: dict[str, Any]) -> None:
        """Appends an event, unless the generation's list already ended with a final status."""
        ...

    def ended(self, generation_id: int) -> bool:
        """Whether a final status was published for the generation (it was cancelled, or it ended)."""
        ...

    def read(self, generation_id: int, after: int = -1) -> list[Event]:
        """Events with an id greater than ``after``, oldest first, without waiting."""
        ...

    # True when ``watch`` calls its ``wake`` on every publish; False when readers must poll.
    wakes_watchers: bool
    # True when reading waits on the network (run it off the event loop); False for memory.
    reads_block: bool

    def watch(self, generation_id: int, wake: Callable[[], None]) -> Callable[[], None]:
        """Someone reads the generation's events until the returned function is called.

        ``wake`` is called (from the publishing thread) after each event published for it, where
        ``wakes_watchers`` says the bus can; it must be quick and must not raise.
        """
        ...

    def on_end(self, generation_id: int, wake: Callable[[], None]) -> Callable[[], None]:
        """Has ``wake`` called once a final status is published; returns the call that stops it.

        Unlike ``watch`` it asks for no previews: a client waiting for a job's end (a long poll)
        shows no pictures while it waits. ``wakes_watchers`` says whether the bus can wake; it
        must be quick and must not raise.
        """
        ...

    def watched(self, generation_id: int) -> bool:
        """Whether any stream is reading the generation's events now (previews are painted for it)."""
        ...


class MemoryEventBus:
    """In-process bus for the embedded pool: worker threads publish, the web loop reads."""

    wakes_watchers = True
    reads_block = False

    def __init__(self, max_generations: int = 1000) -> None:
        self._events: OrderedDict[int, list[Event]] = OrderedDict()
        self._max_generations = max_generations
        # generation id -> the wake-ups of the streams reading it (one entry per open stream)
        self._watchers: dict[int, list[Callable[[], None]]] = {}
        # generation id -> the wake-ups of the clients waiting only for its end (long polls)
        self._enders: dict[int, list[Callable[[], None]]] = {}
        # generation id -> when its streams were last woken (time.monotonic), for PROGRESS_WAKE_SECONDS
        self._woken: dict[int, float] = {}
        # Worker threads append while request handlers read: one lock guards the dicts and lists.
        self._lock = threading.Lock()

    def publish(self, generation_id: int, name: str, data: dict[str, Any]) -> None:
        with self._lock:
            events = self._events.setdefault(generation_id, [])
            self._events.move_to_end(generation_id)
            if events and _is_final(events[-1].name, events[-1].data):
                return
            events.append(Event(len(events), name, data))
            while len(self._events) > self._max_generations:
                dropped, _ = self._events.popitem(last=False)
                self._woken.pop(dropped, None)
            wakes = list(self._watchers.get(generation_id, ()))
            if _is_final(name, data):
                wakes += self._enders.pop(generation_id, [])
            now = time.monotonic()
            urgent = name != "progress" or "preview" in data
            if (
                wakes
                and not urgent
                and now - self._woken.get(generation_id, -PROGRESS_WAKE_SECONDS) < PROGRESS_WAKE_SECONDS
            ):
                wakes = []  # relayed with the next event that wakes the stream
            elif wakes:
                self._woken[generation_id] = now
        # Outside the lock: a stream woken now reads (under the lock) the event just appended.
        for wake in wakes:
            try:
                wake()
            except Exception:  # a stream whose loop has closed must not fail the worker
                logger.debug("could not wake a stream of generation %s", generation_id, exc_info=True)

    def watch(self, generation_id: int, wake: Callable[[], None]) -> Callable[[], None]:
        return self._subscribe(self._watchers, generation_id, wake)

    def on_end(self, generation_id: int, wake: Callable[[], None]) -> Callable[[], None]:
        return self._subscribe(self._enders, generation_id, wake)

    def _subscribe(
        self, table: dict[int, list[Callable[[], None]]], generation_id: int, wake: Callable[[], None]
    ) -> Callable[[], None]:
        """Adds ``wake`` to the generation's list in ``table``; returns the call that takes it out."""
        with self._lock:
            table.setdefault(generation_id, []).append(wake)

        def unsubscribe() -> None:
            with self._lock:
                wakes = table.get(generation_id, [])
                if wake in wakes:
                    wakes.remove(wake)
                if not wakes:
                    table.pop(generation_id, None)

        return unsubscribe

    def watched(self, generation_id: int) -> bool:
        with self._lock:
            return bool(self._watchers.get(generation_id))

    def ended(self, generation_id: int) -> bool:
        with self._lock:
            events = self._events.get(generation_id)
            return events is not None and bool(events) and _is_final(events[-1].name, events[-1].data)

    def read(self, generation_id: int, after: int = -1) -> list[Event]:
        with self._lock:
            return list(self._events.get(generation_id, [])[after + 1 :])


# Appends unless the list has ended, and marks it ended on a final status, in one atomic step:
# two processes publishing at once (a route's cancel, a worker's last step) cannot interleave.
_PUBLISH = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local length = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if ARGV[3] == '1' then redis.call('SET', KEYS[2], '1', 'EX', ARGV[2]) end
return length
"""


class RedisEventBus:
    """Bus shared by web processes and Celery workers through Redis lists.

    ``prefix`` namespaces the keys, so studios (or test runs) sharing one Redis never read each
    other's events: generation ids restart at 1 in every new database.

    Watchers are counted in a key of their own (incremented while a stream is open, with the
    events' time to live, so a web process killed mid-stream costs previews for a while, nothing
    else); streams poll, since a Redis list does not wake anyone.
    """

    wakes_watchers = False
    reads_block = True

    def __init__(self, url: str, ttl_seconds: int = 3600, prefix: str = "studio") -> None:
        import redis

        self._redis = redis.Redis.from_url(url)
        self._ttl = ttl_seconds
        self._prefix = prefix
        self._publish = self._redis.register_script(_PUBLISH)

    def _key(self, generation_id: int) -> str:
        return f"{self._prefix}:events:{generation_id}"

    def _ended_key(self, generation_id: int) -> str:
        return f"{self._prefix}:ended:{generation_id}"

    def _watchers_key(self, generation_id: int) -> str:
        return f"{self._prefix}:watchers:{generation_id}"

    def publish(self, generation_id: int, name: str, data: dict[str, Any]) -> None:
        payload = json.dumps({"name": name, "data": data})
        final = "1" if _is_final(name, data) else "0"
        self._publish(keys=[self._key(generation_id), self._ended_key(generation_id)], args=[payload, self._ttl, final])

    def ended(self, generation_id: int) -> bool:
        return bool(self._redis.exists(self._ended_key(generation_id)))

    def read(self, generation_id: int, after: int = -1) -> list[Event]:
        raw = self._redis.lrange(self._key(generation_id), after + 1, -1)
        events = []
        for offset, item in enumerate(raw):
            payload = json.loads(item)
            events.append(Event(after + 1 + offset, payload["name"], payload["data"]))
        return events

    def watch(self, generation_id: int, wake: Callable[[], None]) -> Callable[[], None]:
        key = self._watchers_key(generation_id)
        with self._redis.pipeline() as pipeline:
            pipeline.incr(key)
            pipeline.expire(key, self._ttl)
            pipeline.execute()

        def unwatch() -> None:
            try:
                self._redis.decr(key)
            except Exception:  # the count expires with the events anyway
                logger.warning("could not unwatch generation %s", generation_id, exc_info=True)

        return unwatch

    def on_end(self, generation_id: int, wake: Callable[[], None]) -> Callable[[], None]:
        # A Redis list wakes nobody: the waiter asks ``ended`` as the streams read.
        return lambda: None

    def watched(self, generation_id: int) -> bool:
        count = self._redis.get(self._watchers_key(generation_id))
        return count is not None and int(count) > 0
