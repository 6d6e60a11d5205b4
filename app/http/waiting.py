"""Waiting for a job's end inside a request (``GET /api/generations/{id}?wait=N``, a long poll).

A script that polls its job every 50 ms hears the end 25 ms late on average and spends a request
(and a few ms of the server's CPU, taken from the painting) on every poll; one request that waits
hears it at once. The wait is a coroutine on the event loop: it holds no worker thread and no
database connection, so many clients can wait beside the painting.

It listens on the progress bus for the job's final status (the in-memory bus wakes it as it is
published; with Redis it asks every ``POLL_SECONDS``) without asking for previews, and asks the
database every ``FINAL_CHECK_SECONDS`` as the event streams do, in case the bus forgot the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.db.base import utcnow
from app.db.models import Generation, Status
from app.services import estimates, queue
from app.workers.events import Event, EventBus

T = TypeVar("T")
logger = logging.getLogger(__name__)

# The longest a request may wait; a client that wants longer asks again.
MAX_WAIT_SECONDS = 60.0
# A plain poll (no ``wait``) of a job due to end within this long is answered at its end: a client
# polling every 50 ms would otherwise hear it 25 ms late on average, one polling every half second
# 250 ms, and each poll it sends meanwhile takes the server's CPU from the painting. The poll is
# held no longer than this, even when the guess was wrong.
NEAR_END_SECONDS = 0.5
# How often a waiting request or a quiet event stream asks the database whether its job ended, and
# how often it reads a bus that does not wake it (Redis); the in-memory bus wakes it as it publishes.
FINAL_CHECK_SECONDS = 1.0
POLL_SECONDS = 0.1


async def ask_bus(bus: EventBus, function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` of the bus: Redis answers over the network, off the loop; the memory bus at once, on it."""
    return await run_in_threadpool(function, *args) if bus.reads_block else function(*args)


def waker(flag: asyncio.Event) -> Callable[[], None]:
    """A wake-up the bus may call from a worker thread: sets ``flag`` on the running loop."""
    loop = asyncio.get_running_loop()

    def wake() -> None:
        loop.call_soon_threadsafe(flag.set)

    return wake


async def until_final(
    generation_id: int, *, bus: EventBus, session_factory: sessionmaker[Session], timeout: float
) -> bool:
    """Waits until the job has ended or ``timeout`` seconds passed; True when it ended."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()

    async def ask(function: Callable[..., T], *args: Any) -> T:
        return await ask_bus(bus, function, *args)

    stop = await ask(bus.on_end, generation_id, waker(ended))
    deadline = loop.time() + timeout
    next_check = loop.time() + FINAL_CHECK_SECONDS
    try:
        while True:
            if await ask(bus.ended, generation_id):
                return True
            now = loop.time()
            if now >= next_check:
                next_check = now + FINAL_CHECK_SECONDS
                if await run_in_threadpool(final_status, session_factory, generation_id) is not None:
                    return True
            now = loop.time()
            if now >= deadline:
                return False
            pause = min(deadline, next_check) - now
            if not bus.wakes_watchers:
                pause = min(pause, POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), timeout=pause)
    finally:
        if bus.reads_block:
            loop.run_in_executor(None, stop)
        else:
            stop()


def seconds_left(events: Sequence[Event], *, running_for: float) -> float | None:
    """About how long a running job has left, from its last progress event and how long it has run.

    The steps still to paint at the pace of those painted so far, and one more for decoding and
    writing the picture; None before the first step is reported.
    """
    progress = next((event.data for event in reversed(events) if event.name == "progress"), None)
    if progress is None or running_for <= 0:
        return None
    step, total = int(progress.get("step", 0)), int(progress.get("total", 0))
    if step <= 0 or total < step:
        return None
    return running_for / step * (total - step + 1)


def seconds_to_end(
    session: Session, generation: Generation, *, bus: EventBus, queued_wait: float | None
) -> float | None:
    """About how long until an unfinished job ends; None when nothing says.

    Queued: ``queued_wait``, the estimate the job's JSON carries (the jobs ahead of it and itself at
    its model's recent pace). Running: from its progress on the bus (``seconds_left``), or before its
    first step from how long its model's recent jobs ran. Reads the bus and the database: call it in
    the route's worker thread.
    """
    if generation.status == Status.QUEUED:
        return queued_wait
    if generation.status != Status.RUNNING or generation.started_at is None:
        return None
    running_for = (utcnow() - generation.started_at).total_seconds()
    try:
        events = bus.read(generation.id)
    except Exception:  # a bus that does not answer (Redis down) costs the hold, never the poll
        logger.warning("could not read the progress of generation %s", generation.id, exc_info=True)
        return None
    left = seconds_left(events, running_for=running_for)
    if left is not None:
        return left
    typical = estimates.typical_run_seconds(session, model=generation.model)
    return None if typical is None else max(typical - running_for, 0.0)


async def held_until_end(generation_id: int, *, bus: EventBus, session_factory: sessionmaker[Session]) -> bool:
    """A plain poll's hold: ``until_final`` for at most ``NEAR_END_SECONDS``; True when the job ended.

    A bus that fails meanwhile ends the hold: the poll answers with the job as it read it.
    """
    try:
        return await until_final(generation_id, bus=bus, session_factory=session_factory, timeout=NEAR_END_SECONDS)
    except Exception:
        logger.warning("could not wait for the end of generation %s", generation_id, exc_info=True)
        return False


def final_status(session_factory: sessionmaker[Session], generation_id: int) -> Status | None:
    """The job's status if it has ended, else None; in a session of its own, closed at once."""
    with session_factory() as session:
        return queue.final_status(session, generation_id=generation_id)
