"""Generation events: the server-sent stream of a job's progress and status."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Request
from sqlalchemy.orm import Session, sessionmaker
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.db.models import Status
from app.db.session import reading
from app.deps import BusDep, CallerDep, SessionDep
from app.http.waiting import FINAL_CHECK_SECONDS, POLL_SECONDS, ask_bus, final_status, waker
from app.params import RowId
from app.services import generations
from app.workers.events import EventBus

router = APIRouter(tags=["generations"])
T = TypeVar("T")


@router.get("/generations/{generation_id}/events")
def generation_events(
    generation_id: RowId,
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    bus: BusDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Server-sent events: ``progress`` {step, total, preview?} and ``status`` {status}.

    A client that reconnects with ``Last-Event-ID`` gets only what it missed. The stream ends
    after a final status; the database is consulted too, so a job that ended before the client
    connected (or whose events were forgotten) still closes the stream.

    Who asks and the visibility check use the request's session, in this function's one
    worker-thread hop (``app.deps.Caller``); the session is closed when this function returns
    (see ``app.deps.get_session``): an open stream holds no connection, and each final-status
    check borrows one only for its query.
    """
    with reading(session):
        generations.get_visible(session, generation_id=generation_id, user=caller.required())
    # A number no stream reaches (or one Redis would refuse as an index) resumes from the start.
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() and len(last_event_id) <= 9 else -1
    stream = _stream(generation_id, after, bus=bus, session_factory=request.app.state.session_factory)
    return EventSourceResponse(stream, ping=15)


async def _stream(
    generation_id: int, after: int, *, bus: EventBus, session_factory: sessionmaker[Session]
) -> AsyncIterator[dict[str, str]]:
    # The bus calls ``wake`` from a worker thread after each event; the flag is cleared before
    # each read, so an event published between the read and the wait still ends the wait at once.
    loop = asyncio.get_running_loop()
    published = asyncio.Event()

    async def ask(function: Callable[..., T], *args: Any) -> T:
        return await ask_bus(bus, function, *args)

    unwatch = await ask(bus.watch, generation_id, waker(published))
    wait = FINAL_CHECK_SECONDS if bus.wakes_watchers else POLL_SECONDS
    try:
        quiet = 0.0
        while True:
            published.clear()
            events = await ask(bus.read, generation_id, after)
            for event in events:
                after = event.id
                yield {"event": event.name, "id": str(event.id), "data": json.dumps(event.data)}
                if event.name == "status" and Status(event.data["status"]).is_final:
                    return
            if events:
                quiet = 0.0
                continue
            if quiet >= FINAL_CHECK_SECONDS:
                quiet = 0.0
                final = await run_in_threadpool(final_status, session_factory, generation_id)
                if final is not None:
                    yield {"event": "status", "data": json.dumps({"status": final.value})}
                    return
            started = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(published.wait(), timeout=wait)
            quiet += loop.time() - started
    finally:
        # Not awaited: a stream closed by its client is being cancelled, and would await nothing more.
        if bus.reads_block:
            loop.run_in_executor(None, unwatch)
        else:
            unwatch()
